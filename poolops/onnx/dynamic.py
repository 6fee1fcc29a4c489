"""Does an exported graph hold at every input size? Run it against torch and find out.

:func:`check_dynamic` runs an ONNX graph and its torch module side by side at several
input sizes and reports the worst error per size. :func:`export` calls
:func:`raise_if_pinned` on sizes it picks itself (:func:`probe_sizes`), so a model whose
graph would fail or be wrong at another size (a ``Linear`` after ``Flatten`` of a
size-dependent map, a reshape or resize to a size fixed at export) is refused with a
message naming the module and the op, instead of being written.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

REL_TOL = 1e-4


class SizePinned(ValueError):
    """The model, or its exported graph, only works at the example's size."""


@dataclass
class SizeCheck:
    size: tuple[int, int]
    worst_error: float | None  # max |onnx - torch| / max(1, max |torch|); None if a side failed
    error: str | None = None  # what failed, naming the module and op

    @property
    def ok(self) -> bool:
        return self.error is None and self.worst_error is not None and self.worst_error <= REL_TOL


def probe_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """Two sizes unlike ``h x w`` that keep its divisibility by powers of two (up to 64),
    so that models which need sizes divisible by their total stride still accept them."""
    step = 1
    while step < 64 and h % (2 * step) == 0 and w % (2 * step) == 0:
        step *= 2
    step = max(step, 8)
    return [(h + step, w + 2 * step), (h + 3 * step, w + step)]


def _module_names(module) -> dict[int, str]:
    return {id(m): name or type(m).__name__ for name, m in module.named_modules()}


def _torch_culprit(module, exc: BaseException) -> str:
    """The innermost module whose ``forward`` raised ``exc``, with the error."""
    names, found = _module_names(module), None
    tb = exc.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if obj is not None and id(obj) in names:
            found = obj
        tb = tb.tb_next
    where = f"module '{names[id(found)]}' ({type(found).__module__}.{type(found).__name__})" if found is not None else "the model"
    msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return f"{where} fails in torch: {msg}"


def _node_origin(node) -> str:
    meta = {m.key: m.value for m in node.metadata_props}
    scopes = _literal(meta.get("pkg.torch.onnx.name_scopes"))
    classes = _literal(meta.get("pkg.torch.onnx.class_hierarchy"))
    if not scopes or not classes:
        return f"ONNX node {node.name} ({node.op_type})"
    path = (scopes[-2] if len(scopes) >= 2 else "") or "<root>"  # each scope is a full module path
    owner = classes[-2] if len(classes) >= 2 else classes[0]
    return f"module '{path}' ({owner}), op {classes[-1]} (ONNX {node.op_type} node {node.name})"


def _literal(v):
    try:
        return ast.literal_eval(v) if v else None
    except (ValueError, SyntaxError):
        return None


def _onnx_culprit(proto, exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"Name:'([^']+)'", text)
    node = next((n for n in proto.graph.node if m and n.name == m.group(1)), None)
    detail = re.sub(r"\s+", " ", text.split("Status Message:")[-1]).strip()[:200]
    where = _node_origin(node) if node is not None else "a node"
    return f"the exported graph fails at {where}: {detail}"


def _fixed_shape_suspects(proto) -> list[str]:
    """Pooling modules PyTorch's exporter translated (their windows come from the
    example's size), then Reshape / Resize / Expand nodes with a constant target shape."""
    consts = {i.name for i in proto.graph.initializer}
    consts |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    second = {"Reshape": 1, "Expand": 1, "Resize": 3}
    pooling, shapes, seen = [], [], set()
    for n in proto.graph.node:
        meta = {m.key: m.value for m in n.metadata_props}
        classes = _literal(meta.get("pkg.torch.onnx.class_hierarchy")) or []
        scopes = _literal(meta.get("pkg.torch.onnx.name_scopes")) or []
        stock = [i for i, c in enumerate(classes) if c.startswith("torch.nn.modules.pooling.")]
        if stock and not any(c.startswith("poolops.") for c in classes):
            i = stock[-1]
            where = f"module '{scopes[i] if i < len(scopes) else '?'}' ({classes[i]}), translated by PyTorch's exporter"
            if where not in seen:
                seen.add(where)
                pooling.append(where)
        k = second.get(n.op_type)
        if k is not None and len(n.input) > k and n.input[k] in consts:
            shapes.append(_node_origin(n))
    return pooling + shapes


def check_dynamic(module, model, sizes: Sequence[tuple[int, int]], example=None, input_name: str | None = None,
                  seed: int = 0) -> list[SizeCheck]:
    """Run ``model`` (an ``onnx.ModelProto`` or a path) in ONNX Runtime (CPU) and
    ``module`` in torch at each ``(h, w)`` of ``sizes`` on the same random input
    ``Tensor[N, C, h, w]`` (N and C from ``example``, default 1 and the graph's C).

    Returns one :class:`SizeCheck` per size: the worst error of the first output relative
    to its scale, or what failed, naming the module and op."""
    import onnx
    import onnxruntime as ort
    import torch

    proto = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    name = input_name or inp.name
    if example is not None:
        n, c = int(example.shape[0]), int(example.shape[1])
    else:
        n, c = 1, int(inp.shape[1]) if isinstance(inp.shape[1], int) else 3
    module = module.eval()
    rng = np.random.default_rng(seed)
    results = []
    for h, w in sizes:
        x = rng.standard_normal((n, c, h, w), dtype=np.float32)
        try:
            with torch.no_grad():
                expected = module(torch.from_numpy(x))
            expected = (expected[0] if isinstance(expected, (tuple, list)) else expected).numpy()
        except Exception as e:  # noqa: BLE001 - reported, naming the module
            results.append(SizeCheck((h, w), None, _torch_culprit(module, e)))
            continue
        try:
            actual = sess.run(None, {name: x})[0]
        except Exception as e:  # noqa: BLE001
            results.append(SizeCheck((h, w), None, _onnx_culprit(proto, e)))
            continue
        if actual.shape != expected.shape:
            results.append(SizeCheck((h, w), None, f"output shape {actual.shape} != torch's {expected.shape}"))
            continue
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        results.append(SizeCheck((h, w), float(np.abs(actual - expected).max(initial=0.0)) / scale))
    return results


def raise_if_pinned(module, proto, example, sizes: Sequence[tuple[int, int]] | None = None) -> None:
    """:class:`SizePinned` naming the module and op if ``proto`` or ``module`` fails, or
    the graph differs from torch, at ``sizes`` (default :func:`probe_sizes` of the example)."""
    h, w = int(example.shape[2]), int(example.shape[3])
    for r in check_dynamic(module, proto, sizes or probe_sizes(h, w), example=example):
        if r.ok:
            continue
        what = r.error or f"its output differs from torch by {r.worst_error:.3g} (relative)"
        hint = ""
        if r.error is None or "shape" in (r.error or ""):
            suspects = _fixed_shape_suspects(proto)
            if suspects:
                hint = "; shapes fixed at export: " + "; ".join(suspects[:3])
        raise SizePinned(
            f"exported at {h}x{w}, the model does not hold at {r.size[0]}x{r.size[1]}: {what}{hint}. "
            "Make that part size-independent (e.g. an adaptive pooling before Flatten + Linear, or sizes "
            "taken from the input's shape), or export with dynamic=False for this one size")


def specialization_sites(module, args: tuple, dynamic_shapes) -> list[str]:
    """Where tracing fixed a dynamic size to the example's: ``torch.export`` again with
    sizes allowed to specialise, then the shape guards ``Eq(<size expr>, <int>)`` raised
    from user code, each as ``module 'name' (Class) at file:line: code``."""
    import linecache
    import os

    import torch

    auto = tuple({k: torch.export.Dim.AUTO for k in d} if d else d for d in dynamic_shapes)
    ep = torch.export.export(module, args, dynamic_shapes=auto, strict=False)
    shape_env = None
    for node in ep.graph.nodes:
        val = node.meta.get("val")
        if getattr(val, "fake_mode", None) is not None and val.fake_mode.shape_env is not None:
            shape_env = val.fake_mode.shape_env
            break
    if shape_env is None:
        return []
    torch_dir = os.path.dirname(torch.__file__)
    code_of = {}
    for name, m in module.named_modules():
        code = getattr(type(m).forward, "__code__", None)
        if code is not None:
            code_of.setdefault((code.co_filename, code.co_firstlineno), (name or "<root>", type(m).__name__))
    sites = []
    for guard in shape_env.guards:
        frame = getattr(guard.sloc, "framework_loc", None)
        if not str(guard.expr).startswith("Eq(") or frame is None or str(frame.filename).startswith(torch_dir):
            continue
        owner = [v for (f, first), v in code_of.items() if f == frame.filename and first <= frame.lineno]
        where = f"module '{owner[-1][0]}' ({owner[-1][1]}) " if owner else ""
        code = linecache.getline(frame.filename, frame.lineno).strip()
        site = f"{where}at {os.path.basename(frame.filename)}:{frame.lineno}: {code}"
        if site not in sites:
            sites.append(site)
    return sites
