"""Connections against a real uvicorn server on 127.0.0.1, as a hostile client with raw
sockets: slow headers and bodies are cut off (408, ``Connection: close``), connections
above the cap get 503 while a normal request works afterwards, idle keep-alive
connections close; an unexpected error answers JSON 500 and keeps the connection; every
answer has a request id; every 405 says which methods are allowed."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time

import httpx
import pytest

from live_server import run_server, server_settings, zoo_copy  # noqa: F401 - fixture

TIMEOUTS = dict(header_timeout_s=0.5, body_timeout_s=0.5, keep_alive_s=0.5)


@pytest.fixture(scope="module")
def server(zoo_copy):
    """A server with short timeouts, and two routes that fail as a bug would."""
    def add_bugs(app):
        @app.get("/boom", include_in_schema=False)
        async def boom():
            raise RuntimeError("a bug")

        @app.get("/v2/boom", include_in_schema=False)
        async def boom_v2():
            raise KeyError("a bug")

    with run_server(server_settings(zoo_copy, **TIMEOUTS), customize=add_bugs) as url:
        yield url


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _read_all(sock: socket.socket, limit_s: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    sock.settimeout(limit_s)
    t0, data = time.monotonic(), b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - t0


def _head(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:]))
    return int(lines[0].split()[1]), headers, body


def test_partial_headers_are_cut_off(server):
    with socket.create_connection(("127.0.0.1", _port(server))) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        raw, took = _read_all(s)
    status, headers, _ = _head(raw)
    assert status == 408 and headers["connection"] == "close"
    assert 0.4 < took < 3


def test_a_connection_that_sends_nothing_is_closed(server):
    with socket.create_connection(("127.0.0.1", _port(server))) as s:
        raw, took = _read_all(s)
    assert raw == b"" and took < 3


def test_headers_trickled_byte_by_byte_are_cut_off(server):
    """Each byte would restart a per-read timer; this one counts from the first byte."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", _port(server))) as s:
        t0 = time.monotonic()
        try:
            for b in request[:-1]:
                s.sendall(bytes([b]))
                time.sleep(0.05)
        except OSError:  # closed under us: what this test wants
            pass
        raw, _ = _read_all(s)
    assert raw.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 3


MULTIPART_START = b'--b0\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n\x89PNG'


@pytest.mark.parametrize("path, content_type, start, v2", [
    ("/v1/ops/max", "application/json", b'{"in', False),
    ("/v1/models/digits-spp/predict", "multipart/form-data; boundary=b0", MULTIPART_START, False),
    ("/v2/models/digits-spp/infer", "application/json", b'{"in', True),
])
def test_partial_body_is_408_and_closed(server, path, content_type, start, v2):
    with socket.create_connection(("127.0.0.1", _port(server))) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: 1000\r\n\r\n".encode() + start)
        raw, took = _read_all(s)
    status, headers, body = _head(raw)
    assert status == 408 and headers["connection"] == "close" and headers["x-request-id"]
    error = json.loads(body)["error"]
    message = error if v2 else error["message"]
    assert "POOLOPS_BODY_TIMEOUT_S" in message
    assert 0.4 < took < 3


def test_idle_keep_alive_connection_is_closed(server):
    conn = http.client.HTTPConnection("127.0.0.1", _port(server), timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() and conn.sock is not None
    raw, took = _read_all(conn.sock)
    assert raw == b"" and took < 3


def test_more_connections_than_the_cap_get_503_and_then_service_resumes(zoo_copy):
    cap = 4
    with run_server(server_settings(zoo_copy, max_connections=cap, header_timeout_s=30)) as url:
        port = _port(url)
        holders = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap)]
        try:
            time.sleep(0.2)  # the server has accepted them
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                raw, _ = _read_all(s)
            status, headers, _ = _head(raw)
            assert status == 503 and headers["connection"] == "close"
        finally:
            for h in holders:
                h.close()
        time.sleep(0.2)
        r = httpx.get(url + "/healthz")
        assert r.status_code == 200


def _same_connection_works(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    assert r.status == 200 and r.read() and conn.sock is sock  # not reopened


@pytest.mark.parametrize("path, v2", [("/boom", False), ("/v2/boom", True)])
def test_a_bug_answers_json_500_with_a_request_id_and_keeps_the_connection(server, path, v2, caplog):
    conn = http.client.HTTPConnection("127.0.0.1", _port(server), timeout=10)
    with caplog.at_level(logging.ERROR, logger="poolops.api"):
        conn.request("GET", path, headers={"X-Request-ID": "bug-42"})
        r = conn.getresponse()
        body = json.loads(r.read())
    assert r.status == 500 and r.getheader("x-request-id") == "bug-42" and r.getheader("connection") is None
    if v2:
        assert "bug-42" in body["error"]
    else:
        assert body["error"]["code"] == "internal" and body["error"]["request_id"] == "bug-42"
        assert "a bug" not in body["error"]["message"]  # no internals
    assert any("bug-42" in rec.getMessage() and rec.exc_info for rec in caplog.records)
    _same_connection_works(conn)


def test_request_ids_are_kept_sanitised_or_made(server):
    with httpx.Client(base_url=server) as c:
        assert c.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
        assert c.get("/nowhere", headers={"X-Request-ID": "a b<c>\"d"}).headers["x-request-id"] == "abcd"
        assert len(c.get("/healthz", headers={"X-Request-ID": "x" * 5000}).headers["x-request-id"]) == 128
        made = c.get("/healthz").headers["x-request-id"]
        assert len(made) == 32 and made != c.get("/healthz").headers["x-request-id"]


def test_every_405_names_the_allowed_methods(server):
    doc = httpx.get(server + "/openapi.json").json()
    with httpx.Client(base_url=server) as c:
        for path, item in doc["paths"].items():
            url = path.replace("{name}", "digits-spp").replace("{model_version}", "1")
            if url.startswith("/v1/ops/"):
                url = path.replace("{name}", "max")
            documented = {m.upper() for m in item}
            for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - documented:
                r = c.request(method, url)
                assert r.status_code == 405, (method, url)
                assert set(r.headers["allow"].split(", ")) == documented, (method, url, r.headers["allow"])
                error = r.json()["error"]
                message = error if url.startswith("/v2") else error["message"]
                assert "[]" not in message and all(m in message for m in documented), message


def test_streamed_body_over_the_limit_is_413_and_closed(zoo_copy):
    with run_server(server_settings(zoo_copy, max_body_bytes=100_000)) as url:
        with socket.create_connection(("127.0.0.1", _port(url))) as s:
            s.sendall(b"POST /v1/ops/max HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"0" * 50_000
            for _ in range(3):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            raw, _ = _read_all(s)
        status, headers, body = _head(raw)
        assert status == 413 and headers["connection"] == "close"
        assert "POOLOPS_MAX_BODY_BYTES" in json.loads(body)["error"]["message"]
