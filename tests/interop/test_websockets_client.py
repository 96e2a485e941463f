"""Interop with the `websockets` library's synchronous client, over real sockets."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from interop_support import (
    BIG,
    BIG_TIMEOUT,
    SIZES,
    TIMEOUT,
    EchoTarget,
    describe,
    echo_target,
    payload,
    text_payload,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect


def client(url: str, **kwargs: Any) -> ClientConnection:
    """A client that accepts anything up to the server's own 16 MiB limit and
    never talks to a proxy or waits unboundedly."""
    kwargs.setdefault("max_size", 32 * 1024 * 1024)
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    kwargs.setdefault("ping_interval", None)
    return connect(url, proxy=None, compression=None, **kwargs)


def roundtrip(ws: ClientConnection, message: str | bytes, timeout: float = TIMEOUT) -> None:
    ws.send(message)
    echoed = ws.recv(timeout=timeout)
    assert type(echoed) is type(message), describe(echoed)
    assert len(echoed) == len(message), (describe(echoed), describe(message))
    assert echoed == message, f"echo of {describe(message)} differs"


# -- echo of every size boundary -------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_echo_sizes(echo: EchoTarget, kind: str, size: int) -> None:
    with client(echo.url) as ws:
        roundtrip(ws, payload(kind, size))


def test_echo_all_sizes_one_connection(echo: EchoTarget) -> None:
    """Back-to-back messages of alternating kinds on a single connection."""
    with client(echo.url) as ws:
        for i, size in enumerate(SIZES):
            roundtrip(ws, payload("text" if i % 2 else "binary", size, seed=i))
            roundtrip(ws, payload("binary" if i % 2 else "text", size, seed=i))


@pytest.mark.parametrize(
    "target,kind",
    [("c", "binary"), ("python", "text")],
    indirect=["target"],
)
def test_echo_just_under_limit(target: EchoTarget, kind: str) -> None:
    """16 MiB - 1 KiB: just under the default max_message_size."""
    with client(target.url) as ws:
        roundtrip(ws, payload(kind, BIG), timeout=BIG_TIMEOUT)


@pytest.fixture
def target(request: pytest.FixtureRequest) -> EchoTarget:
    """The echo server named by an indirect parameter."""
    if request.param == "c":
        echo_target: EchoTarget = EchoTarget("c", request.getfixturevalue("echo_server"), None)
        return echo_target
    py: EchoTarget = request.getfixturevalue("py_echo")
    return py


def test_pipelined_bulk(echo: EchoTarget) -> None:
    """Many small messages in flight at once come back complete and in order."""
    count = 5000
    with client(echo.url, max_queue=None) as ws:
        started = time.perf_counter()
        for i in range(count):
            ws.send(f"m{i}")
        for i in range(count):
            assert ws.recv(timeout=TIMEOUT) == f"m{i}"
        elapsed = time.perf_counter() - started
    print(f"\n[websockets bulk {echo.name}] {count} echoes in {elapsed:.3f} s "
          f"= {count / elapsed:,.0f} msg/s")


# -- fragmentation -------------------------------------------------------------------

@pytest.mark.parametrize(
    "fragments",
    [
        ["hello ", "wsuv", "", " ✓ 😀"],
        [b"\x00\x01", b"", b"\xff" * 200, b"end"],
        [text_payload(70_000, seed=1), text_payload(300, seed=2), text_payload(65_536, seed=3)],
        [bytes([i % 256]) * 1000 for i in range(300)],
    ],
    ids=["text", "binary", "text-large", "binary-300-frames"],
)
def test_fragmented_message_is_reassembled(echo: EchoTarget, fragments: list[Any]) -> None:
    with client(echo.url) as ws:
        ws.send(fragments)
        whole = fragments[0][:0].join(fragments)
        echoed = ws.recv(timeout=TIMEOUT)
        assert echoed == whole, f"got {describe(echoed)}, want {describe(whole)}"
        roundtrip(ws, "after the fragmented one")


# -- ping / pong -----------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"ping!", bytes(range(125))], ids=["0", "5", "125"])
def test_ping_gets_pong(echo: EchoTarget, data: bytes) -> None:
    with client(echo.url) as ws:
        pong = ws.ping(data)
        assert pong.wait(TIMEOUT), "no pong within the timeout"
        latency = ws.ping(data).wait(TIMEOUT)
        assert latency is not False
        roundtrip(ws, "still echoing")


# -- closing -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "code,reason",
    [(1000, ""), (1000, "done"), (4000, "app reason"), (4999, "fermé ✓")],
)
def test_client_close(echo: EchoTarget, code: int, reason: str) -> None:
    with client(echo.url) as ws:
        roundtrip(ws, "before close")
        ws.close(code, reason)
        rcvd = ws.protocol.close_rcvd
        assert rcvd is not None, "server did not answer the close frame"
        assert rcvd.code == code, "the server should echo the close code"
    if echo.handler is not None:
        closed = echo.handler.wait_closed()
        assert (closed.code, closed.reason) == (code, reason)


@pytest.mark.parametrize(
    "code,reason",
    [(1001, "going away"), (4001, "kicked"), (1000, "")],
)
def test_server_close(py_echo: EchoTarget, code: int, reason: str) -> None:
    url = py_echo.path_url(f"/server-close?code={code}&reason={reason.replace(' ', '+')}")
    with client(url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        rcvd = info.value.rcvd
        assert rcvd is not None, "no close frame from the server"
        assert (rcvd.code, rcvd.reason) == (code, reason)
        if code == 1000:
            assert isinstance(info.value, ConnectionClosedOK)
    closed = py_echo.handler.wait_closed() if py_echo.handler else None
    assert closed is not None and closed.code == code


def test_abrupt_client_close_is_1006(py_echo: EchoTarget) -> None:
    assert py_echo.handler is not None
    with client(py_echo.url) as ws:
        roundtrip(ws, "hi")
        ws.socket.shutdown(socket.SHUT_RDWR)  # FIN both ways, no close frame
        closed = py_echo.handler.wait_closed()
        assert closed.code == 1006


# -- handshake ---------------------------------------------------------------------

def test_subprotocol_negotiated(py_echo: EchoTarget) -> None:
    with client(py_echo.path_url("/subprotocol?choose=b"), subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"
        roundtrip(ws, "with a subprotocol")


def test_no_subprotocol_by_default(echo: EchoTarget) -> None:
    with client(echo.url, subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol is None
        roundtrip(ws, "without a subprotocol")


@pytest.mark.parametrize("status", [403, 404])
def test_rejected_handshake(py_echo: EchoTarget, status: int) -> None:
    with pytest.raises(InvalidStatus) as info:
        client(py_echo.path_url(f"/reject?status={status}"))
    assert info.value.response.status_code == status
    # The server keeps serving.
    with client(py_echo.url) as ws:
        roundtrip(ws, "after a rejection")


@pytest.mark.parametrize("server", ["c", "python"])
def test_graceful_stop_sends_1001(server: str) -> None:
    """Server.stop() (what SIGTERM does) closes every client with 1001."""
    with echo_target(server) as target, client(target.url) as ws1, client(target.url) as ws2:
        roundtrip(ws1, "one")
        roundtrip(ws2, "two")
        target.server.stop(graceful=True)
        for ws in (ws1, ws2):
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        if target.handler is not None:
            codes = [target.handler.wait_closed().code for _ in range(2)]
            assert codes == [1001, 1001]
