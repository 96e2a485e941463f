"""A chat across processes and machines: rooms are topics.

Connect to ws://HOST:PORT/<room>?name=<you>; what you send reaches everyone in
the room, whichever worker or server they are connected to:

    wsuv-serve chat:app --workers 4 --port 8000            # one machine, no Redis
    wsuv-serve chat:app --workers 2 --port 8001 --pubsub-url redis://127.0.0.1:6379
    wsuv-serve chat:app --workers 2 --port 8002 --pubsub-url redis://127.0.0.1:6379

(the last two: two servers, one Redis; nginx.conf here balances them).
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

import wsuv


class Chat(wsuv.Handler):
    """Each connection joins the room its path names and speaks there."""

    def __init__(self) -> None:
        self.rooms: dict[wsuv.WebSocket, tuple[str, str]] = {}

    def on_open(self, ws: wsuv.WebSocket) -> None:
        room = "room:" + (ws.path.strip("/") or "lobby")
        name = parse_qs(ws.query).get("name", ["anonymous"])[0][:32]
        self.rooms[ws] = (room, name)
        ws.subscribe(room)
        ws.send(f"* you are {name} in {room[5:]} (worker {os.getpid()})")
        ws.server.publish(room, f"* {name} joined", exclude=ws)

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        room, name = self.rooms[ws]
        if isinstance(message, str):
            ws.server.publish(room, f"{name}: {message}")

    def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
        room, name = self.rooms.pop(ws, ("", ""))
        if room:
            ws.server.publish(room, f"* {name} left")


app = Chat()
