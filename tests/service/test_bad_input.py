"""Bad input against a real server: each case is a 4xx whose ``error`` says what to
change, never a 5xx, and the keep-alive connection it came on serves the next request.
No answer quotes more than a bounded part of its request (5 MB in, a few hundred bytes out).
"""

from __future__ import annotations

import http.client
import json

import httpx
import pytest

from images import digit_canvas, png
from live_server import api, zoo_copy  # noqa: F401 - fixtures

OP = "/v1/ops/max"
V2 = "/v2/models/digits-spp/infer"
PREDICT = "/v1/models/digits-spp/predict"
BIG = 2 ** 40


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def x_tensor(shape, data=None, datatype="FP32", **parameters) -> dict:
    t = {"name": "x", "shape": shape, "datatype": datatype}
    if parameters:
        t["parameters"] = parameters
    else:
        t["data"] = data if data is not None else []
    return t


def v2(*inputs, binary: bytes = b"") -> tuple[bytes, dict]:
    head = j({"inputs": list(inputs)})
    return head + binary, {"Inference-Header-Content-Length": str(len(head))} if binary or any(
        "parameters" in t for t in inputs) else {}


def raw(shape, b64="", dtype="float32") -> dict:
    return {"b64": b64, "shape": shape, "dtype": dtype}


def multipart(fields: dict[str, bytes], image: bytes) -> tuple[bytes, str]:
    b = b"----poolops-test"
    parts = [b"--" + b + b'\r\nContent-Disposition: form-data; name="' + k.encode() + b'"\r\n\r\n' + v + b"\r\n"
             for k, v in fields.items()]
    parts.append(b"--" + b + b'\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
                 b"Content-Type: image/png\r\n\r\n" + image + b"\r\n")
    return b"".join(parts) + b"--" + b + b"--\r\n", "multipart/form-data; boundary=" + b.decode()


ZEROS_64 = [0.0] * 64
ZEROS_256 = [0.0] * 256
DEEP = 100_000

# (id, path, body, extra headers, a word the message must contain)
CASES = [
    # declared shapes whose element count overflows: refused before any allocation
    ("b64-shape-overflows", OP, j({"input": raw([BIG, BIG])}), {}, "elements"),
    ("b64-shape-wraps-int64-to-0", OP, j({"input": raw([2 ** 32, 2 ** 32])}), {}, "elements"),
    ("b64-shape-beyond-int64", OP, j({"input": raw([2 ** 70, 1])}), {}, "elements"),
    ("b64-shape-huge-number", OP, b'{"input": {"b64": "", "shape": [' + b"9" * 5000 + b"]}}", {}, "out of range"),
    ("b64-shape-100-dims", OP, j({"input": raw([1] * 100)}), {}, "dimensions"),
    ("b64-shape-negative", OP, j({"input": raw([-1, 4])}), {}, "non-negative"),
    ("extra-input-shape-overflows", "/v1/ops/max", j({"input": [[1, 2], [3, 4]], "inputs": {"valid": raw([BIG, BIG])}}),
     {}, "elements"),
    ("grad-output-shape-overflows", OP, j({"input": [[1, 2], [3, 4]], "backward": True,
                                           "grad_output": raw([BIG, BIG, BIG])}), {}, "elements"),
    ("v2-json-shape-overflows", V2, *v2(x_tensor([BIG, BIG, 1, 1], [0.0])), "elements"),
    ("v2-binary-shape-overflows", V2, *v2(x_tensor([2 ** 32, 2 ** 32, 1, 1], binary_data_size=0), binary=b"\0"),
     "elements"),
    # zero-sized tensors
    ("b64-N-0", OP, j({"input": raw([0, 1, 4, 4])}), {}, "at least 1"),
    ("b64-C-0", OP, j({"input": raw([1, 0, 4, 4])}), {}, "at least 1"),
    ("b64-H-0", OP, j({"input": raw([1, 1, 0, 4])}), {}, "at least 1"),
    ("nested-empty-plane", OP, j({"input": [[]]}), {}, "at least 1"),
    ("nested-empty", OP, j({"input": []}), {}, "2-D"),
    ("v2-N-0", V2, *v2(x_tensor([0, 1, 8, 8])), "at least 1"),
    ("v2-C-0", V2, *v2(x_tensor([1, 0, 8, 8])), "at least 1"),
    ("v2-H-0", V2, *v2(x_tensor([1, 1, 0, 8])), "at least 1"),
    # binary_data_size that is not a byte count
    ("v2-binary-size-string", V2, *v2(x_tensor([1, 1, 8, 8], binary_data_size="256"), binary=b"\0" * 256),
     "binary_data_size"),
    ("v2-binary-size-list", V2, *v2(x_tensor([1, 1, 8, 8], binary_data_size=[256]), binary=b"\0" * 256),
     "binary_data_size"),
    ("v2-binary-size-negative", V2, *v2(x_tensor([1, 1, 8, 8], binary_data_size=-256), binary=b"\0" * 256),
     "binary_data_size"),
    ("v2-binary-size-float", V2, *v2(x_tensor([1, 1, 8, 8], binary_data_size=255.5), binary=b"\0" * 256),
     "binary_data_size"),
    ("v2-binary-size-bool", V2, *v2(x_tensor([1, 1, 8, 8], binary_data_size=True), binary=b"\0" * 256),
     "binary_data_size"),
    ("v2-binary-size-object", V2, *v2(x_tensor([1, 1, 8, 8], binary_data_size={}), binary=b"\0" * 256),
     "binary_data_size"),
    ("v2-binary-size-past-the-body", V2, *v2(x_tensor([1, 1, 8, 8], binary_data_size=256), binary=b"\0" * 10),
     "binary_data_size"),
    ("v2-header-length-not-a-number", V2, j({"inputs": [x_tensor([1, 1, 8, 8], ZEROS_64)]}),
     {"Inference-Header-Content-Length": "ten"}, "integer"),
    # negative /v2 shapes
    ("v2-json-shape-negative", V2, *v2(x_tensor([-1, 1, 8, 8], ZEROS_64)), "non-negative"),
    ("v2-binary-two-negative-dims", V2, *v2(x_tensor([-1, -1, 8, 8], binary_data_size=256), binary=b"\0" * 256),
     "non-negative"),
    # mixed JSON types and ragged or deep nesting
    ("nested-string", OP, j({"input": [[1, "a"], [2, 3]]}), {}, "numbers"),
    ("nested-list-in-row", OP, j({"input": [[1, [2]], [3, 4]]}), {}, "rectangular"),
    ("nested-null", OP, j({"input": [[1, None], [2, 3]]}), {}, "null"),
    ("v2-data-null", V2, *v2(x_tensor([1, 1, 8, 8], [None] + ZEROS_64[1:])), "null"),
    ("nested-object", OP, j({"input": [[1, {}], [2, 3]]}), {}, "numbers"),
    ("nested-ragged", OP, j({"input": [[1, 2], [3]]}), {}, "rectangular"),
    ("nested-deeper-than-numpy", OP, j({"input": [[1]]}).replace(b"[[1]]", b"[" * 70 + b"1" + b"]" * 70), {},
     "nested list"),
    ("nested-deeper-than-the-parser", OP, b'{"input": ' + b"[" * DEEP + b"]" * DEEP + b"}", {}, "recursion"),
    ("v2-data-mixed", V2, *v2(x_tensor([1, 1, 8, 8], ["a"] + ZEROS_64[1:])), "numbers"),
    ("v2-data-ragged", V2, *v2(x_tensor([1, 1, 8, 8], [[0.0], 0.0] + ZEROS_64[2:])), "numbers"),
    ("v2-data-deep", V2, b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": '
     + b"[" * DEEP + b"]" * DEEP + b"}]}", {}, "recursion"),
    # numbers beyond float32
    ("float32-overflow", OP, j({"input": [[1e39, 1], [1, 1]]}), {}, "range"),
    ("float64-overflow", OP, b'{"input": [[1e400, 1], [1, 1]]}', {}, "range"),
    ("int-beyond-any-float", OP, b'{"input": [[1' + b"0" * 400 + b', 1], [1, 1]]}', {}, "range"),
    ("v2-fp32-overflow", V2, *v2(x_tensor([1, 1, 8, 8], [1e39] + ZEROS_64[1:])), "range"),
    ("v2-fp64-beyond-fp32", V2, *v2(x_tensor([1, 1, 8, 8], [1e300] + ZEROS_64[1:], "FP64")), "range"),
    # bodies that are not UTF-8 or not JSON objects
    ("op-not-utf8", OP, b'{"input": [[1]], "params": {"k\xff\xfe": 1}}', {}, "invalid"),
    ("v2-not-utf8", V2, b'{"inputs": [{"name": "\xff", "shape": [1], "datatype": "FP32", "data": [1]}]}', {},
     "invalid"),
    ("predict-not-utf8", PREDICT, b'{"images": [{"b64": "\xc3\x28"}]}', {}, "invalid"),
    ("op-json-array", OP, b"[1, 2]", {}, "object"),
    ("op-truncated-json", OP, b'{"input": [[1, 2]', {}, "json"),
    ("v2-json-null", V2, b"null", {}, "object"),
    # the classification extension, outputs and valid
    ("v2-classification-0", V2, j({"inputs": [x_tensor([1, 1, 16, 16], ZEROS_256)],
                                   "outputs": [{"name": "logits", "parameters": {"classification": 0}}]}), {},
     "classification"),
    ("v2-classification-string", V2, j({"inputs": [x_tensor([1, 1, 16, 16], ZEROS_256)],
                                        "outputs": [{"name": "logits", "parameters": {"classification": "3"}}]}), {},
     "classification"),
    ("v2-classification-huge", V2, j({"inputs": [x_tensor([1, 1, 16, 16], ZEROS_256)],
                                      "outputs": [{"name": "logits", "parameters": {"classification": BIG}}]}), {},
     "classification"),
    ("v2-output-twice", V2, j({"inputs": [x_tensor([1, 1, 16, 16], ZEROS_256)],
                               "outputs": [{"name": "logits"}, {"name": "logits"}]}), {}, "twice"),
    ("v2-valid-float", V2, j({"inputs": [x_tensor([1, 1, 16, 16], ZEROS_256),
                                         {"name": "valid", "shape": [1, 2], "datatype": "FP32", "data": [16, 16]}]}),
     {}, "INT64"),
    # the repository extension
    ("repository-index-array", "/v2/repository/index", b"[1]", {}, "object"),
    ("repository-index-ready-string", "/v2/repository/index", j({"ready": "yes"}), {}, "ready"),
    ("repository-load-config", "/v2/repository/models/digits-spp/load", j({"parameters": {"config": "{}"}}), {},
     "not supported"),
    ("repository-load-files", "/v2/repository/models/digits-spp/load",
     j({"parameters": {"file:1/model.onnx": "AAAA"}}), {}, "not supported"),
    ("repository-load-no-folder", "/v2/repository/models/nope/load", b"", {}, "no model folder"),
    ("repository-load-bad-name", "/v2/repository/models/-x/load", b"", {}, "folder name"),
    ("repository-unload-unknown", "/v2/repository/models/nope/unload", b"", {}, "unknown model"),
]


def _send(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict,
          content_type: str = "application/json"):
    conn.request("POST", path, body=body, headers={"Content-Type": content_type, **headers})
    r = conn.getresponse()
    return r, r.read()


def _assert_clear_4xx(path: str, r, body: bytes, says: str) -> str:
    assert 400 <= r.status < 500, (r.status, body[:500])
    error = json.loads(body)["error"]
    message = error if path.startswith("/v2") else error["message"]
    assert isinstance(message, str) and says.lower() in message.lower(), message
    assert r.getheader("connection") is None  # the server keeps the connection
    return message


def _next_request_works(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    assert r.status == 200 and r.read() and conn.sock is sock  # the same connection


@pytest.fixture
def conn(api):
    c = http.client.HTTPConnection(*api.removeprefix("http://").split(":"), timeout=60)
    yield c
    c.close()


@pytest.mark.parametrize("path, body, headers, says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx_and_the_connection_stays(conn, path, body, headers, says):
    r, answer = _send(conn, path, body, headers)
    _assert_clear_4xx(path, r, answer, says)
    _next_request_works(conn)


def test_a_bad_multipart_upload_is_a_clear_4xx(conn):
    for fields, says in [({"params": b'{"kernel": "\xff\xfe"}'}, "kernel"), ({"params": b"\xff"}, "json"),
                         ({"color": b"\xff"}, "color"), ({"return_indices": b"maybe"}, "true or false")]:
        body, content_type = multipart(fields, png(digit_canvas()))
        r, answer = _send(conn, OP, body, {}, content_type)
        _assert_clear_4xx(OP, r, answer, says)
        _next_request_works(conn)


FIVE_MB = "x" * 5_000_000


@pytest.mark.parametrize("path, body", [
    (OP, {"input": [[1, 2], [3, 4]], "params": {"kernel": FIVE_MB}}),  # a parameter's checker quotes it
    (OP, {"input": [[1, 2], [3, 4]], FIVE_MB: 1}),  # an unknown field, named in the error's location
    (OP, {"input": [[1, 2], [3, 4]], "params": {FIVE_MB: 1}}),  # an unknown parameter
    (OP, {"input": {"b64": "", "shape": ["a"] * 200_000}}),  # 200,000 validation errors
    (V2, {"inputs": [x_tensor([1, 1, 8, 8], ZEROS_64)], "outputs": [{"name": FIVE_MB}]}),  # an unknown output
    (V2, {"inputs": [{**x_tensor([1, 1, 8, 8], ZEROS_64), "datatype": FIVE_MB}]}),
    (V2, {"inputs": [x_tensor([1, 1, 8, 8], ZEROS_64)], "id": 5}),  # pydantic: wrong type, small input
], ids=["param", "field", "param-name", "strings", "v2-output", "v2-datatype", "v2-id"])
def test_answers_quote_little_of_a_5_mb_request(api, path, body):
    r = httpx.post(api + path, content=j(body), headers={"Content-Type": "application/json"}, timeout=120)
    assert 400 <= r.status_code < 500 and len(r.content) < 3000, (r.status_code, len(r.content))
    assert r.json()["error"]


def test_many_valid_sizes_are_not_all_listed(api):
    """``valid`` is checked by poolops' check_valid, which lists every value it got."""
    n = 500
    body = {"inputs": [x_tensor([n, 1, 16, 16], [0.0] * (n * 256)),  # the card's smallest size
                       {"name": "valid", "shape": [n, 2], "datatype": "INT64", "data": [0] * (2 * n)}]}
    r = httpx.post(api + V2, content=j(body), headers={"Content-Type": "application/json"}, timeout=120)
    assert r.status_code == 422 and len(r.content) < 3000 and "characters in all" in r.json()["error"], r.text[:300]
