"""The Open Inference Protocol over gRPC (KServe's and Triton's ``inference.GRPCInferenceService``),
served by grpcio's asyncio server in the same process and event loop as uvicorn, started and
stopped by the app's lifespan, on ``POOLOPS_GRPC_PORT`` (0: off).

The service definition is not ours: the generated ``service_pb2`` / ``service_pb2_grpc``
modules that ship inside ``tritonclient`` (``tritonclient[grpc]`` on PyPI, Triton's own
``grpc_service.proto``) are imported as they are, so the wire format is the one Triton's and
KServe's clients speak.

The same engine, batcher, statistics and repository as HTTP (``poolops_service.api.oip``), and
the same bounds: the API key (metadata ``authorization: Bearer <key>``, checked before the
message is parsed; ServerLive and ServerReady stay open, as ``/v2/health/*`` do), messages
up to ``POOLOPS_MAX_BODY_BYTES``, RPCs in flight up to ``POOLOPS_MAX_CONNECTIONS``, sizes
checked from shapes before any work, each message charged to the in-flight memory budget,
the request timeout and the client's deadline. Bad input is INVALID_ARGUMENT, too large or
a full queue or budget RESOURCE_EXHAUSTED, an unknown model NOT_FOUND, a model not ready or
a request past its timeout UNAVAILABLE, a missing key UNAUTHENTICATED; each with a message
saying what to change. INTERNAL means a bug (logged with an id).

Implemented: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata,
ModelConfig, ModelInfer (``contents`` or ``raw_input_contents``; answers in
``raw_output_contents``), ModelStatistics, RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload. The rest
(streaming, shared memory, trace, logging) answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from poolops_service.api import oip
from poolops_service.api.auth import MESSAGE as KEY_MESSAGE, Keys
from poolops_service.api.errors import clip
from poolops_service.api.middleware import BODY_COPIES
from poolops_service.codecs.tensors import OIP_DTYPES, OIP_NAMES, element_count
from poolops_service.config import Settings
from poolops_service.engine import Engine
from poolops_service.engine.errors import BadInput, EngineError, NotFound, Overloaded, TooLarge, Unavailable

log = logging.getLogger("poolops.grpc")

SERVICE = "inference.GRPCInferenceService"
PUBLIC = frozenset({"ServerLive", "ServerReady"})  # as /v2/health/* over HTTP: probes hold no key
STREAMING = frozenset({"ModelStreamInfer"})

# the typed ``contents`` field of each datatype (FP16 and BF16 have none: raw only)
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "FP32": "fp32_contents", "FP64": "fp64_contents"}


def status_of(e: EngineError) -> grpc.StatusCode:
    if isinstance(e, (Overloaded, TooLarge)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(e, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(e, Unavailable):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INVALID_ARGUMENT


def rpc(fn):
    """Engine errors become their gRPC status with the message; anything else is a bug:
    logged with an id, answered INTERNAL with that id and no internals."""

    @functools.wraps(fn)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            left = context.time_remaining()
            if left is None:
                return await fn(self, request, context)
            return await asyncio.wait_for(fn(self, request, context), max(0.0, left))
        except EngineError as e:
            await context.abort(status_of(e), clip(e.message))
        except asyncio.TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                "the client's deadline passed: give the call more time, or send less")
        except grpc.aio.AbortError:
            raise
        except Exception:
            rid = uuid.uuid4().hex
            log.exception("unhandled error in gRPC %s (request id %s)", fn.__name__, rid)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error; it has been logged with request id {rid}")

    return wrapper


def _tensors(request: pb.ModelInferRequest, settings: Settings) -> dict[str, np.ndarray]:
    """The inputs as arrays: sizes from the declared shapes before anything is made."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadInput(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: give one per "
                       "input (in the order of inputs), or none and use each input's contents")
    out: dict[str, np.ndarray] = {}
    for i, t in enumerate(request.inputs):
        what = f"input {t.name}"
        if t.name in out:
            raise BadInput(f"{what} is given twice")
        if t.datatype not in OIP_DTYPES:
            raise BadInput(f"{what}: datatype must be one of {list(OIP_DTYPES)}, got {t.datatype!r}")
        shape = list(t.shape)
        n = element_count(shape, what, settings.max_tensor_elements)
        dt = np.dtype(OIP_DTYPES[t.datatype]).newbyteorder("<")
        if raw:
            if len(raw[i]) != n * dt.itemsize:
                raise BadInput(f"{what}: raw_input_contents holds {len(raw[i])} bytes; shape {shape} of "
                               f"{t.datatype} takes {n * dt.itemsize}")
            out[t.name] = np.frombuffer(raw[i], dtype=dt).reshape(shape)
            continue
        field = CONTENTS.get(t.datatype)
        if field is None:
            raise BadInput(f"{what}: {t.datatype} has no typed contents: send it in raw_input_contents")
        values = getattr(t.contents, field)
        if len(values) > settings.max_json_elements:  # each typed value becomes a Python object
            raise TooLarge(f"{what}: {len(values)} values in contents, more than {settings.max_json_elements} "
                           "(POOLOPS_MAX_JSON_ELEMENTS): send large tensors in raw_input_contents")
        if len(values) != n:
            raise BadInput(f"{what}: {len(values)} values in contents.{field} do not fill shape {shape} "
                           f"({n} expected)")
        try:
            with np.errstate(over="raise"):
                out[t.name] = np.array(values, dtype=OIP_DTYPES[t.datatype]).reshape(shape)
        except (OverflowError, FloatingPointError, ValueError):
            raise BadInput(f"{what}: a value is beyond the range of {t.datatype}") from None
    return out


def _wanted(request: pb.ModelInferRequest) -> list[oip.Wanted]:
    out = []
    for o in request.outputs:
        k = 0
        if oip.CLASSIFICATION in o.parameters:
            p = o.parameters[oip.CLASSIFICATION]
            choice = p.WhichOneof("parameter_choice")
            k = oip.class_count(getattr(p, choice) if choice in ("int64_param", "uint64_param") else None, o.name)
        out.append(oip.Wanted(o.name, k))
    return out


class Servicer(pbg.GRPCInferenceServiceServicer):
    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings

    @rpc
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @rpc
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.engine.ready)

    @rpc
    async def ModelReady(self, request, context):
        oip.check_version(request.version)
        try:
            return pb.ModelReadyResponse(ready=oip.model_ready(self.engine, request.name))
        except NotFound:  # as tritonclient.http's is_model_ready: not ready, no error
            return pb.ModelReadyResponse(ready=False)

    @rpc
    async def ServerMetadata(self, request, context):
        m = oip.server_metadata()
        return pb.ServerMetadataResponse(name=m.name, version=m.version, extensions=m.extensions)

    @rpc
    async def ModelMetadata(self, request, context):
        oip.check_version(request.version)
        m = oip.model_metadata(self.engine, request.name)
        tm = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=m.name, versions=m.versions, platform=m.platform,
            inputs=[tm(name=t.name, datatype=t.datatype, shape=t.shape) for t in m.inputs],
            outputs=[tm(name=t.name, datatype=t.datatype, shape=t.shape) for t in m.outputs],
        )

    @rpc
    async def ModelConfig(self, request, context):
        oip.check_version(request.version)
        config = json_format.ParseDict(oip.model_config(self.engine, request.name), model_config_pb2.ModelConfig())
        return pb.ModelConfigResponse(config=config)

    @rpc
    async def ModelInfer(self, request, context):
        e, name = self.engine, request.model_name
        oip.check_version(request.model_version)
        oip.model_metadata(e, name)  # NOT_FOUND / UNAVAILABLE before any work
        res = e.budget.reservation()
        try:
            with e.track(name) as stat:
                res.add(BODY_COPIES * request.ByteSize(), "its message")
                tensors = _tensors(request, self.settings)
                x, valid = oip.check_inputs(e, name, tensors, res)
                wanted = _wanted(request)
                stat.mark_input()
                outs = await oip.infer(e, name, x, valid, wanted, stat)
                t0 = time.perf_counter()
                response = pb.ModelInferResponse(model_name=name, model_version="1", id=request.id)
                for oname, a in outs:
                    is_bytes = a.dtype == object
                    response.outputs.add(name=oname, datatype="BYTES" if is_bytes else OIP_NAMES[a.dtype],
                                         shape=list(a.shape))
                    response.raw_output_contents.append(
                        oip.bytes_tensor(a) if is_bytes else np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes())
                stat.output_s = time.perf_counter() - t0
            return response
        finally:
            res.release()

    @rpc
    async def ModelStatistics(self, request, context):
        stats = oip.statistics(self.engine, request.name or None, request.version)
        return pb.ModelStatisticsResponse(model_stats=[_model_stats(s) for s in stats["model_stats"]])

    @rpc
    async def RepositoryIndex(self, request, context):
        mi = pb.RepositoryIndexResponse.ModelIndex
        index = self.engine.repository.index(ready_only=request.ready)
        return pb.RepositoryIndexResponse(models=[mi(**m) for m in index])

    @rpc
    async def RepositoryModelLoad(self, request, context):
        oip.check_load_parameters(request.parameters)
        await self.engine.repository.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @rpc
    async def RepositoryModelUnload(self, request, context):
        await self.engine.repository.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _duration(d: dict) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=d["count"], ns=d["ns"])


def _model_stats(s: dict) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=s["name"], version=s["version"], last_inference=s["last_inference"],
        inference_count=s["inference_count"], execution_count=s["execution_count"],
        inference_stats=pb.InferStatistics(**{k: _duration(v) for k, v in s["inference_stats"].items()}),
        batch_stats=[pb.InferBatchStatistics(batch_size=b["batch_size"], **{
            k: _duration(b[k]) for k in ("compute_input", "compute_infer", "compute_output")}) for b in s["batch_stats"]],
    )


class KeyCheck(grpc.aio.ServerInterceptor):
    """Every method but ServerLive and ServerReady needs ``authorization: Bearer <key>``,
    checked from the call's metadata before its message is parsed."""

    def __init__(self, keys: Keys):
        self.keys = keys

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, KEY_MESSAGE.replace(
                "the header", "the metadata").replace("`Authorization:", "`authorization:"))

        async def deny_stream(requests, context):
            await deny(None, context)
            yield  # pragma: no cover - a generator for the streaming handler's type

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny_stream)

    def _ok(self, metadata) -> bool:
        for k, v in metadata or ():
            if k == "authorization":
                scheme, _, token = (v.decode() if isinstance(v, bytes) else v).partition(" ")
                return scheme.lower() == "bearer" and self.keys.check(token.strip())
        return False

    async def intercept_service(self, continuation, details):
        method = details.method.rsplit("/", 1)[-1]
        if method in PUBLIC or self._ok(details.invocation_metadata):
            return await continuation(details)
        return self._deny_stream if method in STREAMING else self._deny


def address(settings: Settings) -> str:
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{settings.grpc_port}"


async def start(engine: Engine, settings: Settings) -> grpc.aio.Server:
    """A started gRPC server on ``settings.grpc_port`` (RuntimeError when it cannot bind)."""
    keys = Keys(settings.api_key)
    server = grpc.aio.server(
        interceptors=[KeyCheck(keys)] if keys else [],
        maximum_concurrent_rpcs=settings.max_connections,
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", settings.max_body_bytes),
        ],
    )
    pbg.add_GRPCInferenceServiceServicer_to_server(Servicer(engine, settings), server)
    addr = address(settings)
    if server.add_insecure_port(addr) == 0:
        raise RuntimeError(f"gRPC cannot listen on {addr} (POOLOPS_GRPC_PORT): is the port taken?")
    await server.start()
    log.info("gRPC (%s) listening on %s", SERVICE, addr)
    return server
