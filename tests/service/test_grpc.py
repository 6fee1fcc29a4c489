"""OIP over gRPC against a real server: the bounds HTTP has hold here too. Bad input is
INVALID_ARGUMENT (or RESOURCE_EXHAUSTED when too large, NOT_FOUND for an unknown model)
with a message saying what to change, never INTERNAL; a key is needed when one is set
(UNAUTHENTICATED, probes excepted); messages above POOLOPS_MAX_BODY_BYTES are refused; a
client's deadline is kept; typed ``contents`` and ``raw_input_contents`` agree."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg
from tritonclient.utils import InferenceServerException

from live_server import copy_zoo, free_port, run_server, server_settings

KEY = "grpc-secret"
BIG = 2 ** 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    zoo = copy_zoo(tmp_path_factory.mktemp("grpczoo"), ["digits-spp", "digits-gap", "digits-fixed"])
    port = free_port()
    settings = server_settings(zoo, grpc_port=port, max_body_bytes=1 << 20, max_json_elements=4096)
    with run_server(settings):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        yield pbg.GRPCInferenceServiceStub(ch)


def tensor(name="x", shape=(1, 1, 16, 16), datatype="FP32", **contents):
    t = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=list(shape))
    for k, v in contents.items():
        getattr(t.contents, k).extend(v)
    return t


def request(*inputs, raw=None, model="digits-gap", outputs=(), **kw):
    r = pb.ModelInferRequest(model_name=model, inputs=list(inputs), **kw)
    if raw is not None:
        r.raw_input_contents.extend(raw)
    for o in outputs:
        r.outputs.append(o)
    return r


def classification(k):
    o = pb.ModelInferRequest.InferRequestedOutputTensor(name="logits")
    o.parameters["classification"].CopyFrom(k)
    return o


ZEROS = np.zeros((1, 1, 16, 16), np.float32)

# (id, request, status, a word the message must contain)
CASES = [
    ("unknown-model", request(tensor(fp32_contents=[0.0] * 256), model="nope"), "NOT_FOUND", "registered"),
    ("version-2", request(tensor(fp32_contents=[0.0] * 256), model_version="2"), "NOT_FOUND", "version"),
    ("no-inputs", request(), "INVALID_ARGUMENT", "x required"),
    ("unknown-input", request(tensor(name="y", shape=[1], fp32_contents=[0.0])), "INVALID_ARGUMENT", "takes inputs"),
    ("twice", request(tensor(fp32_contents=[0.0] * 256), tensor(fp32_contents=[0.0] * 256)), "INVALID_ARGUMENT",
     "twice"),
    ("bad-datatype", request(tensor(datatype="BF77")), "INVALID_ARGUMENT", "datatype"),
    ("too-few-values", request(tensor(fp32_contents=[0.0] * 5)), "INVALID_ARGUMENT", "fill shape"),
    ("shape-overflows", request(tensor(shape=[BIG, BIG, 1, 1], fp32_contents=[0.0])), "RESOURCE_EXHAUSTED",
     "POOLOPS_MAX_TENSOR_ELEMENTS"),
    ("shape-negative", request(tensor(shape=[-1, 1, 16, 16], fp32_contents=[0.0] * 256)), "INVALID_ARGUMENT",
     "non-negative"),
    ("n-0", request(tensor(shape=[0, 1, 16, 16])), "INVALID_ARGUMENT", "at least 1"),
    ("100-dims", request(tensor(shape=[1] * 100, fp32_contents=[0.0])), "INVALID_ARGUMENT", "dimensions"),
    ("wrong-channels", request(tensor(shape=[1, 3, 16, 16], fp32_contents=[0.0] * 768)), "INVALID_ARGUMENT",
     "[N, 1, H, W]"),
    ("too-small", request(tensor(shape=[1, 1, 4, 4], fp32_contents=[0.0] * 16)), "INVALID_ARGUMENT", "resize"),
    ("raw-count", request(tensor(), tensor(name="valid", shape=[1, 2], datatype="INT64"), raw=[ZEROS.tobytes()]),
     "INVALID_ARGUMENT", "one per input"),
    ("raw-size", request(tensor(), raw=[b"\0" * 10]), "INVALID_ARGUMENT", "bytes"),
    ("fp16-typed", request(tensor(datatype="FP16")), "INVALID_ARGUMENT", "raw_input_contents"),
    ("int8-range", request(tensor(datatype="INT8", shape=[1, 1, 16, 16], int_contents=[300] * 256)),
     "INVALID_ARGUMENT", "range"),
    ("fp32-overflow", request(tensor(datatype="FP64", fp64_contents=[1e300] * 256)), "INVALID_ARGUMENT", "range"),
    ("valid-not-padding-invariant", request(tensor(fp32_contents=[0.0] * 256),
                                            tensor(name="valid", shape=[1, 2], datatype="INT64", int64_contents=[16, 16]),
                                            model="digits-fixed"), "INVALID_ARGUMENT", "takes inputs"),
    ("valid-beyond-x", request(tensor(fp32_contents=[0.0] * 256),
                               tensor(name="valid", shape=[1, 2], datatype="INT64", int64_contents=[99, 16]),
                               model="digits-spp"), "INVALID_ARGUMENT", "within"),
    ("valid-float", request(tensor(fp32_contents=[0.0] * 256),
                            tensor(name="valid", shape=[1, 2], datatype="FP32", fp32_contents=[16, 16]),
                            model="digits-spp"), "INVALID_ARGUMENT", "INT64"),
    ("typed-beyond-limit", request(tensor(shape=[1, 1, 80, 80], fp32_contents=[0.0] * 6400)), "RESOURCE_EXHAUSTED",
     "raw_input_contents"),
    ("unknown-output", request(tensor(fp32_contents=[0.0] * 256),
                               outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="zz")]),
     "INVALID_ARGUMENT", "outputs"),
    ("classification-0", request(tensor(fp32_contents=[0.0] * 256), outputs=[classification(pb.InferParameter(
        int64_param=0))]), "INVALID_ARGUMENT", "classification"),
    ("classification-string", request(tensor(fp32_contents=[0.0] * 256), outputs=[classification(pb.InferParameter(
        string_param="3"))]), "INVALID_ARGUMENT", "classification"),
]


@pytest.mark.parametrize("req, code, says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_status(stub, req, code, says):
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req, timeout=60)
    assert e.value.code().name == code, (e.value.code(), e.value.details())
    assert says.lower() in e.value.details().lower(), e.value.details()
    assert stub.ServerLive(pb.ServerLiveRequest()).live  # the server goes on


def test_message_above_the_limit_is_refused(stub):
    x = np.zeros((1, 1, 600, 600), np.float32)  # 1.4 MB > POOLOPS_MAX_BODY_BYTES (1 MB here)
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request(tensor(shape=x.shape), raw=[x.tobytes()]), timeout=60)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_typed_contents_and_raw_agree(stub):
    x = np.random.default_rng(0).random((2, 1, 20, 24), dtype=np.float32)
    typed = stub.ModelInfer(request(tensor(shape=x.shape, fp32_contents=x.ravel().tolist())), timeout=60)
    raw = stub.ModelInfer(request(tensor(shape=x.shape), raw=[x.tobytes()], id="r1"), timeout=60)
    assert raw.id == "r1" and [o.name for o in raw.outputs] == ["logits", "embedding"]
    for a, b in zip(typed.raw_output_contents, raw.raw_output_contents):
        assert a == b


def test_an_unimplemented_method_says_so(stub):
    with pytest.raises(grpc.RpcError) as e:
        stub.TraceSetting(pb.TraceSettingRequest(model_name="digits-gap"), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_deadline_too_short_is_deadline_exceeded_not_internal(server):
    c = tgrpc.InferenceServerClient(server)
    x = np.zeros((8, 1, 200, 200), np.float32)
    inp = tgrpc.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        c.infer("digits-gap", [inp], client_timeout=0.001)
    assert "DEADLINE_EXCEEDED" in str(e.value.status())
    assert c.is_server_live()


def test_the_api_key_is_needed_except_for_probes(tmp_path):
    zoo = copy_zoo(tmp_path, ["digits-gap"])
    port = free_port()
    with run_server(server_settings(zoo, grpc_port=port, api_key=KEY)):
        c = tgrpc.InferenceServerClient(f"127.0.0.1:{port}")
        assert c.is_server_live() and c.is_server_ready()  # probes hold no key
        for call in (lambda **kw: c.get_model_metadata("digits-gap", **kw),
                     lambda **kw: c.get_model_repository_index(**kw),
                     lambda **kw: c.get_inference_statistics("digits-gap", **kw),
                     lambda **kw: c.is_model_ready("digits-gap", **kw)):
            for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
                with pytest.raises(InferenceServerException) as e:
                    call(headers=headers)
                assert "UNAUTHENTICATED" in str(e.value.status()) and "POOLOPS_API_KEY" in e.value.message()
            call(headers={"authorization": f"Bearer {KEY}"})
        x = np.zeros((1, 1, 16, 16), np.float32)
        inp = tgrpc.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException, match="API key"):
            c.infer("digits-gap", [inp])
        assert c.infer("digits-gap", [inp], headers={"authorization": f"Bearer {KEY}"}).as_numpy("logits").shape == (1, 10)
        c.close()
