"""The floor of an async connection handler at K=1: the instructions asyncio
itself spends to step one task per message, with no I/O and no wsuv.

A task runs ``async for m in it: await send(m)``; a plain callback hands it
N messages, waking it in place as wsuv.aio does (the task's own wake-up run
with a finished future; the waiting future is kept for the next wait), and
``send`` returns a finished future. Run it twice under callgrind and take the
difference, which cancels start-up:

    for n in 100000 200000; do
      valgrind --tool=callgrind --callgrind-out-file=/tmp/floor.$n \\
        .venv/bin/python benchmarks/aio_step_floor.py $n 2>/dev/null
      grep -h ^summary /tmp/floor.$n
    done

(Ir(200000) - Ir(100000)) / 100000 is the instructions per message that any
async handler pays on this interpreter on top of its transport's own path.
``--loop asyncio`` runs it on the plain asyncio loop instead of uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import types
from collections.abc import Generator
from typing import Any


class Inbox:
    """An async iterator woken in place, as wsuv.aio.Connection is."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waiter: asyncio.Future[None] = loop.create_future()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ready.set_result(None)
        self.box: list[bytes] = []

    def __aiter__(self) -> Inbox:
        return self

    @types.coroutine
    def __anext__(self) -> Generator[Any, None, bytes]:
        while not self.box:
            self.waiter._asyncio_future_blocking = True
            yield self.waiter
        return self.box.pop()


async def handler(inbox: Inbox) -> None:
    async for _message in inbox:
        await inbox.ready  # a send that has nothing to wait for


def feed(inbox: Inbox, n: int, done: asyncio.Future[None]) -> None:
    waiter = inbox.waiter
    for _ in range(n):
        inbox.box.append(b"x")
        wakeup, context = waiter._callbacks[0]  # type: ignore[attr-defined]
        waiter.remove_done_callback(wakeup)
        context.run(wakeup, inbox.ready)
    done.set_result(None)


async def main(n: int) -> None:
    loop = asyncio.get_running_loop()
    inbox = Inbox(loop)
    loop.create_task(handler(inbox))
    await asyncio.sleep(0)  # the task now waits in `async for`
    done = loop.create_future()
    loop.call_soon(feed, inbox, n, done)
    await done


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("n", type=int, help="messages")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = p.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args.n))
    else:
        asyncio.run(main(args.n))
