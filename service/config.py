"""Service settings: one class, read from ``POOLOPS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from poolops_models.recipes import zoo_dir


class Settings(BaseSettings):
    """Everything the service can be told; each field is ``POOLOPS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="POOLOPS_", extra="ignore")

    # where models come from
    models_dir: Path = Field(default_factory=zoo_dir, description="the model registry directory")
    build_missing: bool = Field(
        default=True,
        description="build missing built-in models at start-up (`poolops export` in a child process; needs torch there)",
    )
    repository_poll_s: float = Field(
        default=0.0, ge=0,
        description="every this many seconds, load model folders that are new or changed (checked first; a broken "
                    "one never replaces a working model); 0: off, load with POST /v2/repository/models/{name}/load",
    )
    build_models: list[str] = Field(
        default=[],
        description="the built-in models start-up builds when missing (JSON list, e.g. '[\"digits-spp\"]'); empty: all",
    )
    # execution
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when ONNX Runtime has it, else CPU; cuda: refuse to start without it"
    )
    threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads per session; 0 = the CPU quota")
    op_cache_size: int = Field(default=64, ge=1, description="op graphs (op + parameters) kept as sessions")
    warmup_sizes: list[tuple[int, int]] = Field(
        default=[(224, 224), (128, 128), (64, 64)], description="(H, W) each model runs once at before /readyz is 200"
    )
    # micro-batching
    batch_max_size: int = Field(default=16, ge=1, description="images per model batch; 1 turns batching off")
    model_batch_max_size: dict[str, PositiveInt] = Field(
        default={},
        description="images per batch for named models, overriding batch_max_size (JSON, e.g. "
                    "'{\"effnet-lite0-imagenet\": 1}'): a model whose larger batches cost more per image on these "
                    "cores gets a smaller one; `poolops bench batch` measures which",
    )
    batch_wait_ms: float = Field(
        default=0.0, ge=0,
        description="how long a batch waits for more requests; 0: none, a batch takes what queued while the last ran",
    )
    queue_max: int = Field(default=256, ge=1, description="images waiting per model before 503")
    # limits
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="request body size (413 above)")
    max_image_pixels: int = Field(default=4096 * 4096, ge=1, description="pixels per image, checked before decoding")
    max_tensor_elements: int = Field(default=16 * 1024 * 1024, ge=1, description="elements per op input tensor")
    max_batch_images: int = Field(default=32, ge=1, description="images per predict/embed request")
    request_timeout_s: float = Field(default=30.0, gt=0, description="inference time per request (503 above)")
    # cost bounds: known from a request's shapes and parameters before any work
    max_output_elements: int = Field(
        default=16 * 1024 * 1024, ge=1, description="elements of an op request's outputs together (413 above)"
    )
    max_work_elements: int = Field(
        default=32 * 1024 * 1024, ge=1, description="elements of the largest intermediate tensor of an op graph (413 above)"
    )
    max_json_elements: int = Field(
        default=512 * 512, ge=1,
        description="numbers in a JSON body or answer (413 above: base64 tensors, images or `Accept: application/x-npy`)",
    )
    max_batch_pixels: int = Field(
        default=1024 * 1024, ge=1,
        description="padded pixels of one model batch (an image larger than this runs alone)",
    )
    max_inflight_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024 * 1024,
        description="memory all requests in flight may hold together: bodies, decoded inputs, answers (503 above)",
    )
    # worker pools: ops, model batches and graph builds cannot starve each other
    op_workers: int = Field(
        default=1, ge=1, description="threads running large op requests (small ones have a lane of their own)"
    )
    model_workers: int = Field(default=2, ge=1, description="model batches running at once, over all models")
    op_queue_max: int = Field(default=32, ge=1, description="op requests waiting for a thread before 503")
    build_workers: int = Field(default=1, ge=1, description="threads building op graphs (identical builds coalesced)")
    decode_workers: int = Field(default=2, ge=1, description="threads decoding images and encoding large answers")
    inline_decode_pixels: int = Field(
        default=256 * 256, ge=0, description="images up to this many pixels decode on the event loop (a thread hop costs more)"
    )
    # access
    api_key: str | None = Field(
        default=None, description="comma-separated keys; when set, every route but health needs `Authorization: Bearer <key>`"
    )
    metrics_public: bool = Field(default=True, description="/metrics answers without a key when POOLOPS_API_KEY is set")
    ready_when: Literal["all", "any"] = Field(
        default="all", description="/readyz is 200 when all models are ready (strict, like Triton) or when any is"
    )
    # connections
    max_connections: int = Field(default=256, ge=1, description="open connections and requests in flight (503 above)")
    header_timeout_s: float = Field(default=10.0, gt=0, description="time for a client to send a request's headers")
    body_timeout_s: float = Field(default=30.0, gt=0, description="time for a client to send a request's body")
    keep_alive_s: float = Field(default=5.0, gt=0, description="idle keep-alive connections are closed after this")
    # web
    ui: bool = Field(default=True, description="mount the Gradio UI at /ui")
    root_path: str = Field(default="", description="path prefix when served behind a reverse proxy")
    gradio_temp_dir: Path | None = Field(default=None, description="Gradio's own temp dir (default: a fresh one)")
    host: str = Field(default="127.0.0.1", description="listen address (0.0.0.0 in containers)")
    port: int = Field(default=8000, ge=1, le=65535, description="listen port")
    grpc_port: int = Field(
        default=0, ge=0, le=65535,
        description="Open Inference Protocol over gRPC (inference.GRPCInferenceService) on this port; 0: off",
    )
    workers: int = Field(default=1, ge=1, description="server processes; each loads every model")
    shutdown_grace_s: float = Field(default=30.0, ge=0, description="on SIGTERM, time for requests in flight")

    def batch_size_of(self, model: str) -> int:
        """Images per batch for ``model``: its own limit, else ``batch_max_size``."""
        return self.model_batch_max_size.get(model, self.batch_max_size)
