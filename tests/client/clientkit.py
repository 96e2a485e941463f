"""Servers for the client tests: `websockets` in a thread, and raw sockets that
answer (or misbehave) byte by byte. Named distinctively: pytest puts this
directory on sys.path."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.util
import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

TIMEOUT = 10.0
LIMIT = 10.0  # seconds a bounded client run may take
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _load_root_conftest() -> Any:
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_wsuv_tests_root_conftest_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_root = _load_root_conftest()
running_server = _root.running_server
free_port = _root.free_port


@contextlib.contextmanager
def websockets_server(handler: Callable[[Any], Awaitable[None]],
                      **kwargs: Any) -> Iterator[str]:
    """A `websockets` asyncio server on 127.0.0.1 in a thread; yields its ws:// URL."""
    from websockets.asyncio.server import serve

    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        kwargs.setdefault("max_size", None)
        async with serve(handler, "127.0.0.1", 0, **kwargs) as server:
            box["port"] = server.sockets[0].getsockname()[1]
            box["stop"] = asyncio.get_running_loop().create_future()
            box["loop"] = asyncio.get_running_loop()
            ready.set()
            await box["stop"]

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced below
            box["error"] = exc
            ready.set()

    t = threading.Thread(target=run, daemon=True, name="websockets-server")
    t.start()
    assert ready.wait(TIMEOUT), "websockets server did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield f"ws://127.0.0.1:{box['port']}"
    finally:
        loop = box["loop"]
        loop.call_soon_threadsafe(lambda: box["stop"].done() or box["stop"].set_result(None))
        t.join(TIMEOUT)
        assert not t.is_alive(), "websockets server did not stop"


async def echo(ws: Any) -> None:
    """A `websockets` connection handler that echoes every message."""
    async for message in ws:
        await ws.send(message)


def server_ctx(pair: Any, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS server context for one tlskit certificate pair (ALPN http/1.1);
    with client_ca, client certificates are required and checked against it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pair.cert), str(pair.key))
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(client_ca))
    return ctx


@contextlib.contextmanager
def wss_server(pair: Any, handler: Any = echo, host: str = "localhost", path: str = "",
               **kwargs: Any) -> Iterator[str]:
    """A `websockets` TLS server; yields wss://host:port followed by path."""
    ctx = kwargs.pop("ssl", None) or server_ctx(pair)
    with websockets_server(handler, ssl=ctx, **kwargs) as url:
        yield f"wss://{host}:{url.rsplit(':', 1)[1]}{path}"


def run_bounded(client: Any, limit: float = LIMIT) -> float:
    """client.run() with a watchdog that stops it after limit seconds; returns
    how long it ran (and fails if the watchdog had to stop it)."""
    timer = threading.Timer(limit, client.stop, (False,))
    timer.start()
    t0 = time.monotonic()
    try:
        client.run()
    finally:
        timer.cancel()
    elapsed = time.monotonic() - t0
    assert elapsed < limit, "the client did not finish on its own"
    return elapsed


def accept_of(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def read_head(conn: socket.socket) -> tuple[bytes, dict[str, str]]:
    """Reads an HTTP request head; (head bytes, lower-cased headers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0]
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    return head, headers


def switching(key: str, extra: str = "", accept: str | None = None) -> bytes:
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept if accept is not None else accept_of(key)}\r\n"
            f"{extra}\r\n").encode()


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One frame as a server (mask None) or a client would send it."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class FrameReader:
    """Parses the frames a client sends (on a raw socket)."""

    def __init__(self, conn: socket.socket, buf: bytes = b"") -> None:
        self.conn = conn
        self.buf = buf

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise EOFError("client closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self) -> tuple[int, bool, bytes | None, bytes]:
        """(opcode, fin, mask key or None, unmasked payload)."""
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        key = self._need(4) if b1 & 0x80 else None
        data = self._need(n)
        if key is not None:
            data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
        return b0 & 0x0F, bool(b0 & 0x80), key, data


@contextlib.contextmanager
def raw_server(script: Callable[[socket.socket], None]) -> Iterator[str]:
    """A listener on 127.0.0.1 that runs script(conn) on one connection in a
    thread; yields the URL. The script's exception fails the test."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(TIMEOUT)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            conn, _ = lsock.accept()
            conn.settimeout(TIMEOUT)
            with conn:
                script(conn)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True, name="raw-server")
    t.start()
    try:
        yield f"ws://127.0.0.1:{lsock.getsockname()[1]}"
    finally:
        t.join(TIMEOUT)
        lsock.close()
        assert not t.is_alive(), "raw server script did not finish"
    if errors:
        raise errors[0]
