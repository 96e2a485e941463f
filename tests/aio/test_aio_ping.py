"""wsuv.aio: a connection handler's ``await ws.ping()`` waits for the pong
and returns the round trip (as wsuv's clients do); it ends in TimeoutError
when no pong comes and in ConnectionClosed when the connection ends first.

Real sockets on 127.0.0.1: a `websockets` client (it answers pings) and a
raw asyncio stream that never does; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest
from websockets.asyncio.client import connect

import wsuv
import wsuv.aio

T = 5.0  # seconds any single wait may take


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that opens, then answers nothing (no pongs)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame with a short payload: (opcode, payload)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), T)
    assert second < 126
    return first & 0x0F, await asyncio.wait_for(reader.readexactly(second), T)


def test_ping_returns_the_round_trip(run: Any) -> None:
    async def handler(ws: wsuv.aio.Connection) -> None:
        rtt = await ws.ping()
        again = await ws.ping(b"mine", timeout=T)
        await ws.send(f"{type(rtt).__name__} {0 <= rtt < T} {0 <= again < T}")
        # str is sent as UTF-8 and bytearray as its bytes, as websockets does.
        assert 0 <= await ws.ping("text", timeout=T) < T
        assert 0 <= await ws.ping(bytearray(b"ba"), timeout=T) < T
        with pytest.raises(ValueError, match="at most 125 bytes"):
            await ws.ping(b"x" * 126)
        with pytest.raises(TypeError, match="a ping payload is str or bytes-like, not int"):
            await ws.ping(5)  # type: ignore[arg-type]
        # Two waits on one payload cannot be told apart: the second is refused.
        first = asyncio.create_task(ws.ping(b"same"))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already waits for its pong"):
            await ws.ping(b"same")
        await first
        await ws.send("done")
        async for _ in ws:
            pass

    async def main() -> None:
        async with wsuv.aio.serve(handler, port=0) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/") as client:
                assert await asyncio.wait_for(client.recv(), T) == "float True True"
                assert await asyncio.wait_for(client.recv(), T) == "done"
    run(main())


def test_ping_without_a_pong_times_out_then_a_close_ends_the_wait(run: Any) -> None:
    outcomes: list[str] = []

    async def handler(ws: wsuv.aio.Connection) -> None:
        try:
            await ws.ping(b"one", timeout=0.2)
        except TimeoutError as exc:
            outcomes.append(str(exc))
        await ws.send("timed out")
        try:
            await ws.ping(b"two", timeout=T)
        except wsuv.ConnectionClosed:
            outcomes.append("closed")

    async def main() -> None:
        async with wsuv.aio.serve(handler, port=0) as server:
            assert server.port is not None
            reader, writer = await raw_client(server.port)
            assert await read_frame(reader) == (0x9, b"one")
            assert await read_frame(reader) == (0x1, b"timed out")
            assert await read_frame(reader) == (0x9, b"two")
            writer.close()  # gone without a pong (or a close frame)
            for _ in range(100):
                if len(outcomes) == 2:
                    break
                await asyncio.sleep(0.02)
    run(main())
    assert outcomes == ["no pong within 0.2 s", "closed"]
