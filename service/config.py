"""Service settings: one class, read from ``POOLOPS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.zoo import zoo_dir


class Settings(BaseSettings):
    """Everything the service can be told; each field is ``POOLOPS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="POOLOPS_", extra="ignore")

    # where models come from
    models_dir: Path = Field(default_factory=zoo_dir, description="the model registry directory")
    build_missing: bool = Field(
        default=True,
        description="build missing built-in models at start-up (`poolops export` in a child process; needs torch there)",
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
    # web
    ui: bool = Field(default=True, description="mount the Gradio UI at /ui")
    root_path: str = Field(default="", description="path prefix when served behind a reverse proxy")
    gradio_temp_dir: Path | None = Field(default=None, description="Gradio's own temp dir (default: a fresh one)")
    host: str = Field(default="127.0.0.1", description="listen address (0.0.0.0 in containers)")
    port: int = Field(default=8000, ge=1, le=65535, description="listen port")
    workers: int = Field(default=1, ge=1, description="server processes; each loads every model")
    shutdown_grace_s: float = Field(default=30.0, ge=0, description="on SIGTERM, time for requests in flight")
