"""Echo / broadcast server on picows, on uvloop or on the plain asyncio loop.

picows hands out frames, not messages; the echo keeps each frame's type and FIN
bit, so a fragmented message comes back fragmented the same way. Pings are
answered by picows itself (enable_auto_pong, its default). picows' other
defaults are kept (it uses its aiofastnet transport when that is installed).
With --certfile/--keyfile it serves TLS through Python's ssl (the loop's
create_server(ssl=...)).
"""

from __future__ import annotations

import asyncio
import ssl

from _common import HOST, MAX_SIZE, parse_args, server_ssl
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)
CLIENTS: set[WSTransport] = set()


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA:
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


class FanOut(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        CLIENTS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CLIENTS.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA:
            msg_type, payload, fin = frame.msg_type, frame.get_payload_as_bytes(), frame.fin
            for t in CLIENTS:  # the fan-out, written as a Python loop
                t.send(msg_type, payload, fin)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


async def main(mode: str, port: int, tls: ssl.SSLContext | None) -> None:
    listener = Echo if mode == "echo" else FanOut
    server = await ws_create_server(lambda _request: listener(), HOST, port,
                                    max_frame_size=MAX_SIZE, ssl=tls)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__ or "", {"--loop": ["uvloop", "asyncio"]})
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args.mode, args.port, server_ssl(args)))
    else:
        asyncio.run(main(args.mode, args.port, server_ssl(args)))
