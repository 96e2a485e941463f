"""Many connections at once, and the per-connection read rate limit."""

from __future__ import annotations

import socket
import threading
import time

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
