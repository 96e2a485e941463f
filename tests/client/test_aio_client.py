"""wsuv.aio.connect: the client inside asyncio (and uvloop), against the
websockets asyncio server and wsuv's own, over 127.0.0.1; bounded waits."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest
from websockets.asyncio.server import serve as ws_serve

import wsuv
import wsuv.aio
import wsuv.sync

T = 5.0


async def _ws_echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


def test_against_the_websockets_server(run: Any) -> None:
    async def main() -> None:
        async with ws_serve(_ws_echo, "127.0.0.1", 0, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with wsuv.aio.connect(f"ws://127.0.0.1:{port}/x", max_message_size=None) as ws:
                assert ws.response is not None and ws.response.status == 101
                assert ws.extensions and ws.extensions[0].startswith("permessage-deflate")
                for message in ("héllo", b"\x00\x01", os.urandom(4 << 20), ""):
                    await ws.send(message)
                    assert await ws.recv(timeout=T) == message
                assert await ws.ping() < T
            assert ws.close_code == 1000
    run(main())


def test_against_wsuv_aio_server_and_async_for(run: Any) -> None:
    async def counting(ws: wsuv.aio.Connection) -> None:
        for i in range(3):
            await ws.send(f"n{i}")
        await ws.close(1000, "done")

    async def main() -> list[str | bytes]:
        async with wsuv.aio.serve(counting, port=0) as server:
            got = []
            async with wsuv.aio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                async for message in ws:  # ends on the server's normal close
                    got.append(message)
            with pytest.raises(wsuv.ConnectionClosed):
                await ws.send("after the close")
            return got
    assert run(main()) == ["n0", "n1", "n2"]


def test_a_big_send_from_a_task_completes_without_inbound_traffic(run: Any) -> None:
    big = os.urandom(16 << 20)

    async def sink(ws: wsuv.aio.Connection) -> None:
        message = await ws.recv()
        await ws.send(str(len(message)))
        await ws.wait_closed()

    async def main() -> None:
        async with wsuv.aio.serve(sink, port=0, max_message_size=32 << 20) as server:
            async with wsuv.aio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await asyncio.sleep(0.1)
                await ws.send(big)
                assert await ws.recv(timeout=T) == str(len(big))
    run(main())


def test_failures_are_typed(run: Any) -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await wsuv.aio.connect(f"ws://127.0.0.1:{free}/")
        with pytest.raises(wsuv.InvalidURI):
            await wsuv.aio.connect("https://127.0.0.1/")
        with pytest.raises(ConnectionRefusedError):  # wss:// is TLS over the same TCP
            await wsuv.aio.connect(f"wss://127.0.0.1:{free}/")

        class Deny(wsuv.Handler):
            def on_connect(self, request: wsuv.Request) -> Any:
                return wsuv.Response(403, "go away")

        async with wsuv.aio.serve(Deny(), port=0) as server:
            with pytest.raises(wsuv.InvalidStatus) as info:
                await wsuv.aio.connect(f"ws://127.0.0.1:{server.port}/")
            assert info.value.status == 403
        with pytest.raises(TypeError, match="async with"):
            with wsuv.aio.connect("ws://127.0.0.1:1/"):
                pass
    run(main())


def test_recv_timeout_and_use_after_close(run: Any) -> None:
    async def quiet(ws: wsuv.aio.Connection) -> None:
        await ws.wait_closed()

    async def main() -> None:
        async with wsuv.aio.serve(quiet, port=0) as server:
            ws = await wsuv.aio.connect(f"ws://127.0.0.1:{server.port}/")
            with pytest.raises(TimeoutError):
                await ws.recv(timeout=0.2)
            await ws.close(4001, "bye")
            assert ws.close_code == 4001
            with pytest.raises(wsuv.ConnectionClosed):
                await ws.recv(timeout=T)
    run(main())


def test_async_for_connect_reconnects_after_the_server_comes_back(run: Any) -> None:
    async def main() -> list[str | bytes]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        got: list[str | bytes] = []

        async def restart_later() -> None:
            await asyncio.sleep(0.3)  # the client is retrying meanwhile (refused)
            async with wsuv.aio.serve(_ws_echo_aio, port=port):
                while len(got) < 2:
                    await asyncio.sleep(0.01)

        task = asyncio.get_running_loop().create_task(restart_later())
        async for ws in wsuv.aio.connect(f"ws://127.0.0.1:{port}/", open_timeout=2):
            await ws.send(f"round {len(got)}")
            got.append(await ws.recv(timeout=T))
            if len(got) == 2:
                break
        await task
        return got
    assert run(main()) == ["round 0", "round 1"]


async def _ws_echo_aio(ws: wsuv.aio.Connection) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.parametrize("front", ["wsuv.sync.connect", "wsuv.aio.connect"])
@pytest.mark.parametrize("option, hint", [
    ("max_size", "(here: max_message_size)"),
    ("ssl", "an ssl.SSLContext cannot be used"),
    ("user_agent_header", "additional_headers={'User-Agent': ...}"),
    ("open_timout", "(here: open_timeout)"),
    ("proxy", "no option(s) proxy"),
])
def test_an_option_the_client_does_not_take_is_one_sentence(front: str, option: str,
                                                             hint: str) -> None:
    """websockets' names and typos are told what they are called here, at
    the call (nothing is dialled)."""
    connect = wsuv.sync.connect if front == "wsuv.sync.connect" else wsuv.aio.connect
    with pytest.raises(TypeError) as info:
        connect("ws://127.0.0.1:1/", **{option: 1})
    assert str(info.value).startswith(f"{front} has no option(s) {option}")
    assert hint in str(info.value)
