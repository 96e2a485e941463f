"""A raw-socket WebSocket *server* for the client conformance tests.

The public conformance suite's client cases need its own server, which is not
available here, so this is ours, in the same spirit (its section numbers name
the files): a listener on 127.0.0.1 that answers wsuv's opening handshake by
hand, then sends the client any frame, good or bad, built byte by byte, and
records exactly what the client answers: every frame it sends (each checked
masked, with a fresh key), the code of its close frame, whether it closed TCP
before we did (RFC 6455 7.1.1: a client waits for the server's FIN), and how
long its ``run()`` took once we closed.

The client under test is wsuv's callback-style client (``wsuv.connect``) with
an echo handler: every message it receives it sends back, as the public
suite's client cases expect. Named distinctively: pytest puts this directory
on sys.path.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import wsuv

TIMEOUT = 5.0  # seconds for any single expected event
FIN_WAIT = 0.1  # how long we hold TCP open after the client's close to see who ends it
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
          mask: bytes | None = None, length: int | None = None) -> bytes:
    """One frame as a server would send it (unmasked unless ``mask``); ``rsv``
    is the three RSV bits (1 = RSV3 ... 4 = RSV1); ``length`` overrides the
    encoded length form (126 forces 16 bits, 127 forces 64 bits)."""
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    form = length if length is not None else (n if n < 126 else 126 if n < 65536 else 127)
    if form < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif form == 126:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def fragments(opcode: int, payload: bytes, sizes: Sequence[int]) -> bytes:
    """payload as a fragmented message cut after each size in ``sizes``."""
    out, pos, first = [], 0, True
    for size in sizes:
        out.append(frame(opcode if first else CONT, payload[pos:pos + size], fin=False))
        pos += size
        first = False
    out.append(frame(opcode if first else CONT, payload[pos:], fin=True))
    return b"".join(out)


@dataclass
class Outcome:
    """What the client did."""

    frames: list[tuple[int, bool, bytes]] = field(default_factory=list)  # (op, fin, payload)
    close: bytes | None = None       # the client's close frame payload
    fin_first: bool = False          # the client ended TCP before we did
    handler_events: list[Any] = field(default_factory=list)
    after_fin: float = 0.0           # seconds from our FIN to the end of run()
    run_time: float = 0.0            # seconds run() took
    masked: bool = True              # every client frame was masked
    fresh_keys: bool = True          # no two frames had the same key

    @property
    def data(self) -> list[tuple[int, bytes]]:
        """The non-close frames the client sent, as (opcode, payload)."""
        return [(op, data) for op, _fin, data in self.frames if op != CLOSE]

    @property
    def close_code(self) -> int | None:
        """The code of the client's close frame (1005 for an empty one)."""
        if self.close is None:
            return None
        return struct.unpack("!H", self.close[:2])[0] if len(self.close) >= 2 else 1005


class Echo(wsuv.Handler):
    """The client under test: sends back every message, records its events."""

    def __init__(self, out: Outcome) -> None:
        self.out = out

    def on_open(self, ws: wsuv.WebSocket) -> None:
        self.out.handler_events.append("open")

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        if message == "close-me":
            ws.close(4001, "asked")
            return
        ws.send(message)

    def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
        self.out.handler_events.append(("close", code))

    def on_connect_failed(self, ws: wsuv.WebSocket, error: BaseException) -> None:
        self.out.handler_events.append(("failed", repr(error)))


class _Reader:
    def __init__(self, conn: socket.socket, buf: bytes) -> None:
        self.conn = conn
        self.buf = buf

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.conn.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self) -> tuple[int, bool, bytes | None, bytes]:
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        key = self._need(4) if b1 & 0x80 else None
        data = self._need(n)
        if key is not None:
            k = (key * (n // 4 + 1))[:n]
            data = (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
        return b0 & 0x0F, bool(b0 & 0x80), key, data


def _handshake(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError("no request")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    key = ""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip().decode()
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    return rest


def run_case(send: bytes | Sequence[bytes], *, expect: int = 0, fails: bool = False,
             server_close: bytes | None = None, reply_close: bool = True,
             chunk: int = 0, pause: float = 0.0, with_101: bool = False, hold: float = 0.0,
             client_options: dict[str, Any] | None = None,
             after_send: Callable[[socket.socket], None] | None = None) -> Outcome:
    """Runs one case and returns what the client did.

    ``send``: the bytes (or writes) we send after the 101; ``chunk`` > 0 cuts
    them in writes of that many bytes, ``pause`` seconds apart; ``with_101``
    sends them in the 101's own write. We then read the client's frames until
    ``expect`` non-close ones came; with ``fails`` we then wait for the
    client's own close frame instead of sending ours; otherwise we send
    ``server_close`` (default close 1000) and read until the client's close.
    Then we hold TCP open for FIN_WAIT to see whether the client ends it
    first, answer a close the client started (unless ``reply_close`` is
    False), and close TCP (``hold`` seconds later: a server that keeps it open).
    """
    out = Outcome()
    writes = [send] if isinstance(send, bytes) else list(send)
    if chunk:
        blob = b"".join(writes)
        writes = [blob[i:i + chunk] for i in range(0, len(blob), chunk)]
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(TIMEOUT)
    errors: list[BaseException] = []
    fin_at: list[float] = []

    def serve() -> None:
        try:
            conn, _ = lsock.accept()
        except BaseException as exc:
            errors.append(exc)
            return
        conn.settimeout(TIMEOUT)
        with conn:
            try:
                script(conn)
            except BaseException as exc:
                errors.append(exc)
            finally:
                fin_at.append(time.monotonic())

    def script(conn: socket.socket) -> None:
        rest = b""
        if with_101:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            key = next(v.strip() for n, _, v in (line.partition(b":") for line in
                       data.split(b"\r\n")[1:]) if n.strip().lower() == b"sec-websocket-key")
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                         + b"".join(writes))
        else:
            rest = _handshake(conn)
            for w in writes:
                conn.sendall(w)
                if pause:
                    time.sleep(pause)
        if after_send is not None:
            after_send(conn)
        reader = _Reader(conn, rest)
        keys: set[bytes] = set()

        def take() -> int:
            op, fin, key, data = reader.read()
            if key is None:
                out.masked = False
            elif key in keys and len(keys) < 1000:
                out.fresh_keys = False
            elif key is not None:
                keys.add(key)
            out.frames.append((op, fin, data))
            if op == CLOSE:
                out.close = data
            return op

        got = 0
        client_started = False
        while got < expect:
            if take() == CLOSE:
                client_started = True
                break
            got += 1
        if not client_started:
            if fails:
                while take() != CLOSE:
                    pass
                client_started = True
            else:
                conn.sendall(frame(CLOSE, close_payload(1000)) if server_close is None
                             else server_close)
                while take() != CLOSE:
                    pass
        # Who ends TCP? The client must wait for us (7.1.1).
        conn.settimeout(FIN_WAIT)
        try:
            extra = conn.recv(65536)
            if extra == b"":
                out.fin_first = True
            else:
                out.frames.append((-1, True, extra))  # bytes after its close: wrong
        except TimeoutError:
            pass
        except ConnectionResetError:
            out.fin_first = True
        conn.settimeout(TIMEOUT)
        if client_started and reply_close and not out.fin_first:
            code = out.close[:2] if out.close and len(out.close) >= 2 else b""
            try:
                conn.sendall(frame(CLOSE, code))
            except OSError:
                pass
        if hold:
            time.sleep(hold)
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True, name="cc-server")
    t.start()
    options = {"close_timeout": 2.0, "open_timeout": TIMEOUT, "compression": None,
               **(client_options or {})}
    client = wsuv.connect(f"ws://127.0.0.1:{lsock.getsockname()[1]}/", Echo(out), **options)
    watchdog = threading.Timer(3 * TIMEOUT, client.stop, (False,))
    watchdog.start()
    started = time.monotonic()
    try:
        client.run()
    finally:
        watchdog.cancel()
        ended = time.monotonic()
        out.run_time = ended - started
        t.join(TIMEOUT)
        lsock.close()
    if errors and not isinstance(errors[0], EOFError):
        raise errors[0]
    if errors:
        out.frames.append((-2, True, b"EOF before the expected frames"))
    out.after_fin = ended - fin_at[0] if fin_at else float("inf")
    return out


def assert_echoed(out: Outcome, expected: list[tuple[int, bytes]]) -> None:
    """The client echoed exactly ``expected``, answered our close 1000 with
    1000, waited for our FIN and ended right after it."""
    assert out.data == expected
    assert out.close_code == 1000, out.close
    assert_clean_tcp(out)
    assert out.handler_events[:1] == ["open"] and out.handler_events[-1] == ("close", 1000)


def assert_failed(out: Outcome, code: int, before: list[tuple[int, bytes]] | None = None) -> None:
    """The client sent ``before`` (default: nothing), then a close with ``code``
    (masked, no other byte after it), and reported ``code`` to its handler.
    Failing the connection (7.1.7) it may end TCP without waiting for ours."""
    assert out.data == (before or [])
    assert out.close_code == code, out.close
    assert out.masked, "a client frame was not masked"
    assert out.fresh_keys, "a mask key was reused"
    assert out.after_fin < 1.0, f"the client took {out.after_fin:.2f} s to end after our FIN"
    assert out.handler_events[-1] == ("close", code)


def assert_clean_tcp(out: Outcome) -> None:
    assert out.masked, "a client frame was not masked"
    assert out.fresh_keys, "a mask key was reused"
    assert not out.fin_first, "the client closed TCP before the server (RFC 6455 7.1.1)"
    assert out.after_fin < 1.0, f"the client took {out.after_fin:.2f} s to end after our FIN"
