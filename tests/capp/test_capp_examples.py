"""examples/c/echo.c and chat.c over real sockets, hosted by wsuv.Server in a
thread, with independent clients (websockets, websocket-client)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import websocket  # websocket-client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import wsuv
from tests.conftest import running_server


def test_echo_text_binary_and_large(build: Callable[[str], str]) -> None:
    app = wsuv.load_c_app(build("examples/echo"))
    assert app.name == "echo"
    with running_server(app) as srv:
        with connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=5, max_size=None) as ws:
            ws.send("héllo")
            assert ws.recv(timeout=5) == "héllo"
            ws.send(b"\x00\x01\xff")
            assert ws.recv(timeout=5) == b"\x00\x01\xff"
            big = bytes(range(256)) * 4096  # 1 MiB: assembled from many reads
            ws.send(big)
            assert ws.recv(timeout=10) == big
            for i in range(200):  # pipelined: order holds
                ws.send(f"m{i}")
            assert [ws.recv(timeout=5) for _ in range(200)] == [f"m{i}" for i in range(200)]
    app.close()


def test_echo_with_websocket_client(build: Callable[[str], str]) -> None:
    app = wsuv.load_c_app(build("examples/echo"))
    with running_server(app) as srv:
        ws = websocket.create_connection(f"ws://127.0.0.1:{srv.port}/", timeout=5)
        try:
            ws.send("from websocket-client")
            assert ws.recv() == "from websocket-client"
            ws.send_binary(b"\x10" * 70000)
            assert ws.recv() == b"\x10" * 70000
        finally:
            ws.close()
    app.close()


def test_echo_limits_apply(build: Callable[[str], str]) -> None:
    """The engine's limits hold for a C application as for the built-in echo."""
    app = wsuv.load_c_app(build("examples/echo"))
    with running_server(app, max_message_size=1000) as srv:
        with connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=5) as ws:
            ws.send(b"x" * 2000)
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    app.close()


def test_chat_rooms_by_path(build: Callable[[str], str]) -> None:
    app = wsuv.load_c_app(build("examples/chat"), arg="3")
    with running_server(app) as srv:
        url = f"ws://127.0.0.1:{srv.port}"
        with connect(f"{url}/lobby", open_timeout=5) as a, \
                connect(f"{url}/lobby", open_timeout=5) as b, \
                connect(f"{url}/kitchen", open_timeout=5) as c:
            assert a.recv(timeout=5) == "joined lobby (1 here)"
            assert b.recv(timeout=5) == "joined lobby (2 here)"
            assert c.recv(timeout=5) == "joined kitchen (1 here)"
            a.send("hello lobby")
            assert b.recv(timeout=5) == "hello lobby"
            assert a.recv(timeout=5) == "hello lobby"
            c.send(b"\x01kitchen only")
            assert c.recv(timeout=5) == b"\x01kitchen only"
            with pytest.raises(TimeoutError):
                a.recv(timeout=0.3)  # nothing from the kitchen
            b.close()
            a.send("after b left")
            assert a.recv(timeout=5) == "after b left"
            # b's place was taken by a's index: a third joins as the 2nd.
            with connect(f"{url}/lobby", open_timeout=5) as d:
                assert d.recv(timeout=5) == "joined lobby (2 here)"
                d.send("d here")
                assert a.recv(timeout=5) == "d here"
        with pytest.raises(InvalidStatus) as bad:
            connect(f"{url}/Not_A_Room", open_timeout=5)
        assert bad.value.response.status_code == 404
    app.close()


def test_chat_full_room_is_503(build: Callable[[str], str]) -> None:
    app = wsuv.load_c_app(build("examples/chat"), arg="1")
    with running_server(app) as srv:
        url = f"ws://127.0.0.1:{srv.port}/solo"
        with connect(url, open_timeout=5) as a:
            assert a.recv(timeout=5) == "joined solo (1 here)"
            with pytest.raises(InvalidStatus) as full:
                connect(url, open_timeout=5)
            assert full.value.response.status_code == 503
            assert b"room full" in full.value.response.body
    app.close()


def test_graceful_stop_closes_with_1001(build: Callable[[str], str]) -> None:
    app = wsuv.load_c_app(build("examples/echo"))
    with running_server(app) as srv:
        with connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=5) as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
            srv.stop(graceful=True)
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    app.close()


def test_echo_negotiates_permessage_deflate(build: Callable[[str], str]) -> None:
    """A C application runs on the same engine: deflate is negotiated and the
    echo comes back compressed (RSV1 on the wire), as for the built-in echo."""
    import socket
    import zlib

    from tests.server.srvkit import read_response, upgrade_request
    from wsuv.frames import encode_frame

    app = wsuv.load_c_app(build("examples/echo"))
    with running_server(app) as srv:
        with connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=5) as ws:
            assert ws.protocol.extensions  # the websockets client offered, we accepted
            text = '{"k": "' + "v" * 2000 + '"}'
            ws.send(text)
            assert ws.recv(timeout=5) == text
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(upgrade_request(extra=[("Sec-WebSocket-Extensions",
                                                 "permessage-deflate")]))
            resp = read_response(sock)
            assert resp.headers["sec-websocket-extensions"].startswith("permessage-deflate")
            sock.sendall(encode_frame(1, b"a" * 3000, mask=b"abcd"))
            data = resp.rest
            while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F if data[1] & 0x7F < 126
                                                    else 2 + int.from_bytes(data[2:4], "big")):
                data += sock.recv(65536)
            assert data[0] & 0x40  # RSV1: compressed
            n = data[1] & 0x7F
            payload = data[2:2 + n] if n < 126 else data[4:4 + int.from_bytes(data[2:4], "big")]
            assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == b"a" * 3000
    app.close()
