"""The echo server of the `websockets` documentation, ported to wsuv: only
the import changed (`websockets.asyncio.server` -> `wsuv.aio`)."""

import asyncio

from wsuv.aio import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main():
    async with serve(echo, "localhost", 8765) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
