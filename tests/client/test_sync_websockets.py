"""wsuv.sync against the `websockets` asyncio server (in a thread), real sockets."""

from __future__ import annotations

import random
from http import HTTPStatus
from typing import Any

import pytest
from clientkit import TIMEOUT, websockets_server

import wsuv
import wsuv.sync

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20]


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


def payload(kind: str, size: int) -> str | bytes:
    rnd = random.Random(size)
    if kind == "binary":
        return rnd.randbytes(size)
    return "".join(rnd.choice("aé€😀") for _ in range(size // 4)) + "x" * (size % 4)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_sizes(compression: str | None) -> None:
    with websockets_server(echo, compression="deflate") as url, \
            wsuv.sync.connect(url, compression=compression, open_timeout=TIMEOUT) as ws:
        if compression:
            assert ws.extensions and ws.extensions[0].startswith("permessage-deflate")
        else:
            assert ws.extensions == []
        for size in SIZES:
            for kind in ("text", "binary"):
                message = payload(kind, size)
                ws.send(message)
                got = ws.recv(timeout=TIMEOUT)
                assert type(got) is type(message) and got == message, (kind, size)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_16_mib_both_ways(compression: str | None) -> None:
    big = random.Random(1).randbytes(16 << 20)
    with websockets_server(echo) as url, \
            wsuv.sync.connect(url, compression=compression, max_message_size=None) as ws:
        ws.send(big)
        assert ws.recv(timeout=60) == big


def test_server_declines_deflate() -> None:
    with websockets_server(echo, compression=None) as url, wsuv.sync.connect(url) as ws:
        assert ws.extensions == []
        ws.send("plain")
        assert ws.recv(timeout=TIMEOUT) == "plain"


def test_offer_is_a_browsers() -> None:
    seen: list[str | None] = []

    async def handler(ws: Any) -> None:
        seen.append(ws.request.headers.get("Sec-WebSocket-Extensions"))
        await ws.close()

    with websockets_server(handler) as url, wsuv.sync.connect(url) as ws:
        with pytest.raises(wsuv.ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert seen == ["permessage-deflate; client_max_window_bits"]


def test_fragmented_messages_from_the_server() -> None:
    async def handler(ws: Any) -> None:
        await ws.send(["frag", "mented ", "text"])
        await ws.send([b"\x00\x01", b"", b"\x02" * 70000])
        await ws.recv()

    with websockets_server(handler) as url, wsuv.sync.connect(url) as ws:
        assert ws.recv(timeout=TIMEOUT) == "fragmented text"
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01" + b"\x02" * 70000


def test_subprotocol_negotiated() -> None:
    with websockets_server(echo, subprotocols=["chat", "superchat"]) as url, \
            wsuv.sync.connect(url, subprotocols=["other", "superchat"]) as ws:
        assert ws.subprotocol == "superchat"
        assert ws.response is not None
        assert ws.response.status == 101
        assert ws.response.headers.get("Sec-WebSocket-Protocol") == "superchat"


def test_request_carries_origin_headers_and_target() -> None:
    seen: list[tuple[str, str | None, str | None]] = []

    async def handler(ws: Any) -> None:
        h = ws.request.headers
        seen.append((ws.request.path, h.get("Origin"), h.get("X-Trace")))
        await ws.close()

    with websockets_server(handler) as url, \
            wsuv.sync.connect(url + "/room/1?user=ann", origin="http://example.com",
                              additional_headers={"X-Trace": "t-42"}) as ws:
        with pytest.raises(wsuv.ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert seen == [("/room/1?user=ann", "http://example.com", "t-42")]


def test_client_close_code_reaches_server() -> None:
    codes: list[tuple[int | None, str | None]] = []

    async def handler(ws: Any) -> None:
        try:
            await ws.recv()
        except Exception:
            pass
        codes.append((ws.close_code, ws.close_reason))

    with websockets_server(handler) as url:
        ws = wsuv.sync.connect(url)
        ws.close(4000, "bye now")
        assert ws.close_code == 4000
    assert codes == [(4000, "bye now")]


def test_server_initiated_close() -> None:
    async def handler(ws: Any) -> None:
        await ws.send("last words")
        await ws.close(4001, "server says")

    with websockets_server(handler) as url, wsuv.sync.connect(url) as ws:
        assert ws.recv(timeout=TIMEOUT) == "last words"
        with pytest.raises(wsuv.ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert (info.value.code, info.value.reason) == (4001, "server says")
        with pytest.raises(wsuv.ConnectionClosed):
            ws.send("too late")


def test_iteration_ends_on_normal_close() -> None:
    async def handler(ws: Any) -> None:
        for i in range(3):
            await ws.send(f"m{i}")
        await ws.close()

    with websockets_server(handler) as url, wsuv.sync.connect(url) as ws:
        assert list(ws) == ["m0", "m1", "m2"]
        assert ws.close_code == 1000


def test_iteration_raises_on_error_close() -> None:
    async def handler(ws: Any) -> None:
        await ws.send("one")
        await ws.close(1011, "oops")

    with websockets_server(handler) as url, wsuv.sync.connect(url) as ws:
        got = []
        with pytest.raises(wsuv.ConnectionClosed) as info:
            for message in ws:
                got.append(message)
        assert got == ["one"] and info.value.code == 1011


def test_ping_pong_both_ways() -> None:
    async def handler(ws: Any) -> None:
        latency = await ws.ping()  # answered by the client's engine
        await ws.send(f"pong after {type(await latency).__name__}")
        await ws.recv()

    with websockets_server(handler) as url, wsuv.sync.connect(url) as ws:
        rtt = ws.ping()
        assert 0 <= rtt < TIMEOUT
        assert ws.ping(b"payload") >= 0
        assert ws.ping("text, sent as UTF-8") >= 0
        with pytest.raises(TypeError, match="a ping payload is str or bytes-like, not int"):
            ws.ping(5)  # type: ignore[arg-type]
        assert ws.recv(timeout=TIMEOUT) == "pong after float"


def test_403_with_body() -> None:
    def refuse(connection: Any, request: Any) -> Any:
        return connection.respond(HTTPStatus.FORBIDDEN, "members only\n")

    with websockets_server(echo, process_request=refuse) as url:
        with pytest.raises(wsuv.InvalidStatus) as info:
            wsuv.sync.connect(url)
    err = info.value
    assert err.status == 403 and err.body == b"members only\n"
    assert "403" in str(err)
    assert isinstance(err, wsuv.InvalidHandshake)
