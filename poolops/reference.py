"""The ops reference (``docs/ops.md``), generated from the registry: ``poolops ops --markdown``.

Everything here is read from each op's registration (its parameter model, inputs,
outputs, stock PyTorch equivalent, ONNX backward) and the op file's docstring, so the
reference cannot drift from the code; a test checks the committed file is current.
"""

from __future__ import annotations

import typing

from poolops.inputs import kind
from poolops.registry import get_op, list_ops


def _type(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    return (text or str(annotation).replace("typing.", "")).replace("|", "or")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(v) -> str:
    return "required" if v is ... else f"`{v!r}`"


def markdown() -> str:
    """The whole reference: a summary table, then one section per op."""
    names = sorted(list_ops())  # registration order depends on import order
    lines = [
        "# Ops reference",
        "",
        "Generated from the registry by `poolops ops --markdown > docs/ops.md`; do not edit by hand "
        "(tests/poolops/test_reference.py checks it is current).",
        "",
        "Every op runs as a torch function (`poolops.functional.<op>`), a module (`poolops.nn.<Module>`), "
        "an ONNX graph with dynamic N, C, H, W (`poolops.onnx.op_model(op, **params)`) and over HTTP "
        "(`POST /v1/ops/<op>`).",
        "",
        "| op | family | inputs | outputs | stock PyTorch | ONNX backward |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        s = get_op(n)
        ins = ", ".join([f"`{i}`" for i in s.inputs] + [f"`{i}` (optional)" for i in s.optional_inputs])
        lines.append(f"| [`{n}`](#{n}) | {s.family} | {ins} | {', '.join(f'`{o}`' for o in s.outputs)} | "
                     f"{_cell(s.torch_stock) if s.torch_stock else '(none: poolops torch function)'} | "
                     f"{'yes' if s.onnx_backward else 'no (torch autograd)'} |")
    for n in names:
        s = get_op(n)
        lines += ["", f"## {n}", "", f"Module `poolops.nn.{s.module_name}`; family {s.family}; "
                  f"inputs defined on {'non-negative' if s.input_domain == 'nonnegative' else 'real'} values.", ""]
        lines += [s.doc.strip(), "", "| parameter | type | default |", "|---|---|---|"]
        for pname, field in s.params.model_fields.items():
            lines.append(f"| `{pname}` | {_cell(_type(field.annotation))} | {_default(field.default)} |")
        lines += ["", "| tensor | shape | dtype | meaning |", "|---|---|---|---|"]
        for t in s.all_inputs:
            k = kind(t)
            dims = s.x_dims if t == "x" else k.dims
            lines.append(f"| `{t}`{' (optional)' if t in s.optional_inputs else ''} | "
                         f"[{', '.join(map(str, dims))}] | {k.dtype} | {_cell(k.doc)} |")
    return "\n".join(lines) + "\n"
