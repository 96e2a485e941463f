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


# One read (csrc/server_int.h READ_BUF_SIZE): reading stops before the next
# one, so the queue may exceed max_queue by what that read held, no more.
READ_BYTES = 256 * 1024


def test_max_queue_is_a_tight_bound_kept_in_c(run: Any) -> None:
    # 10 MB of 1 KB messages against max_queue=(4, 1): reading stops in C at
    # the 4th queued message, before libuv's next read, so at most one read's
    # messages are queued past the mark, at every moment of the drain too.
    N = 10000
    size = 1005
    bound = 4 + READ_BYTES // 1000 + 1
    got: list[str] = []
    peaks: list[int] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def handler(ws: wsuv.aio.Connection) -> None:
            await gate.wait()
            async for message in ws:
                got.append(message)  # type: ignore[arg-type]
                peaks.append(len(ws._inbox))
                await ws.send(message)

        async with wsuv.aio.serve(handler, port=0, max_queue=(4, 1)) as server:
            # Uncompressed: one read is then at most 256 KiB of messages.
            async with connect(url(server), compression=None) as client:
                async def flood() -> None:
                    for i in range(N):
                        await client.send("x" * (size - 5) + f"{i:05}")
                # The peer's sends block (backpressure) until the handler reads.
                sender = asyncio.create_task(flood())
                await asyncio.sleep(0.5)
                conn = next(iter(server.server.handler.conns.values()))
                queued = sum(len(m) for m in conn._inbox)
                assert 4 <= len(conn._inbox) <= bound, len(conn._inbox)
                assert queued <= 4 * size + READ_BYTES, queued
                assert conn.ws._c is not None
                assert wsuv._core.lib.ws_server_conn_consumed(conn.ws._c, 0) == 1  # paused
                assert not sender.done()
                gate.set()
                for _ in range(N):
                    await asyncio.wait_for(client.recv(), T)
                await asyncio.wait_for(sender, T)
    run(main())
    assert got == ["x" * (size - 5) + f"{i:05}" for i in range(N)]
    assert max(peaks) < bound, max(peaks)


def test_max_queue_none_counts_nothing(run: Any) -> None:
    # Unbounded: everything the peer sent is queued while the handler waits.
    N = 3000

    async def main() -> int:
        gate = asyncio.Event()
        seen: list[int] = []

        async def handler(ws: wsuv.aio.Connection) -> None:
            await gate.wait()
            seen.append(len(ws._inbox))
            async for message in ws:
                await ws.send(message)

        async with wsuv.aio.serve(handler, port=0, max_queue=None) as server:
            async with connect(url(server)) as client:
                for i in range(N):
                    await client.send(f"m{i}")
                deadline = time.monotonic() + T
                conn = None
                while time.monotonic() < deadline:
                    conn = next(iter(server.server.handler.conns.values()), None)
                    if conn is not None and len(conn._inbox) == N:
                        break
                    await asyncio.sleep(0.02)
                gate.set()
                for i in range(N):
                    assert await asyncio.wait_for(client.recv(), T) == f"m{i}"
        return seen[0]
    assert run(main()) == N


def _flood_frames(payload: int, count: int) -> bytes:
    """`count` masked binary frames (mask key 0: the payload as is)."""
    assert payload < 65536
    head = bytes([0x82, 0x80 | 126]) + payload.to_bytes(2, "big") + b"\0\0\0\0"
    return (head + b"y" * payload) * count


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_slow_consumer_blocks_the_peer_instead_of_growing_memory(run: Any) -> None:
    # A raw peer floods 50 MB (800 messages of 64,000 B) at a handler that
    # does not read yet: the server stops reading at max_queue, the kernel's
    # buffers fill, and the peer's writes block; the server's Python memory
    # (tracemalloc) and RSS stay far below the flood. Then all of it arrives.
    import tracemalloc

    payload, count = 64000, 800
    frames = _flood_frames(payload, count)
    view = memoryview(frames)
    result: dict[str, int] = {}

    async def main() -> None:
        gate = asyncio.Event()
        done = asyncio.Event()
        taken = [0]

        async def handler(ws: wsuv.aio.Connection) -> None:
            await gate.wait()
            async for message in ws:
                assert len(message) == payload
                taken[0] += 1
                if taken[0] == count:
                    done.set()

        async with wsuv.aio.serve(handler, port=0, max_queue=(16, 4)) as server:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=T)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += await asyncio.to_thread(sock.recv, 4096)
            assert head.startswith(b"HTTP/1.1 101")
            sock.setblocking(False)
            rss0 = _rss()
            tracemalloc.start()
            try:
                sent = 0
                stalled_since = None
                deadline = time.monotonic() + 3 * T
                while sent < len(frames) and time.monotonic() < deadline:
                    try:
                        sent += sock.send(view[sent:sent + (1 << 20)])
                        stalled_since = None
                    except BlockingIOError:
                        now = time.monotonic()
                        stalled_since = stalled_since or now
                        if now - stalled_since > 0.5:
                            break  # blocked for half a second: backpressure
                    await asyncio.sleep(0.001)
                result["stalled_at"] = sent
                result["traced_peak"] = tracemalloc.get_traced_memory()[1]
                result["rss_growth"] = _rss() - rss0
                conn = next(iter(server.server.handler.conns.values()))
                result["queued"] = len(conn._inbox)
                gate.set()
                sock.setblocking(True)
                await asyncio.to_thread(sock.sendall, view[sent:])
                await asyncio.wait_for(done.wait(), 3 * T)
            finally:
                tracemalloc.stop()
                sock.close()
    run(main())
    print(result)  # the numbers, for -s
    flood = 800 * 64008
    assert result["stalled_at"] < flood // 2, result  # the peer's writes blocked
    assert result["queued"] <= 16 + READ_BYTES // payload + 1, result
    assert result["traced_peak"] < 8 << 20, result  # not the 50 MB
    assert result["rss_growth"] < 24 << 20, result


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
    # A plain def where a coroutine function belongs: the sentence names both forms.
    with pytest.raises(TypeError, match=r"coroutine function \(async def handler\(ws\)\) "
                                        r"or a wsuv.Handler instance or class, not the function"):
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


def test_websockets_server_sockets_attribute_says_where_the_port_is(run: Any) -> None:
    async def main() -> None:
        async with wsuv.aio.serve(echo, port=0) as server:
            with pytest.raises(AttributeError, match=r"the bound port is server\.port"):
                server.sockets[0].getsockname()
            assert server.addresses == [f"ws://127.0.0.1:{server.port}/"]
    run(main())
