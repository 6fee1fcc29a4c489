"""Op runner: builds, caches and runs the registry's ONNX op graphs (forward and backward).

Sessions are cached by (op, parameters, outputs, inputs) in an LRU of bounded size;
the registry's parameter models and input checks validate every request first.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from poolops.inputs import example_inputs, kind
from poolops.onnx import op_backward_model, op_model
from poolops.params import ParamError
from poolops.registry import Cost, OpSpec, UnknownOp, get_op, list_ops
from poolops_service.engine.errors import BadInput, NotFound, TooLarge
from poolops_service.engine.sessions import RunControl, Session, make_session

log = logging.getLogger("poolops.engine")


@dataclass
class OpResult:
    """``outputs`` maps ``y`` (and ``indices``, ``grad_input`` when asked) to arrays."""

    op: str
    params: dict[str, Any]
    outputs: dict[str, np.ndarray]
    provider: str
    ms: dict[str, float] = field(default_factory=dict)
    large: bool = False  # worth handing memory back to the OS once answered


class LRU:
    """A thread-safe LRU of sessions; ``get(key, make)`` builds on a miss, once: concurrent
    callers of a key being built wait for that build instead of starting their own."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._building: dict[str, Future] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = self.coalesced = 0

    def get(self, key: str, make: Callable[[], Session]) -> Session:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            pending = self._building.get(key)
            if pending is None:
                pending = self._building[key] = Future()
                owner = True
            else:
                owner = False
                self.coalesced += 1
        if not owner:
            return pending.result()
        try:
            sess = make()  # outside the lock: other keys build and hit meanwhile
        except BaseException as e:
            with self._lock:
                del self._building[key]
            pending.set_exception(e)
            raise
        with self._lock:
            self.misses += 1
            del self._building[key]
            self._items[key] = sess
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        pending.set_result(sess)
        return sess

    def cached(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._items.values())


def find_op(name: str) -> OpSpec:
    """The registry's op ``name``; :class:`NotFound` (the registry's message) if none."""
    try:
        return get_op(name)
    except UnknownOp as e:
        raise NotFound(str(e), op=name) from None


@dataclass
class OpPlan:
    """A checked op request: what to build and feed, and what it will cost."""

    spec: OpSpec
    params: Any  # the parsed parameters
    feeds: dict[str, np.ndarray]
    inputs: tuple[str, ...]  # the graph's inputs, x first
    outputs: tuple[str, ...]
    backward: bool
    grad_output: np.ndarray | None
    cost: Cost
    key: str
    backward_key: str | None
    checked: bool = False  # check_values has passed

    @property
    def large(self) -> bool:
        """Worth handing memory back to the OS afterwards (over 4 M elements = 16 MB)."""
        return self.cost.work_elements > 4 * 1024 * 1024


class OpRunner:
    """Runs any registered op on numpy arrays; no web code.

    A request is first planned (:meth:`plan`: parameters, inputs and the cost from their
    shapes, refused above the limits before any work), then its graphs are built or taken
    from the cache (:meth:`sessions`, identical builds coalesced) and run (:meth:`execute`,
    stoppable through a :class:`RunControl`)."""

    def __init__(
        self,
        providers: list[str],
        threads: int,
        cache_size: int,
        max_elements: int,
        max_output_elements: int | None = None,
        max_work_elements: int | None = None,
    ):
        self.providers = providers
        self.threads = threads
        self.max_elements = max_elements
        self.max_output = max_output_elements or max_elements
        self.max_work = max_work_elements or 2 * max_elements
        self.cache = LRU(cache_size)

    def parse(self, name: str, params: dict[str, Any] | None):
        spec = find_op(name)
        try:
            return spec, spec.parse(params or {})
        except ParamError as e:
            raise BadInput(str(e), op=name, param=e.param) from None

    def plan(
        self,
        name: str,
        params: dict[str, Any] | None,
        x: np.ndarray,
        extra: dict[str, np.ndarray] | None = None,
        indices: bool = False,
        backward: bool = False,
        grad_output: np.ndarray | None = None,
    ) -> OpPlan:
        """Check a request from its shapes and parameters alone (``BadInput``, ``TooLarge``):
        O(1) in the parameter values, no graph built, no input value read."""
        spec, p = self.parse(name, params)
        extra = dict(extra or {})
        self._check_sizes(x, extra)
        dims = spec.x_dims  # [N, C, H, W]; [N, C, L] / [N, C, D, H, W] for the 1-D / 3-D ops
        if x.ndim == len(dims) and 0 in x.shape:
            raise BadInput(f"x has shape {list(x.shape)}: {', '.join(dims)} must each be at least 1", op=name)
        try:
            ins, outs = spec.bind(("x", *extra), ("y", "indices") if indices else ("y",), backward)
        except ParamError as e:
            raise BadInput(str(e), op=name, param=e.param) from None
        if x.ndim != len(dims):
            raise BadInput(f"x must be {len(dims)}-D [{', '.join(dims)}], got shape {list(x.shape)}", op=name, param="x")
        shapes = {"x": tuple(int(d) for d in x.shape), **{k: tuple(int(d) for d in v.shape) for k, v in extra.items()}}
        try:
            cost = spec.cost(p, shapes, outputs=outs, backward=backward)
        except ParamError as e:
            raise BadInput(str(e), op=name, param=e.param) from None
        self._check_cost(name, cost)
        feeds = {"x": x, **extra}  # converted by check_values, in a worker thread (O(input))
        pj = p.model_dump_json()
        return OpPlan(
            spec, p, feeds, ins, outs, backward, grad_output, cost,
            key=json.dumps([name, pj, outs, ins]), backward_key=json.dumps([name, pj, "backward"]) if backward else None,
        )

    def cached(self, plan: OpPlan) -> bool:
        """Every graph the plan needs is built already."""
        return self.cache.cached(plan.key) and (plan.backward_key is None or self.cache.cached(plan.backward_key))

    def check_values(self, plan: OpPlan) -> None:
        """Inputs to the graph's dtypes and the op's own checks (values too: O(input))."""
        spec, feeds = plan.spec, plan.feeds
        for k, v in feeds.items():
            feeds[k] = np.ascontiguousarray(v, dtype=np.int64 if kind(k).dtype == "int64" else np.float32)
        try:
            spec.check(plan.params, feeds["x"], *[feeds.get(k) for k in spec.all_inputs[1:]])
        except ParamError as e:
            raise BadInput(str(e), op=spec.name, param=e.param) from None

    def sessions(self, plan: OpPlan) -> tuple[Session, Session | None]:
        """The forward (and backward) sessions, from the cache or built once."""
        name, p = plan.spec.name, plan.params
        fwd = self.cache.get(
            plan.key, lambda: self._session(op_model(name, outputs=plan.outputs, inputs=plan.inputs, **p.model_dump()))
        )
        bwd = None
        if plan.backward_key is not None:
            bwd = self.cache.get(plan.backward_key, lambda: self._session(op_backward_model(name, **p.model_dump())))
        return fwd, bwd

    def execute(self, plan: OpPlan, control: RunControl | None = None) -> OpResult:
        """Build (or reuse) and run the plan's graphs: forward, indices, and the gradient of
        ``sum(y * grad_output)`` with respect to ``x`` (``grad_output`` defaults to ones)."""
        t0 = time.perf_counter()
        sess, bsess = self.sessions(plan)
        t1 = time.perf_counter()
        result = dict(zip(plan.outputs, sess.run(plan.feeds, control=control)))
        t2 = time.perf_counter()
        ms = {"graph": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3}
        if bsess is not None:
            g = np.ones_like(result["y"]) if plan.grad_output is None else np.asarray(plan.grad_output, np.float32)
            if g.shape != result["y"].shape:
                raise BadInput(
                    f"grad_output must have the output's shape {list(result['y'].shape)}, got {list(g.shape)}",
                    op=plan.spec.name,
                )
            (result["grad_input"],) = bsess.run(
                {"x": plan.feeds["x"], **{n: plan.feeds[n] for n in plan.spec.backward_inputs},
                 "grad_y": np.ascontiguousarray(g)}, control=control
            )
            ms["backward"] = (time.perf_counter() - t2) * 1e3
        return OpResult(plan.spec.name, json.loads(plan.params.model_dump_json()), result, sess.provider, ms, plan.large)

    def run(self, name: str, params: dict[str, Any] | None, x: np.ndarray, **kw: Any) -> OpResult:
        """Plan, check and execute in the calling thread (warm-up, tests, the CLI)."""
        plan = self.plan(name, params, x, **kw)
        self.check_values(plan)
        plan.checked = True
        return self.execute(plan)

    def _check_cost(self, name: str, cost: Cost) -> None:
        if cost.output_elements > self.max_output:
            raise TooLarge(
                f"{name} would output {cost.output_elements} elements, more than the limit {self.max_output} "
                "(POOLOPS_MAX_OUTPUT_ELEMENTS): use a smaller output size, fewer levels, channels or boxes, "
                "or a smaller input",
                op=name, output_elements=cost.output_elements,
            )
        if cost.work_elements > self.max_work:
            raise TooLarge(
                f"{name} would need an intermediate tensor of {cost.work_elements} elements, more than the limit "
                f"{self.max_work} (POOLOPS_MAX_WORK_ELEMENTS): use a smaller input, kernel, output size or fewer "
                "boxes",
                op=name, work_elements=cost.work_elements,
            )

    def _check_sizes(self, x: np.ndarray, extra: dict[str, np.ndarray]) -> None:
        for k, v in {"x": x, **extra}.items():
            if v.size > self.max_elements:
                raise TooLarge(
                    f"input {k!r} has {v.size} elements, more than the limit {self.max_elements} "
                    "(POOLOPS_MAX_TENSOR_ELEMENTS): send a smaller tensor",
                    input=k,
                )

    def _session(self, model) -> Session:
        return make_session(model.SerializeToString(), self.providers, self.threads, arena=False)

    def warm_up(self) -> None:
        """Build and run every op once with its default parameters (graphs cached)."""
        rng = np.random.default_rng(0)
        for name in list_ops():
            spec = get_op(name)
            x = rng.random((1, 2, 16, 16), dtype=np.float32)
            try:
                extra = example_inputs(spec.inputs[1:], x.shape, rng, spec.parse({}))
                self.run(name, {}, x, extra=extra)
            except Exception as e:  # noqa: BLE001 - such an op is built on first use instead
                log.info("warm-up skipped %s: %s", name, e)
