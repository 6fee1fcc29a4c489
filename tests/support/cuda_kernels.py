"""Which ONNX operators ONNX Runtime's CUDA provider has kernels for: a table kept by
hand from ONNX Runtime's list of operator kernels.

A node without a CUDA kernel silently runs on CPU, so op graphs must stay on ops,
op versions and element types that ``CUDAExecutionProvider`` implements.
:func:`has_cuda_kernel` answers that for one op; :func:`nodes_without_cuda_kernel`
lists the nodes of a model that would fall back. Torch-free.
"""

from __future__ import annotations

import onnx
import onnx.defs
import onnx.shape_inference

# Kernels of CUDAExecutionProvider, domain ai.onnx, transcribed from ONNX Runtime's
# generated docs/OperatorKernels.md ("Operators implemented by CUDAExecutionProvider"),
# github.com/microsoft/onnxruntime, commit 001d12d2623fd411ce0f83d05abb5e82304a3389.
#
# op_type -> [(first_version, last_version or None for "N+", element types)], newest first.
# A range covers the op *versions* (schema since_version) a kernel is registered for.
# Element types are only those relevant here ("float" = tensor(float), "int64", "bool"),
# for the op's main type constraint: the data input (T / T1), except Where: X (T),
# ConstantOfShape and Random*: the output (T2 / T), If: cond, Loop: M. An empty list:
# no CUDA kernel at all (the op is absent from the CUDA section).
CUDA_KERNELS: dict[str, list[tuple[int, int | None, tuple[str, ...]]]] = {
    "Abs": [(13, None, ("float", "int64")), (6, 12, ("float", "int64"))],
    "Add": [(14, None, ("float", "int64")), (13, 13, ("float", "int64")), (7, 12, ("float", "int64"))],
    "And": [(7, None, ("bool",))],
    "ArgMax": [(13, None, ("float",)), (12, 12, ("float",)), (1, 11, ("float",))],
    "ArgMin": [(13, None, ("float",)), (12, 12, ("float",)), (1, 11, ("float",))],
    "AveragePool": [
        (22, None, ("float",)),
        (19, 21, ("float",)),
        (11, 18, ("float",)),
        (10, 10, ("float",)),
        (7, 9, ("float",)),
    ],
    "BatchNormalization": [(15, None, ("float",)), (14, 14, ("float",)), (9, 13, ("float",)), (7, 8, ("float",))],
    "Bernoulli": [],
    "BitShift": [],
    "BitwiseAnd": [],
    "BitwiseNot": [],
    "BitwiseOr": [],
    "BitwiseXor": [],
    "Cast": [
        (23, None, ("float", "int64", "bool")),
        (21, 22, ("float", "int64", "bool")),
        (19, 20, ("float", "int64", "bool")),
        (13, 18, ("float", "int64", "bool")),
        (9, 12, ("float", "int64", "bool")),
        (6, 8, ("float", "int64", "bool")),
    ],
    "Ceil": [(13, None, ("float",)), (6, 12, ("float",))],
    "CenterCropPad": [],
    "Clip": [(13, None, ("float", "int64")), (12, 12, ("float", "int64")), (11, 11, ("float",)), (6, 10, ("float",))],
    "Col2Im": [],
    "Compress": [(11, None, ("float", "int64", "bool")), (9, 10, ("float", "int64", "bool"))],
    "Concat": [
        (13, None, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
        (4, 10, ("float", "int64", "bool")),
    ],
    "ConstantOfShape": [(9, None, ("float", "int64", "bool"))],
    "Conv": [(22, None, ("float",)), (11, 21, ("float",)), (1, 10, ("float",))],
    "ConvTranspose": [(11, None, ("float",)), (1, 10, ("float",))],
    "Cos": [(7, None, ("float",))],
    "CumSum": [(14, None, ("float", "int64")), (11, 13, ("float", "int64"))],
    "DepthToSpace": [(13, None, ("float",)), (11, 12, ("float",)), (1, 10, ("float",))],
    "Div": [(14, None, ("float", "int64")), (13, 13, ("float", "int64")), (7, 12, ("float", "int64"))],
    "Einsum": [(12, None, ("float",))],
    "Equal": [
        (13, None, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
        (7, 10, ("int64", "bool")),
    ],
    "Erf": [(13, None, ("float",)), (9, 12, ("float",))],
    "Exp": [(13, None, ("float",)), (6, 12, ("float",))],
    "Expand": [(13, None, ("float", "int64", "bool")), (8, 12, ("float", "int64", "bool"))],
    "Flatten": [
        (13, None, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
        (9, 10, ("float", "int64", "bool")),
        (1, 8, ("float", "int64", "bool")),
    ],
    "Floor": [(13, None, ("float",)), (6, 12, ("float",))],
    "Gather": [
        (13, None, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
        (1, 10, ("float", "int64", "bool")),
    ],
    "GatherElements": [(13, None, ("float", "int64", "bool")), (11, 12, ("float", "int64", "bool"))],
    "GatherND": [
        (13, None, ("float", "int64", "bool")),
        (12, 12, ("float", "int64", "bool")),
        (11, 11, ("float", "int64", "bool")),
    ],
    "Gemm": [(13, None, ("float",)), (11, 12, ("float",)), (9, 10, ("float",)), (7, 8, ("float",))],
    "GlobalAveragePool": [(1, None, ("float",))],
    "GlobalLpPool": [],
    "GlobalMaxPool": [(1, None, ("float",))],
    "Greater": [(13, None, ("float", "int64")), (9, 12, ("float", "int64")), (7, 8, ("float",))],
    "GreaterOrEqual": [(16, None, ("float", "int64")), (12, 15, ("float", "int64"))],
    "GridSample": [(22, None, ("float",)), (20, 21, ("float",)), (16, 19, ("float",))],
    "HardSigmoid": [(22, None, ("float",)), (6, 21, ("float",))],
    "Identity": [
        (19, None, ("float", "int64", "bool")),
        (14, 18, ("float", "int64", "bool")),
        (13, 13, ("float", "int64", "bool")),
        (1, 12, ("float", "int64", "bool")),
    ],
    "If": [(19, None, ("bool",)), (13, 18, ("bool",)), (11, 12, ("bool",)), (1, 10, ("bool",))],  # cond
    "IsInf": [(20, None, ("float",)), (10, 19, ("float",))],
    "IsNaN": [(20, None, ("float",)), (13, 19, ("float",)), (9, 12, ("float",))],
    "LeakyRelu": [(16, None, ("float",)), (6, 15, ("float",))],
    "Less": [(13, None, ("float", "int64")), (9, 12, ("float", "int64")), (7, 8, ("float",))],
    "LessOrEqual": [(16, None, ("float", "int64")), (12, 15, ("float", "int64"))],
    "Log": [(13, None, ("float",)), (6, 12, ("float",))],
    "LogSoftmax": [(13, None, ("float",)), (11, 12, ("float",)), (1, 10, ("float",))],
    "LpNormalization": [],
    "LpPool": [],
    "Loop": [(19, None, ("int64",)), (13, 18, ("int64",)), (11, 12, ("int64",)), (1, 10, ("int64",))],  # M
    "MatMul": [(13, None, ("float",)), (9, 12, ("float",)), (1, 8, ("float",))],
    "Max": [(13, None, ("float", "int64")), (12, 12, ("float", "int64")), (6, 11, ("float",))],
    "MaxPool": [  # 12+ also int8/uint8; 1-7 has no Indices output
        (12, None, ("float",)),
        (11, 11, ("float",)),
        (10, 10, ("float",)),
        (8, 9, ("float",)),
        (1, 7, ("float",)),
    ],
    "MaxRoiPool": [],
    "MaxUnpool": [],
    "Mean": [],
    "Min": [(13, None, ("float", "int64")), (12, 12, ("float", "int64")), (6, 11, ("float",))],
    "Mod": [(13, None, ("float", "int64")), (10, 12, ("float", "int64"))],
    "Mul": [(14, None, ("float", "int64")), (13, 13, ("float", "int64")), (7, 12, ("float", "int64"))],
    "Multinomial": [],
    "Neg": [(13, None, ("float", "int64")), (6, 12, ("float", "int64"))],
    "NonZero": [(13, None, ("float", "int64", "bool")), (9, 12, ("float", "int64", "bool"))],
    "Not": [(1, None, ("bool",))],
    "Or": [(7, None, ("bool",))],
    "Pad": [(18, None, ("float", "bool")), (13, 17, ("float", "bool")), (11, 12, ("float",)), (2, 10, ("float",))],
    "Pow": [
        (15, None, ("float", "int64")),
        (13, 14, ("float", "int64")),
        (12, 12, ("float", "int64")),
        (7, 11, ("float",)),
    ],
    "RandomNormal": [(1, None, ("float",))],
    "RandomNormalLike": [(1, None, ("float",))],
    "RandomUniform": [(1, None, ("float",))],
    "RandomUniformLike": [(1, None, ("float",))],
    "Range": [(11, None, ("float", "int64"))],
    "Reciprocal": [(13, None, ("float",)), (6, 12, ("float",))],
    "ReduceL1": [(18, None, ("float",)), (1, 17, ("float",))],
    "ReduceL2": [(18, None, ("float",)), (1, 17, ("float",))],
    "ReduceLogSumExp": [(18, None, ("float",)), (1, 17, ("float",))],
    "ReduceMax": [(18, None, ("float", "int64")), (1, 17, ("float", "int64"))],
    "ReduceMean": [(18, None, ("float",)), (1, 17, ("float",))],
    "ReduceMin": [(18, None, ("float", "int64")), (1, 17, ("float", "int64"))],
    "ReduceProd": [(18, None, ("float",)), (1, 17, ("float",))],
    "ReduceSum": [(13, None, ("float", "int64")), (1, 12, ("float", "int64"))],
    "ReduceSumSquare": [(18, None, ("float",)), (1, 17, ("float",))],
    "Relu": [(14, None, ("float",)), (13, 13, ("float",)), (6, 12, ("float",))],
    "Reshape": [
        (23, None, ("float", "int64", "bool")),
        (21, 22, ("float", "int64", "bool")),
        (19, 20, ("float", "int64", "bool")),
        (14, 18, ("float", "int64", "bool")),
        (13, 13, ("float", "int64", "bool")),
        (5, 12, ("float", "int64", "bool")),
        (1, 4, ("float", "int64", "bool")),
    ],
    "Resize": [
        (19, None, ("float",)),
        (18, 18, ("float",)),
        (13, 17, ("float",)),
        (11, 12, ("float",)),
        (10, 10, ("float",)),
    ],
    "RoiAlign": [(10, None, ("float",))],
    "Round": [(11, None, ("float",))],
    "ScatterElements": [
        (18, None, ("float", "int64", "bool")),
        (16, 17, ("float", "int64", "bool")),
        (13, 15, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
    ],
    "ScatterND": [
        (18, None, ("float", "int64", "bool")),
        (16, 17, ("float", "int64", "bool")),
        (13, 15, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
    ],
    "Scan": [
        (19, None, ("float", "int64", "bool")),
        (16, 18, ("float", "int64", "bool")),
        (11, 15, ("float", "int64", "bool")),
        (9, 10, ("float", "int64", "bool")),
        (8, 8, ("float", "int64", "bool")),
    ],
    "Shape": [
        (23, None, ("float", "int64", "bool")),
        (21, 22, ("float", "int64", "bool")),
        (19, 20, ("float", "int64", "bool")),
        (15, 18, ("float", "int64", "bool")),
        (13, 14, ("float", "int64", "bool")),
        (1, 12, ("float", "int64", "bool")),
    ],
    "Sigmoid": [(13, None, ("float",)), (6, 12, ("float",))],
    "Sign": [(13, None, ("float", "int64"))],
    "Sin": [(7, None, ("float",))],
    "Size": [(13, None, ("float", "int64", "bool")), (1, 12, ("float", "int64", "bool"))],
    "Slice": [
        (13, None, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
        (10, 10, ("float", "int64", "bool")),
        (1, 9, ("float", "int64", "bool")),
    ],
    "Softmax": [(13, None, ("float",)), (11, 12, ("float",)), (1, 10, ("float",))],
    "Softplus": [(1, None, ("float",))],
    "SpaceToDepth": [(13, None, ("float",)), (1, 12, ("float",))],
    "Split": [
        (18, None, ("float", "int64", "bool")),
        (13, 17, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
        (2, 10, ("float", "int64", "bool")),
    ],
    "Sqrt": [(13, None, ("float",)), (6, 12, ("float",))],
    "Squeeze": [
        (23, None, ("float", "int64", "bool")),
        (21, 22, ("float", "int64", "bool")),
        (13, 20, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
        (1, 10, ("float", "int64", "bool")),
    ],
    "Sub": [(14, None, ("float", "int64")), (13, 13, ("float", "int64")), (7, 12, ("float", "int64"))],
    "Sum": [(13, None, ("float",)), (8, 12, ("float",)), (6, 7, ("float",))],
    "Tanh": [(13, None, ("float",)), (6, 12, ("float",))],
    "Tile": [(13, None, ("float", "int64")), (6, 12, ("float", "int64"))],  # no bool
    "TopK": [(11, None, ("float", "int64")), (10, 10, ("float", "int64")), (1, 9, ("float", "int64"))],
    "Transpose": [
        (23, None, ("float", "int64", "bool")),
        (21, 22, ("float", "int64", "bool")),
        (13, 20, ("float", "int64", "bool")),
        (1, 12, ("float", "int64", "bool")),
    ],
    "Trilu": [(14, None, ("float", "int64", "bool"))],
    "Unique": [],
    "Unsqueeze": [
        (23, None, ("float", "int64", "bool")),
        (21, 22, ("float", "int64", "bool")),
        (13, 20, ("float", "int64", "bool")),
        (11, 12, ("float", "int64", "bool")),
        (1, 10, ("float", "int64", "bool")),
    ],
    "Where": [(16, None, ("float", "int64")), (9, 15, ("float", "int64"))],  # X/Y; no bool
    "Xor": [(7, None, ("bool",))],
}

# Not in the kernel table but never a CPU fallback: ONNX Runtime's Graph constructor
# turns every Constant node into an initializer (onnxruntime/core/graph/graph.cc).
FOLDED_AT_LOAD = frozenset({"Constant"})

DTYPES = ("float", "int64", "bool")
_ELEM = {onnx.TensorProto.FLOAT: "float", onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool"}
# Which value decides a node's dtype: (is_output, index); default: input 0.
_DTYPE_FROM = {
    "Where": (False, 1),
    "ConstantOfShape": (True, 0),
    "RandomNormal": (True, 0),
    "RandomNormalLike": (True, 0),
    "RandomUniform": (True, 0),
    "RandomUniformLike": (True, 0),
}


def has_cuda_kernel(op_type: str, opset: int, dtype: str | None = "float") -> bool:
    """Whether an ``ai.onnx`` node ``op_type`` in a model of default-domain ``opset``
    has a CUDA kernel for element type ``dtype`` (one of :data:`DTYPES`; ``None``:
    any). The node resolves to the latest op version <= ``opset``. Ops missing from
    :data:`CUDA_KERNELS` count as having none."""
    if op_type in FOLDED_AT_LOAD:
        return True
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: the table records only {DTYPES}")
    try:
        version = onnx.defs.get_schema(op_type, opset).since_version
    except onnx.defs.SchemaError:
        return False
    for first, last, types in CUDA_KERNELS.get(op_type, []):
        if first <= version and (last is None or version <= last):
            return dtype is None or dtype in types
    return False


def _subgraphs(node: onnx.NodeProto):
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        for g in attr.graphs:
            yield attr.name, g


def _collect_types(graph: onnx.GraphProto, types: dict[str, int]) -> None:
    for vi in (*graph.input, *graph.output, *graph.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for node in graph.node:
        for _, g in _subgraphs(node):
            _collect_types(g, types)


def _function_types(model: onnx.ModelProto, graph_types: dict[str, int]) -> dict[tuple[str, str], dict[str, int]]:
    """Element types inside each model-local function body, by shape inference of the
    body as a graph whose inputs take the types of the first call site found."""
    funcs = {(f.domain, f.name): f for f in model.functions}
    found: dict[tuple[str, str], dict[str, int]] = {}
    todo = [(model.graph.node, graph_types)]
    while todo:
        nodes, types = todo.pop()
        for node in nodes:
            key = (node.domain, node.op_type)
            if key not in funcs or key in found:
                continue
            fn = funcs[key]
            found[key] = {}
            ins = [
                onnx.helper.make_tensor_value_info(formal, types[actual], None)
                for formal, actual in zip(fn.input, node.input)
                if actual in types
            ]
            if len(ins) != len(fn.input):
                continue
            opsets = {o.domain: o.version for o in model.opset_import}
            opsets.update({o.domain: o.version for o in fn.opset_import})
            body = onnx.helper.make_model(
                onnx.helper.make_graph(
                    fn.node, fn.name, ins, [onnx.ValueInfoProto(name=o) for o in fn.output], value_info=fn.value_info
                ),
                opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()],
                functions=model.functions,
                ir_version=model.ir_version,
            )
            try:
                _collect_types(onnx.shape_inference.infer_shapes(body).graph, found[key])
            except Exception:  # noqa: BLE001 - types are a best-effort refinement
                continue
            todo.append((fn.node, found[key]))
    return found


def nodes_without_cuda_kernel(model: onnx.ModelProto) -> list[str]:
    """Descriptions of the ``ai.onnx`` nodes of ``model`` (main graph, model-local
    function bodies, subgraph attributes) with no CUDA kernel at the model's opset.

    Element types come from ONNX shape inference (function bodies: typed from their
    first call site). Where a type is unknown, or not one of :data:`DTYPES`, only the
    op and its version range are checked. ONNX function ops that ORT would expand
    into their body when no kernel exists are still reported.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        return []
    graph_types: dict[str, int] = {}
    try:
        _collect_types(onnx.shape_inference.infer_shapes(model).graph, graph_types)
    except Exception:  # noqa: BLE001
        _collect_types(model.graph, graph_types)
    fn_types = _function_types(model, graph_types)

    bad: list[str] = []

    def walk(nodes, where: str, op_opset: int, types: dict[str, int]) -> None:
        for i, node in enumerate(nodes):
            here = f"{where} node {node.name or i!r}"
            for attr, g in _subgraphs(node):
                walk(g.node, f"{here} .{attr}", op_opset, types)
            if node.domain not in ("", "ai.onnx"):
                continue
            is_out, idx = _DTYPE_FROM.get(node.op_type, (False, 0))
            values = node.output if is_out else node.input
            elem = types.get(values[idx]) if idx < len(values) else None
            dtype = _ELEM.get(elem)
            if not has_cuda_kernel(node.op_type, op_opset, dtype):
                try:
                    version = f"-{onnx.defs.get_schema(node.op_type, op_opset).since_version}"
                except onnx.defs.SchemaError:
                    version = ""
                shown = dtype or (onnx.TensorProto.DataType.Name(elem).lower() if elem else "type unknown")
                bad.append(f"{here}: {node.op_type}{version} ({shown}) at opset {op_opset}")

    walk(model.graph.node, "graph", opset, graph_types)
    for fn in model.functions:
        fn_opset = next((o.version for o in fn.opset_import if o.domain in ("", "ai.onnx")), opset)
        walk(fn.node, f"function {fn.domain}.{fn.name}", fn_opset, fn_types.get((fn.domain, fn.name), {}))
    return bad
