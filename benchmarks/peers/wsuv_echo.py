"""wsuv with a Python handler: echo, broadcast through server.broadcast, or
broadcast as a Python loop of ws.send (for comparison with the peers' loops).

Runs in the project's venv (wsuv built in place). The built-in C echo is not
here: it is ``python -m wsuv.cli --port P`` with no app.
"""

from __future__ import annotations

import argparse
from typing import Any

import wsuv


class Echo(wsuv.Handler):
    def on_message(self, ws: Any, message: str | bytes) -> None:
        ws.send(message)


class Broadcast(wsuv.Handler):
    server: Any = None

    def on_message(self, ws: Any, message: str | bytes) -> None:
        self.server.broadcast(message)  # frame built once, fan-out in C


class LoopBroadcast(wsuv.Handler):
    def __init__(self) -> None:
        self.clients: set[Any] = set()

    def on_open(self, ws: Any) -> None:
        self.clients.add(ws)

    def on_close(self, ws: Any, code: int, reason: str) -> None:
        self.clients.discard(ws)

    def on_message(self, ws: Any, message: str | bytes) -> None:
        for c in self.clients:
            c.send(message)


async def conn_echo(ws: Any) -> None:
    """The websockets-style connection handler of wsuv.aio."""
    async for message in ws:
        await ws.send(message)


async def embedded(handler: Any, port: int) -> None:
    import wsuv.aio

    async with wsuv.aio.serve(handler, "127.0.0.1", port) as server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["echo", "broadcast", "broadcast-loop"], default="echo")
    p.add_argument("--busy-poll-us", type=int, default=0)
    p.add_argument("--embed", choices=["asyncio", "uvloop"], default=None,
                   help="run inside this asyncio loop (wsuv.aio) instead of wsuv's own")
    p.add_argument("--style", choices=["conn", "handler"], default="handler",
                   help="with --embed: an async connection handler, or the plain Echo")
    p.add_argument("--deflate", action="store_true", help="permessage-deflate on (defaults)")
    p.add_argument("--certfile", help="serve TLS (ssl_certfile) with this certificate chain")
    p.add_argument("--keyfile", help="its key (ssl_keyfile)")
    args = p.parse_args()
    if args.embed:
        import asyncio

        app: Any = conn_echo if args.style == "conn" else Echo()
        if args.embed == "uvloop":
            import uvloop

            uvloop.run(embedded(app, args.port))
        else:
            asyncio.run(embedded(app, args.port))
        return
    handler: Any = {"echo": Echo, "broadcast": Broadcast, "broadcast-loop": LoopBroadcast}[
        args.mode]()
    server = wsuv.Server(handler, host="127.0.0.1", port=args.port,
                         busy_poll_us=args.busy_poll_us,
                         compression="deflate" if args.deflate else None,
                         ssl_certfile=args.certfile, ssl_keyfile=args.keyfile)
    handler.server = server
    server.run()


if __name__ == "__main__":
    main()
