"""Request and response bodies (pydantic), with the examples OpenAPI shows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from poolops_service.codecs.tensors import OIP_DTYPES

# ---- tensors ---------------------------------------------------------------------------


class RawTensor(BaseModel):
    """A tensor as base64 of its raw little-endian, C-order bytes."""

    model_config = ConfigDict(extra="forbid")
    b64: str = Field(description="base64 of the raw buffer")
    shape: list[int] = Field(description="dimensions, e.g. [1, 3, 32, 32]")
    dtype: Literal["float32", "float64", "float16", "int64", "int32", "uint8"] = "float32"


NestedList = list[Any]
TensorIn = NestedList | RawTensor

# ---- ops -------------------------------------------------------------------------------


class OpRequest(BaseModel):
    """Run an op on a tensor. 2-D input = one plane [H, W], 3-D = [C, H, W], 4-D = [N, C, H, W]."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"input": [[1, 3], [2, 2]], "params": {"kernel": 2}, "return_indices": True, "backward": True},
            ]
        },
    )
    input: TensorIn = Field(description="nested list of numbers, or a base64 raw tensor")
    params: dict[str, Any] = Field(default_factory=dict, description="the op's parameters (GET /v1/ops/{name})")
    inputs: dict[str, TensorIn] = Field(
        default_factory=dict, description="the op's extra inputs by name (e.g. valid, boxes), when it takes any"
    )
    return_indices: bool = Field(default=False, description="also return indices (ops with an indices output)")
    backward: bool = Field(default=False, description="also return grad_input, the gradient of sum(y * grad_output)")
    grad_output: TensorIn | None = Field(default=None, description="shaped like the output; default ones")


class OpResponse(BaseModel):
    op: str
    params: dict[str, Any] = Field(description="the parameters as validated, defaults filled in")
    shape: list[int] = Field(description="shape of output")
    output: NestedList
    indices: NestedList | None = None
    grad_input: NestedList | None = None
    provider: str = Field(description="the ONNX Runtime execution provider that ran it")
    timing_ms: dict[str, float]


class OpInfo(BaseModel):
    name: str
    family: str
    doc: str
    module: str = Field(description="the poolops.nn module class")
    inputs: list[str]
    optional_inputs: list[str]
    outputs: list[str]
    backward: bool = Field(description="the API serves its gradient")
    input_domain: str
    params_schema: dict[str, Any] = Field(description="JSON schema of the parameters")


class OpList(BaseModel):
    ops: list[OpInfo]


# ---- models ----------------------------------------------------------------------------


class ModelInfo(BaseModel):
    name: str
    available: bool
    reason: str | None = None
    provider: str | None = None
    card: dict[str, Any] | None = None


class ModelList(BaseModel):
    models: list[ModelInfo]


class ImageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    b64: str = Field(description="base64 of an image file (PNG, JPEG, ...)")
    name: str | None = None


RESIZE_DOC = (
    "'card' (default): each image is resized by the model card's size_policy (e.g. shorter side into "
    "[lo, hi], bilinear, aspect kept, no crop; none when the card has no policy) before it is fed; "
    "'none': fed at its own size (the raw behaviour), which must then lie within the card's input limits"
)
Resize = Literal["card", "none"]


class PredictRequest(BaseModel):
    """Images as base64 files; any sizes whose size policy result lies within the model's input limits."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"images": [{"b64": "iVBORw0KGgo...", "name": "digit.png"}], "top_k": 3}]},
    )
    images: list[ImageIn] = Field(min_length=1)
    top_k: int = Field(default=5, ge=1, le=1000)
    resize: Resize = Field(default="card", description=RESIZE_DOC)


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[ImageIn] = Field(min_length=1)
    resize: Resize = Field(default="card", description=RESIZE_DOC)


class Label(BaseModel):
    index: int
    label: str
    probability: float


ORIGINAL_DOC = "[height, width] of the image as sent (after its EXIF orientation)"
POLICY_DOC = "the size policy applied: 'shorter side into [lo, hi]' (the card's) or 'none'"


class Prediction(BaseModel):
    name: str | None
    input_size: list[int] = Field(description="[height, width] fed to the model (after the size policy)")
    original_size: list[int] = Field(description=ORIGINAL_DOC)
    size_policy: str = Field(description=POLICY_DOC)
    top: list[Label]


class PredictResponse(BaseModel):
    model: str
    provider: str
    results: list[Prediction]
    timing_ms: float


class Embedding(BaseModel):
    name: str | None
    input_size: list[int] = Field(description="[height, width] fed to the model (after the size policy)")
    original_size: list[int] = Field(description=ORIGINAL_DOC)
    size_policy: str = Field(description=POLICY_DOC)
    embedding: list[float]


class EmbedResponse(BaseModel):
    model: str
    provider: str
    dim: int
    results: list[Embedding]
    timing_ms: float


# ---- Open Inference Protocol v2 --------------------------------------------------------


OipDatatype = Literal[tuple(OIP_DTYPES)]


class V2Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: OipDatatype = Field(description="FP32, INT64, ...")
    parameters: dict[str, Any] | None = Field(default=None, json_schema_extra={"properties": {"binary_data_size": {
        "type": "integer", "minimum": 0, "description": "bytes of this tensor in the binary part of the body"}}})
    data: list[Any] | None = Field(default=None, description="row-major values; absent with binary_data_size")


class V2RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": "1", "inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}
            ]
        }
    )
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor] = Field(min_length=1)
    outputs: list[V2RequestOutput] | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2Tensor]


class V2TensorMeta(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMeta]
    outputs: list[V2TensorMeta]
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="size_policy: the card's size policy ({'shorter_side': [lo, hi]}, or null), which /v2 "
        "cannot apply to ready tensors: clients resize images by it themselves (bilinear, aspect kept, no crop) "
        "before making x; min_size / max_size: the card's input limits [H, W]",
    )


class V2Duration(BaseModel):
    count: int
    ns: int


class V2InferStats(BaseModel):
    success: V2Duration
    fail: V2Duration
    queue: V2Duration
    compute_input: V2Duration
    compute_infer: V2Duration
    compute_output: V2Duration
    cache_hit: V2Duration
    cache_miss: V2Duration


class V2BatchStats(BaseModel):
    batch_size: int
    compute_input: V2Duration
    compute_infer: V2Duration
    compute_output: V2Duration


class V2ModelStats(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="milliseconds since the epoch of the last success (0: none)")
    inference_count: int = Field(description="images inferred")
    execution_count: int = Field(description="model runs (batches)")
    inference_stats: V2InferStats
    batch_stats: list[V2BatchStats]


class V2Statistics(BaseModel):
    """Triton's statistics extension: per request ``success`` / ``fail`` (count, total ns),
    and for successes ``compute_input`` (reading tensors), ``queue`` (waiting in the model's
    batcher), ``compute_infer`` (its batches' runs), ``compute_output`` (the answer)."""

    model_stats: list[V2ModelStats]


class V2RepositoryIndexRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    repository_name: str | None = None
    ready: bool | None = Field(default=None, description="true: only the models ready to serve")


class V2RepositoryRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    parameters: dict[str, Any] | None = Field(
        default=None, description="accepted and ignored (e.g. tritonclient's unload_dependents): the folder on "
                                  "disk is what loads")
    repository_name: str | None = None


class V2RepositoryModel(BaseModel):
    name: str
    version: str
    state: Literal["READY", "LOADING", "UNAVAILABLE"]
    reason: str


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Ready(BaseModel):
    ready: bool
    phase: str = ""  # what start-up is doing: building a model, loading, warming up, ready
    reasons: list[str] = []
    models: dict[str, dict[str, Any]] = {}


class Live(BaseModel):
    live: bool = True


class Info(BaseModel):
    name: str = "poolops"
    version: str
    ops: int
    models: int
    engine: dict[str, Any]
