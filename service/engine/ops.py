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
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from poolops.inputs import example_inputs, kind
from poolops.onnx import op_backward_model, op_model
from poolops.params import ParamError
from poolops.registry import OpSpec, get_op, list_ops
from service.engine.errors import BadInput, NotFound, TooLarge
from service.engine.sessions import Session, make_session

log = logging.getLogger("poolops.engine")


@dataclass
class OpResult:
    """``outputs`` maps ``y`` (and ``indices``, ``grad_input`` when asked) to arrays."""

    op: str
    params: dict[str, Any]
    outputs: dict[str, np.ndarray]
    provider: str
    ms: dict[str, float] = field(default_factory=dict)


class LRU:
    """A thread-safe LRU of sessions; ``get(key, make)`` builds on a miss."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str, make: Callable[[], Session]) -> Session:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        sess = make()  # outside the lock: building a graph takes milliseconds
        with self._lock:
            self.misses += 1
            self._items[key] = sess
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return sess

    def __len__(self) -> int:
        return len(self._items)

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._items.values())


def spec_or_404(name: str) -> OpSpec:
    if name not in list_ops():
        raise NotFound(f"unknown op {name!r}; known ops: {', '.join(list_ops())}", op=name)
    return get_op(name)


class OpRunner:
    """Runs any registered op on numpy arrays; no web code."""

    def __init__(self, providers: list[str], threads: int, cache_size: int, max_elements: int):
        self.providers = providers
        self.threads = threads
        self.max_elements = max_elements
        self.cache = LRU(cache_size)

    def parse(self, name: str, params: dict[str, Any] | None):
        spec = spec_or_404(name)
        try:
            return spec, spec.parse(params or {})
        except ParamError as e:
            raise BadInput(str(e), op=name, param=e.param) from None

    def run(
        self,
        name: str,
        params: dict[str, Any] | None,
        x: np.ndarray,
        extra: dict[str, np.ndarray] | None = None,
        indices: bool = False,
        backward: bool = False,
        grad_output: np.ndarray | None = None,
    ) -> OpResult:
        """Forward (and, when asked, the indices and the gradient of ``sum(y * grad_output)``
        with respect to ``x``; ``grad_output`` defaults to ones)."""
        spec, p = self.parse(name, params)
        extra = dict(extra or {})
        self._check_sizes(x, extra)
        unknown = [k for k in extra if k not in spec.all_inputs[1:]]
        if unknown:
            takes = list(spec.all_inputs[1:]) or "no extra inputs"
            raise BadInput(f"{name} takes {takes}, not {unknown}", op=name)
        missing = [k for k in spec.inputs[1:] if k not in extra]
        if missing:
            raise BadInput(f"{name} needs the inputs {missing}: {', '.join(kind(k).doc for k in missing)}", op=name)
        feeds = {"x": np.ascontiguousarray(x, dtype=np.float32)}
        for k, v in extra.items():
            feeds[k] = np.ascontiguousarray(v, dtype=np.int64 if kind(k).dtype == "int64" else np.float32)
        if indices and "indices" not in spec.outputs:
            raise BadInput(f"{name} has no indices output (only {list(spec.outputs)})", op=name)
        try:
            spec.check(p, feeds["x"], *[feeds.get(k) for k in spec.all_inputs[1:]])
        except ParamError as e:
            raise BadInput(str(e), op=name, param=e.param) from None
        if backward and spec.onnx_backward is None:
            served = [n for n in list_ops() if get_op(n).onnx_backward is not None]
            raise BadInput(f"backward is not served for {name}; it is for {served}", op=name)
        if backward and extra:
            raise BadInput(f"backward takes x alone, not {list(extra)}", op=name)

        outs = ("y", "indices") if indices else ("y",)
        ins = ("x",) + tuple(k for k in spec.all_inputs[1:] if k in extra)
        pj = p.model_dump_json()
        key = json.dumps([name, pj, outs, ins])
        t0 = time.perf_counter()
        sess = self.cache.get(key, lambda: self._session(op_model(name, outputs=outs, inputs=ins, **p.model_dump())))
        t1 = time.perf_counter()
        values = sess.run(feeds)
        t2 = time.perf_counter()
        result = dict(zip(outs, values))
        ms = {"graph": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3}
        if backward:
            g = np.ones_like(result["y"]) if grad_output is None else np.asarray(grad_output, np.float32)
            if g.shape != result["y"].shape:
                raise BadInput(
                    f"grad_output must have the output's shape {list(result['y'].shape)}, got {list(g.shape)}", op=name
                )
            bkey = json.dumps([name, pj, "backward"])
            bsess = self.cache.get(bkey, lambda: self._session(op_backward_model(name, **p.model_dump())))
            t3 = time.perf_counter()
            (result["grad_input"],) = bsess.run({"x": feeds["x"], "grad_y": np.ascontiguousarray(g)})
            ms["backward"] = (time.perf_counter() - t3) * 1e3
        return OpResult(name, json.loads(pj), result, sess.provider, ms)

    def _check_sizes(self, x: np.ndarray, extra: dict[str, np.ndarray]) -> None:
        for k, v in {"x": x, **extra}.items():
            if v.size > self.max_elements:
                raise TooLarge(
                    f"input {k!r} has {v.size} elements, more than the limit {self.max_elements} "
                    "(POOLOPS_MAX_TENSOR_ELEMENTS): send a smaller tensor",
                    input=k,
                )

    def _session(self, model) -> Session:
        return make_session(model.SerializeToString(), self.providers, self.threads)

    def warm_up(self) -> None:
        """Build and run every op once with its default parameters (graphs cached)."""
        rng = np.random.default_rng(0)
        for name in list_ops():
            spec = get_op(name)
            x = rng.random((1, 2, 16, 16), dtype=np.float32)
            try:
                extra = example_inputs(spec.inputs[1:], x.shape, rng, spec.parse({}))
                self.run(name, {}, x, extra)
            except Exception as e:  # noqa: BLE001 - such an op is built on first use instead
                log.info("warm-up skipped %s: %s", name, e)
