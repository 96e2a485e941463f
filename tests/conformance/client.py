"""A small raw-socket WebSocket client for the RFC 6455 conformance tests.

It speaks the client side of RFC 6455 by hand so the tests can send anything,
including frames no well-behaved client would: the opening handshake (4.1),
masked frames built with ``wsuv.encode_frame(..., mask=...)``, malformed
frames built byte by byte (:func:`raw_frame`), and it reads the server's
frames with ``wsuv.FrameParser(role="client")``, which itself refuses a
masked or otherwise malformed server frame.

Every blocking operation has a timeout, so a server that misbehaves fails a
test instead of hanging the run. Every close frame the server sends is
checked against 5.5.1 and 7.4 (no 1-byte payload, no code that may not be
sent, such as 1005/1006/1015, a UTF-8 reason).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import socket
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import wsuv
from wsuv import Frame, FrameParser, Opcode

TIMEOUT = 5.0  # seconds for any single expected event
QUIET = 0.25  # seconds without a byte that count as "nothing was sent"
# After a close the server must end TCP at once (7.1.1, 7.1.7); this is well
# under its 5 s close_timeout, so a server that waits for that timer fails.
EOF_TIMEOUT = 2.0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3 / 4.2.2

CONT, TEXT, BINARY = Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG

# tests/conftest.py, loaded by path: "conftest" in sys.modules may be another
# directory's conftest when the whole suite runs.
_spec = importlib.util.spec_from_file_location(
    "wsuv_conformance_root_conftest", Path(__file__).resolve().parent.parent / "conftest.py")
assert _spec is not None and _spec.loader is not None
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
running_server = _root.running_server


def expected_accept(key: str) -> str:
    """Sec-WebSocket-Accept computed from 4.2.2 step 5.4, independently of wsuv."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode()


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64 (4.1)."""
    return base64.b64encode(os.urandom(16)).decode()


def new_mask() -> bytes:
    """An unpredictable masking key (5.3); never all zero, so masking is visible."""
    while True:
        key = os.urandom(4)
        if key != b"\0\0\0\0":
            return key


# -- frames ----------------------------------------------------------------------

def frame(opcode: int, payload: bytes = b"", *, fin: bool = True,
          mask: bytes | None = None) -> bytes:
    """A well-formed, masked client frame (wsuv.encode_frame)."""
    return wsuv.encode_frame(opcode, payload, fin=fin, mask=mask or new_mask())


def raw_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
              mask: bytes | None = b"", length_bytes: int | None = None,
              length: int | None = None) -> bytes:
    """A frame built byte by byte, malformed if asked (5.2).

    ``rsv`` is the RSV bits as 1/2/4 (RSV1/2/3); ``mask=None`` sends it
    unmasked, ``b""`` picks a random key; ``length_bytes`` forces the length
    encoding (0 = 7-bit, 2 = 16-bit, 8 = 64-bit); ``length`` overrides the
    announced payload length (only ``payload`` is sent either way).
    """
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 1) << 6) | ((rsv & 2) << 4) | ((rsv & 4) << 2)
    b0 |= opcode & 0xF
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    if length_bytes == 0:
        head = bytes([b0, n])
    elif length_bytes == 2:
        head = bytes([b0, 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    key = mask or new_mask()
    head = bytes([head[0], head[1] | 0x80]) + head[2:] + key
    return head + mask_bytes(payload, key)


def mask_bytes(data: bytes, key: bytes) -> bytes:
    """5.3: octet i XOR key[i mod 4] (in Python, independently of wsuv)."""
    if not data:
        return b""
    whole = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(whole, "big")).to_bytes(
        len(data), "big")


def close_payload(code: int | None = None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


# -- the client ------------------------------------------------------------------

class Response:
    """The server's answer to the opening handshake."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers  # (lower-case name, value) in order
        self.body = body

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return ", ".join(values) if values else None

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]


class Client:
    """One raw TCP connection to the server under test."""

    def __init__(self, port: int, *, timeout: float = TIMEOUT, rcvbuf: int | None = None) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the TCP window starts small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = FrameParser(role="client")
        self.frames: deque[Frame] = deque()
        self.buf = b""  # bytes read but not yet parsed (during the handshake)
        self.eof = False
        self.reset = False  # the server's side ended with RST rather than FIN
        self.send_failed = False  # a write found the connection closed
        self.key = ""
        self.response: Response | None = None

    # -- handshake (4.1, 4.2.2) --
    def request(self, path: str = "/", *, key: str | None = None,
                headers: list[tuple[str, str]] | None = None,
                default_headers: bool = True, method: str = "GET",
                version: str = "HTTP/1.1") -> bytes:
        self.key = new_key() if key is None else key
        lines = [f"{method} {path} {version}"]
        if default_headers:
            lines += ["Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
                      f"Sec-WebSocket-Key: {self.key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{n}: {v}" for n, v in headers or []]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def read_response(self) -> Response:
        """Read the HTTP response head (and a Content-Length body)."""
        deadline = time.monotonic() + self.timeout
        buf = self.buf
        while b"\r\n\r\n" not in buf:
            chunk = self._recv(deadline)
            assert chunk, f"connection closed before a response head: {buf!r}"
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        proto, status, *_ = lines[0].split(" ", 2)
        assert proto == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep, f"malformed header line {line!r}"
            headers.append((name.strip().lower(), value.strip()))
        resp = Response(int(status), headers, b"")
        if int(status) != 101:
            length = int(resp.get("content-length") or 0)
            while len(rest) < length:
                chunk = self._recv(deadline)
                if not chunk:
                    break
                rest += chunk
            resp.body, rest = rest[:length], rest[length:]
        self.buf = rest
        self.response = resp
        return resp

    def handshake(self, path: str = "/", **kw: Any) -> Response:
        """Send an upgrade request; require 101 with the 4.2.2 fields."""
        self.sock.sendall(self.request(path, **kw))
        resp = self.read_response()
        assert resp.status == 101, (resp.status, resp.headers, resp.body)
        check_101(resp, self.key)
        offered = [v for n, v in kw.get("headers") or [] if n.lower() == "sec-websocket-protocol"]
        if not offered:  # 4.2.2: a subprotocol only if the client offered some
            assert resp.get("sec-websocket-protocol") is None, resp.headers
        # 9.1: an extension only if the client offered it; wsuv knows one.
        offered_ext = [v for n, v in kw.get("headers") or []
                       if n.lower() == "sec-websocket-extensions"]
        accepted = resp.get("sec-websocket-extensions")
        if not offered_ext:
            assert accepted is None, resp.headers
        elif accepted is not None:
            assert accepted.startswith("permessage-deflate"), resp.headers
            self.parser = FrameParser(role="client", rsv_allowed=1)
        if self.buf:
            self.frames.extend(self.parser.feed(self.buf))
            self.buf = b""
        return resp

    # -- sending --
    def send(self, data: bytes, *, chop: int | None = None, pause: float = 0.0) -> None:
        """Write raw bytes, optionally in pieces of ``chop`` bytes.

        The server may close the connection before it has all of them (it
        fails a connection at the first bad byte): the rest is then dropped
        and ``send_failed`` set; the reads that follow see what it sent.
        """
        step = chop or len(data) or 1
        try:
            for i in range(0, len(data), step):
                self.sock.sendall(data[i : i + step])
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            self.send_failed = True

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True,
                   mask: bytes | None = None, chop: int | None = None) -> None:
        self.send(frame(opcode, payload, fin=fin, mask=mask), chop=chop)

    def send_text(self, text: str | bytes, *, fin: bool = True) -> None:
        self.send_frame(TEXT, text.encode() if isinstance(text, str) else text, fin=fin)

    def send_binary(self, data: bytes, *, fin: bool = True) -> None:
        self.send_frame(BINARY, data, fin=fin)

    def send_close(self, code: int | None = None, reason: bytes = b"") -> None:
        self.send_frame(CLOSE, close_payload(code, reason))

    # -- receiving --
    def _recv(self, deadline: float, size: int = 1 << 20) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            return self.sock.recv(size)
        except ConnectionResetError:
            self.reset = True
            return b""

    def _fill(self, deadline: float) -> bool:
        """Read once into the parser. False at EOF; TimeoutError at the deadline."""
        if self.eof:
            return False
        data = self._recv(deadline)
        if not data:
            self.eof = True
            return False
        self.frames.extend(self.parser.feed(data))
        return True

    def recv_raw(self, n: int) -> bytes:
        """Exactly n bytes as sent by the server, bypassing the frame parser."""
        assert not self.frames and not self.buf
        deadline = time.monotonic() + self.timeout
        out = b""
        while len(out) < n:
            try:
                chunk = self._recv(deadline, n - len(out))
            except TimeoutError:
                raise AssertionError(f"only {len(out)} of {n} bytes arrived") from None
            assert chunk, f"EOF after {len(out)} of {n} bytes"
            out += chunk
        return out

    def recv_frame(self, timeout: float | None = None) -> Frame:
        """The next frame; AssertionError on EOF or timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.frames:
            try:
                more = self._fill(deadline)
            except TimeoutError:
                raise AssertionError("no frame from the server in time") from None
            assert more, "server closed the TCP connection, a frame was expected"
        f = self.frames.popleft()
        if f.opcode == CLOSE:
            check_close_payload(f.payload)
        return f

    def recv_message(self, timeout: float | None = None) -> tuple[int, bytes]:
        """The next data message (fragments joined); nothing else may come first."""
        f = self.recv_frame(timeout)
        assert f.opcode in (TEXT, BINARY), f"expected a data frame, got {describe(f)}"
        opcode, parts = f.opcode, [f.payload]
        while not f.fin:
            f = self.recv_frame(timeout)
            assert f.opcode == CONT, f"expected a continuation, got {describe(f)}"
            parts.append(f.payload)
        data = b"".join(parts)
        if opcode == TEXT:
            data.decode("utf-8")  # 5.6 / 8.1: the server sends only valid UTF-8
        return opcode, data

    def echo(self, opcode: int, payload: bytes) -> None:
        """Send one message and require it back, same type, same bytes."""
        self.send_frame(opcode, payload)
        assert self.recv_message() == (opcode, payload)

    def expect_close(self, code: int | None, *, eof: bool = True) -> Frame:
        """The next frame is a close with ``code`` (None: no payload), then TCP ends."""
        f = self.recv_frame()
        assert f.opcode == CLOSE, f"expected a close frame ({code}), got {describe(f)}"
        got = struct.unpack("!H", f.payload[:2])[0] if f.payload else None
        assert got == code, f"close code {got}, expected {code} (reason {f.payload[2:]!r})"
        if eof:
            self.expect_eof(EOF_TIMEOUT)
        return f

    def expect_eof(self, timeout: float | None = None) -> None:
        """Nothing more arrives and the server closes the TCP connection (7.1.1)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            assert not self.frames, f"frame after the close: {describe(self.frames[0])}"
            try:
                if not self._fill(deadline):
                    return
            except TimeoutError:
                raise AssertionError("the server did not close the TCP connection") from None

    def expect_silence(self, duration: float = QUIET) -> None:
        """No frame and no EOF for ``duration`` seconds."""
        deadline = time.monotonic() + duration
        while True:
            assert not self.frames, f"unexpected frame: {describe(self.frames[0])}"
            try:
                more = self._fill(deadline)
            except TimeoutError:
                return
            assert more, "the server closed the TCP connection unexpectedly"

    def close_handshake(self, code: int = 1000) -> None:
        """A clean close started by us: the server echoes the code and closes TCP."""
        self.send_close(code)
        self.expect_close(code)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_101(resp: Response, key: str) -> None:
    """4.2.2 step 5: the fields every 101 must carry."""
    assert "websocket" in (resp.get("upgrade") or "").lower(), resp.headers
    tokens = [t.strip().lower() for t in (resp.get("connection") or "").split(",")]
    assert "upgrade" in tokens, resp.headers
    assert resp.get_all("sec-websocket-accept") == [expected_accept(key)], resp.headers


def check_close_payload(payload: bytes) -> None:
    """What any close frame from the server must look like (5.5, 5.5.1, 7.4)."""
    assert len(payload) <= 125
    assert len(payload) != 1, "close payload of 1 byte"
    if payload:
        code = struct.unpack("!H", payload[:2])[0]
        assert 1000 <= code <= 4999, code
        assert code not in (1004, 1005, 1006, 1015), f"code {code} may not be sent (7.4.1)"
        assert not 1016 <= code <= 2999, f"unassigned code {code} sent"
        payload[2:].decode("utf-8")  # 5.5.1: the reason is UTF-8


def describe(f: Frame) -> str:
    body = f.payload[:40]
    return f"opcode={f.opcode} fin={f.fin} len={len(f.payload)} payload={body!r}"


# -- servers ---------------------------------------------------------------------

class EchoHandler(wsuv.Handler):
    """A Python echo: each message goes back as it came; closes are recorded."""

    def __init__(self) -> None:
        self.closes: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        ws.send(message)

    def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
        with self.lock:
            self.closes.append((code, reason))

    def wait_closes(self, n: int, timeout: float = TIMEOUT) -> list[tuple[int, str]]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.closes) >= n:
                    return list(self.closes)
            assert time.monotonic() < deadline, f"on_close not called {n} times"
            time.sleep(0.005)


class Target:
    """A server under test: its port and, for the Python echo, its handler."""

    def __init__(self, server: wsuv.Server, kind: str, handler: EchoHandler | None) -> None:
        self.server = server
        self.kind = kind
        self.handler = handler
        assert server.port
        self.port: int = server.port

    def connect(self, *, rcvbuf: int | None = None, **kw: Any) -> Client:
        """A new client with the opening handshake done."""
        c = Client(self.port, rcvbuf=rcvbuf)
        try:
            c.handshake(**kw)
        except BaseException:
            c.close()
            raise
        return c

    def fail(self, data: bytes, code: int, *,
             before: tuple[tuple[int, bytes], ...] = ()) -> None:
        """Send ``data`` on a new connection: the server fails it with ``code``.

        ``before`` lists the messages the server must echo first (frames
        ahead of the bad one in ``data``). Then nothing else arrives and the
        server closes TCP without waiting for our close frame (7.1.7).
        """
        with self.connect() as c:
            c.send(data)
            for message in before:
                assert c.recv_message() == message
            c.expect_close(code)
        self.assert_serves()

    def assert_serves(self) -> None:
        """A fresh client still gets its echoes and a clean close."""
        with self.connect() as c:
            c.echo(TEXT, "still serving \u00e9".encode())
            c.echo(BINARY, b"\x00\xff")
            c.close_handshake(1000)
