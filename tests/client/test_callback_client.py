"""The callback-style client: Handler methods on dialled connections
(wsuv.connect / wsuv.Client / Server.connect / AioServer.connect)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import pytest
from clientkit import LIMIT, raw_server, read_head, run_bounded, running_server, websockets_server

import wsuv
import wsuv.aio
from wsuv.exceptions import InvalidHandshake, InvalidStatus, InvalidURI


class Script(wsuv.Handler):
    """Sends ``messages`` one at a time, records echoes, closes when done."""

    def __init__(self, messages: list[Any], close_code: int = 1000) -> None:
        self.messages = list(messages)
        self.received: list[Any] = []
        self.events: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.failure: BaseException | None = None
        self.close_code = close_code

    def on_open(self, ws: wsuv.WebSocket) -> None:
        self.events.append("open")
        self.ws = ws
        self._next(ws)

    def _next(self, ws: wsuv.WebSocket) -> None:
        if len(self.received) < len(self.messages):
            ws.send(self.messages[len(self.received)])
        else:
            ws.close(self.close_code, "done")

    def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
        self.received.append(message)
        self._next(ws)

    def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
        self.events.append("close")
        self.closed = (code, reason)

    def on_connect_failed(self, ws: wsuv.WebSocket, error: BaseException) -> None:
        self.events.append("failed")
        self.failure = error
        self.ws = ws


MESSAGES = ["", "a", "é" * 1000, b"", b"\x00\xff" * 40000, "x" * (1 << 20), b"y" * (3 << 20)]


def test_echo_against_wsuv_c_echo() -> None:
    with running_server(None) as srv:
        h = Script(MESSAGES)
        client = wsuv.connect(f"ws://127.0.0.1:{srv.port}/echo?x=1", h)
        run_bounded(client)
    assert h.received == MESSAGES
    assert h.events == ["open", "close"]
    assert h.closed is not None and h.closed[0] == 1000
    assert h.ws.response.status == 101
    assert h.ws.extensions == ["permessage-deflate; client_max_window_bits=14"]
    assert h.ws.path == "/echo" and h.ws.query == "x=1"
    assert h.ws.closed and h.ws.close_code == 1000


def test_against_websockets_server_subprotocol_headers_deflate() -> None:
    seen: dict[str, Any] = {}

    async def echo(conn: Any) -> None:
        seen["headers"] = {k: conn.request.headers[k] for k in ("X-Token", "Origin")}
        async for m in conn:
            await conn.send(m)

    with websockets_server(echo, subprotocols=["b"]) as url:
        h = Script(["one", b"two", "t" * 70000])
        client = wsuv.connect(url + "/chat", h, subprotocols=["a", "b"], origin="http://o.test",
                              additional_headers={"X-Token": "t1"})
        run_bounded(client)
    assert h.received == ["one", b"two", "t" * 70000]
    assert h.ws.subprotocol == "b"
    assert h.ws.extensions and h.ws.extensions[0].startswith("permessage-deflate")
    assert seen["headers"]["X-Token"] == "t1"
    assert seen["headers"]["Origin"] == "http://o.test"


def test_compression_none_offers_nothing() -> None:
    with running_server(None) as srv:
        h = Script(["z" * 1000])
        run_bounded(wsuv.connect(f"ws://127.0.0.1:{srv.port}/", h, compression=None))
    assert h.ws.extensions == [] and h.received == ["z" * 1000]


def test_server_serves_and_dials_itself_on_one_loop() -> None:
    """One Server: accepted connections echo, dialled ones (same handler) count."""

    class Both(wsuv.Handler):
        def __init__(self) -> None:
            self.client_got: list[str] = []
            self.server_closed: list[int] = []
            self.threads: set[int] = set()

        def on_open(self, ws: wsuv.WebSocket) -> None:
            self.threads.add(threading.get_ident())
            if ws.response is not None:  # the side we dialled
                ws.send("ping-1")

        def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
            self.threads.add(threading.get_ident())
            if ws.response is None:
                ws.send(message)
            else:
                self.client_got.append(message)
                if len(self.client_got) < 50:
                    ws.send(f"ping-{len(self.client_got) + 1}")
                else:
                    ws.close(4001, "enough")

        def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
            if ws.response is None:
                self.server_closed.append(code)
                ws.server.stop()

    h = Both()
    srv = wsuv.Server(h, port=0, handle_signals=False)
    srv.listen()
    ws = srv.connect(f"ws://127.0.0.1:{srv.port}/")
    assert isinstance(ws, wsuv.WebSocket) and ws.response is None
    timer = threading.Timer(LIMIT, srv.stop, (False,))
    timer.start()
    try:
        srv.run()
    finally:
        timer.cancel()
    assert h.client_got == [f"ping-{i}" for i in range(1, 51)]
    assert h.server_closed == [4001]
    assert len(h.threads) == 1  # everything ran on the one loop thread


def test_server_connect_with_its_own_handler_and_pongs() -> None:
    """A server handler without on_pong; the dialled handler's on_pong still fires."""

    class Plain(wsuv.Handler):
        def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
            ws.send(message)

    class Pinger(wsuv.Handler):
        pongs: list[bytes] = []

        def on_open(self, ws: wsuv.WebSocket) -> None:
            ws.ping(b"abc")

        def on_pong(self, ws: wsuv.WebSocket, data: bytes) -> None:
            self.pongs.append(data)
            ws.close()

        def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
            ws.server.stop()

    srv = wsuv.Server(Plain(), port=0, handle_signals=False)
    srv.listen()
    p = Pinger()
    srv.connect(f"ws://127.0.0.1:{srv.port}/", p)
    timer = threading.Timer(LIMIT, srv.stop, (False,))
    timer.start()
    try:
        srv.run()
    finally:
        timer.cancel()
    assert p.pongs == [b"abc"]


def test_connect_from_another_thread_while_the_server_runs() -> None:
    with running_server(None) as echo:
        h = Script(["from a thread"])

        class Host(wsuv.Handler):
            def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
                pass

        with running_server(Host()) as host:
            running = threading.Event()
            host.call_soon_threadsafe(running.set)  # run() has started in its thread
            assert running.wait(LIMIT)
            ws = host.connect(f"ws://127.0.0.1:{echo.port}/", h)
            assert isinstance(ws, wsuv.WebSocket)
            deadline = time.monotonic() + LIMIT
            while h.closed is None and time.monotonic() < deadline:
                time.sleep(0.01)
    assert h.received == ["from a thread"] and h.closed is not None and h.closed[0] == 1000


@pytest.mark.parametrize("kind", ["refused", "dns", "403", "bad-accept", "timeout"])
def test_failures_reach_on_connect_failed(kind: str) -> None:
    def refuse(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nX-Why: no\r\n\r\nnope")

    def bad_accept(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n")
        conn.recv(10)

    def silent(conn: socket.socket) -> None:
        read_head(conn)
        conn.settimeout(5)
        conn.recv(10)  # until the client gives up

    options: dict[str, Any] = {}
    if kind == "timeout":
        options["open_timeout"] = 0.3
    h = Script(["never"])
    if kind == "refused":
        from clientkit import free_port

        run_bounded(wsuv.connect(f"ws://127.0.0.1:{free_port()}/", h))
    elif kind == "dns":
        run_bounded(wsuv.connect("ws://no-such-host.invalid/", h))
    else:
        script = {"403": refuse, "bad-accept": bad_accept, "timeout": silent}[kind]
        with raw_server(script) as url:
            elapsed = run_bounded(wsuv.connect(url, h, **options))
        if kind == "timeout":
            assert 0.25 < elapsed < 3
    assert h.events == ["failed"]
    err = h.failure
    expected = {"refused": ConnectionRefusedError, "dns": socket.gaierror, "403": InvalidStatus,
                "bad-accept": InvalidHandshake, "timeout": TimeoutError}[kind]
    assert isinstance(err, expected), repr(err)
    if kind == "403":
        assert isinstance(err, InvalidStatus)
        assert err.status == 403 and err.body == b"nope" and err.headers["X-Why"] == "no"
    if kind == "bad-accept":
        assert "Sec-WebSocket-Accept" in str(err)
    assert h.ws.closed
    assert (h.ws.response is not None) == (kind == "403")


def test_without_on_connect_failed_run_raises_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    from clientkit import free_port

    class NoFail(wsuv.Handler):
        def on_open(self, ws: wsuv.WebSocket) -> None:
            ws.close()

    port = free_port()
    with caplog.at_level(logging.ERROR, logger="wsuv"):
        with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{port}"):
            run_bounded(wsuv.connect(f"ws://127.0.0.1:{port}/", NoFail()))
    assert any("connection refused" in r.getMessage() for r in caplog.records)


def test_close_before_open_cancels_after_the_callback_returns() -> None:
    """ws.close() on a connection still in its handshake gives it up; its
    on_connect_failed comes after the calling callback returned (deferred like
    on_close), never inside close()."""

    def silent(conn: socket.socket) -> None:
        read_head(conn)
        conn.settimeout(5)
        conn.recv(10)

    order: list[str] = []

    class Slow(wsuv.Handler):
        def on_open(self, ws: wsuv.WebSocket) -> None:
            pass

        def on_connect_failed(self, ws: wsuv.WebSocket, error: BaseException) -> None:
            order.append(f"failed {type(error).__name__} {getattr(error, 'errno', None)}")

    class Fast(wsuv.Handler):
        def on_open(self, ws: wsuv.WebSocket) -> None:
            order.append("fast open")
            slow_ws.close()
            order.append("close returned")
            ws.close()

    with running_server(None) as echo, raw_server(silent) as slow_url:
        client = wsuv.Client(Slow(), open_timeout=5)
        slow_ws = client.connect(slow_url)
        time.sleep(0.2)  # its request is out before the fast one opens
        client.connect(f"ws://127.0.0.1:{echo.port}/", Fast())
        elapsed = run_bounded(client)
    assert order == ["fast open", "close returned", "failed OSError 125"], order
    assert elapsed < 4


def test_reconnect_from_a_timer_keeps_run_going() -> None:
    """run() returns only when no connection, timer or call is left."""
    with running_server(None) as srv:
        url = f"ws://127.0.0.1:{srv.port}/"
        opens: list[float] = []

        class Again(wsuv.Handler):
            def on_open(self, ws: wsuv.WebSocket) -> None:
                opens.append(time.monotonic())
                ws.close()

            def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
                if len(opens) < 3:
                    ws.server.call_later(0.1, ws.server.connect, url)

        t0 = time.monotonic()
        run_bounded(wsuv.connect(url, Again()))
    assert len(opens) == 3
    assert opens[2] - t0 >= 0.2


def test_stop_closes_open_client_connections_with_1001() -> None:
    with running_server(None) as srv:
        got: list[int] = []

        class Idle(wsuv.Handler):
            def on_open(self, ws: wsuv.WebSocket) -> None:
                ws.server.call_later(0.05, ws.server.stop)

            def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
                got.append(code)

        run_bounded(wsuv.connect(f"ws://127.0.0.1:{srv.port}/", Idle()))
    assert got == [1001]


def test_send_before_open_says_so() -> None:
    def silent(conn: socket.socket) -> None:
        read_head(conn)

    with raw_server(silent) as url:
        client = wsuv.Client(wsuv.Handler())
        ws = client.connect(url)
        with pytest.raises(wsuv.ConnectionClosed, match="not open yet"):
            ws.send("early")
        client.close()


class _Any(wsuv.Handler):
    def on_open(self, ws: wsuv.WebSocket) -> None:
        ws.close()


def _misuse(call: Any) -> str:
    with pytest.raises((TypeError, ValueError, InvalidURI)) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith((")", ".", "'", "]")) or len(msg) > 20
    return msg


def test_misuse_is_one_sentence() -> None:
    class Async(wsuv.Handler):
        async def on_message(self, ws: Any, m: Any) -> None:  # type: ignore[override]
            pass

    class AsyncFailed(wsuv.Handler):
        async def on_connect_failed(self, ws: Any, e: Any) -> None:
            pass

    assert "wss:// URL" in _misuse(lambda: wsuv.connect("ws://x.test/", _Any(),
                                                        ssl_insecure_skip_verify=True))
    assert "the URL is a str" in _misuse(lambda: wsuv.connect(123, _Any()))  # type: ignore
    assert "not a WebSocket URL" in _misuse(lambda: wsuv.connect("http://x/", _Any()))
    assert "wsuv.Handler" in _misuse(lambda: wsuv.connect("ws://x.test/", 42))
    assert "wsuv.Handler" in _misuse(lambda: wsuv.connect("ws://x.test/", None))
    assert "async function" in _misuse(lambda: wsuv.connect("ws://x.test/", Async()))
    assert "async function" in _misuse(lambda: wsuv.connect("ws://x.test/", AsyncFailed()))
    assert "does not listen" in _misuse(lambda: wsuv.Client(_Any(), port=80))
    assert "compression" in _misuse(lambda: wsuv.connect("ws://x.test/", _Any(),
                                                         compression="gzip"))
    assert "subprotocols" in _misuse(lambda: wsuv.connect("ws://x.test/", _Any(),
                                                          subprotocols="chat"))
    assert "unknown server option" in _misuse(lambda: wsuv.connect("ws://x.test/", _Any(),
                                                                   bogus=1))
    client = wsuv.Client(_Any())
    assert "does not listen" in _misuse(client.listen)
    client.close()
    echo = wsuv.Server(None, port=0, handle_signals=False)
    assert "built-in C echo" in _misuse(lambda: echo.connect("ws://127.0.0.1:1/"))
    assert "built-in" in _misuse(lambda: echo.connect("ws://127.0.0.1:1/", _Any()))
    echo.close()
    assert "not both" in _misuse(lambda: wsuv.Client(_Any(), open_timeout=1,
                                                     handshake_timeout=1))


def test_run_twice_is_refused() -> None:
    client = wsuv.Client(_Any())
    client.run()  # nothing to do: returns at once
    with pytest.raises(RuntimeError, match="runs once"):
        client.run()


def test_aio_server_dials_in_the_callback_style(run: Any) -> None:
    with running_server(None) as echo:
        h = Script(["x", b"y" * 100000])

        async def main() -> None:
            async def conn_handler(ws: Any) -> None:
                await ws.recv()

            async with wsuv.aio.serve(conn_handler, port=0) as server:
                ws = server.connect(f"ws://127.0.0.1:{echo.port}/", h)
                assert isinstance(ws, wsuv.WebSocket)
                for _ in range(1000):
                    if h.closed is not None:
                        break
                    await asyncio.sleep(0.01)
                with pytest.raises(TypeError, match="plain def"):
                    server.connect("ws://127.0.0.1:1/", conn_handler)

        run(main())
    assert h.received == ["x", b"y" * 100000] and h.closed is not None and h.closed[0] == 1000


def test_aio_client_hosts_callback_connections_without_listening(run: Any) -> None:
    with running_server(None) as echo:
        h = Script(["a", b"b" * 70000, "c"])
        seen: dict[str, Any] = {}

        async def main() -> None:
            async with wsuv.aio.client(h, open_timeout=5) as client:
                assert client.addresses == [] and client.port is None
                ws = client.connect(f"ws://127.0.0.1:{echo.port}/")
                seen["ws"] = ws
                for _ in range(1000):
                    if h.closed is not None:
                        break
                    await asyncio.sleep(0.01)
                failing = Script([])
                client.connect("ws://no-such-host.invalid/", failing)
                for _ in range(1000):
                    if failing.failure is not None:
                        break
                    await asyncio.sleep(0.01)
                seen["failure"] = failing.failure
                seen["failed_ws"] = failed_ws = failing.ws
                # Never opened: closed with 1006 and the error's sentence.
                assert failed_ws is not None and failed_ws.closed
                assert failed_ws.close_code == 1006 and "no-such-host" in failed_ws.close_reason

            async def conn_handler(ws: Any) -> None:
                pass

            with pytest.raises(TypeError, match="coroutine function"):
                wsuv.aio.client(conn_handler)._start()

        run(main())
    assert h.received == ["a", b"b" * 70000, "c"] and h.closed is not None
    assert seen["ws"].closed
    assert isinstance(seen["failure"], socket.gaierror)


def test_aio_client_runs_async_handler_methods(run: Any) -> None:
    """async def methods on wsuv.aio.client: on_open, each on_message and on_close
    in order, one at a time per connection (as wsuv.aio.serve runs them);
    on_connect_failed may be async too."""
    events: list[Any] = []

    class AsyncScript(wsuv.Handler):
        async def on_open(self, ws: wsuv.WebSocket) -> None:  # type: ignore[override]
            await asyncio.sleep(0.01)  # the messages wait for it
            events.append("open")
            ws.send("one")

        async def on_message(self, ws: wsuv.WebSocket,  # type: ignore[override]
                             message: Any) -> None:
            await asyncio.sleep(0.001)
            events.append(message)
            if message == "one":
                ws.send(b"two")
            else:
                ws.close(1000, "done")

        async def on_close(self, ws: wsuv.WebSocket, code: int,  # type: ignore[override]
                           reason: str) -> None:
            events.append(("close", code, reason))

        async def on_connect_failed(self, ws: wsuv.WebSocket,
                                    error: BaseException) -> None:
            await asyncio.sleep(0)
            events.append(("failed", type(error).__name__, ws.close_code))

    with running_server(None) as echo:
        async def main() -> None:
            async with wsuv.aio.client(AsyncScript(), open_timeout=5) as client:
                client.connect(f"ws://127.0.0.1:{echo.port}/")
                for _ in range(1000):
                    if events and events[-1][0] == "close":
                        break
                    await asyncio.sleep(0.01)
                client.connect("ws://no-such-host.invalid/")
                for _ in range(1000):
                    if events[-1][0] == "failed":
                        break
                    await asyncio.sleep(0.01)

        run(main())
    assert events[:3] == ["open", "one", b"two"]
    assert events[3][:2] == ("close", 1000)  # the code the echo answered our close with
    assert events[4] == ("failed", "gaierror", 1006)


def test_ctrl_c_closes_client_connections_with_1001() -> None:
    """Client.run() on the main thread: SIGINT closes gracefully, then raises."""
    import signal
    import subprocess
    import sys

    closes: list[int] = []

    class Record(wsuv.Handler):
        def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
            closes.append(code)

    script = (
        "import sys, wsuv\n"
        "class H(wsuv.Handler):\n"
        "    def on_open(self, ws): print('open', flush=True)\n"
        "    def on_close(self, ws, code, reason): print('closed', code, flush=True)\n"
        "try:\n"
        "    wsuv.connect(sys.argv[1], H()).run()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    with running_server(Record()) as srv:
        proc = subprocess.Popen([sys.executable, "-c", script, f"ws://127.0.0.1:{srv.port}/"],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "open"
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=LIMIT)
        finally:
            if proc.poll() is None:
                proc.kill()
        deadline = time.monotonic() + LIMIT
        while not closes and time.monotonic() < deadline:
            time.sleep(0.01)
    assert out.split("\n")[:2] == ["closed 1001", "interrupted"], out
    assert proc.returncode == 0
    assert closes == [1001]


def test_client_and_server_on_one_shared_loop() -> None:
    """A Client on a wsuv.Loop with a Server: Loop.run() serves both."""

    class EchoOnce(wsuv.Handler):
        def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
            ws.send(message)

    loop = wsuv.Loop()
    srv = wsuv.Server(EchoOnce(), loop=loop, port=0, handle_signals=False)
    srv.listen()

    class StopAll(Script):
        def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
            super().on_close(ws, code, reason)
            srv.stop()
            ws.server.stop()

    h = StopAll(["shared", b"loop"])
    client = wsuv.Client(h, loop=loop)
    with pytest.raises(RuntimeError, match="shared wsuv.Loop"):
        client.run()
    client.connect(f"ws://127.0.0.1:{srv.port}/")
    timer = threading.Timer(LIMIT, srv.stop, (False,))
    timer.start()
    try:
        loop.run()
    finally:
        timer.cancel()
    assert h.received == ["shared", b"loop"] and h.closed is not None
