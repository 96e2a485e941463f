"""Interop with PyPI `websocket-client` (``import websocket``), over real sockets.

This client works frame by frame (``send_frame`` / ``recv_frame``), so it
also drives what a message-level client cannot: fragments that split UTF-8
sequences, control frames between fragments, and exact close frames.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from typing import Any

import pytest
import websocket
from interop_support import (
    BIG,
    BIG_TIMEOUT,
    SIZES,
    TIMEOUT,
    EchoHandler,
    EchoTarget,
    describe,
    payload,
    running_server,
    text_payload,
)
from websocket import ABNF, WebSocket, WebSocketBadStatusException

OP_TEXT, OP_BINARY, OP_CONT = ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT
OP_CLOSE, OP_PING, OP_PONG = ABNF.OPCODE_CLOSE, ABNF.OPCODE_PING, ABNF.OPCODE_PONG


def client(url: str, **kwargs: Any) -> WebSocket:
    kwargs.setdefault("timeout", TIMEOUT)  # every blocking socket call is bounded
    return websocket.create_connection(url, http_no_proxy=["127.0.0.1"], **kwargs)


def roundtrip(ws: WebSocket, message: str | bytes) -> None:
    if isinstance(message, str):
        ws.send(message)
    else:
        ws.send_binary(message)
    echoed = ws.recv()
    assert type(echoed) is type(message), describe(echoed)
    assert len(echoed) == len(message), (describe(echoed), describe(message))
    assert echoed == message, f"echo of {describe(message)} differs"


def read_close(ws: WebSocket) -> tuple[int | None, str]:
    """Read raw frames (no automatic reply) up to the close frame."""
    for _ in range(100):
        frame = ws.recv_frame()
        if frame.opcode == OP_CLOSE:
            data = frame.data
            if not data:
                return None, ""
            return struct.unpack("!H", data[:2])[0], data[2:].decode()
    raise AssertionError("no close frame among 100 frames")


def assert_server_closes_tcp(ws: WebSocket) -> None:
    """After the close handshake the server closes the TCP connection (RFC 6455 7.1.1)."""
    ws.sock.settimeout(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            if ws.sock.recv(65536) == b"":
                return
        except ConnectionResetError:
            return
    raise AssertionError("server kept the TCP connection open after the close handshake")


def frame(data: str | bytes, opcode: int, fin: int = 1) -> ABNF:
    return ABNF.create_frame(data, opcode, fin)


# -- echo of every size boundary -------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_echo_sizes(echo: EchoTarget, kind: str, size: int) -> None:
    ws = client(echo.url)
    try:
        roundtrip(ws, payload(kind, size))
    finally:
        ws.close()


@pytest.mark.parametrize("server,kind", [("c", "text"), ("python", "binary")])
def test_echo_just_under_limit(request: pytest.FixtureRequest, server: str, kind: str) -> None:
    """16 MiB - 1 KiB: just under the default max_message_size."""
    target: EchoTarget = (EchoTarget("c", request.getfixturevalue("echo_server"), None)
                          if server == "c" else request.getfixturevalue("py_echo"))
    # str.decode in recv() still checks the UTF-8; the pure-Python validator is slow.
    ws = client(target.url, timeout=BIG_TIMEOUT, skip_utf8_validation=True)
    try:
        roundtrip(ws, payload(kind, BIG))
    finally:
        ws.close()


def test_pipelined_bulk(echo: EchoTarget) -> None:
    count = 5000
    ws = client(echo.url)
    try:
        started = time.perf_counter()
        for i in range(count):
            ws.send_binary(i.to_bytes(4, "big"))
        for i in range(count):
            assert ws.recv() == i.to_bytes(4, "big")
        elapsed = time.perf_counter() - started
    finally:
        ws.close()
    print(f"\n[websocket-client bulk {echo.name}] {count} echoes in {elapsed:.3f} s "
          f"= {count / elapsed:,.0f} msg/s")


# -- fragmentation ---------------------------------------------------------------------

def send_fragments(ws: WebSocket, opcode: int, parts: list[bytes]) -> None:
    for i, part in enumerate(parts):
        ws.send_frame(frame(part, opcode if i == 0 else OP_CONT, int(i == len(parts) - 1)))


def test_fragmented_text_splits_utf8_sequences(echo: EchoTarget) -> None:
    """Fragment boundaries inside 2-, 3- and 4-byte characters."""
    text = "é€😀 wsuv " + text_payload(5000, seed=9)
    raw = text.encode()
    cuts = [1, 3, 5, 6, 8, 9, 100, 101, 2000, 2001, len(raw) - 1]
    parts = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    ws = client(echo.url)
    try:
        send_fragments(ws, OP_TEXT, parts)
        assert ws.recv() == text
    finally:
        ws.close()


def test_fragmented_binary_with_empty_fragments(echo: EchoTarget) -> None:
    data = payload("binary", 200_000, seed=4)
    parts = [b"", data[:1], b"", data[1:70_000], data[70_000:], b""]
    ws = client(echo.url)
    try:
        send_fragments(ws, OP_BINARY, parts)
        assert ws.recv() == data
    finally:
        ws.close()


def test_fragmented_large_message(echo: EchoTarget) -> None:
    data = payload("binary", 3 * 1024 * 1024, seed=5)
    step = 256 * 1024
    ws = client(echo.url)
    try:
        send_fragments(ws, OP_BINARY, [data[i:i + step] for i in range(0, len(data), step)])
        assert ws.recv() == data
    finally:
        ws.close()


def test_ping_between_fragments(echo: EchoTarget) -> None:
    """Control frames may be injected in the middle of a fragmented message (RFC 6455 5.4)."""
    ws = client(echo.url)
    try:
        ws.send_frame(frame(b"first ", OP_TEXT, 0))
        ws.ping(b"in the middle")
        ws.send_frame(frame(b"second ", OP_CONT, 0))
        ws.send_frame(frame(b"third", OP_CONT, 1))
        got = [ws.recv_data(control_frame=True) for _ in range(2)]
        assert got == [(OP_PONG, b"in the middle"), (OP_TEXT, b"first second third")]
    finally:
        ws.close()


def test_many_small_fragments(echo: EchoTarget) -> None:
    """1000 fragments stay under the default max_fragments (10000)."""
    parts = [bytes([i % 256]) * 3 for i in range(1000)]
    ws = client(echo.url)
    try:
        send_fragments(ws, OP_BINARY, parts)
        assert ws.recv() == b"".join(parts)
    finally:
        ws.close()


# -- ping / pong -----------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"ping!", bytes(range(125))], ids=["0", "5", "125"])
def test_ping_gets_pong(echo: EchoTarget, data: bytes) -> None:
    ws = client(echo.url)
    try:
        for _ in range(3):
            ws.ping(data)
            assert ws.recv_data(control_frame=True) == (OP_PONG, data)
        roundtrip(ws, "still echoing")
    finally:
        ws.close()


def test_unsolicited_pong_is_ignored(echo: EchoTarget) -> None:
    ws = client(echo.url)
    try:
        ws.pong(b"nobody asked")
        roundtrip(ws, b"after an unsolicited pong")
    finally:
        ws.close()


# -- closing ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "code,reason",
    [(1000, ""), (1000, "bye"), (4000, "app reason"), (4321, "fermé ✓")],
)
def test_client_close(echo: EchoTarget, code: int, reason: str) -> None:
    ws = client(echo.url)
    try:
        roundtrip(ws, "before close")
        ws.send_close(code, reason.encode())
        got_code, _ = read_close(ws)
        assert got_code == code, "the server should echo the close code"
        assert_server_closes_tcp(ws)
    finally:
        ws.shutdown()
    if echo.handler is not None:
        closed = echo.handler.wait_closed()
        assert (closed.code, closed.reason) == (code, reason)


def test_client_close_without_code(py_echo: EchoTarget) -> None:
    """An empty close frame: on_close reports 1005 (no status received)."""
    assert py_echo.handler is not None
    ws = client(py_echo.url)
    try:
        ws.send_frame(frame(b"", OP_CLOSE))
        read_close(ws)
        assert_server_closes_tcp(ws)
    finally:
        ws.shutdown()
    assert py_echo.handler.wait_closed().code == 1005


def test_client_close_high_level(py_echo: EchoTarget) -> None:
    """websocket-client's own close(): sends, waits for the reply, shuts down."""
    assert py_echo.handler is not None
    ws = client(py_echo.url)
    roundtrip(ws, "x")
    ws.close(status=4000, reason=b"see you")
    assert not ws.connected
    closed = py_echo.handler.wait_closed()
    assert (closed.code, closed.reason) == (4000, "see you")


@pytest.mark.parametrize("code,reason", [(1001, "going away"), (4001, "kicked")])
def test_server_close(py_echo: EchoTarget, code: int, reason: str) -> None:
    assert py_echo.handler is not None
    url = py_echo.path_url(f"/server-close?code={code}&reason={reason.replace(' ', '+')}")
    ws = client(url)
    try:
        assert read_close(ws) == (code, reason)
        ws.send_close(code, reason.encode())  # echo it, as RFC 6455 5.5.1 suggests
        assert_server_closes_tcp(ws)
    finally:
        ws.shutdown()
    closed = py_echo.handler.wait_closed()
    assert closed.code == code


def close_on_message(py_echo: EchoTarget) -> tuple[WebSocket, list[int]]:
    """The server closes (4001) on the first message while the client keeps
    streaming 40 more; returns the client and the opcodes seen before the close."""
    ws = client(py_echo.path_url("/close-on-message?code=4001&reason=enough"))
    chunk = payload("binary", 64 * 1024)
    for _ in range(41):
        ws.send_binary(chunk)
    opcodes = []
    for _ in range(100):
        f = ws.recv_frame()
        opcodes.append(f.opcode)
        if f.opcode == OP_CLOSE:
            assert struct.unpack("!H", f.data[:2])[0] == 4001 and f.data[2:] == b"enough"
            break
    return ws, opcodes


def test_server_closes_while_client_streams(py_echo: EchoTarget) -> None:
    assert py_echo.handler is not None
    ws, opcodes = close_on_message(py_echo)
    try:
        assert opcodes == [OP_CLOSE], "no data frame may follow or replace the close frame"
        ws.send_close(4001, b"enough")
        assert_server_closes_tcp(ws)
    finally:
        ws.shutdown()
    assert py_echo.handler.wait_closed().code == 4001
    assert py_echo.handler.late_messages <= 40
    assert [outcome for _, outcome in py_echo.handler.seen_after_close] == ["ConnectionClosed"]


def test_closed_property_once_send_raises(py_echo: EchoTarget) -> None:
    assert py_echo.handler is not None
    ws, _ = close_on_message(py_echo)
    ws.send_close(4001, b"enough")
    ws.shutdown()
    py_echo.handler.wait_closed()
    assert py_echo.handler.seen_after_close == [(True, "ConnectionClosed")]


@pytest.mark.parametrize("server", ["c", "python"])
def test_message_over_limit_is_1009(server: str) -> None:
    """With max_message_size=1000: 1000 bytes echo; 1001 bytes, whole or in
    fragments, get close 1009 that the client can read."""
    handler = EchoHandler() if server == "python" else None
    with running_server(handler, max_message_size=1000) as srv:
        url = f"ws://127.0.0.1:{srv.port}/"
        ws = client(url)
        try:
            roundtrip(ws, payload("binary", 1000))
            roundtrip(ws, payload("text", 1000))
        finally:
            ws.close()
        if handler is not None:
            assert handler.wait_closed().code == 1000
        for parts in ([b"x" * 1001], [b"x" * 400, b"y" * 400, b"z" * 201]):
            ws = client(url)
            try:
                with contextlib.suppress(OSError):  # the server may stop reading first
                    send_fragments(ws, OP_BINARY, parts)
                assert read_close(ws)[0] == 1009
            finally:
                ws.shutdown()
            if handler is not None:
                assert handler.wait_closed().code == 1009


@pytest.mark.parametrize("how", ["fin", "rst", "fin-mid-message"])
def test_abrupt_client_close_is_1006(py_echo: EchoTarget, how: str) -> None:
    assert py_echo.handler is not None
    ws = client(py_echo.url)
    roundtrip(ws, "hi")
    sock = ws.sock
    if how == "rst":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif how == "fin-mid-message":
        ws.send_frame(frame(b"half a mess", OP_TEXT, 0))
    if how != "rst":
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    closed = py_echo.handler.wait_closed()
    assert closed.code == 1006


# -- handshake -------------------------------------------------------------------------

def test_subprotocol_negotiated(py_echo: EchoTarget) -> None:
    ws = client(py_echo.path_url("/subprotocol?choose=b"), subprotocols=["a", "b"])
    try:
        assert ws.getsubprotocol() == "b"
        assert ws.getheaders()["sec-websocket-protocol"] == "b"
        roundtrip(ws, "with a subprotocol")
    finally:
        ws.close()


@pytest.mark.parametrize("status", [403, 404])
def test_rejected_handshake(py_echo: EchoTarget, status: int) -> None:
    with pytest.raises(WebSocketBadStatusException) as info:
        client(py_echo.path_url(f"/reject?status={status}"))
    assert info.value.status_code == status
    ws = client(py_echo.url)
    try:
        roundtrip(ws, "after a rejection")
    finally:
        ws.close()
