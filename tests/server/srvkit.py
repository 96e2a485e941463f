"""Helpers for the server tests: raw-socket clients, frames, bounded waits.

Every read has a socket timeout and every wait a deadline, so a server that
misbehaves fails a test instead of hanging the run.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websocket  # websocket-client
from websockets.sync.client import connect as ws_connect

from wsuv.frames import Frame, FrameParser, encode_frame
from wsuv.server import Handler, Server

TIMEOUT = 5.0  # seconds any single blocking socket operation may take
MASK = b"abcd"
KEY = base64.b64encode(b"0123456789abcdef").decode()

# tests/conftest.py, loaded by path: the name "conftest" in sys.modules may
# belong to another directory's conftest when the whole suite runs.
_spec = importlib.util.spec_from_file_location(
    "wsuv_tests_root_conftest", Path(__file__).resolve().parent.parent / "conftest.py")
assert _spec is not None and _spec.loader is not None
_root_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root_conftest)
running_server = _root_conftest.running_server
server_thread = _root_conftest.server_thread


# -- waiting ---------------------------------------------------------------------

def wait_for(pred: Callable[[], Any], timeout: float = TIMEOUT, step: float = 0.01) -> Any:
    """Poll pred() until it is truthy (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s: {pred}")
        time.sleep(step)


def on_loop(server: Server, fn: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Run fn() on the server's loop thread and return its result."""
    done = threading.Event()
    box: list[Any] = []

    def call() -> None:
        try:
            box.append(fn())
        finally:
            done.set()

    server.call_soon_threadsafe(call)
    assert done.wait(timeout), "loop did not run the callback in time"
    return box[0] if box else None


# -- handlers --------------------------------------------------------------------

class EchoHandler(Handler):
    """Echoes every message; records opens and closes (thread-safe enough for tests)."""

    def __init__(self) -> None:
        self.opened: list[Any] = []
        self.closed: list[tuple[str, int, str]] = []
        self.lock = threading.Lock()

    def on_open(self, ws: Any) -> None:
        with self.lock:
            self.opened.append(ws)

    def on_message(self, ws: Any, message: str | bytes) -> None:
        ws.send(message)

    def on_close(self, ws: Any, code: int, reason: str) -> None:
        with self.lock:
            self.closed.append((ws.path, code, reason))

    def close_codes(self) -> list[int]:
        with self.lock:
            return [code for _path, code, _reason in self.closed]


# -- normal clients ----------------------------------------------------------------

def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def assert_serves(server: Server, text: str = "still serving") -> None:
    """An echo round trip with the websockets sync client (and websocket-client)."""
    with ws_connect(url(server), open_timeout=TIMEOUT, close_timeout=2) as ws:
        ws.send(text)
        assert ws.recv(timeout=TIMEOUT) == text
        ws.send(text.encode())
        assert ws.recv(timeout=TIMEOUT) == text.encode()
    client = websocket.create_connection(url(server), timeout=TIMEOUT)
    try:
        client.send(text + "!")
        assert client.recv() == text + "!"
    finally:
        client.close(timeout=2)


# -- raw clients -------------------------------------------------------------------

def upgrade_request(path: str = "/", *, host: str | None = "127.0.0.1",
                    upgrade: str | None = "websocket", connection: str | None = "Upgrade",
                    key: str | None = KEY, version: str | None = "13",
                    extra: list[tuple[str, str]] | None = None,
                    method: str = "GET", http: str = "HTTP/1.1") -> bytes:
    """An upgrade request; a None field is left out."""
    lines = [f"{method} {path} {http}"]
    for name, value in (("Host", host), ("Upgrade", upgrade), ("Connection", connection),
                        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)):
        if value is not None:
            lines.append(f"{name}: {value}")
    for name, value in extra or []:
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw_connect(server: Server, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", server.port))
    return sock


class HttpResponse:
    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes,
                 rest: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case names
        self.body = body
        self.rest = rest  # bytes after the response (the first frames)


def read_response(sock: socket.socket, buf: bytes = b"", limit: int = 1 << 20) -> HttpResponse:
    """Read one HTTP response head (and its Content-Length body)."""
    deadline = time.monotonic() + TIMEOUT
    while b"\r\n\r\n" not in buf:
        assert time.monotonic() < deadline and len(buf) < limit, buf[:200]
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    version, status, *reason = lines[0].split(" ", 2)
    assert version == "HTTP/1.1", lines[0]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        assert time.monotonic() < deadline, rest[:200]
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        rest += chunk
    return HttpResponse(int(status), reason[0] if reason else "", headers, rest[:length],
                        rest[length:])


def http_exchange(server: Server, request: bytes) -> HttpResponse:
    """Send a request on a fresh socket; return the response after the server closed."""
    with raw_connect(server) as sock:
        sock.sendall(request)
        resp = read_response(sock)
        assert not resp.rest, resp.rest
        assert_eof(sock)
    return resp


def assert_eof(sock: socket.socket, timeout: float = TIMEOUT, *,
               allow_data: bool = False) -> float:
    """The server closes the TCP connection (FIN or RST) within timeout, sending
    nothing more unless allow_data. Returns the seconds waited."""
    start = time.monotonic()
    deadline = start + timeout
    for _ in range(100_000):
        left = deadline - time.monotonic()
        assert left > 0, "server did not close the connection in time"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        except TimeoutError:
            raise AssertionError("server did not close the connection in time") from None
        if not chunk:
            return time.monotonic() - start
        assert allow_data, f"unexpected data before the close: {chunk[:100]!r}"
    raise AssertionError("endless data instead of a close")


def open_raw(server: Server, path: str = "/", *, rcvbuf: int | None = None,
             extra: list[tuple[str, str]] | None = None,
             family: int = socket.AF_INET, unix_path: str | None = None,
             ) -> tuple[socket.socket, FrameReader]:
    """A raw WebSocket client after a successful handshake."""
    if family == socket.AF_UNIX:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(unix_path)
    else:
        sock = raw_connect(server, rcvbuf=rcvbuf)
    sock.sendall(upgrade_request(path, extra=extra))
    resp = read_response(sock)
    assert resp.status == 101, (resp.status, resp.body)
    return sock, FrameReader(sock, resp.rest)


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True,
                 rsv1: bool = False) -> bytes:
    """A valid masked client frame."""
    return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=MASK)


def raw_frame(first: int, payload: bytes = b"", *, masked: bool = True,
              length: int | None = None) -> bytes:
    """Any frame, valid or not: first header byte as given, payload length field
    ``length`` (default len(payload)), masked with MASK unless masked=False."""
    n = len(payload) if length is None else length
    mbit = 0x80 if masked else 0
    if n < 126:
        head = bytes([first, mbit | n])
    elif n < 1 << 16:
        head = bytes([first, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, mbit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + body


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class FrameReader:
    """Server frames from a raw socket, parsed by wsuv's own FrameParser."""

    def __init__(self, sock: socket.socket, pending: bytes = b"") -> None:
        self.sock = sock
        self.parser = FrameParser(role="client")
        self.frames: list[Frame] = list(self.parser.feed(pending)) if pending else []
        self.eof = False

    def next(self, timeout: float = TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        while not self.frames:
            left = deadline - time.monotonic()
            assert left > 0, "no frame from the server in time"
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                raise AssertionError("no frame from the server in time") from None
            assert chunk, "server closed the connection where a frame was expected"
            self.frames.extend(self.parser.feed(chunk))
        return self.frames.pop(0)

    def expect_close(self, code: int, timeout: float = TIMEOUT) -> str:
        """Skip data/control frames until a close frame; check its code, then that
        the TCP connection ends. Returns the close reason."""
        for _ in range(10_000):
            frame = self.next(timeout)
            if frame.opcode == 0x8:
                break
        else:
            raise AssertionError("no close frame")
        assert len(frame.payload) >= 2, frame
        got = struct.unpack("!H", frame.payload[:2])[0]
        reason = frame.payload[2:].decode("utf-8")
        assert got == code, f"close code {got} ({reason!r}), expected {code}"
        assert not self.frames, f"frames after the close frame: {self.frames}"
        assert_eof(self.sock)
        return reason


def echo_raw(sock: socket.socket, reader: FrameReader, payload: bytes = b"hello",
             opcode: int = 0x2) -> None:
    sock.sendall(client_frame(opcode, payload))
    frame = reader.next()
    assert (frame.opcode, frame.payload, frame.fin) == (opcode, payload, True), frame


def raise_nofile(want: int) -> None:
    """Raise the soft RLIMIT_NOFILE to at least ``want`` (within the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def short_tmpdir() -> str:
    """A short directory for Unix socket paths (sun_path is ~108 bytes)."""
    import tempfile

    return tempfile.mkdtemp(prefix="wsuv-", dir="/tmp" if os.path.isdir("/tmp") else None)


def run_isolated(module_file: str, func: str, timeout: float = 4.0) -> None:
    """Run ``func()`` of the test module in a fresh interpreter, killed after
    ``timeout``: for scenarios that can wedge the server's loop thread (a known
    bug must not spin a CPU for the rest of the run). Fails with the child's
    output if it fails or times out."""
    import subprocess
    import sys

    path = Path(module_file).resolve()
    code = (f"import sys; sys.path.insert(0, {str(path.parent)!r}); "
            f"import {path.stem} as m; m.{func}()")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, cwd=str(path.parent))
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{func} did not finish within {timeout} s "
                             f"(server loop wedged?)\n{exc.stderr or ''}") from None
    assert proc.returncode == 0, f"{func} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
