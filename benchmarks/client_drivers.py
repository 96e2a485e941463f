"""One WebSocket client under load, run as its own process by bench_clients.py.

    python client_drivers.py KIND URL SIZE MESSAGES CONNS DEPTH

Each connection keeps DEPTH binary messages of SIZE bytes in flight against an
echo server (DEPTH 1: request/response) until MESSAGES echoes came back over
all CONNS connections; the first tenth (at least one per connection) is a
warm-up. Prints one JSON line: echoes measured, this process's CPU seconds
(user + system, every thread: ``time.process_time``) and wall seconds over
the measured part. Sync clients support CONNS 1 only (no thread per
connection is what they are compared on).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any


class Meter:
    """Counts echoes; starts the clock after the warm-up, stops at the end."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.warm = max(1, total // 10)
        self.n = 0
        self.t0 = self.c0 = 0.0
        self.t1 = self.c1 = 0.0

    def tick(self) -> bool:
        """One echo came back; False once the run is complete."""
        self.n += 1
        if self.n == self.warm:
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        if self.n >= self.total + self.warm:
            if not self.t1:
                self.t1, self.c1 = time.perf_counter(), time.process_time()
            return False
        return True

    def report(self) -> None:
        print(json.dumps({"msgs": self.total, "cpu": self.c1 - self.c0,
                          "wall": self.t1 - self.t0}))


def wsuv_callback(url: str, payload: bytes, meter: Meter, conns: int, depth: int) -> None:
    import wsuv

    class Load(wsuv.Handler):
        def __init__(self) -> None:
            self.open = 0

        def on_open(self, ws: wsuv.WebSocket) -> None:
            for _ in range(depth):
                ws.send(payload)

        def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
            if meter.tick():
                ws.send(payload)
            elif meter.n == meter.total + meter.warm:
                ws.server.stop()

    client = wsuv.Client(Load(), compression=None)
    for _ in range(conns):
        client.connect(url)
    client.run()


def wsuv_sync(url: str, payload: bytes, meter: Meter, conns: int, depth: int) -> None:
    import wsuv.sync

    with wsuv.sync.connect(url, compression=None) as ws:
        for _ in range(depth):
            ws.send(payload)
        while True:
            ws.recv()
            if not meter.tick():
                break
            ws.send(payload)


def websocket_client(url: str, payload: bytes, meter: Meter, conns: int, depth: int) -> None:
    import websocket

    ws = websocket.create_connection(url)
    for _ in range(depth):
        ws.send_binary(payload)
    while True:
        ws.recv()
        if not meter.tick():
            break
        ws.send_binary(payload)
    ws.close()


def websockets_sync(url: str, payload: bytes, meter: Meter, conns: int, depth: int) -> None:
    from websockets.sync.client import connect

    with connect(url, compression=None, max_size=None) as ws:
        for _ in range(depth):
            ws.send(payload)
        while True:
            ws.recv()
            if not meter.tick():
                break
            ws.send(payload)


async def _per_connection(one: Callable[[], Any], conns: int) -> None:
    await asyncio.gather(*(one() for _ in range(conns)))


def wsuv_aio(url: str, payload: bytes, meter: Meter, conns: int, depth: int) -> None:
    import wsuv.aio

    async def one() -> None:
        async with wsuv.aio.connect(url, compression=None) as ws:
            for _ in range(depth):
                await ws.send(payload)
            while True:
                await ws.recv()
                if not meter.tick():
                    break
                await ws.send(payload)

    asyncio.run(_per_connection(one, conns))


def websockets_asyncio(url: str, payload: bytes, meter: Meter, conns: int, depth: int) -> None:
    from websockets.asyncio.client import connect

    async def one() -> None:
        async with connect(url, compression=None, max_size=None) as ws:
            for _ in range(depth):
                await ws.send(payload)
            while True:
                await ws.recv()
                if not meter.tick():
                    break
                await ws.send(payload)

    asyncio.run(_per_connection(one, conns))


def aiohttp_client(url: str, payload: bytes, meter: Meter, conns: int, depth: int) -> None:
    import aiohttp

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async def one() -> None:
                async with session.ws_connect(url, compress=0, max_msg_size=0,
                                              autoping=True) as ws:
                    for _ in range(depth):
                        await ws.send_bytes(payload)
                    while True:
                        await ws.receive()
                        if not meter.tick():
                            break
                        await ws.send_bytes(payload)

            await _per_connection(one, conns)

    asyncio.run(main())


def picows_client(url: str, payload: bytes, meter: Meter, conns: int, depth: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    async def main() -> None:
        done = asyncio.get_running_loop().create_future()

        class Load(WSListener):  # type: ignore[misc]
            def on_ws_connected(self, transport: WSTransport) -> None:
                for _ in range(depth):
                    transport.send(WSMsgType.BINARY, payload)

            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type != WSMsgType.BINARY:
                    return
                if meter.tick():
                    transport.send(WSMsgType.BINARY, payload)
                elif not done.done():
                    done.set_result(None)

        transports = []
        for _ in range(conns):
            transport, _listener = await ws_connect(Load, url, max_frame_size=1 << 24)
            transports.append(transport)
        await done
        for transport in transports:
            transport.disconnect()

    asyncio.run(main())


KINDS: dict[str, tuple[Callable[..., None], str | None]] = {
    # name: (driver, event loop it needs: None, "asyncio" or "uvloop")
    "wsuv-callback": (wsuv_callback, None),
    "wsuv-sync": (wsuv_sync, None),
    "wsuv-aio-asyncio": (wsuv_aio, "asyncio"),
    "wsuv-aio-uvloop": (wsuv_aio, "uvloop"),
    "websocket-client": (websocket_client, None),
    "websockets-sync": (websockets_sync, None),
    "websockets-asyncio": (websockets_asyncio, "asyncio"),
    "picows-uvloop": (picows_client, "uvloop"),
    "aiohttp": (aiohttp_client, "asyncio"),
}
SYNC_ONLY = ("wsuv-sync", "websocket-client", "websockets-sync")


def main() -> None:
    kind, url, size, messages, conns, depth = sys.argv[1:7]
    driver, loop = KINDS[kind]
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    meter = Meter(int(messages))
    driver(url, b"\xa5" * int(size), meter, int(conns), int(depth))
    meter.report()


if __name__ == "__main__":
    main()
