"""Many connections at once, and the per-connection read rate limit."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import pytest
from srvkit import (
    TIMEOUT,
    EchoHandler,
    FrameReader,
    assert_serves,
    client_frame,
    raise_nofile,
    read_response,
    running_server,
    upgrade_request,
    wait_for,
)

N = 1000


@pytest.mark.parametrize("app", ["c-echo", "python"])
def test_thousand_concurrent_connections_all_echoed(app: str) -> None:
    raise_nofile(2 * N + 256)  # both ends of every connection live in this process
    handler = EchoHandler() if app == "python" else None
    with running_server(handler) as server:
        socks: list[socket.socket] = []
        try:
            for _ in range(N):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
                socks.append(sock)
                sock.sendall(upgrade_request(f"/c/{len(socks)}"))
            readers = []
            for sock in socks:
                resp = read_response(sock)
                assert resp.status == 101
                readers.append(FrameReader(sock, resp.rest))
            if handler is not None:  # all open at the same time
                wait_for(lambda: len(handler.opened) == N)
            for i, sock in enumerate(socks):
                sock.sendall(client_frame(0x2, b"msg %d" % i))
            for i, reader in enumerate(readers):
                frame = reader.next()
                assert (frame.opcode, frame.payload) == (0x2, b"msg %d" % i)
            assert_serves(server)
        finally:
            for sock in socks:
                sock.close()
        if handler is not None:
            wait_for(lambda: len(handler.closed) == N + 2)  # + assert_serves's two
            assert sorted(set(handler.close_codes())) == [1000, 1006]


class OrderHandler(EchoHandler):
    """Echo that also logs, per path, what the application saw in which order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, list[str]] = {}

    def on_message(self, ws: Any, message: str | bytes) -> None:
        with self.lock:
            self.seen.setdefault(ws.path, []).append(f"msg {message!r}")
        ws.send(message)

    def on_close(self, ws: Any, code: int, reason: str) -> None:
        with self.lock:
            self.seen.setdefault(ws.path, []).append(f"close {code}")
        super().on_close(ws, code, reason)


@pytest.mark.parametrize("app", ["c-echo", "python"])
def test_one_poll_phase_of_many_peers_keeps_each_peers_order(app: str) -> None:
    """Messages of every connection readable in one epoll wake-up are delivered
    together (one Python call), and replies are corked until the phase ends. Each
    peer still sees its own order: echo, pong, echo, then the close, whatever the
    other peers sent in the same phase."""
    peers = 40
    handler = OrderHandler() if app == "python" else None
    with running_server(handler) as server:
        socks: list[socket.socket] = []
        readers: list[FrameReader] = []
        try:
            for i in range(peers):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
                sock.sendall(upgrade_request(f"/p/{i}"))
                resp = read_response(sock)
                assert resp.status == 101
                socks.append(sock)
                readers.append(FrameReader(sock, resp.rest))
            bursts = [client_frame(0x2, b"first %d" % i) + client_frame(0x9, b"ping %d" % i)
                      + client_frame(0x1, b"second %d" % i)
                      + client_frame(0x8, struct.pack("!H", 1000)) for i in range(peers)]
            for sock, burst in zip(socks, bursts, strict=True):  # all in flight at once
                sock.sendall(burst)
            for i, reader in enumerate(readers):
                got = [(f.opcode, f.payload) for f in (reader.next() for _ in range(4))]
                assert got == [(0x2, b"first %d" % i), (0xA, b"ping %d" % i),
                               (0x1, b"second %d" % i), (0x8, struct.pack("!H", 1000))], got
        finally:
            for sock in socks:
                sock.close()
        if handler is not None:
            wait_for(lambda: len(handler.closed) == peers)
            for i in range(peers):
                assert handler.seen[f"/p/{i}"] == [
                    f"msg {b'first %d' % i!r}", f"msg {f'second {i}'!r}", "close 1000"]
        assert_serves(server)


@pytest.mark.parametrize("app", ["c-echo", "python"])
def test_read_rate_throttles_one_peer_and_not_the_server(app: str) -> None:
    handler = EchoHandler() if app == "python" else None
    size = 300_000
    with running_server(handler, read_rate=100_000) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        with sock:
            sock.sendall(upgrade_request())
            resp = read_response(sock)
            assert resp.status == 101
            reader = FrameReader(sock, resp.rest)
            payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            errors: list[BaseException] = []

            def send() -> None:
                try:
                    sock.sendall(client_frame(0x2, payload))
                except BaseException as exc:
                    errors.append(exc)

            start = time.monotonic()
            sender = threading.Thread(target=send)
            sender.start()
            # The throttled peer does not slow anyone else down.
            time.sleep(0.2)
            other = time.monotonic()
            assert_serves(server)
            assert time.monotonic() - other < 1.0
            frame = reader.next(timeout=15)
            took = time.monotonic() - start
            sender.join(TIMEOUT)
            assert not errors
            assert (frame.opcode, frame.payload) == (0x2, payload)
            # 300 KB at 100 KB/s: two full pauses (the rate is enforced per 1 s window).
            assert 1.5 <= took < 12.0, took
