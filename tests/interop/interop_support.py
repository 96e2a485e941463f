"""Shared pieces of the interop tests: a Python echo handler, payloads, servers.

Kept out of ``conftest.py`` so test modules can import it by name; it is
named distinctively because pytest (prepend import mode) puts this directory
on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import queue
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from wsuv.request import Request, Response
from wsuv.server import Accept, Handler, Server
from wsuv.websocket import ConnectionClosed, WebSocket

KiB = 1024
MiB = 1024 * KiB

# Payload sizes in bytes (UTF-8 bytes for text): around every length-encoding
# boundary of RFC 6455 5.2, and up to just under the default 16 MiB limit.
SIZES = [0, 1, 125, 126, 65535, 65536, MiB]
BIG = 16 * MiB - KiB

TIMEOUT = 10.0   # seconds any single client operation may take
BIG_TIMEOUT = 30.0


def _load_running_server() -> Any:
    """``running_server`` from tests/conftest.py, loaded by path.

    Several directories may have a ``conftest.py`` and pytest juggles the
    ``conftest`` entry of ``sys.modules`` between them, so import by name is
    not reliable.
    """
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_wsuv_tests_root_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.running_server


running_server = _load_running_server()


# -- payloads -------------------------------------------------------------------

def binary_payload(size: int, seed: int = 0) -> bytes:
    """Pseudo-random bytes: every mask/unmask mistake shows."""
    return random.Random(size * 7919 + seed).randbytes(size)


_TEXT_UNITS = ["a", "Z", " ", "é", "ß", "€", "中", "😀", "\u0000", "\U0010fffd"]


def text_payload(size: int, seed: int = 0) -> str:
    """A str whose UTF-8 encoding is exactly ``size`` bytes, with 1- to 4-byte
    characters mixed in so that frame and read boundaries split them.

    Large payloads are stitched from randomly chosen pre-built blocks of
    varying length (building megabytes one character at a time is slow)."""
    rng = random.Random(size * 104729 + seed)

    def chars(nbytes: int) -> list[str]:
        out: list[str] = []
        while nbytes > 0:
            ch = rng.choice(_TEXT_UNITS)
            if len(ch.encode()) > nbytes:
                ch = "x"
            out.append(ch)
            nbytes -= len(ch.encode())
        return out

    parts: list[str] = []
    left = size
    if size > 16 * KiB:
        blocks = ["".join(chars(rng.randrange(1000, 4000))) for _ in range(64)]
        sizes = [len(b.encode()) for b in blocks]
        while left > 4000:
            k = rng.randrange(len(blocks))
            parts.append(blocks[k])
            left -= sizes[k]
    parts.extend(chars(left))
    text = "".join(parts)
    assert len(text.encode()) == size
    return text


def payload(kind: str, size: int, seed: int = 0) -> str | bytes:
    return text_payload(size, seed) if kind == "text" else binary_payload(size, seed)


def describe(message: str | bytes) -> str:
    """Short form for assertion messages (never dump megabytes)."""
    return f"{type(message).__name__}[{len(message)}]"


# -- the Python echo application --------------------------------------------------

@dataclass
class Closed:
    """What ``on_close`` saw."""

    path: str
    code: int
    reason: str


class EchoHandler(Handler):
    """Echo in Python, plus a few paths that steer the handshake and closing.

    - ``/reject?status=N``: answer the upgrade with ``Response(N)``
    - ``/subprotocol?choose=P``: accept with ``Accept(subprotocol=P)``
    - ``/server-close?code=C&reason=R``: the server closes right after open
    - ``/close-on-message?code=C&reason=R``: the server closes on the first message
    - anything else: echo every message back unchanged

    Messages that arrive after the server started closing are counted in
    ``late_messages`` (RFC 6455 lets them arrive; they cannot be answered).
    """

    def __init__(self) -> None:
        self.closed: queue.Queue[Closed] = queue.Queue()
        self.opened: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        self.late_messages = 0
        self.seen_after_close: list[tuple[bool, str]] = []  # (ws.closed, send outcome)

    def on_connect(self, request: Request) -> Accept | Response | None:
        params = parse_qs(request.query)
        if request.path == "/reject":
            return Response(int(params["status"][0]), "rejected by the test handler\n")
        if request.path == "/subprotocol":
            return Accept(subprotocol=params["choose"][0])
        return None

    def on_open(self, ws: WebSocket) -> None:
        self.opened.put(ws.path)
        if ws.path == "/server-close":
            self._close(ws)

    @staticmethod
    def _close(ws: WebSocket) -> None:
        params = parse_qs(ws.query)
        ws.close(int(params["code"][0]), params.get("reason", [""])[0])
        ws.state = "closing"

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        if not isinstance(message, (str, bytes)):
            self.errors.append(f"on_message got {type(message).__name__}")
        if ws.state == "closing":
            self.late_messages += 1
            return
        if ws.path == "/close-on-message":
            self._close(ws)
            try:
                ws.send("after close")
                outcome = "sent"
            except ConnectionClosed:
                outcome = "ConnectionClosed"
            self.seen_after_close.append((ws.closed, outcome))
            return
        ws.send(message)

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.closed.put(Closed(ws.path, code, reason))

    def wait_closed(self, timeout: float = TIMEOUT) -> Closed:
        try:
            return self.closed.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"on_close not called within {timeout} s") from None


@dataclass
class EchoTarget:
    """A running echo server: the C built-in one (handler None) or EchoHandler."""

    name: str
    server: Server
    handler: EchoHandler | None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    def path_url(self, path_and_query: str) -> str:
        return f"ws://127.0.0.1:{self.server.port}{path_and_query}"


@contextlib.contextmanager
def echo_target(name: str, **options: Any) -> Iterator[EchoTarget]:
    handler = EchoHandler() if name == "python" else None
    with running_server(handler, **options) as server:
        yield EchoTarget(name, server, handler)
    if handler is not None:
        assert not handler.errors, handler.errors
