"""Handler API soundness (issue 9): a refused connection never opens, no
handler method runs inside a call the application makes, handlers are
checked at start, and every public call answers misuse with one sentence.

Real sockets on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import types
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

import wsuv
from tests.server.srvkit import (
    TIMEOUT,
    assert_serves,
    on_loop,
    raw_connect,
    read_response,
    running_server,
    upgrade_request,
    url,
    wait_for,
)
from wsuv import Accept, Handler, Response, Server


def on_loop_raising(server: Server, fn: Any) -> Any:
    """Run fn() on the loop thread; return its result or raise what it raised."""
    done = threading.Event()
    box: list[Any] = []

    def call() -> None:
        try:
            box.append(("ok", fn()))
        except BaseException as exc:
            box.append(("err", exc))
        finally:
            done.set()

    server.call_soon_threadsafe(call)
    assert done.wait(TIMEOUT), "loop did not run the callback in time"
    kind, value = box[0]
    if kind == "err":
        raise value
    return value


def _status_of(server: Server, path: str = "/") -> int:
    """The HTTP status the server answers an upgrade request with."""
    with raw_connect(server) as sock:
        sock.sendall(upgrade_request(path))
        return read_response(sock).status


# -- 1. on_connect's return value --------------------------------------------------

class Decides(Handler):
    def __init__(self, decision: Any) -> None:
        self.decision = decision
        self.opened = 0

    def on_connect(self, request: wsuv.Request) -> Any:
        return self.decision

    def on_open(self, ws: wsuv.WebSocket) -> None:
        self.opened += 1


@pytest.mark.parametrize("decision", [False, 0, 403, "forbidden", b"no", object(), [],
                                      True, Response])
def test_on_connect_returning_a_non_decision_answers_500(
        decision: Any, caplog: pytest.LogCaptureFixture) -> None:
    handler = Decides(decision)
    with caplog.at_level(logging.ERROR, logger="wsuv"), running_server(handler) as server:
        assert _status_of(server) == 500
        assert handler.opened == 0
        assert_serves_refusal(server)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(type(decision).__name__ in m and "on_connect returned" in m for m in errors), errors


def assert_serves_refusal(server: Server) -> None:
    """An independent client is refused too (never 101), and the server goes on."""
    with pytest.raises(InvalidStatus) as info:
        with ws_connect(url(server), open_timeout=TIMEOUT):
            pass
    assert info.value.response.status_code == 500


def test_on_connect_coroutine_result_is_refused_and_closed(
        caplog: pytest.LogCaptureFixture) -> None:
    """A coroutine smuggled past the start-up check (returned by a plain def)."""
    async def later() -> None:
        return None

    class Sneaky(Handler):
        def on_connect(self, request: wsuv.Request) -> Any:
            return later()

    with caplog.at_level(logging.ERROR, logger="wsuv"), running_server(Sneaky()) as server:
        assert _status_of(server) == 500
    assert any("coroutine" in r.getMessage() for r in caplog.records)


def test_response_with_a_1xx_status_is_refused_with_500() -> None:
    with running_server(Decides(Response(101))) as server:
        assert _status_of(server) == 500


def test_accept_with_invalid_headers_answers_500_not_101() -> None:
    with running_server(Decides(Accept(headers=[("X-Bad", "a\r\nInjected: 1")]))) as server:
        assert _status_of(server) == 500


def test_accept_checks_its_subprotocol_type() -> None:
    with pytest.raises(TypeError, match="subprotocol"):
        Accept(subprotocol=b"chat")  # type: ignore[arg-type]


def test_none_accept_and_response_still_work() -> None:
    for decision, status in ((None, 101), (Accept(), 101), (Response(403, "no"), 403)):
        with running_server(Decides(decision)) as server:
            assert _status_of(server) == status


# -- 2. no handler method inside an application call -----------------------------

class Room(Handler):
    """Everyone in one room; a message is sent to every member in a Python loop
    (or with broadcast / send_many). Records any on_close that runs while the
    fan-out is in progress."""

    def __init__(self, how: str, big: int) -> None:
        self.how = how
        self.big = big
        self.members: set[wsuv.WebSocket] = set()
        self.fanning_out = False
        self.closes_inside: list[int] = []
        self.closes: list[tuple[str, int, str]] = []
        self.errors: list[BaseException] = []

    def on_open(self, ws: wsuv.WebSocket) -> None:
        self.members.add(ws)

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        payload = b"x" * self.big
        self.fanning_out = True
        try:
            if self.how == "send":
                for w in self.members:  # a set that must not change meanwhile
                    w.send(payload)
            elif self.how == "broadcast":
                ws.server.broadcast(payload)
            else:
                ws.server.send_many(self.members, payload)
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            self.fanning_out = False

    def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
        if self.fanning_out:
            self.closes_inside.append(code)
        self.members.discard(ws)
        self.closes.append((ws.path, code, reason))


@pytest.mark.parametrize("how", ["send", "broadcast", "send_many"])
def test_a_peer_dropped_during_a_fan_out_is_reported_after_the_callback(how: str) -> None:
    handler = Room(how, big=4 * 1024 * 1024)
    with running_server(handler, write_limit=1024 * 1024, write_high_water=512 * 1024) as server:
        # A peer that never reads, with a small receive buffer: its copy overflows.
        stalled = raw_connect(server, rcvbuf=4096)
        stalled.sendall(upgrade_request("/stalled"))
        assert read_response(stalled).status == 101
        with ws_connect(url(server, "/sender"), open_timeout=TIMEOUT, max_size=2**23) as sender:
            wait_for(lambda: len(handler.members) == 2)
            sender.send("go")
            # The sender gets its own copy: its connection was not failed with 1011.
            assert sender.recv(timeout=TIMEOUT) == b"x" * handler.big
            wait_for(lambda: any(p == "/stalled" for p, _c, _r in handler.closes))
            assert handler.closes_inside == []
            assert handler.errors == []
            (_p, code, reason), = [c for c in handler.closes if c[0] == "/stalled"]
            assert code == 1006 and "write buffer limit" in reason
            assert sender.ping().wait(TIMEOUT)  # the sender's connection goes on
        stalled.close()
        with ws_connect(url(server), open_timeout=TIMEOUT, max_size=2**23) as late:
            late.send("hello")  # the server goes on serving
            assert late.recv(timeout=TIMEOUT) == b"x" * handler.big


def test_close_of_another_connection_inside_a_callback_is_reported_after_it() -> None:
    """ws.close() then a drop: on_close of the dropped peer waits for the callback."""
    events: list[str] = []

    class Kicker(Handler):
        def __init__(self) -> None:
            self.members: list[wsuv.WebSocket] = []

        def on_open(self, ws: wsuv.WebSocket) -> None:
            self.members.append(ws)

        def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
            events.append("callback starts")
            for other in list(self.members):
                if other is not ws:
                    other.close(4000, "kicked")
            events.append("callback ends")

        def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
            events.append(f"close {code}")

    with running_server(Kicker()) as server:
        with ws_connect(url(server), open_timeout=TIMEOUT) as victim:
            with ws_connect(url(server), open_timeout=TIMEOUT) as kicker:
                kicker.send("kick")
                with pytest.raises(ConnectionClosed):
                    victim.recv(timeout=TIMEOUT)
                wait_for(lambda: "close 4000" in events)
    i = events.index("callback ends")
    assert events.index("close 4000") > i, events


# -- 3. ws.server -----------------------------------------------------------------

def test_every_websocket_knows_its_server() -> None:
    seen: list[Any] = []

    class Probe(Handler):
        def on_open(self, ws: wsuv.WebSocket) -> None:
            seen.append(ws.server)

    with running_server(Probe()) as server:
        with ws_connect(url(server), open_timeout=TIMEOUT):
            wait_for(lambda: seen)
    assert seen == [server]


# -- 4. what counts as a handler ----------------------------------------------------

class EchoClass(Handler):
    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        ws.send(message)


def test_a_handler_class_is_instantiated() -> None:
    with running_server(EchoClass) as server:
        assert isinstance(server.handler, EchoClass)
        assert_serves(server)


def _plain_function(ws: Any) -> None:
    pass


@pytest.mark.parametrize("bad", [42, "chat:app", types.ModuleType("chat"), _plain_function,
                                 print, object()])
def test_non_handlers_are_refused_at_start(bad: Any) -> None:
    with pytest.raises(TypeError, match="wsuv.Handler instance or class") as info:
        Server(bad, port=0)
    assert "\n" not in str(info.value)


def test_a_handler_class_that_needs_arguments_is_refused() -> None:
    class Needs(Handler):
        def __init__(self, db: Any) -> None:
            self.db = db

    with pytest.raises(TypeError, match="cannot be instantiated with no arguments"):
        Server(Needs, port=0)


def test_async_handler_methods_are_refused_until_asyncio_support() -> None:
    class Async(Handler):
        async def on_connect(self, request: wsuv.Request) -> None:  # type: ignore[override]
            return None

    with pytest.raises(TypeError, match="on_connect is an async function"):
        Server(Async(), port=0)


def test_a_handler_attribute_that_is_not_a_method_is_refused() -> None:
    class Odd(Handler):
        on_message = 3  # type: ignore[assignment]

    with pytest.raises(TypeError, match="on_message must be a method"):
        Server(Odd(), port=0)


# -- threads ------------------------------------------------------------------------

class Members(Handler):
    def __init__(self) -> None:
        self.members: list[wsuv.WebSocket] = []
        self.drains: list[int] = []
        self.got: list[str | bytes] = []

    def on_open(self, ws: wsuv.WebSocket) -> None:
        self.members.append(ws)

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        self.got.append(message)
        ws.send(message)

    def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
        if ws in self.members:
            self.members.remove(ws)

    def on_drain(self, ws: wsuv.WebSocket) -> None:
        self.drains.append(ws.buffered_amount)


def test_broadcast_and_send_many_from_a_ticker_thread() -> None:
    handler = Members()
    with running_server(handler) as server:
        with ws_connect(url(server), open_timeout=TIMEOUT) as a, \
                ws_connect(url(server), open_timeout=TIMEOUT) as b:
            wait_for(lambda: len(handler.members) == 2)
            results: list[int] = []

            def ticker() -> None:
                for i in range(3):
                    results.append(server.broadcast(f"tick {i}"))
                results.append(server.send_many(list(handler.members), b"many"))

            t = threading.Thread(target=ticker)
            t.start()
            t.join(TIMEOUT)
            assert not t.is_alive()
            assert results == [2, 2, 2, 2]
            for client in (a, b):
                got = [client.recv(timeout=TIMEOUT) for _ in range(4)]
                assert got == ["tick 0", "tick 1", "tick 2", b"many"]


def test_calls_off_the_loop_thread_that_cannot_be_handed_over_say_so() -> None:
    handler = Members()
    with running_server(handler) as server:
        with ws_connect(url(server), open_timeout=TIMEOUT):
            wait_for(lambda: handler.members)
            ws = handler.members[0]
            with pytest.raises(RuntimeError, match="loop thread"):
                ws.buffered_amount  # noqa: B018
            assert on_loop(server, lambda: ws.buffered_amount) == 0
            assert ws.closed is False
            assert isinstance(ws.id, int) and ws.id >= 0
    # After the server stopped: the ticker is told, not silently ignored.
    with pytest.raises(RuntimeError, match="not running"):
        server.broadcast("late")
    with pytest.raises(RuntimeError, match="stopped"):
        server.call_soon_threadsafe(print)
    assert ws.closed and ws.id >= 0


def test_pause_and_resume_reading_from_another_thread() -> None:
    handler = Members()
    with running_server(handler) as server:
        with ws_connect(url(server), open_timeout=TIMEOUT) as client:
            wait_for(lambda: handler.members)
            ws = handler.members[0]
            ws.pause_reading()
            on_loop(server, lambda: None)  # the handed-over pause has run
            client.send("while paused")
            time.sleep(0.3)
            assert handler.got == []
            ws.resume_reading()
            wait_for(lambda: handler.got == ["while paused"])


def test_send_from_another_thread_after_the_close_is_dropped() -> None:
    handler = Members()
    with running_server(handler) as server:
        with ws_connect(url(server), open_timeout=TIMEOUT):
            wait_for(lambda: handler.members)
            ws = handler.members[0]
        wait_for(lambda: not handler.members)
        ws.send("into the void")  # documented: dropped, as it cannot be reported
        with pytest.raises(wsuv.ConnectionClosed):
            on_loop_raising(server, lambda: ws.send("on the loop it raises"))
        assert_serves(server)


def test_misuse_of_call_later_and_call_soon_is_one_sentence() -> None:
    with running_server(Members()) as server:
        with pytest.raises(TypeError, match="callable"):
            server.call_soon_threadsafe(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callable"):
            server.call_later(1, "f")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="finite"):
            server.call_later(-1, print)
        with pytest.raises(TypeError, match="seconds"):
            server.call_later("1", print)  # type: ignore[arg-type]


def test_wrong_message_types_are_one_sentence() -> None:
    handler = Members()
    with running_server(handler) as server:
        with ws_connect(url(server), open_timeout=TIMEOUT):
            wait_for(lambda: handler.members)
            ws = handler.members[0]
            for call in (lambda: ws.send(42), lambda: server.broadcast(3.5),  # type: ignore
                         lambda: ws.ping(7)):  # type: ignore[arg-type]
                with pytest.raises(TypeError, match="str or bytes-like"):
                    on_loop_raising(server, call)
            on_loop_raising(server, lambda: ws.ping("text"))  # str: sent as UTF-8
            with pytest.raises(TypeError, match="must be an int"):
                on_loop_raising(server, lambda: ws.close("1000"))  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="WebSocket"):
                server.send_many(["not a socket"], "x")  # type: ignore[list-item]
            with pytest.raises(TypeError, match="str or bytes-like"):
                ws.send(object())  # type: ignore[arg-type]  (off the loop: still checked)
        assert_serves(server)


# -- on_drain and write_low_water ------------------------------------------------------

def test_on_drain_fires_at_write_low_water() -> None:
    class Flood(Members):
        peak = 0

        def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
            for _ in range(128):
                ws.send(b"y" * 65536)
            self.peak = ws.buffered_amount

    handler = Flood()
    total = 128 * 65536
    with running_server(handler, write_high_water=1024 * 1024, write_low_water=64 * 1024,
                        write_limit=64 * 1024 * 1024) as server:
        sock = raw_connect(server, rcvbuf=4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(upgrade_request())
        resp = read_response(sock)
        assert resp.status == 101
        from wsuv.frames import encode_frame
        sock.sendall(encode_frame(1, b"go", mask=b"abcd"))
        wait_for(lambda: handler.peak)
        assert handler.peak >= 1024 * 1024  # full, and nobody reads
        time.sleep(0.2)
        assert handler.drains == []
        deadline = time.monotonic() + TIMEOUT
        got = len(resp.rest)
        while got < total and time.monotonic() < deadline:
            got += len(sock.recv(1 << 20))
        wait_for(lambda: handler.drains)
        assert handler.drains[0] <= 64 * 1024
        sock.close()


def test_write_low_water_above_high_water_is_refused() -> None:
    with pytest.raises(ValueError, match="write_low_water"):
        Server(None, write_high_water=1000, write_low_water=2000)


# -- small things -------------------------------------------------------------------------

def test_dir_shows_the_public_api() -> None:
    names = dir(wsuv)
    for name in ("encode_frame", "FrameParser", "Server", "Handler", "Accept"):
        assert name in names
    assert "TYPE_CHECKING" not in names


def test_request_cookies() -> None:
    seen: list[dict[str, str]] = []

    class Cookies(Handler):
        def on_connect(self, request: wsuv.Request) -> None:
            seen.append(request.cookies)

    with running_server(Cookies()) as server:
        with raw_connect(server) as sock:
            sock.sendall(upgrade_request(extra=[("Cookie", 'a=1; b="two"'), ("Cookie", "c=3")]))
            assert read_response(sock).status == 101
    assert seen == [{"a": "1", "b": "two", "c": "3"}]


# -- slow work off the loop (the README's thread-pool pattern) ---------------------------

def test_slow_work_in_a_pool_does_not_block_other_clients() -> None:
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=32)

    def lookup(ws: wsuv.WebSocket, message: str | bytes) -> None:
        time.sleep(0.05)  # stands for a database query
        ws.send(f"result for {message!s}")

    class Slow(Handler):
        def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
            if ws.path == "/slow":
                pool.submit(lookup, ws, message)
            else:
                ws.send(message)

    try:
        with running_server(Slow()) as server:
            with ws_connect(url(server, "/slow"), open_timeout=TIMEOUT) as slow, \
                    ws_connect(url(server, "/fast"), open_timeout=TIMEOUT) as fast:
                start = time.monotonic()
                for i in range(20):
                    slow.send(str(i))
                rtts = []
                for _ in range(10):
                    t0 = time.monotonic()
                    fast.send("ping")
                    assert fast.recv(timeout=TIMEOUT) == "ping"
                    rtts.append(time.monotonic() - t0)
                got = sorted(slow.recv(timeout=TIMEOUT) for _ in range(20))
                elapsed = time.monotonic() - start
        assert got == sorted(f"result for {i}" for i in range(20))
        # 20 lookups of 50 ms in parallel, not one after the other (1 s serially).
        assert elapsed < 0.9, elapsed
        # The echo client was never stuck behind a lookup (a serial loop would add 50 ms+).
        assert sorted(rtts)[len(rtts) // 2] < 0.04, rtts
    finally:
        pool.shutdown(wait=True)


def test_static_dir_that_does_not_exist_is_refused(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="static_dir .* does not exist"):
        Server(None, static_dir=str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a directory"):
        Server(None, static_dir=str(tmp_path / "file"))
