"""wsuv.sync against wsuv's own server (tests/conftest.py's running_server)."""

from __future__ import annotations

import os
import random
import socket
import tempfile
import threading
from typing import Any

import pytest
from clientkit import TIMEOUT, running_server

import wsuv
import wsuv.sync
from wsuv.request import Request


def test_echo_through_the_c_echo_with_deflate() -> None:
    with running_server() as server, \
            wsuv.sync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert ws.extensions and ws.extensions[0].startswith("permessage-deflate")
        for size in (0, 10, 125, 126, 65536, 1 << 20):
            message = random.Random(size).randbytes(size)
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
        ws.send(bytearray(b"ba"))
        assert ws.recv(timeout=TIMEOUT) == b"ba"
        ws.send(memoryview(b"xmvx")[1:3])
        assert ws.recv(timeout=TIMEOUT) == b"mv"
        ws.send("text é")
        assert ws.recv(timeout=TIMEOUT) == "text é"


class Chat(wsuv.Handler):
    def __init__(self) -> None:
        self.closes: list[tuple[int, str]] = []
        self.paths: list[str] = []

    def on_connect(self, request: Request) -> wsuv.Accept | None:
        self.paths.append(request.target)
        if "superchat" in request.subprotocols:
            return wsuv.Accept(subprotocol="superchat")
        return None

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        if message == "quit":
            ws.close(4002, "as you wish")
        else:
            ws.send(message)

    def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
        self.closes.append((code, reason))


def test_subprotocol_and_close_codes_with_a_handler() -> None:
    handler = Chat()
    with running_server(handler) as server:
        url = f"ws://127.0.0.1:{server.port}/chat?x=1"
        with wsuv.sync.connect(url, subprotocols=["superchat"]) as ws:
            assert ws.subprotocol == "superchat"
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "hi"
            ws.send("quit")
            with pytest.raises(wsuv.ConnectionClosed) as info:
                ws.recv(timeout=TIMEOUT)
            assert (info.value.code, info.value.reason) == (4002, "as you wish")
        with wsuv.sync.connect(url, compression=None) as ws:
            assert ws.subprotocol is None and ws.extensions == []
            ws.close(4100, "client done")
    assert handler.paths == ["/chat?x=1", "/chat?x=1"]
    assert handler.closes[-1] == (4100, "client done")


def test_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ws.sock")
        with running_server(unix_path=path), wsuv.sync.connect(f"ws+unix://{path}") as ws:
            ws.send("over unix")
            assert ws.recv(timeout=TIMEOUT) == "over unix"


def test_many_threads_at_once() -> None:
    errors: list[BaseException] = []

    with running_server() as server:
        url = f"ws://127.0.0.1:{server.port}/"

        def worker(n: int) -> None:
            try:
                with wsuv.sync.connect(url) as ws:
                    for i in range(200):
                        ws.send(f"{n}:{i}")
                        assert ws.recv(timeout=TIMEOUT) == f"{n}:{i}"
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_keepalive_pings_keep_an_idle_connection() -> None:
    pings: list[bytes] = []

    class Watch(wsuv.Handler):
        def on_ping(self, ws: wsuv.WebSocket, data: bytes) -> None:
            pings.append(data)

        def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
            ws.send(message)

    with running_server(Watch()) as server, \
            wsuv.sync.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=0.1,
                              ping_timeout=5) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.6)
        ws.send("still here")
        assert ws.recv(timeout=TIMEOUT) == "still here"
    # A ping every 0.1 s after the last pong (not every ping_timeout).
    assert len(pings) >= 3


def test_server_message_limit_applies_to_the_client() -> None:
    with running_server() as server, \
            wsuv.sync.connect(f"ws://127.0.0.1:{server.port}/", max_message_size=1000) as ws:
        ws.send(b"x" * 2000)  # the echo comes back over our limit
        with pytest.raises(wsuv.ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.code == 1009


def test_refused_by_a_wsuv_handler() -> None:
    class No(wsuv.Handler):
        def on_connect(self, request: Request) -> wsuv.Response:
            return wsuv.Response(401, "who are you?", headers=[("WWW-Authenticate", "Basic")])

    with running_server(No()) as server, pytest.raises(wsuv.InvalidStatus) as info:
        wsuv.sync.connect(f"ws://127.0.0.1:{server.port}/")
    assert info.value.status == 401
    assert info.value.body.startswith(b"who are you?")


def test_host_name_resolved_by_libuv() -> None:
    # The server listens on the first address the resolver gives for localhost
    # (the one ws_client_connect tries), and Host carries the name.
    first = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0]
    hosts: list[str | None] = []

    class Host(wsuv.Handler):
        def on_connect(self, request: Request) -> None:
            hosts.append(request.headers.get("Host"))

        def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
            ws.send(message)

    with running_server(Host(), host=str(first)) as server, \
            wsuv.sync.connect(f"ws://localhost:{server.port}/") as ws:
        ws.send("by name")
        assert ws.recv(timeout=TIMEOUT) == "by name"
    assert hosts == [f"localhost:{server.port}"]


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this Python")
def test_ipv6_literal() -> None:
    with running_server(host="::1") as server, \
            wsuv.sync.connect(f"ws://[::1]:{server.port}/") as ws:
        ws.send("over v6")
        assert ws.recv(timeout=TIMEOUT) == "over v6"
