"""The facade's HTTP front (rest_facade/serving): slow, idle, half-sent and
oversize requests cost other callers nothing; every answer the front writes
itself is Coder's envelope; keep-alive, pipelining, 100-continue and chunked
bodies work; WebSockets are carried without a thread each."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import websocket

from rest_facade.serve import running_front
from tests.rest_facade._live import wait_until

API = "/api/v2/workspaceagents"
ENVELOPE = "application/json; charset=utf-8"


@pytest.fixture
def settings(settings):
    # Room for the megabytes a stuck follower must be sent before it stalls.
    return dataclasses.replace(settings, agent_logs_limit_bytes=64 << 20)


@pytest.fixture
def front_settings(settings):
    return dataclasses.replace(
        settings,
        http_header_timeout_seconds=1.0,
        http_body_timeout_seconds=1.5,
        http_idle_timeout_seconds=1.0,
        http_write_timeout_seconds=1.0,
        max_body_bytes=64 << 10,
        facade_threads=4,
    )


@pytest.fixture
def front(front_settings, core) -> Iterator:
    with running_front(front_settings, core.address) as running:
        yield running


def _addr(front) -> tuple[str, int]:
    parts = urlsplit(front.url)
    return parts.hostname, parts.port


def _connect(front) -> socket.socket:
    sock = socket.create_connection(_addr(front), timeout=10)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole answer read off a raw socket (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def _closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    return True


def _get(front, path: str, token: str | None = None, timeout: float = 10) -> tuple[int, dict]:
    host, port = _addr(front)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Coder-Session-Token": token} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


# -- slow and half-sent clients ----------------------------------------------


def test_half_sent_requests_hold_nothing_of_other_callers(front, provision) -> None:
    """The defect: 64 connections that send part of a request froze every
    other REST call (each held one of 64 threads). Here 200 of each kind
    stay open while a normal client's calls succeed, every one."""
    ws = provision.workspace()
    held = []
    try:
        for _ in range(200):
            sock = _connect(front)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            held.append(sock)
        for _ in range(200):
            sock = _connect(front)
            sock.sendall(
                b"PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 1000\r\n\r\n0123456789"
            )
            held.append(sock)
        for _ in range(20):
            status, body = _get(front, f"{API}/{ws.agent('main').id}", ws.api_key, timeout=5)
            assert status == 200 and body["id"] == ws.agent("main").id
    finally:
        for sock in held:
            sock.close()


def test_a_head_that_never_ends_is_answered_408_and_closed(front) -> None:
    sock = _connect(front)
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        status, headers, body = _read_response(sock)
        assert status == 408 and headers["content-type"] == ENVELOPE
        assert json.loads(body) == {"message": "Timed out reading the request headers."}
        assert _closed_by_server(sock)


def test_a_trickled_head_is_cut_at_the_header_timeout(front) -> None:
    """A byte every 0.2 s never lets an idle-gap timer fire; the head must
    still be whole within the header timeout of its first byte."""
    sock = _connect(front)
    with sock:
        started = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) if _readable(sock) else b"":
                break
            threading.Event().wait(0.2)  # a slow client, not synchronisation
        status, _headers, _body = _read_response(sock)
        assert status == 408
        assert time.monotonic() - started < 30


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_a_body_that_never_ends_is_answered_408(front) -> None:
    sock = _connect(front)
    with sock:
        sock.sendall(
            b"PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000\r\n\r\n0123456789"
        )
        status, _headers, body = _read_response(sock)
        assert status == 408
        assert json.loads(body)["message"] == "Timed out reading the request body."


def test_an_idle_keepalive_connection_is_closed(front) -> None:
    sock = _connect(front)
    with sock:
        sock.sendall(b"GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _headers, _body = _read_response(sock)
        assert status in (200, 404)
        assert _closed_by_server(sock)


# -- bodies -------------------------------------------------------------------


def _logs_of(front, ws) -> list:
    status, body = _get(front, f"{API}/{ws.agent('main').id}/logs", ws.api_key)
    assert status == 200
    return body


def test_a_declared_body_over_the_cap_is_413_before_it_is_read(front, provision) -> None:
    ws = provision.workspace()
    sock = _connect(front)
    with sock:
        sock.sendall(
            b"PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: x\r\n"
            b"Coder-Session-Token: " + ws.agent("main").auth_token.encode() + b"\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        status, headers, body = _read_response(sock)
        assert status == 413 and headers["content-type"] == ENVELOPE
        assert json.loads(body)["message"] == "Request body too large."


def test_a_chunked_body_over_the_cap_is_413_and_stores_nothing(front, provision) -> None:
    """Chunked framing does not get around the cap (it used to be read up to
    the cap and then answered 400, or 200 when the JSON ended early)."""
    ws = provision.workspace()
    line = json.dumps({"output": "x" * 1000})
    payload = ('{"logs": [' + ",".join([line] * 200) + "]}").encode()
    assert len(payload) > 64 << 10
    sock = _connect(front)
    with sock:
        sock.sendall(
            b"PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: x\r\n"
            b"Coder-Session-Token: " + ws.agent("main").auth_token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            for start in range(0, len(payload), 8192):
                piece = payload[start : start + 8192]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        status, _headers, body = _read_response(sock)
    assert status == 413 and json.loads(body)["message"] == "Request body too large."
    assert _logs_of(front, ws) == []


def test_a_chunked_body_under_the_cap_is_served(front, provision) -> None:
    ws = provision.workspace()
    payload = json.dumps({"logs": [{"output": "chunked"}]}).encode()
    sock = _connect(front)
    with sock:
        sock.sendall(
            b"PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: x\r\n"
            b"Coder-Session-Token: " + ws.agent("main").auth_token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n"
            % (len(payload), payload)
        )
        status, _headers, body = _read_response(sock)
    assert (status, body) == (200, b"null\n")
    assert [log["output"] for log in _logs_of(front, ws)] == ["chunked"]


def test_expect_100_continue(front, provision) -> None:
    ws = provision.workspace()
    payload = json.dumps({"logs": [{"output": "after 100"}]}).encode()
    sock = _connect(front)
    with sock:
        sock.sendall(
            b"PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: x\r\n"
            b"Coder-Session-Token: " + ws.agent("main").auth_token.encode() + b"\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(payload)
        )
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(payload)
        status, _headers, _body = _read_response(sock)
    assert status == 200


# -- malformed requests --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 << 10) + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_get_the_envelope(front, raw, status) -> None:
    sock = _connect(front)
    with sock:
        with contextlib.suppress(OSError):
            sock.sendall(raw)
        got, headers, body = _read_response(sock)
    assert got == status and headers["content-type"] == ENVELOPE
    assert "message" in json.loads(body)


def test_keepalive_and_pipelining(front, provision) -> None:
    ws = provision.workspace()
    path = f"{API}/{ws.agent('main').id}".encode()
    one = b"GET %s HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: %s\r\n\r\n" % (
        path,
        ws.api_key.encode(),
    )
    sock = _connect(front)
    with sock:
        sock.sendall(one * 3)
        for _ in range(3):
            status, _headers, body = _read_response(sock)
            assert status == 200 and json.loads(body)["id"] == ws.agent("main").id


# -- Coder's envelope for what the framework answered itself -----------------


def test_framework_answers_are_coder_envelopes(front, provision) -> None:
    ws = provision.workspace()
    host, port = _addr(front)

    def request(method: str, path: str, headers: dict | None = None) -> tuple[int, dict, dict]:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            assert resp.getheader("Content-Type") == ENVELOPE, (method, path, raw)
            return resp.status, json.loads(raw), {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    # A WebSocket upgrade on a route that is not one: answered as plain HTTP.
    status, body, _ = request(
        "GET",
        f"{API}/{ws.agent('main').id}",
        {
            "Coder-Session-Token": ws.api_key,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    assert status == 200 and body["id"] == ws.agent("main").id
    # Doubled slashes: never a redirect with an HTML body.
    assert request("GET", f"/api/v2//workspaceagents/{ws.agent('main').id}")[:2] == (
        404,
        {"message": "Route not found."},
    )
    assert request("GET", f"/{API}/{ws.agent('main').id}")[0] == 401
    status, body, headers = request("OPTIONS", f"{API}/me/logs")
    assert (status, body) == (405, {"message": "Method not allowed."})
    assert "PATCH" in headers["allow"]
    assert request("GET", f"{API}/me/logs")[:2] == (405, {"message": "Method not allowed."})


# -- WebSockets ----------------------------------------------------------------


def _follow(front, ws_obj, **kw) -> websocket.WebSocket:
    url = front.url.replace("http://", "ws://") + f"{API}/{ws_obj.agent('main').id}/logs?follow"
    return websocket.create_connection(
        url, header=[f"Coder-Session-Token: {ws_obj.api_key}"], timeout=10, **kw
    )


def test_many_follows_hold_no_thread_each(front, provision) -> None:
    """More WebSocket follows than the facade has worker threads (4 here)
    stay open together while ordinary requests are still served."""
    ws = provision.workspace()
    before = threading.active_count()
    followers = [_follow(front, ws) for _ in range(40)]
    try:
        for follower in followers:
            assert json.loads(follower.recv()) == []
        assert threading.active_count() - before <= 8
        status, _body = _get(front, f"{API}/{ws.agent('main').id}", ws.api_key)
        assert status == 200
    finally:
        for follower in followers:
            follower.close()


def test_a_follower_that_leaves_ends_its_core_stream(front, provision, core) -> None:
    from server.pubsub import AGENT_LOGS

    ws = provision.workspace()
    agent_id = ws.agent("main").id
    follower = _follow(front, ws)
    assert json.loads(follower.recv()) == []
    wait_until(lambda: core.db.pubsub.subscribers(AGENT_LOGS, agent_id) == 1, what="subscribed")
    follower.shutdown()
    wait_until(
        lambda: core.db.pubsub.subscribers(AGENT_LOGS, agent_id) == 0,
        what="the core stream to end after the client left",
    )


def test_a_follower_that_sends_data_is_closed_1008(front, provision) -> None:
    """The follow only writes; data from the client closes it (as
    coder/websocket's CloseRead does)."""
    ws = provision.workspace()
    follower = _follow(front, ws)
    assert json.loads(follower.recv()) == []
    follower.send("hello")
    while True:
        opcode, data = follower.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    assert int.from_bytes(data[:2], "big") == 1008
    follower.shutdown()


def test_a_follower_that_stops_reading_is_dropped(front_settings, core, provision) -> None:
    """A client that takes nothing is dropped once a frame cannot be written
    for the write timeout; the others keep their stream."""
    from server.pubsub import AGENT_LOGS

    settings = dataclasses.replace(front_settings, max_body_bytes=4 << 20)
    ws = provision.workspace()
    agent_id, token = ws.agent("main").id, ws.agent("main").auth_token
    with running_front(settings, core.address) as running:
        stuck = _follow(running, ws)
        stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert json.loads(stuck.recv()) == []
        healthy = _follow(running, ws)
        assert json.loads(healthy.recv()) == []
        host, port = _addr(running)
        big = json.dumps({"logs": [{"output": "y" * 1000} for _ in range(300)]})
        # Far more than the socket buffers and the front's write buffer hold.
        for _ in range(20):
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request(
                "PATCH", f"{API}/me/logs", body=big, headers={"Coder-Session-Token": token}
            )
            assert conn.getresponse().status == 200
            conn.close()
            assert len(json.loads(healthy.recv())) == 300
        wait_until(
            lambda: core.db.pubsub.subscribers(AGENT_LOGS, agent_id) == 1,
            timeout=20,
            what="the stuck follower to be dropped",
        )
        healthy.close()
        stuck.close()


def test_connection_limit_answers_503(front_settings, core) -> None:
    settings = dataclasses.replace(front_settings, http_max_connections=5)
    with running_front(settings, core.address) as running:
        held = [_connect(running) for _ in range(5)]
        try:
            wait_until(lambda: running.front.connection_count == 5, what="5 connections")
            extra = _connect(running)
            with extra:
                status, headers, _body = _read_response(extra)
            assert status == 503 and headers["content-type"] == ENVELOPE
        finally:
            for sock in held:
                sock.close()
