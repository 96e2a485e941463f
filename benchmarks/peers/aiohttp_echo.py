"""Echo / broadcast server on aiohttp's web server (asyncio), compression off unless
--deflate."""

from __future__ import annotations

from _common import HOST, MAX_SIZE, parse_args
from aiohttp import WSMsgType, web


def main() -> None:
    args = parse_args(__doc__ or "")
    clients: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=args.deflate, max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if args.mode == "echo":
                        await ws.send_str(msg.data)
                    else:
                        for c in list(clients):
                            await c.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    if args.mode == "echo":
                        await ws.send_bytes(msg.data)
                    else:
                        for c in list(clients):
                            await c.send_bytes(msg.data)
        finally:
            clients.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    web.run_app(app, host=HOST, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
