"""Server lifecycle over real sockets: shutdown, timeouts, keepalive, the loop API,
subprotocols, broadcast, control-frame hooks and the Unix socket listener."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import threading
import time

import pytest
import websocket  # websocket-client
import websockets
from srvkit import (
    TIMEOUT,
    EchoHandler,
    assert_eof,
    assert_serves,
    client_frame,
    close_payload,
    echo_raw,
    http_exchange,
    open_raw,
    read_response,
    run_isolated,
    running_server,
    server_thread,
    short_tmpdir,
    upgrade_request,
    url,
    wait_for,
)
from websockets.sync.client import connect as ws_connect

from wsuv.server import Accept

# -- graceful shutdown ----------------------------------------------------------------


def test_graceful_stop_sends_1001_to_every_client_and_the_loop_ends() -> None:
    handler = EchoHandler()
    n_raw, n_wsc = 40, 10
    with server_thread(handler) as (server, thread):
        raws = [open_raw(server, f"/raw/{i}") for i in range(n_raw)]
        wscs = [websocket.create_connection(url(server, f"/wsc/{i}"), timeout=TIMEOUT)
                for i in range(n_wsc)]
        try:
            wait_for(lambda: len(handler.opened) == n_raw + n_wsc)
            server.stop(graceful=True)
            for sock, reader in raws:
                frame = reader.next()
                assert frame.opcode == 0x8
                assert struct.unpack("!H", frame.payload[:2])[0] == 1001
                sock.sendall(client_frame(0x8, frame.payload[:2]))  # echo the close
            for client in wscs:
                opcode, frame = client.recv_data_frame(control_frame=True)  # replies 1000
                assert opcode == 0x8
                assert struct.unpack("!H", frame.data[:2])[0] == 1001
            for sock, _reader in raws:
                assert_eof(sock)
            thread.join(TIMEOUT)
            assert not thread.is_alive(), "run() did not return after a graceful stop"
        finally:
            for sock, _reader in raws:
                sock.close()
            for client in wscs:
                client.shutdown()
        closed = sorted(handler.closed)
        assert len(closed) == n_raw + n_wsc
        for path, code, _reason in closed:
            # on_close reports the code the peer answered with.
            assert code == (1001 if path.startswith("/raw/") else 1000), (path, code)


def test_graceful_stop_with_peers_that_never_answer_is_bounded() -> None:
    handler = EchoHandler()
    with server_thread(handler, close_timeout=0.3, shutdown_timeout=5) as (server, thread):
        raws = [open_raw(server) for _ in range(10)]
        try:
            wait_for(lambda: len(handler.opened) == 10)
            start = time.monotonic()
            server.stop(graceful=True)
            for _sock, reader in raws:
                frame = reader.next()
                assert frame.opcode == 0x8
            thread.join(TIMEOUT)
            took = time.monotonic() - start
            assert not thread.is_alive()
            assert took < 3.0, took
        finally:
            for sock, _reader in raws:
                sock.close()
        assert handler.close_codes() == [1006] * 10


def test_graceful_stop_drops_half_done_handshakes_and_refuses_new_clients() -> None:
    with server_thread(EchoHandler()) as (server, thread):
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as half:
            half.sendall(b"GET / HTTP/1.1\r\n")
            time.sleep(0.05)
            server.stop(graceful=True)
            assert_eof(half)
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT).recv(1)


def test_immediate_stop_reports_1001_to_on_close() -> None:
    handler = EchoHandler()
    with server_thread(handler) as (server, thread):
        sock, _reader = open_raw(server)
        with sock:
            wait_for(lambda: handler.opened)
            server.stop(graceful=False)
            assert_eof(sock)
            thread.join(TIMEOUT)
            assert not thread.is_alive()
        assert handler.close_codes() == [1001]


# -- timeouts and keepalive -------------------------------------------------------------


# Regression: once closing, a past idle/ping deadline used to re-arm a 0 ms
# timer forever (loop spinning at 100% CPU, no I/O). These scenarios run in a
# child process that is killed after 4 s, so a regression cannot hang the run.


def idle_timeout_scenario() -> None:
    handler = EchoHandler()
    with running_server(handler, idle_timeout=0.4, ping_interval=0) as server:
        sock, reader = open_raw(server)
        with sock:
            echo_raw(sock, reader)
            start = time.monotonic()
            frame = reader.next()
            took = time.monotonic() - start
            assert frame.opcode == 0x8
            assert struct.unpack("!H", frame.payload[:2])[0] == 1001
            assert 0.25 <= took < 3.0, took
            sock.sendall(client_frame(0x8, close_payload(1001)))
            assert_eof(sock)
        wait_for(lambda: handler.close_codes() == [1001])
        assert_serves(server)


def idle_timeout_reset_scenario() -> None:
    with running_server(idle_timeout=0.5, ping_interval=0) as server:
        sock, reader = open_raw(server)
        with sock:
            for _ in range(8):  # 0.8 s of traffic every 0.1 s keeps it open
                echo_raw(sock, reader)
                time.sleep(0.1)
            frame = reader.next()
            assert frame.opcode == 0x8
            # The peer never answers: dropped after close_timeout.
        assert_serves(server)


def test_idle_timeout_closes_with_1001() -> None:
    run_isolated(__file__, "idle_timeout_scenario")


def test_idle_timeout_is_reset_by_traffic() -> None:
    run_isolated(__file__, "idle_timeout_reset_scenario")


def test_ping_timeout_drops_a_silent_peer_and_keeps_one_that_answers() -> None:
    handler = EchoHandler()
    with running_server(handler, ping_interval=0.3, ping_timeout=0.3) as server:
        mute, mute_reader = open_raw(server, "/mute")
        live, live_reader = open_raw(server, "/live")
        with mute, live:
            start = time.monotonic()
            # The live peer answers every ping for 1.5 s.
            pings = 0
            while time.monotonic() - start < 1.5:
                try:
                    frame = live_reader.next(timeout=0.2)
                except AssertionError:
                    continue
                assert frame.opcode == 0x9, frame
                assert frame.payload == b"wsuv"
                live.sendall(client_frame(0xA, frame.payload))
                pings += 1
            assert pings >= 2, pings
            # The mute peer got a ping and then the connection dropped (no close frame).
            frame = mute_reader.next()
            assert frame.opcode == 0x9
            mute_gone = start + assert_eof(mute, allow_data=True)
            assert mute_reader.frames == [] or all(f.opcode == 0x9 for f in mute_reader.frames)
            paths = wait_for(lambda: [(p, c) for p, c, _ in handler.closed])
            assert paths == [("/mute", 1006)]
            assert mute_gone - start < 3.0
            echo_raw(live, live_reader)


def test_ping_timing_roughly_interval_plus_timeout() -> None:
    with running_server(ping_interval=0.3, ping_timeout=0.3) as server:
        sock, _reader = open_raw(server)
        with sock:
            took = assert_eof(sock, allow_data=True)
            assert 0.45 <= took < 3.0, took


def test_close_timeout_after_server_initiated_close() -> None:
    class Closer(EchoHandler):
        def on_message(self, ws, message):  # type: ignore[no-untyped-def]
            if message == "close me":
                ws.close(4000, "bye")
            else:
                ws.send(message)

    handler = Closer()
    with running_server(handler, close_timeout=0.4) as server:
        sock, reader = open_raw(server)
        with sock:
            sock.sendall(client_frame(0x1, b"close me"))
            frame = reader.next()
            assert frame.opcode == 0x8
            assert frame.payload == close_payload(4000, b"bye")
            took = assert_eof(sock)  # we never answer
            assert 0.25 <= took < 3.0, took
        wait_for(lambda: handler.close_codes() == [1006])
        assert_serves(server)


def test_server_initiated_close_completes_when_the_peer_answers() -> None:
    class Closer(EchoHandler):
        def on_open(self, ws):  # type: ignore[no-untyped-def]
            super().on_open(ws)
            ws.close(1000, "done")

    handler = Closer()
    with running_server(handler) as server:
        with ws_connect(url(server), open_timeout=TIMEOUT) as client:
            with pytest.raises(websockets.exceptions.ConnectionClosedOK) as info:
                client.recv(timeout=TIMEOUT)
            assert info.value.rcvd.code == 1000 and info.value.rcvd.reason == "done"
        wait_for(lambda: handler.close_codes() == [1000])


# -- subprotocols ---------------------------------------------------------------------------


class Negotiator(EchoHandler):
    def __init__(self) -> None:
        super().__init__()
        self.chosen: list[str | None] = []

    def on_connect(self, request):  # type: ignore[no-untyped-def]
        if request.path == "/wrong":
            return Accept(subprotocol="not-offered")
        for proto in ("chat.v2", "chat.v1"):
            if proto in request.subprotocols:
                return Accept(subprotocol=proto, headers=[("X-Chosen", proto)])
        return None

    def on_open(self, ws):  # type: ignore[no-untyped-def]
        super().on_open(ws)
        self.chosen.append(ws.subprotocol)


def test_subprotocol_negotiation() -> None:
    handler = Negotiator()
    with running_server(handler) as server:
        with ws_connect(url(server), subprotocols=["chat.v1", "chat.v2"],
                        open_timeout=TIMEOUT) as client:
            assert client.subprotocol == "chat.v2"
            assert client.response.headers["X-Chosen"] == "chat.v2"
            client.send("hi")
            assert client.recv(timeout=TIMEOUT) == "hi"
        with ws_connect(url(server), open_timeout=TIMEOUT) as client:
            assert client.subprotocol is None
        client2 = websocket.create_connection(url(server), subprotocols=["chat.v1"],
                                              timeout=TIMEOUT)
        try:
            assert client2.getsubprotocol() == "chat.v1"
        finally:
            client2.close(timeout=2)
        wait_for(lambda: handler.chosen == ["chat.v2", None, "chat.v1"])
        # Choosing one the client did not offer is the server's bug: 500, not a 101.
        resp = http_exchange(server, upgrade_request(
            "/wrong", extra=[("Sec-WebSocket-Protocol", "a, b")]))
        assert resp.status == 500
        assert_serves(server)


# -- the loop API -----------------------------------------------------------------------------


class Recorder(EchoHandler):
    def __init__(self) -> None:
        super().__init__()
        self.server = None
        self.results: list[object] = []
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []

    def on_message(self, ws, message):  # type: ignore[no-untyped-def]
        if message == "broadcast":
            self.results.append(self.server.broadcast("to all"))
        elif message == "broadcast-others":
            self.results.append(self.server.broadcast(b"others", exclude=ws))
        elif message == "later":
            self.server.call_later(0.2, ws.send, "fired")
            self.server.call_later(0.1, ws.send, "cancelled").cancel()
        elif message == "ping me":
            ws.ping(b"srv")
        else:
            ws.send(message)

    def on_ping(self, ws, data):  # type: ignore[no-untyped-def]
        self.pings.append(data)

    def on_pong(self, ws, data):  # type: ignore[no-untyped-def]
        self.pongs.append(data)


@pytest.fixture
def recorder():  # type: ignore[no-untyped-def]
    handler = Recorder()
    with running_server(handler) as server:
        handler.server = server
        yield handler, server


def test_broadcast_reaches_every_client(recorder) -> None:  # type: ignore[no-untyped-def]
    handler, server = recorder
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(ws_connect(url(server), open_timeout=TIMEOUT))
                   for _ in range(8)]
        wait_for(lambda: len(handler.opened) == 8)
        clients[0].send("broadcast")
        for client in clients:
            assert client.recv(timeout=TIMEOUT) == "to all"
        clients[3].send("broadcast-others")
        for i, client in enumerate(clients):
            if i != 3:
                assert client.recv(timeout=TIMEOUT) == b"others"
        wait_for(lambda: handler.results == [8, 7])
        clients[3].send("x")  # nothing else was queued for the excluded one
        assert clients[3].recv(timeout=TIMEOUT) == "x"
    # From another thread, through call_soon_threadsafe.
    with ws_connect(url(server), open_timeout=TIMEOUT) as client:
        wait_for(lambda: len(handler.opened) == 9)
        counts: list[int] = []
        server.call_soon_threadsafe(lambda: counts.append(server.broadcast("hello")))
        assert client.recv(timeout=TIMEOUT) == "hello"
        wait_for(lambda: counts == [1])


def test_call_soon_threadsafe_and_send_from_another_thread(recorder) -> None:  # type: ignore[no-untyped-def]
    handler, server = recorder
    with ws_connect(url(server), open_timeout=TIMEOUT) as client:
        ws = wait_for(lambda: handler.opened)[0]
        server.call_soon_threadsafe(ws.send, "via call_soon")
        assert client.recv(timeout=TIMEOUT) == "via call_soon"
        ws.send("direct from the test thread")  # hands itself over to the loop
        assert client.recv(timeout=TIMEOUT) == "direct from the test thread"
        errors: list[BaseException] = []

        def worker(k: int) -> None:
            try:
                for j in range(20):
                    ws.send(f"{k}:{j}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not errors
        got = [client.recv(timeout=TIMEOUT) for _ in range(80)]
        for k in range(4):  # per-thread order is kept
            assert [m for m in got if m.startswith(f"{k}:")] == [f"{k}:{j}" for j in range(20)]
        ws.close(1000, "from thread")
        with pytest.raises(websockets.exceptions.ConnectionClosedOK):
            client.recv(timeout=TIMEOUT)
        wait_for(lambda: handler.close_codes() == [1000])
        # After the close, a send from another thread is dropped quietly.
        ws.send("too late")


def test_call_later_fires_and_cancel_works(recorder) -> None:  # type: ignore[no-untyped-def]
    handler, server = recorder
    with ws_connect(url(server), open_timeout=TIMEOUT) as client:
        start = time.monotonic()
        client.send("later")
        assert client.recv(timeout=TIMEOUT) == "fired"
        assert time.monotonic() - start >= 0.15
        client.send("echo")
        assert client.recv(timeout=TIMEOUT) == "echo"  # "cancelled" never came
    # call_later from a non-loop thread.
    fired = threading.Event()
    server.call_later(0.05, fired.set)
    assert fired.wait(TIMEOUT)
    not_fired = threading.Event()
    server.call_later(0.2, not_fired.set).cancel()
    time.sleep(0.3)
    assert not not_fired.is_set()


def test_on_ping_and_on_pong_get_payloads(recorder) -> None:  # type: ignore[no-untyped-def]
    handler, server = recorder
    sock, reader = open_raw(server)
    with sock:
        sock.sendall(client_frame(0x9, b"client ping"))
        pong = reader.next()
        assert (pong.opcode, pong.payload) == (0xA, b"client ping")  # answered in C
        wait_for(lambda: handler.pings == [b"client ping"])
        sock.sendall(client_frame(0x1, b"ping me"))
        ping = reader.next()
        assert (ping.opcode, ping.payload) == (0x9, b"srv")
        sock.sendall(client_frame(0xA, ping.payload))
        wait_for(lambda: handler.pongs == [b"srv"])
        sock.sendall(client_frame(0xA, b"unsolicited"))
        wait_for(lambda: handler.pongs == [b"srv", b"unsolicited"])
        echo_raw(sock, reader)


# -- Unix socket listener -----------------------------------------------------------------


@pytest.mark.parametrize("app", ["c-echo", "python"])
def test_unix_socket_listener(app: str) -> None:
    directory = short_tmpdir()
    path = os.path.join(directory, "ws.sock")
    try:
        handler = EchoHandler() if app == "python" else None
        with running_server(handler, unix_path=path) as server:
            assert server.addresses == [f"unix:{path}"]
            for _ in range(3):
                sock, reader = open_raw(server, family=socket.AF_UNIX, unix_path=path)
                with sock:
                    echo_raw(sock, reader, b"over AF_UNIX")
                    echo_raw(sock, reader, "текст".encode(), opcode=0x1)
                    sock.sendall(client_frame(0x8, close_payload(1000)))
                    reader.expect_close(1000)
            if handler is not None:
                assert [ws.remote_address for ws in handler.opened] == ["unix"] * 3
            # Malformed input over the Unix socket gets the same answer.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(TIMEOUT)
                sock.connect(path)
                sock.sendall(upgrade_request(version="8"))
                resp = read_response(sock)
                assert resp.status == 426
                assert_eof(sock)
            # websocket-client over the Unix socket.
            client = websocket.create_connection("ws://localhost/", socket=_unix(path),
                                                 timeout=TIMEOUT)
            try:
                client.send("wsc")
                assert client.recv() == "wsc"
            finally:
                client.close(timeout=2)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(path)
    return sock

