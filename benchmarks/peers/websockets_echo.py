"""Echo / broadcast server on websockets (asyncio implementation), compression off
unless --deflate (then websockets' default permessage-deflate settings); TLS
through Python's ssl with --certfile/--keyfile."""

from __future__ import annotations

import asyncio

from _common import HOST, MAX_SIZE, parse_args, server_ssl
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed


async def main() -> None:
    args = parse_args(__doc__ or "")
    clients: set[ServerConnection] = set()

    async def echo(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass  # the client's close arrived while an echo was pending

    async def fan_out(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                broadcast(clients, message)  # websockets' helper: a Python loop
        finally:
            clients.discard(ws)

    handler = echo if args.mode == "echo" else fan_out
    async with serve(handler, HOST, args.port, compression="deflate" if args.deflate else None,
                     max_size=MAX_SIZE, ssl=server_ssl(args)):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main())
