"""wsuv.aio: a connection's task woken in place (its step runs inside the C
callback that delivered the message). What a task relies on must still hold:
its own context and identity, cancellation, timeouts around recv(), and an
exception that asyncio lets through (SystemExit) reaching the loop.

Real sockets on 127.0.0.1, clients from the `websockets` library; every wait
is bounded by asyncio.wait_for.
"""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
from typing import Any

import pytest
from websockets.asyncio.client import connect

import wsuv
import wsuv.aio
from tests.conftest import LOOP_KINDS

T = 5.0  # seconds any single wait may take

_who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def url(server: wsuv.aio.AioServer) -> str:
    return f"ws://127.0.0.1:{server.port}/"


def test_handler_keeps_its_context_and_task_across_messages(run: Any) -> None:
    async def handler(ws: wsuv.aio.Connection) -> None:
        me = asyncio.current_task()
        _who.set(f"conn-{ws.id}")
        async for message in ws:
            same = asyncio.current_task() is me
            await ws.send(f"{message!r} {_who.get() == f'conn-{ws.id}'} {same}")

    async def main() -> None:
        async with wsuv.aio.serve(handler, port=0) as server:
            async with connect(url(server)) as a, connect(url(server)) as b:
                for i in range(20):
                    await a.send(f"a{i}")
                    await b.send(f"b{i}")
                    assert await asyncio.wait_for(a.recv(), T) == f"'a{i}' True True"
                    assert await asyncio.wait_for(b.recv(), T) == f"'b{i}' True True"
        assert _who.get() == "nobody"  # the handler's value stayed in its own context
    run(main())


def test_cancelling_a_handler_that_waits_for_a_message(run: Any) -> None:
    tasks: list[asyncio.Task[Any]] = []
    outcome: list[str] = []

    async def handler(ws: wsuv.aio.Connection) -> None:
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            async for message in ws:
                await ws.send(message)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    async def main() -> None:
        async with wsuv.aio.serve(handler, port=0) as server:
            async with connect(url(server)) as client:
                await client.send("one")
                assert await asyncio.wait_for(client.recv(), T) == "one"
                tasks[0].cancel()  # it waits in `async for` now
                await asyncio.wait_for(asyncio.wait([tasks[0]]), T)
                assert tasks[0].cancelled()
                assert outcome == ["cancelled"]
                # A message after the cancellation wakes nothing (and breaks nothing).
                await client.send("two")
                await asyncio.sleep(0.05)
                assert len(tasks) == 1
    run(main())


def test_recv_under_a_timeout_then_the_next_message(run: Any) -> None:
    async def handler(ws: wsuv.aio.Connection) -> None:
        timeouts = 0
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), 0.02)
            except TimeoutError:
                timeouts += 1
                continue
            except wsuv.ConnectionClosed:
                return
            await ws.send(f"{message!s} after {min(timeouts, 1)} timeout(s)")
            timeouts = 0

    async def main() -> None:
        async with wsuv.aio.serve(handler, port=0) as server:
            async with connect(url(server)) as client:
                for i in range(5):
                    await asyncio.sleep(0.06)  # a few timed-out recv() first
                    await client.send(f"m{i}")
                    assert await asyncio.wait_for(client.recv(), T) == f"m{i} after 1 timeout(s)"
                # Several messages at once still come in order, none lost.
                for i in range(50):
                    await client.send(f"n{i}")
                got = [await asyncio.wait_for(client.recv(), T) for _ in range(50)]
                assert [g.split()[0] for g in got] == [f"n{i}" for i in range(50)]
    run(main())


def test_send_is_awaitable_a_task_a_call_from_another_thread_and_eager(run: Any) -> None:
    """send() sends at the call and returns something to await: a finished
    future (which create_task and wait_for also take), or a coroutine when
    it must wait. From another thread, it sends once awaited on the loop."""
    seen: list[str] = []

    async def handler(ws: wsuv.aio.Connection) -> None:
        loop = asyncio.get_running_loop()
        async for message in ws:
            if message == "task":
                await asyncio.wait_for(asyncio.create_task(ws.send("from a task")), T)
            elif message == "wait_for":
                await asyncio.wait_for(ws.send("under wait_for"), T)
            elif message == "gather":
                await asyncio.gather(ws.send("g1"), ws.send("g2"))
            elif message == "not awaited":
                pending = ws.send("sent at the call")
                seen.append(type(pending).__name__)
                await asyncio.sleep(0)
                await pending  # awaiting it later is harmless
            elif message == "thread":
                def other() -> None:
                    fut = asyncio.run_coroutine_threadsafe(ws.send("from a thread"), loop)
                    fut.result(T)
                await asyncio.wait_for(asyncio.to_thread(other), T)
            elif message == "close":
                await ws.close()
                with pytest.raises(wsuv.ConnectionClosed):
                    await ws.send("after the close")
                seen.append("refused after close")
                return

    async def main() -> None:
        async with wsuv.aio.serve(handler, port=0) as server:
            async with connect(url(server)) as client:
                for ask, want in (("task", ["from a task"]), ("wait_for", ["under wait_for"]),
                                  ("gather", ["g1", "g2"]), ("not awaited", ["sent at the call"]),
                                  ("thread", ["from a thread"])):
                    await client.send(ask)
                    got = [await asyncio.wait_for(client.recv(), T) for _ in want]
                    assert got == want, ask
                await client.send("close")
                await asyncio.wait_for(client.wait_closed(), T)
                await asyncio.sleep(0.05)
        assert seen == ["_Finished", "refused after close"]
    run(main())


def test_anext_awaited_under_wait_for_and_as_a_task(run: Any) -> None:
    """anext(ws) is awaitable directly and under wait_for. It is a
    generator-based awaitable, which create_task refuses from Python 3.12
    on (README: make the task of recv()); the refusal loses no message."""
    got: list[str] = []

    async def handler(ws: wsuv.aio.Connection) -> None:
        got.append(await anext(ws))
        got.append(await asyncio.wait_for(anext(ws), T))
        if sys.version_info >= (3, 12):
            with pytest.raises(TypeError, match="coroutine"):
                asyncio.create_task(anext(ws))
        got.append(await asyncio.create_task(ws.recv()))
        async for message in ws:
            got.append(message)
            await ws.send(",".join(got))

    async def main() -> None:
        async with wsuv.aio.serve(handler, port=0) as server:
            async with connect(url(server)) as client:
                for m in ("a", "b", "c", "d"):
                    await client.send(m)
                assert await asyncio.wait_for(client.recv(), T) == "a,b,c,d"
    run(main())


_EXITING = """
import asyncio, sys
import wsuv.aio
from websockets.asyncio.client import connect

async def handler(ws):
    async for message in ws:
        if message == "exit":
            raise SystemExit(3)
        await ws.send(message)

async def main():
    async with wsuv.aio.serve(handler, port=0) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as client:
            await client.send("hi")
            assert await asyncio.wait_for(client.recv(), 5) == "hi"
            await client.send("exit")
            await asyncio.sleep(5)  # the loop stops before this ends
    sys.exit(1)

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_system_exit_raised_by_a_handler_reaches_the_loop(kind: str) -> None:
    # In a process of its own: a SystemExit out of asyncio.run leaves CPython
    # 3.11's parser state odd for whatever runs next in that interpreter.
    proc = subprocess.run([sys.executable, "-c", _EXITING, kind], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 3, proc.stderr
