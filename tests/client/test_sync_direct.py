"""wsuv.sync's direct socket path (csrc/client_direct.h): an open ws://
connection's waits read the socket with a blocking recv instead of libuv's
epoll, and go back to libuv whenever it must run (a keepalive timer, a write
the kernel did not take, the close). Each test checks which path ran (the
socket's O_NONBLOCK flag) and that wsuv.sync behaves the same on it."""

from __future__ import annotations

import fcntl
import os
import socket
import time

import pytest
from clientkit import (
    TIMEOUT,
    FrameReader,
    frame,
    raw_server,
    read_head,
    running_server,
    switching,
)

import wsuv
import wsuv.sync


def client_socket_blocking(port: int) -> bool:
    """Whether this process's client socket to 127.0.0.1:port is blocking now
    (the direct path leaves it so between waits)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with s:
            try:
                peer, mine = s.getpeername(), s.getsockname()
            except OSError:
                continue
            if s.family == socket.AF_INET and peer[1] == port and mine[1] != port:
                found.append(not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)
    assert len(found) == 1, f"expected one client socket to port {port}, found {len(found)}"
    return found[0]


def test_round_trips_of_every_size_take_the_direct_path() -> None:
    with running_server() as echo:
        with wsuv.sync.connect(f"ws://127.0.0.1:{echo.port}/", compression=None) as ws:
            assert not client_socket_blocking(echo.port)  # the handshake ran on libuv
            for size in (0, 1, 125, 126, 65535, 65536, 1 << 20):
                ws.send(b"\xa5" * size)
                assert ws.recv(timeout=TIMEOUT) == b"\xa5" * size
                assert client_socket_blocking(echo.port)
            ws.send("text é")
            assert ws.recv(timeout=TIMEOUT) == "text é"
            # 16 MiB: the kernel takes part of it, libuv queues the rest (the
            # socket is non-blocking for that); the next wait is direct again.
            big = os.urandom(16 << 20)
            ws.send(big)
            assert ws.recv(timeout=TIMEOUT) == big
            ws.send(b"after")
            assert ws.recv(timeout=TIMEOUT) == b"after"
            assert client_socket_blocking(echo.port)
        assert ws.close_code == 1000


def test_a_recv_timeout_on_the_direct_path() -> None:
    with running_server() as echo:
        with wsuv.sync.connect(f"ws://127.0.0.1:{echo.port}/", compression=None,
                               ping_interval=None) as ws:
            ws.send(b"x")
            assert ws.recv(timeout=TIMEOUT) == b"x"
            for timeout in (0.05, 0.2, 0.01):
                t0 = time.monotonic()
                with pytest.raises(TimeoutError):
                    ws.recv(timeout=timeout)
                took = time.monotonic() - t0
                assert timeout <= took < timeout + 0.5, (timeout, took)
            assert client_socket_blocking(echo.port)
            ws.send(b"still open")
            assert ws.recv(timeout=TIMEOUT) == b"still open"


def test_pings_are_answered_and_keepalive_pings_sent_while_waiting_directly() -> None:
    port: list[int] = []

    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        reader = FrameReader(conn)
        opcode, _, _, data = reader.read()
        assert (opcode, data) == (2, b"go")
        conn.sendall(frame(2, b"first"))
        time.sleep(0.2)  # the client waits directly by now
        conn.sendall(frame(9, b"are you there"))
        opcode, _, key, data = reader.read()
        assert (opcode, data) == (10, b"are you there") and key is not None
        # Then quiet: the client's keepalive timer (0.3 s) is due in its wait.
        opcode, _, _, data = reader.read()
        assert opcode == 9
        conn.sendall(frame(10, data) + frame(1, b"after the ping"))
        opcode, _, _, data = reader.read()
        assert opcode == 8
        conn.sendall(frame(8, data))

    with raw_server(script) as url:
        port.append(int(url.rsplit(":", 1)[1]))
        with wsuv.sync.connect(url, compression=None, ping_interval=0.3,
                               ping_timeout=TIMEOUT) as ws:
            ws.send(b"go")
            assert ws.recv(timeout=TIMEOUT) == b"first"
            assert client_socket_blocking(port[0])  # the server's ping comes in directly
            assert ws.recv(timeout=TIMEOUT) == "after the ping"
        assert ws.close_code == 1000


def test_the_server_closing_first_on_the_direct_path() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        reader = FrameReader(conn)
        assert reader.read()[3] == b"ping me"
        conn.sendall(frame(2, b"pong you"))
        time.sleep(0.1)
        conn.sendall(frame(8, (4001).to_bytes(2, "big") + b"bye"))
        opcode, _, _, data = reader.read()
        assert opcode == 8 and data[:2] == (4001).to_bytes(2, "big")
        conn.close()  # the server closes TCP first (RFC 6455 7.1.1)

    with raw_server(script) as url:
        ws = wsuv.sync.connect(url, compression=None)
        ws.send(b"ping me")
        assert ws.recv(timeout=TIMEOUT) == b"pong you"
        with pytest.raises(wsuv.ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert (info.value.code, info.value.reason) == (4001, "bye")
        ws.close()


def test_a_reset_while_waiting_directly_is_1006() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        FrameReader(conn).read()
        conn.sendall(frame(2, b"one"))
        time.sleep(0.1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    with raw_server(script) as url:
        ws = wsuv.sync.connect(url, compression=None)
        ws.send(b"x")
        assert ws.recv(timeout=TIMEOUT) == b"one"
        with pytest.raises(wsuv.ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.code == 1006
        ws.close()
