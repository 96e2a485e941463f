"""wsuv.aio: the C server driven by a running asyncio loop (and uvloop when
installed), async handlers, and the traps of embedding one loop in another.

Real sockets on 127.0.0.1, clients from the `websockets` library; every wait
is bounded by asyncio.wait_for or a deadline.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

import wsuv
import wsuv.aio

T = 5.0  # seconds any single wait may take


def url(server: wsuv.aio.AioServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def echo(ws: wsuv.aio.Connection) -> None:
    async for message in ws:
        await ws.send(message)


# -- the connection-handler style ----------------------------------------------------

def test_connection_handler_echo_in_order(run: Any) -> None:
    async def main() -> None:
        async with wsuv.aio.serve(echo, port=0) as server:
            async with connect(url(server)) as client:
                for i in range(100):
                    await client.send(f"m{i}" if i % 2 else f"m{i}".encode())
                got = [await asyncio.wait_for(client.recv(), T) for _ in range(100)]
                assert got == [f"m{i}" if i % 2 else f"m{i}".encode() for i in range(100)]
    run(main())


def test_await_serve_and_request_attributes(run: Any) -> None:
    seen: list[tuple[str, str, str]] = []

    async def handler(ws: wsuv.aio.Connection) -> None:
        seen.append((ws.path, ws.request.query_params["name"][0], ws.remote_address))
        await ws.send(await ws.recv())
        await ws.close(4001, "bye")

    async def main() -> None:
        server = await wsuv.aio.serve(handler, port=0)
        try:
            async with connect(url(server, "/room?name=ann")) as client:
                await client.send("hi")
                assert await asyncio.wait_for(client.recv(), T) == "hi"
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(client.recv(), T)
                assert info.value.rcvd is not None and info.value.rcvd.code == 4001
        finally:
            server.close()
            await asyncio.wait_for(server.wait_closed(), T)
    run(main())
    assert seen[0][0] == "/room" and seen[0][1] == "ann"
    assert seen[0][2].startswith("127.0.0.1:")


def test_slow_async_handlers_run_concurrently_and_ping_stays_fast(run: Any) -> None:
    async def slow(ws: wsuv.aio.Connection) -> None:
        async for message in ws:
            if ws.path == "/slow":
                await asyncio.sleep(0.05)  # a database call
            await ws.send(message)

    async def main() -> tuple[float, float]:
        async with wsuv.aio.serve(slow, port=0) as server:
            clients = [await connect(url(server, "/slow")) for _ in range(50)]
            async with connect(url(server, "/fast")) as fast:
                start = time.monotonic()
                for c in clients:
                    await c.send("q")

                async def pings() -> float:
                    worst = 0.0
                    for _ in range(5):
                        t0 = time.monotonic()
                        await fast.send("p")
                        assert await asyncio.wait_for(fast.recv(), T) == "p"
                        worst = max(worst, time.monotonic() - t0)
                    return worst

                worst, answers = await asyncio.gather(
                    pings(), asyncio.gather(*(asyncio.wait_for(c.recv(), T) for c in clients)))
                elapsed = time.monotonic() - start
                assert answers == ["q"] * 50
            for c in clients:
                await c.close()
        return elapsed, worst

    elapsed, worst = run(main())
    assert elapsed < 1.0, elapsed   # serially: 50 x 50 ms = 2.5 s
    assert worst < 0.045, worst     # never stuck behind a 50 ms handler


def test_a_16_mib_send_from_a_task_completes_without_inbound_traffic(run: Any) -> None:
    """A write queued between libuv turns must reach epoll without waiting for a read."""
    big = os.urandom(16 << 20)

    async def pusher(ws: wsuv.aio.Connection) -> None:
        await ws.recv()
        await asyncio.sleep(0.1)  # nothing arrives meanwhile: no read to wake the loop
        await ws.send(big)
        await ws.wait_closed()

    async def main() -> None:
        async with wsuv.aio.serve(pusher, port=0, max_message_size=32 << 20) as server:
            async with connect(url(server), max_size=None) as client:
                await client.send("go")
                assert await asyncio.wait_for(client.recv(), T) == big
    run(main())


def test_timer_started_from_a_task_fires_on_time(run: Any) -> None:
    """call_later from outside uv_run: the cached clock must not make it late."""
    async def main() -> float:
        async with wsuv.aio.serve(echo, port=0) as server:
            await asyncio.sleep(0.3)  # the uv clock is not updated while idle
            fired = asyncio.get_running_loop().create_future()
            t0 = time.monotonic()
            server.server.call_later(0.2, lambda: fired.set_result(time.monotonic() - t0))
            return await asyncio.wait_for(fired, T)
    took = run(main())
    assert 0.19 <= took < 0.35, took


def test_max_queue_pauses_reading_for_a_slow_handler(run: Any) -> None:
    # 10 MB of messages: more than one wake-up's reads can bring (libuv reads up
    # to 32 times per readable event, 256 KiB each, before the batch reaches
    # Python and the pause takes effect), so the pause shows.
    N = 10000
    got: list[str] = []
    release = asyncio.Event

    async def main() -> None:
        gate = release()

        async def handler(ws: wsuv.aio.Connection) -> None:
            await gate.wait()
            async for message in ws:
                got.append(message)  # type: ignore[arg-type]
                await ws.send(message)

        async with wsuv.aio.serve(handler, port=0, max_queue=(4, 1)) as server:
            async with connect(url(server)) as client:
                for i in range(N):
                    await client.send("x" * 1000 + str(i))
                await asyncio.sleep(0.3)
                conn = next(iter(server.server.handler.conns.values()))
                # Reading paused at 4 queued messages; what that wake-up's reads
                # brought (at most 32 x 256 KiB) is queued too, the rest waits in
                # the kernel.
                queued = sum(len(m) for m in conn._inbox)
                assert len(conn._inbox) >= 4 and queued <= 4 * 1005 + 32 * 256 * 1024, queued
                assert len(conn._inbox) < N
                assert conn._paused
                gate.set()
                for _ in range(N):
                    await asyncio.wait_for(client.recv(), T)
    run(main())
    assert got == ["x" * 1000 + str(i) for i in range(N)]


def test_handler_exception_closes_only_its_connection_with_1011(run: Any) -> None:
    async def handler(ws: wsuv.aio.Connection) -> None:
        message = await ws.recv()
        if message == "boom":
            raise RuntimeError("boom")
        await ws.send(message)
        await ws.wait_closed()

    async def main() -> None:
        async with wsuv.aio.serve(handler, port=0) as server:
            async with connect(url(server)) as bad, connect(url(server)) as good:
                await bad.send("boom")
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(bad.recv(), T)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1011
                await good.send("ok")
                assert await asyncio.wait_for(good.recv(), T) == "ok"
    run(main())


def test_broadcast_to_connections(run: Any) -> None:
    members: set[wsuv.aio.Connection] = set()

    async def chat(ws: wsuv.aio.Connection) -> None:
        members.add(ws)
        try:
            async for message in ws:
                wsuv.broadcast(members, message)
        finally:
            members.discard(ws)

    async def main() -> None:
        async with wsuv.aio.serve(chat, port=0) as server:
            clients = [await connect(url(server)) for _ in range(5)]
            while len(members) < 5:
                await asyncio.sleep(0.01)
            await clients[0].send("hello all")
            for c in clients:
                assert await asyncio.wait_for(c.recv(), T) == "hello all"
            for c in clients:
                await c.close()
    run(main())


# -- Handler classes with async methods ---------------------------------------------------

class AsyncRoom(wsuv.Handler):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def on_connect(self, request: wsuv.Request) -> Any:  # type: ignore[override]
        await asyncio.sleep(0.02)  # e.g. an auth lookup
        if request.path == "/deny":
            return wsuv.Response(403, "no")
        if request.path == "/broken":
            raise RuntimeError("auth service down")
        if request.path == "/weird":
            return 403
        return None

    async def on_open(self, ws: wsuv.WebSocket) -> None:  # type: ignore[override]
        self.events.append("open")

    async def on_message(self, ws: wsuv.WebSocket,  # type: ignore[override]
                         message: str | bytes) -> None:
        await asyncio.sleep(0.001 * (5 - int(message)))  # later messages finish faster
        self.events.append(f"msg {message}")
        ws.send(message)

    async def on_close(self, ws: wsuv.WebSocket, code: int,  # type: ignore[override]
                       reason: str) -> None:
        self.events.append(f"close {code}")


def test_async_handler_methods_run_in_order_per_connection(run: Any) -> None:
    room = AsyncRoom()

    async def main() -> None:
        async with wsuv.aio.serve(room, port=0) as server:
            async with connect(url(server)) as client:
                for i in range(5):
                    await client.send(str(i))
                got = [await asyncio.wait_for(client.recv(), T) for _ in range(5)]
                assert got == [str(i) for i in range(5)]
            for _ in range(100):
                if "close 1000" in room.events:
                    break
                await asyncio.sleep(0.01)
    run(main())
    assert room.events == ["open"] + [f"msg {i}" for i in range(5)] + ["close 1000"]


def test_async_on_connect_is_awaited_before_the_101(run: Any) -> None:
    async def main() -> None:
        async with wsuv.aio.serve(AsyncRoom(), port=0) as server:
            for path, status in (("/deny", 403), ("/broken", 500), ("/weird", 500)):
                with pytest.raises(InvalidStatus) as info:
                    async with connect(url(server, path)):
                        pass
                assert info.value.response.status_code == status
            async with connect(url(server)) as client:  # and the server goes on
                await client.send("1")
                assert await asyncio.wait_for(client.recv(), T) == "1"
    run(main())


def test_first_frames_sent_with_the_request_are_kept_while_on_connect_waits(run: Any) -> None:
    async def main() -> bytes:
        async with wsuv.aio.serve(AsyncRoom(), port=0) as server:
            loop = asyncio.get_running_loop()
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.setblocking(False)
            from wsuv.frames import encode_frame
            request = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n")
            await loop.sock_sendall(sock, request + encode_frame(1, b"3", mask=b"abcd"))
            data = b""
            deadline = time.monotonic() + T
            while b"\x81\x013" not in data and time.monotonic() < deadline:
                data += await asyncio.wait_for(loop.sock_recv(sock, 4096), T)
            sock.close()
            return data
    data = run(main())
    assert data.startswith(b"HTTP/1.1 101") and data.endswith(b"\x81\x013")


def test_handshake_timeout_covers_an_awaited_on_connect(run: Any) -> None:
    class Stuck(wsuv.Handler):
        async def on_connect(self, request: wsuv.Request) -> None:  # type: ignore[override]
            await asyncio.sleep(30)

    async def main() -> float:
        async with wsuv.aio.serve(Stuck(), port=0, handshake_timeout=0.3) as server:
            t0 = time.monotonic()
            with pytest.raises((InvalidHandshake, ConnectionClosed, EOFError, OSError)):
                async with connect(url(server), open_timeout=T):
                    pass
            return time.monotonic() - t0
    assert run(main()) < 2.0


# -- a plain Handler on the embedded loop ---------------------------------------------------

class SyncEcho(wsuv.Handler):
    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        ws.send(message)


def test_plain_handler_and_c_echo_run_embedded(run: Any) -> None:
    async def main() -> None:
        for handler in (SyncEcho(), None):
            async with wsuv.aio.serve(handler, port=0) as server:
                async with connect(url(server)) as client:
                    for i in range(50):
                        await client.send(str(i))
                    got = [await asyncio.wait_for(client.recv(), T) for _ in range(50)]
                    assert got == [str(i) for i in range(50)]
    run(main())


def test_misuse_is_one_sentence() -> None:
    with pytest.raises(RuntimeError, match="running asyncio loop"):
        wsuv.aio.AioServer(echo, {"port": 0}, 16)

    async def bad(**kw: Any) -> None:
        await wsuv.aio.serve(echo, port=0, **kw)

    with pytest.raises(ValueError, match="handle_signals"):
        asyncio.run(bad(handle_signals=True))
    with pytest.raises(ValueError, match="max_queue"):
        asyncio.run(bad(max_queue=(1, 5)))
    with pytest.raises(TypeError, match="wsuv.Handler instance or class"):
        asyncio.run(wsuv.aio.serve(lambda ws: None, port=0)._ready())
    with pytest.raises(TypeError, match=r"wsuv\.aio\.serve"):
        wsuv.Server(echo)


# -- lifecycle --------------------------------------------------------------------------------

def test_asyncio_run_exits_cleanly_with_connections_open() -> None:
    """Main returns with a client connected: it gets 1001, the process exits 0."""
    code = textwrap.dedent("""
        import asyncio, sys, wsuv.aio
        async def echo(ws):
            async for m in ws:
                await ws.send(m)
        async def main():
            server = await wsuv.aio.serve(echo, port=0)
            print(server.port, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        asyncio.run(main())
        print("exited", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())

        async def client() -> int:
            async with connect(f"ws://127.0.0.1:{port}/") as c:
                await c.send("x")
                assert await asyncio.wait_for(c.recv(), T) == "x"
                proc.stdin.write("go\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(c.recv(), T)
                assert info.value.rcvd is not None
                return info.value.rcvd.code

        assert asyncio.run(client()) == 1001
        assert proc.wait(T) == 0
        assert proc.stdout.read().strip() == "exited"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cancelling_serve_forever_closes_gracefully(run: Any) -> None:
    async def main() -> int:
        server = await wsuv.aio.serve(echo, port=0)
        task = asyncio.get_running_loop().create_task(server.serve_forever())
        async with connect(url(server)) as client:
            await client.send("a")
            assert await asyncio.wait_for(client.recv(), T) == "a"
            task.cancel()
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(client.recv(), T)
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.wait_closed(), T)
        assert info.value.rcvd is not None
        return info.value.rcvd.code
    assert run(main()) == 1001


def test_idle_embedded_server_does_not_spin(run: Any) -> None:
    """Idle connections cost no CPU: the loop sleeps in epoll (no timeout of 0)."""
    async def main() -> float:
        async with wsuv.aio.serve(echo, port=0) as server:
            clients = [await connect(url(server), ping_interval=None) for _ in range(200)]
            await asyncio.sleep(0.2)
            before = resource.getrusage(resource.RUSAGE_SELF)
            await asyncio.sleep(2.0)
            after = resource.getrusage(resource.RUSAGE_SELF)
            for c in clients:
                await c.close()
            return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    cpu = run(main())
    assert cpu < 0.1, cpu  # 2 s of wall time; a spinning loop burns ~2 s
