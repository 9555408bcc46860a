"""The HTTP/1.1 wire of the simulated API server, over raw TLS sockets and http.client.

Chunked bodies, the 3 MiB body limit (413, nothing stored, the connection stays usable or is
closed), JSON nesting depth (400), idle keep-alive time-out, 1,000 idle clients, and a corpus of
malformed requests that must each get one answer (or a closed connection) and never a traceback.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.wire import MAX_BODY

CM_PATH = "/api/v1/namespaces/default/configmaps"
TOO_LARGE = "Request entity too large: limit is 3145728"


@pytest.fixture
def wire_sim(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    return make_sim(controllers=False)


def _ctx(sim: SimulatedClusters) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    return ctx


def _port(sim: SimulatedClusters) -> int:
    return sim.servers["source"].port


def _conn(sim: SimulatedClusters) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", _port(sim), context=_ctx(sim), timeout=20)


def _headers(sim: SimulatedClusters, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.token('source')}", **extra}


def _cm(name: str, filler: str = "") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"k": filler or "v"}}


def _status(resp: http.client.HTTPResponse) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(resp.read())
    return body


def _tls_socket(sim: SimulatedClusters) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", _port(sim)), timeout=20)
    return _ctx(sim).wrap_socket(raw, server_hostname="127.0.0.1")


def _exchange(sim: SimulatedClusters, data: bytes) -> bytes:
    """Send raw bytes on a fresh TLS connection; everything the server answers until it closes
    the connection, or until 0.3 s of silence after the answer started (a keep-alive answer)."""
    with _tls_socket(sim) as sock:
        sock.settimeout(5)
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                sock.settimeout(0.3)
        except (TimeoutError, ConnectionResetError, ssl.SSLError):
            pass
        return out


def test_chunked_body_is_accepted_and_keep_alive_continues(wire_sim: SimulatedClusters) -> None:
    conn = _conn(wire_sim)
    body = json.dumps(_cm("chunked")).encode()
    pieces = iter([body[:10], body[10:25], body[25:]])
    conn.request("POST", CM_PATH, body=pieces, encode_chunked=True,
                 headers=_headers(wire_sim, **{"Content-Type": "application/json"}))
    resp = conn.getresponse()
    assert resp.status == 201, resp.read()
    assert _status(resp)["metadata"]["name"] == "chunked"
    # The same connection serves the next request: the chunked body was read to its end.
    conn.request("GET", f"{CM_PATH}/chunked", headers=_headers(wire_sim))
    resp = conn.getresponse()
    assert resp.status == 200 and _status(resp)["data"] == {"k": "v"}
    conn.close()


def test_a_get_with_an_unread_body_does_not_corrupt_the_connection(
        wire_sim: SimulatedClusters) -> None:
    conn = _conn(wire_sim)
    for _ in range(3):
        conn.request("GET", CM_PATH, body=b'{"junk": true}', headers=_headers(wire_sim))
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        assert _status(resp)["kind"] == "ConfigMapList"
    conn.close()


def test_body_just_over_the_limit_is_413_and_the_connection_is_kept(
        wire_sim: SimulatedClusters) -> None:
    body = json.dumps(_cm("big", "x" * MAX_BODY)).encode()
    assert MAX_BODY < len(body) < MAX_BODY + 256 * 1024
    conn = _conn(wire_sim)
    conn.request("POST", CM_PATH, body=body,
                 headers=_headers(wire_sim, **{"Content-Type": "application/json"}))
    resp = conn.getresponse()
    status = _status(resp)
    assert resp.status == 413
    assert (status["reason"], status["message"], status["code"]) == (
        "RequestEntityTooLarge", TOO_LARGE, 413)
    assert wire_sim.store("source").try_get("ConfigMap", "default", "big") is None
    # The rest of the body was discarded, so the connection is still in step.
    conn.request("GET", CM_PATH, headers=_headers(wire_sim))
    assert conn.getresponse().status == 200
    conn.close()


def test_a_100_mb_body_is_413_and_the_connection_closed(wire_sim: SimulatedClusters) -> None:
    with _tls_socket(wire_sim) as sock:
        head = (f"POST {CM_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                f"{wire_sim.token('source')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {100 * 1024 * 1024}\r\n\r\n").encode()
        sock.sendall(head + b'{"metadata":{"name":"huge"},"data":{"k":"')
        sent = 0
        block = b"x" * 65536
        reply = b""
        sock.settimeout(10)
        # Keep sending until the server has answered and closed (it does not read 100 MB).
        try:
            while sent < 100 * 1024 * 1024:
                sock.sendall(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, ssl.SSLError, OSError):
            pass
    assert sent < 100 * 1024 * 1024
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"Connection: close" in reply
    assert TOO_LARGE.encode() in reply
    assert wire_sim.store("source").try_get("ConfigMap", "default", "huge") is None


def test_chunked_body_over_the_limit_is_413(wire_sim: SimulatedClusters) -> None:
    conn = _conn(wire_sim)
    blob = b"x" * (1024 * 1024)
    pieces = iter([b'{"metadata":{"name":"chunky"},"data":{"k":"', blob, blob, blob, blob,
                   b'"}}'])
    try:
        conn.request("POST", CM_PATH, body=pieces, encode_chunked=True,
                     headers=_headers(wire_sim, **{"Content-Type": "application/json"}))
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        # The server may answer 413 and close before the client has sent the rest of a chunked
        # body (it cannot know how much is left), as Go's does: the answer is already on the wire.
        pass
    resp = conn.getresponse()
    assert resp.status == 413
    assert _status(resp)["message"] == TOO_LARGE
    assert wire_sim.store("source").try_get("ConfigMap", "default", "chunky") is None
    conn.close()


def _nested(depth: int) -> bytes:
    return (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"x":' +
            b"[" * depth + b"]" * depth + b"}")


@pytest.mark.parametrize("depth", [10_001, 50_000])
def test_json_deeper_than_upstream_accepts_is_400(wire_sim: SimulatedClusters, depth: int,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    conn = _conn(wire_sim)
    conn.request("POST", CM_PATH, body=_nested(depth),
                 headers=_headers(wire_sim, **{"Content-Type": "application/json"}))
    resp = conn.getresponse()
    status = _status(resp)
    assert resp.status == 400 and status["reason"] == "BadRequest"
    # Upstream: transformDecodeError around the JSON scanner's depth error (nesting counts the
    # outer object, so the 10,001st level is the 10,000th bracket).
    assert status["message"] == (
        "the object provided is unrecognized (must be of type ConfigMap): couldn't get "
        "version/kind; json parse error: invalid character '[' exceeded max depth "
        '({"apiVersion":"v1","kind":"Con ...)')
    conn.request("GET", CM_PATH, headers=_headers(wire_sim))  # same connection, still fine
    assert conn.getresponse().status == 200
    conn.close()
    assert "Traceback" not in capfd.readouterr().err


def test_merge_patch_too_deep_is_400(wire_sim: SimulatedClusters) -> None:
    wire_sim.store("source").create("ConfigMap", {"metadata": {"name": "p",
                                                               "namespace": "default"}})
    conn = _conn(wire_sim)
    conn.request("PATCH", f"{CM_PATH}/p", body=b'{"x":' + b"[" * 20_000 + b"]" * 20_000 + b"}",
                 headers=_headers(wire_sim, **{"Content-Type": "application/merge-patch+json"}))
    resp = conn.getresponse()
    assert resp.status == 400
    assert _status(resp)["message"] == ("error decoding patch: invalid character '[' exceeded "
                                        "max depth")
    conn.close()


def test_idle_keep_alive_connection_is_closed_after_the_timeout(
        make_sim: Callable[..., SimulatedClusters]) -> None:
    sim = make_sim(controllers=False, idle_timeout=0.5)
    conn = _conn(sim)
    conn.request("GET", "/version", headers=_headers(sim))
    assert conn.getresponse().read()
    sock = conn.sock
    assert sock is not None
    sock.settimeout(5)
    started = time.monotonic()
    assert sock.recv(1) == b""  # the server closed the idle connection
    assert 0.3 < time.monotonic() - started < 4
    conn.close()


def _timed_gets(sim: SimulatedClusters, n: int) -> float:
    conn = _conn(sim)
    conn.request("GET", "/version", headers=_headers(sim))
    conn.getresponse().read()
    started = time.perf_counter()
    for _ in range(n):
        conn.request("GET", f"{CM_PATH}/kube-root-none", headers=_headers(sim))
        conn.getresponse().read()
    conn.close()
    return (time.perf_counter() - started) / n


@pytest.fixture
def idle_sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for s in held:
        s.close()


def test_a_thousand_idle_clients_do_not_slow_the_others_down(
        wire_sim: SimulatedClusters, idle_sockets: list[socket.socket]) -> None:
    baseline = min(_timed_gets(wire_sim, 100) for _ in range(2))
    ctx = _ctx(wire_sim)
    server = wire_sim.servers["source"]
    for _ in range(1000):  # idle keep-alive clients: TLS set up, one request, then silence
        raw = socket.create_connection(("127.0.0.1", _port(wire_sim)), timeout=20)
        sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        idle_sockets.append(sock)
    assert len(server._conns) >= 1000
    loaded = min(_timed_gets(wire_sim, 100) for _ in range(2))
    # Idle connections cost a parked thread each and no CPU: requests are not slower than
    # with none (margin for the shared 2-core machine).
    assert loaded < baseline * 2 + 0.002, (baseline, loaded)


def test_idle_connections_are_reclaimed(make_sim: Callable[..., SimulatedClusters],
                                        idle_sockets: list[socket.socket]) -> None:
    sim = make_sim(controllers=False, idle_timeout=0.5)
    ctx = _ctx(sim)
    threads_before = threading.active_count()
    for _ in range(200):
        raw = socket.create_connection(("127.0.0.1", _port(sim)), timeout=20)
        idle_sockets.append(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
    server = sim.servers["source"]
    deadline = time.monotonic() + 10
    while (server._conns or threading.active_count() > threads_before) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server._conns  # every idle connection was closed by the server
    assert threading.active_count() <= threads_before  # and its thread has ended
    assert all(s.recv(1) == b"" for s in idle_sockets[:10])


def _raw_request(sim: SimulatedClusters, head: str, body: bytes = b"") -> bytes:
    token = sim.token("source")
    return head.replace("TOKEN", token).encode() + body


MALFORMED: list[tuple[str, str, bytes, bytes]] = [
    # (name, request head, body, expected start of the answer)
    ("bad json", f"POST {CM_PATH} HTTP/1.1\r\nAuthorization: Bearer TOKEN\r\n"
                 "Content-Type: application/json\r\nContent-Length: 9\r\n\r\n", b'{"a": tru',
     b"HTTP/1.1 400"),
    ("json list", f"POST {CM_PATH} HTTP/1.1\r\nAuthorization: Bearer TOKEN\r\n"
                  "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n", b"[]",
     b"HTTP/1.1 400"),
    ("metadata list", f"POST {CM_PATH} HTTP/1.1\r\nAuthorization: Bearer TOKEN\r\n"
                      "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n",
     b'{"metadata":[]}', b"HTTP/1.1 "),
    ("bad yaml apply", f"PATCH {CM_PATH}/a?fieldManager=m HTTP/1.1\r\nAuthorization: Bearer "
                       "TOKEN\r\nContent-Type: application/apply-patch+yaml\r\n"
                       "Content-Length: 11\r\n\r\n", b"a: [b\n c: {", b"HTTP/1.1 400"),
    ("bad header line", "GET /version HTTP/1.1\r\nthis is not a header\r\n\r\n", b"",
     b"HTTP/1.1 400 Bad Request"),
    ("huge header", "GET /version HTTP/1.1\r\nX-Big: " + "a" * 70000 + "\r\n\r\n", b"",
     b"HTTP/1.1 4"),
    ("bad content-length", f"POST {CM_PATH} HTTP/1.1\r\nAuthorization: Bearer TOKEN\r\n"
                           "Content-Length: abc\r\n\r\n", b"", b"HTTP/1.1 400 Bad Request"),
    ("negative content-length", f"POST {CM_PATH} HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"",
     b"HTTP/1.1 400 Bad Request"),
    ("two content-lengths", f"POST {CM_PATH} HTTP/1.1\r\nContent-Length: 2\r\n"
                            "Content-Length: 3\r\n\r\n", b"{}", b"HTTP/1.1 400 Bad Request"),
    ("gzip transfer-encoding", f"POST {CM_PATH} HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
     b"", b"HTTP/1.1 501 Not Implemented"),
    ("broken chunk", f"POST {CM_PATH} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"zz\r\nabc\r\n0\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ("bad percent-encoding", "GET /api/v1/namespaces/%zz/configmaps HTTP/1.1\r\n"
                             "Authorization: Bearer TOKEN\r\n\r\n", b"",
     b"HTTP/1.1 400 Bad Request"),
    ("bad query", f"GET {CM_PATH}?watch=true&timeoutSeconds=abc&resourceVersion=%ff%fe&limit=x"
                  "&timeoutSeconds=0.1 HTTP/1.1\r\nAuthorization: Bearer TOKEN\r\n\r\n", b"",
     b"HTTP/1.1 "),
    ("bad protobuf", f"POST {CM_PATH} HTTP/1.1\r\nAuthorization: Bearer TOKEN\r\nContent-Type: "
                     "application/vnd.kubernetes.protobuf\r\nContent-Length: 6\r\n\r\n",
     b"k8s\x00\xff\xff", b"HTTP/1.1 400"),
    ("not protobuf", f"POST {CM_PATH} HTTP/1.1\r\nAuthorization: Bearer TOKEN\r\nContent-Type: "
                     "application/vnd.kubernetes.protobuf\r\nContent-Length: 4\r\n\r\n",
     b"{}{}", b"HTTP/1.1 400"),
    ("bad request line", "GARBAGE\r\n\r\n", b"", b"HTTP/1.1 400"),
    ("impersonated group without a user", "GET /version HTTP/1.1\r\nAuthorization: Bearer "
                                          "TOKEN\r\nImpersonate-Group: devs\r\n\r\n", b"",
     b"HTTP/1.1 500 Internal Server Error"),
    ("unknown method", "BREW /version HTTP/1.1\r\n\r\n", b"", b"HTTP/1.1 "),
    ("bad utf-8 body", f"POST {CM_PATH} HTTP/1.1\r\nAuthorization: Bearer TOKEN\r\n"
                       "Content-Type: application/json\r\nContent-Length: 4\r\n\r\n",
     b'"\xff\xfe"', b"HTTP/1.1 400"),
    ("absolute-form target with brackets", "GET //[::1/api HTTP/1.1\r\n"
                                          "Authorization: Bearer TOKEN\r\n\r\n", b"",
     b"HTTP/1.1 "),
]


@pytest.mark.parametrize("name,head,body,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_one_answer_and_no_traceback(
        wire_sim: SimulatedClusters, capfd: pytest.CaptureFixture[str], name: str, head: str,
        body: bytes, expected: bytes) -> None:
    reply = _exchange(wire_sim, _raw_request(wire_sim, head, body))
    assert reply.startswith(expected), (name, reply[:300])
    assert reply.count(b"HTTP/1.1 ") == 1, reply[:300]  # one answer, nothing left to misparse
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    # The server is fine afterwards.
    conn = _conn(wire_sim)
    conn.request("GET", "/version", headers=_headers(wire_sim))
    assert conn.getresponse().status == 200
    conn.close()


@pytest.mark.parametrize("garbage", [b"GET /version HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x05hello",
                                     b"\x00" * 64])
def test_garbage_instead_of_tls_is_one_log_line(wire_sim: SimulatedClusters,
                                                capfd: pytest.CaptureFixture[str],
                                                garbage: bytes) -> None:
    with socket.create_connection(("127.0.0.1", _port(wire_sim)), timeout=5) as raw:
        raw.sendall(garbage)
        raw.settimeout(5)
        try:
            while raw.recv(4096):
                pass
        except (ConnectionResetError, TimeoutError):
            pass
    deadline = time.monotonic() + 3
    err = ""
    while time.monotonic() < deadline:
        err += capfd.readouterr().err
        if "TLS handshake error" in err:
            break
        time.sleep(0.05)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("http: TLS handshake error from 127.0.0.1:")
