"""A chat room in the style of the `websockets` documentation's broadcast
example, ported to wsuv: only the import changed. Every message goes to every
connected client; the frame is encoded once and fanned out in C."""

import asyncio

from wsuv.aio import broadcast, serve

CONNECTIONS = set()


async def chat(websocket):
    CONNECTIONS.add(websocket)
    try:
        async for message in websocket:
            broadcast(CONNECTIONS, message)
    finally:
        CONNECTIONS.remove(websocket)


async def main():
    async with serve(chat, "localhost", 8765) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
