"""The C protocol engine (csrc/wsconn.c), driven byte by byte, without sockets.

A small harness feeds client frames (built with ``encode_frame``) into one
``ws_conn`` and records what comes out: writes (parsed back with a client-role
``FrameParser``), messages, pings/pongs and the one ``closed`` report. It also
checks the engine's promises on every callback: nothing is written after our
close frame, nothing happens after ``closed``, each write is one frame.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib
from wsuv.frames import Frame, FrameParser, encode_frame

MASK = b"\x37\xfa\x21\x3d"
TEXT, BINARY, CONT = lib.WS_OP_TEXT, lib.WS_OP_BINARY, lib.WS_OP_CONTINUATION
CLOSE, PING, PONG = lib.WS_OP_CLOSE, lib.WS_OP_PING, lib.WS_OP_PONG
MiB = 1 << 20


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A client frame (masked, as RFC 6455 5.3 requires)."""
    return encode_frame(opcode, payload, fin=fin, mask=MASK)


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason
    return frame(CLOSE, payload)


def raw_frame(b0: int, payload: bytes = b"", masked: bool = True) -> bytes:
    """A frame with a hand-made first byte (reserved bits, odd opcodes)."""
    n = len(payload)
    assert n < 126
    if not masked:
        return bytes([b0, n]) + payload
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([b0, 0x80 | n]) + MASK + body


# ---- the harness ----------------------------------------------------------


def _harness(c: Any) -> Conn:
    h: Conn = ffi.from_handle(c.data)
    return h


@ffi.callback("void(ws_conn *, const ws_conn_buf *, size_t)")
def _on_write(c: Any, bufs: Any, n: int) -> None:
    h = _harness(c)
    try:
        pieces = [ffi.buffer(bufs[i].base, bufs[i].len)[:] for i in range(n)]
        h._write(pieces)
    except BaseException as exc:  # pragma: no cover - reported by the test
        h.errors.append(repr(exc))


@ffi.callback("void(ws_conn *, unsigned, const uint8_t *, size_t)")
def _on_message(c: Any, opcode: int, data: Any, length: int) -> None:
    h = _harness(c)
    try:
        h._message(opcode, data, length)
    except BaseException as exc:  # pragma: no cover
        h.errors.append(repr(exc))


@ffi.callback("void(ws_conn *, unsigned, const uint8_t *, size_t)")
def _on_control(c: Any, opcode: int, data: Any, length: int) -> None:
    h = _harness(c)
    try:
        h._control(opcode, ffi.buffer(data, length)[:])
    except BaseException as exc:  # pragma: no cover
        h.errors.append(repr(exc))


@ffi.callback("void(ws_conn *, unsigned, const char *, size_t, int)")
def _on_closed(c: Any, code: int, reason: Any, length: int, clean: int) -> None:
    h = _harness(c)
    try:
        h._closed(code, ffi.buffer(reason, length)[:], bool(clean))
    except BaseException as exc:  # pragma: no cover
        h.errors.append(repr(exc))


_CALLBACKS = ffi.new(
    "ws_conn_callbacks *",
    {"write": _on_write, "message": _on_message, "control": _on_control, "closed": _on_closed},
)


class Conn:
    """One engine plus everything it said, checked as it says it."""

    def __init__(
        self,
        *,
        want_control: bool = False,
        max_message_size: int | None = None,
        max_fragments: int | None = None,
        echo: bool = False,
    ) -> None:
        self.c = ffi.new("ws_conn *")
        self._handle = ffi.new_handle(self)
        self.c.data = self._handle
        limits = ffi.new("ws_conn_limits *")
        lib.ws_conn_limits_default(limits)
        if max_message_size is not None:
            limits.max_message_size = max_message_size
        if max_fragments is not None:
            limits.max_fragments = max_fragments
        lib.ws_conn_init(self.c, _CALLBACKS, limits)
        self.c.want_control = int(want_control)
        weakref.finalize(self, lib.ws_conn_free, self.c)
        self.echo = echo
        # Everything in order: ("write", bytes), ("message", op, bytes),
        # ("control", op, bytes), ("closed", code, reason, clean).
        self.events: list[tuple[Any, ...]] = []
        self.errors: list[str] = []
        self.close_written = False
        self.closed: tuple[int, bytes, bool] | None = None
        self.on_message: Callable[[Conn, int, bytes], None] | None = None
        self.on_write: Callable[[Conn, bytes], None] | None = None
        self.inplace: list[bool] = []
        self._span = (0, 0)

    # callbacks

    def _check_alive(self, what: str) -> None:
        if self.closed is not None:
            self.errors.append(f"{what} after closed")

    def _write(self, pieces: list[bytes]) -> None:
        self._check_alive("write")
        header = pieces[0]
        # After our close frame only pongs may follow (RFC 6455 5.5.1 forbids
        # data frames; 5.5.2 still requires answering pings until the peer's
        # close arrives).
        if self.close_written and header[0] & 0x0F != PONG:
            self.errors.append("frame other than a pong after our close frame")
        payload = b"".join(pieces[1:])
        if len(pieces) not in (1, 2) or (len(pieces) == 2) != bool(payload):
            self.errors.append(f"write with {len(pieces)} pieces for {len(payload)} bytes")
        if header[0] & 0x0F == CLOSE:
            self.close_written = True
        self.events.append(("write", header + payload))
        if self.on_write is not None:
            self.on_write(self, header + payload)

    def _message(self, opcode: int, data: Any, length: int) -> None:
        self._check_alive("message")
        addr = int(ffi.cast("uintptr_t", data))
        lo, hi = self._span
        self.inplace.append(lo <= addr and addr + length <= hi and length > 0)
        payload = ffi.buffer(data, length)[:]
        self.events.append(("message", opcode, payload))
        if self.echo:
            assert lib.ws_conn_send(self.c, opcode, data, length) == 0
        if self.on_message is not None:
            self.on_message(self, opcode, payload)

    def _control(self, opcode: int, payload: bytes) -> None:
        self._check_alive("control")
        self.events.append(("control", opcode, payload))

    def _closed(self, code: int, reason: bytes, clean: bool) -> None:
        self._check_alive("closed")
        self.closed = (code, reason, clean)
        self.events.append(("closed", code, reason, clean))

    # driving

    def feed(self, data: bytes) -> int:
        buf = ffi.new("uint8_t[]", data) if data else ffi.new("uint8_t[]", 1)
        addr = int(ffi.cast("uintptr_t", buf))
        self._span = (addr, addr + len(data))
        n = lib.ws_conn_feed(self.c, buf, len(data))
        self._span = (0, 0)
        assert not self.errors, self.errors
        assert 0 <= n <= len(data)
        if self.closed is None:
            assert n == len(data)
        return int(n)

    def feed_pieces(self, pieces: Iterable[bytes]) -> None:
        for p in pieces:
            self.feed(p)

    # what came out

    def written(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "write")

    def out_frames(self) -> list[Frame]:
        return FrameParser(role="client").feed(self.written())

    def messages(self) -> list[tuple[int, bytes]]:
        return [(e[1], e[2]) for e in self.events if e[0] == "message"]

    def controls(self) -> list[tuple[int, bytes]]:
        return [(e[1], e[2]) for e in self.events if e[0] == "control"]

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]

    @property
    def state(self) -> int:
        return int(self.c.state)


def close_payload(f: Frame) -> tuple[int | None, bytes]:
    assert f.opcode == CLOSE
    if not f.payload:
        return None, b""
    return int.from_bytes(f.payload[:2], "big"), f.payload[2:]


def assert_failed(h: Conn, code: int) -> None:
    """The engine failed the connection with `code`: close frame out, closed once."""
    assert h.closed is not None
    assert h.closed[0] == code and h.closed[2] is False
    assert h.events[-1][0] == "closed"
    frames = h.out_frames()
    assert frames and frames[-1].opcode == CLOSE
    assert [f.opcode for f in frames].count(CLOSE) == 1
    got, reason = close_payload(frames[-1])
    assert got == code
    assert 0 < len(reason) <= 123
    reason.decode("utf-8")
    assert h.state == lib.WS_CONN_CLOSED


# ---- messages -------------------------------------------------------------

SIZES = [0, 1, 125, 126, 65535, 65536, MiB]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_single_frame_message_echo(opcode: int, size: int) -> None:
    payload = (b"wsuv-" * (size // 5 + 1))[:size]
    h = Conn(echo=True)
    h.feed(frame(opcode, payload))
    assert h.messages() == [(opcode, payload)]
    assert h.out_frames() == [Frame(opcode, payload)]
    assert h.closed is None and h.state == lib.WS_CONN_OPEN
    if size:
        assert h.inplace == [True]  # whole frame in the fed buffer: no copy


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("piece", [1, 1000, 65536])
def test_single_frame_message_in_pieces(size: int, piece: int) -> None:
    if piece == 1 and size > 70000:
        return  # a million one-byte feeds: slow, and no different from 65536
    payload = bytes(i * 7 & 0xFF for i in range(size))
    data = frame(BINARY, payload)
    h = Conn(echo=True)
    h.feed_pieces(data[i : i + piece] for i in range(0, len(data), piece))
    assert h.messages() == [(BINARY, payload)]
    assert h.out_frames() == [Frame(BINARY, payload)]
    head = len(data) - size
    # Delivered in place exactly when the payload lies whole in one piece.
    assert h.inplace == [size > 0 and head // piece == (len(data) - 1) // piece]


@pytest.mark.parametrize("size", SIZES)
def test_fragmented_message_sizes(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    payload = payload.decode("utf-8", "ignore").encode()
    third = len(payload) // 3
    parts = [payload[:third], payload[third : 2 * third], payload[2 * third :]]
    h = Conn(echo=True)
    h.feed(frame(TEXT, parts[0], fin=False) + frame(CONT, parts[1], fin=False))
    h.feed(frame(CONT, parts[2]))
    assert h.messages() == [(TEXT, payload)]
    assert h.out_frames() == [Frame(TEXT, payload)]
    assert h.inplace == [False]


def test_many_messages_in_one_feed() -> None:
    msgs = [(TEXT, b"a"), (BINARY, b"\x00\xff"), (TEXT, b""), (BINARY, b"x" * 300)]
    h = Conn()
    h.feed(b"".join(frame(op, p) for op, p in msgs))
    assert h.messages() == msgs
    assert h.written() == b""


def test_fragments_with_interleaved_pings() -> None:
    h = Conn(want_control=True)
    h.feed(frame(TEXT, b"Hel", fin=False))
    h.feed(frame(PING, b"p1"))
    h.feed(frame(CONT, b"lo ", fin=False) + frame(PING, b"p2") + frame(PONG, b"q"))
    h.feed(frame(CONT, b"", fin=False))
    h.feed(frame(CONT, b"world"))
    pong1 = encode_frame(PONG, b"p1")
    pong2 = encode_frame(PONG, b"p2")
    assert h.events == [
        ("write", pong1),
        ("control", PING, b"p1"),
        ("write", pong2),
        ("control", PING, b"p2"),
        ("control", PONG, b"q"),
        ("message", TEXT, b"Hello world"),
    ]


def test_ping_answered_without_control_reporting() -> None:
    h = Conn()
    h.feed(frame(PING, b"") + frame(PING, b"x" * 125) + frame(PONG, b"unsolicited"))
    assert h.out_frames() == [Frame(PONG, b""), Frame(PONG, b"x" * 125)]
    assert h.controls() == []


def test_control_payload_split_across_feeds() -> None:
    data = frame(PING, bytes(range(125)))
    h = Conn(want_control=True)
    h.feed_pieces(data[i : i + 1] for i in range(len(data)))
    assert h.out_frames() == [Frame(PONG, bytes(range(125)))]
    assert h.controls() == [(PING, bytes(range(125)))]


def _stream() -> bytes:
    return b"".join(
        [
            frame(TEXT, "héllo".encode()),
            frame(BINARY, b"\x01\x02", fin=False),
            frame(PING, b"pi"),
            frame(CONT, b"\x03", fin=False),
            frame(PONG, b"po"),
            frame(CONT, b"\x04"),
            frame(TEXT, "€𝄞".encode()[:3], fin=False),
            frame(CONT, "€𝄞".encode()[3:]),
            frame(BINARY, b""),
            close_frame(1000, b"done"),
        ]
    )


def _events_for(pieces: Iterable[bytes]) -> list[tuple[Any, ...]]:
    h = Conn(want_control=True)
    h.feed_pieces(pieces)
    return h.events


def test_every_split_gives_the_same_events() -> None:
    data = _stream()
    expected = _events_for([data])
    assert [e[0] for e in expected].count("message") == 4
    assert expected[-1] == ("closed", 1000, b"done", True)
    for i in range(len(data) + 1):
        assert _events_for([data[:i], data[i:]]) == expected, i
    assert _events_for(data[i : i + 1] for i in range(len(data))) == expected


@given(st.lists(st.integers(0, 200), max_size=8))
def test_any_multi_split_gives_the_same_events(cuts: list[int]) -> None:
    data = _stream()
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert _events_for(pieces) == _events_for([data])


# ---- UTF-8 ----------------------------------------------------------------


GOOD = "κόσμε".encode()  # 2-byte sequences


@pytest.mark.parametrize(
    "fragments, bad_index",
    [
        ([b"\xff" + GOOD, GOOD, GOOD], 0),  # start
        ([GOOD, GOOD + b"\xc0\xaf" + GOOD, GOOD], 1),  # middle: overlong
        ([GOOD, GOOD, GOOD + b"\xed\xa0\x80"], 2),  # end: surrogate
        ([GOOD, b"\xce", b"\xbaX\x80"], 2),  # stray continuation byte
        ([GOOD + b"\xf4", b"\x90\x80\x80", GOOD], 1),  # above U+10FFFF
    ],
)
def test_invalid_utf8_fails_at_the_fragment_with_the_bad_byte(
    fragments: list[bytes], bad_index: int
) -> None:
    h = Conn()
    n = len(fragments)
    for k, part in enumerate(fragments):
        op = TEXT if k == 0 else CONT
        h.feed(frame(op, part, fin=k == n - 1))
        if k < bad_index:
            assert h.closed is None, k
        else:
            break
    assert h.messages() == []
    assert_failed(h, 1007)
    assert k == bad_index


def test_invalid_utf8_fails_fast_inside_a_frame() -> None:
    # The bad byte ends the connection even though the frame is not complete.
    payload = GOOD * 10 + b"\xfe" + GOOD * 10
    data = frame(TEXT, payload)
    bad_at = len(data) - len(payload) + payload.index(b"\xfe")
    h = Conn()
    for i in range(len(data)):
        h.feed(data[i : i + 1])
        if h.closed:
            break
    assert i == bad_at
    assert_failed(h, 1007)
    assert h.messages() == []


def test_truncated_utf8_at_message_end_fails() -> None:
    h = Conn()
    h.feed(frame(TEXT, GOOD, fin=False))
    h.feed(frame(CONT, "€".encode()[:2], fin=False))
    assert h.closed is None  # still a valid prefix
    h.feed(frame(CONT, b""))
    assert_failed(h, 1007)
    assert h.messages() == []


def test_truncated_utf8_single_frame_fails() -> None:
    h = Conn()
    h.feed(frame(TEXT, b"abc\xe2\x82"))
    assert_failed(h, 1007)


def test_binary_is_not_checked_for_utf8() -> None:
    h = Conn()
    h.feed(frame(BINARY, b"\xff\xfe", fin=False) + frame(CONT, b"\xc0"))
    assert h.messages() == [(BINARY, b"\xff\xfe\xc0")]


TEXTS = ["€uro", "𝄞 clef", "aé€𝄞z", "日本語テキスト"]


@pytest.mark.parametrize("text", TEXTS)
def test_valid_utf8_split_across_fragments_passes(text: str) -> None:
    data = text.encode()
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            h = Conn()
            h.feed(
                frame(TEXT, data[:i], fin=False)
                + frame(CONT, data[i:j], fin=False)
                + frame(CONT, data[j:])
            )
            assert h.messages() == [(TEXT, data)], (i, j)
            assert h.written() == b""


@given(st.text(max_size=40), st.lists(st.integers(0, 200), max_size=5))
def test_valid_text_any_fragmentation(text: str, cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    parts = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    stream = b"".join(
        frame(TEXT if k == 0 else CONT, p, fin=k == len(parts) - 1) for k, p in enumerate(parts)
    )
    h = Conn()
    h.feed(stream)
    assert h.messages() == [(TEXT, data)]


# ---- close handshake ------------------------------------------------------


def test_peer_close_with_code_is_echoed() -> None:
    h = Conn()
    n = h.feed(close_frame(1000, b"bye now"))
    assert n == len(close_frame(1000, b"bye now"))
    assert h.out_frames() == [Frame(CLOSE, b"\x03\xe8")]  # code echoed, no reason
    assert h.closed == (1000, b"bye now", True)
    assert h.state == lib.WS_CONN_CLOSED


def test_peer_close_without_code() -> None:
    h = Conn()
    h.feed(close_frame())
    assert h.out_frames() == [Frame(CLOSE, b"")]
    assert h.closed == (1005, b"", True)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
def test_valid_close_codes_are_echoed(code: int) -> None:
    h = Conn()
    h.feed(close_frame(code, "ok ✓".encode()))
    assert [close_payload(f) for f in h.out_frames()] == [(code, b"")]
    assert h.closed == (code, "ok ✓".encode(), True)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_codes_fail_1002(code: int) -> None:
    h = Conn()
    h.feed(close_frame(code))
    assert_failed(h, 1002)


def test_close_payload_of_one_byte_fails_1002() -> None:
    h = Conn()
    h.feed(frame(CLOSE, b"\x03"))
    assert_failed(h, 1002)


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3", b"\xed\xa0\x80", b"a\x80b"])
def test_close_reason_invalid_utf8_fails_1007(reason: bytes) -> None:
    h = Conn()
    h.feed(close_frame(1000, reason))
    assert_failed(h, 1007)


def test_close_reason_of_123_bytes_ok() -> None:
    h = Conn()
    h.feed(close_frame(1000, b"r" * 123))
    assert h.closed == (1000, b"r" * 123, True)


def test_close_split_across_feeds() -> None:
    data = close_frame(4000, b"split reason")
    h = Conn()
    h.feed_pieces(data[i : i + 1] for i in range(len(data)))
    assert h.closed == (4000, b"split reason", True)


def test_nothing_after_the_close_frame_is_consumed() -> None:
    close = close_frame(1000)
    after = frame(TEXT, b"late") + frame(PING, b"late")
    h = Conn(want_control=True)
    assert h.feed(frame(TEXT, b"early") + close + after) == len(frame(TEXT, b"early") + close)
    assert h.messages() == [(TEXT, b"early")]
    assert h.feed(after) == 0
    assert h.kinds() == ["message", "write", "closed"]


def test_we_close_first_then_peer_answers() -> None:
    h = Conn(want_control=True)
    assert lib.ws_conn_close(h.c, 1001, b"going away", 10) == 0
    assert h.state == lib.WS_CONN_CLOSING
    assert [close_payload(f) for f in h.out_frames()] == [(1001, b"going away")]
    # The peer sent these before it saw our close: still delivered, and the
    # ping still answered (5.5.2: only a *received* close ends that duty).
    h.feed(frame(TEXT, b"in flight") + frame(PING, b"p"))
    assert h.messages() == [(TEXT, b"in flight")]
    assert h.controls() == [(PING, b"p")]
    assert len(h.out_frames()) == 2
    # The application may send nothing more after our close frame.
    assert lib.ws_conn_send(h.c, TEXT, b"x", 1) == -1
    assert lib.ws_conn_ping(h.c, b"", 0) == -1
    assert lib.ws_conn_pong(h.c, b"", 0) == -1
    assert lib.ws_conn_close(h.c, 1000, ffi.NULL, 0) == -1
    h.feed(close_frame(1001, b"ack"))
    assert h.closed == (1001, b"ack", True)
    assert len(h.out_frames()) == 2


def test_we_close_without_code_peer_answers_without_code() -> None:
    h = Conn()
    assert lib.ws_conn_close(h.c, 0, ffi.NULL, 0) == 0
    assert h.out_frames() == [Frame(CLOSE, b"")]
    h.feed(close_frame())
    assert h.closed == (1005, b"", True)


def test_error_while_closing_writes_no_second_close() -> None:
    h = Conn()
    assert lib.ws_conn_close(h.c, 1000, ffi.NULL, 0) == 0
    h.feed(frame(TEXT, b"\xff"))
    assert h.closed is not None and h.closed[0] == 1007 and not h.closed[2]
    assert [f.opcode for f in h.out_frames()] == [CLOSE]
    h2 = Conn()
    assert lib.ws_conn_close(h2.c, 1000, ffi.NULL, 0) == 0
    h2.feed(close_frame(1005))
    assert h2.closed is not None and h2.closed[0] == 1002
    assert [close_payload(f) for f in h2.out_frames()] == [(1000, b"")]


@pytest.mark.parametrize(
    "code, reason",
    [
        (1005, b""),
        (1006, b""),
        (1015, b""),
        (999, b""),
        (5000, b""),
        (0, b"why"),
        (1000, b"r" * 124),
        (1000, b"\xff"),
    ],
)
def test_close_refuses_what_may_not_be_sent(code: int, reason: bytes) -> None:
    h = Conn()
    assert lib.ws_conn_close(h.c, code, reason, len(reason)) == -1
    assert h.written() == b""
    assert h.state == lib.WS_CONN_OPEN


def test_close_reason_of_123_bytes_can_be_sent() -> None:
    h = Conn()
    assert lib.ws_conn_close(h.c, 4000, b"z" * 123, 123) == 0
    assert [close_payload(f) for f in h.out_frames()] == [(4000, b"z" * 123)]


def test_peer_close_inside_a_fragmented_message() -> None:
    h = Conn()
    h.feed(frame(TEXT, b"part", fin=False) + close_frame(1000))
    assert h.messages() == []
    assert h.closed == (1000, b"", True)


# ---- limits ---------------------------------------------------------------


def test_default_limits() -> None:
    limits = ffi.new("ws_conn_limits *")
    lib.ws_conn_limits_default(limits)
    assert limits.max_message_size == 16 * MiB
    assert limits.max_fragments >= 65536  # Autobahn 9.3.1: 4 MiB in 64-byte fragments


def test_single_frame_at_the_size_limit_passes() -> None:
    h = Conn(max_message_size=1000)
    h.feed(frame(BINARY, b"x" * 1000))
    assert h.messages() == [(BINARY, b"x" * 1000)]


def test_single_frame_over_the_size_limit_fails_at_its_header() -> None:
    h = Conn(max_message_size=1000)
    data = frame(BINARY, b"x" * 1001)
    h.feed(data[:4])  # 2 bytes + 16-bit length: the header already says too much
    assert_failed(h, 1009)
    assert h.feed(data[4:]) == 0
    assert h.messages() == []


def test_huge_declared_frame_fails_without_payload() -> None:
    h = Conn()
    header = bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + MASK
    h.feed(header)
    assert_failed(h, 1009)


def test_fragmented_message_over_the_size_limit() -> None:
    h = Conn(max_message_size=1000)
    h.feed(frame(TEXT, b"a" * 400, fin=False) + frame(CONT, b"b" * 400, fin=False))
    assert h.closed is None
    data = frame(CONT, b"c" * 201)
    h.feed(data[:8])  # refused at the header (with its mask key), before any payload
    assert_failed(h, 1009)
    assert h.messages() == []


def test_fragmented_message_exactly_at_the_size_limit() -> None:
    h = Conn(max_message_size=1000)
    h.feed(frame(TEXT, b"a" * 400, fin=False) + frame(CONT, b"b" * 600))
    assert h.messages() == [(TEXT, b"a" * 400 + b"b" * 600)]


def test_many_small_fragments_over_the_size_limit() -> None:
    h = Conn(max_message_size=100)
    h.feed(frame(BINARY, b"x", fin=False))
    for _ in range(99):
        h.feed(frame(CONT, b"x", fin=False))
    assert h.closed is None
    h.feed(frame(CONT, b"x"))
    assert_failed(h, 1009)
    assert h.messages() == []


def test_fragment_count_limit() -> None:
    h = Conn(max_fragments=5)
    h.feed(frame(TEXT, b"", fin=False) + b"".join(frame(CONT, b"", fin=False) for _ in range(3)))
    h.feed(frame(CONT, b"5th"))
    assert h.messages() == [(TEXT, b"5th")]
    h.feed(frame(TEXT, b"", fin=False) + b"".join(frame(CONT, b"", fin=False) for _ in range(4)))
    assert h.closed is None
    h.feed(frame(CONT, b""))
    assert_failed(h, 1009)
    assert h.messages() == [(TEXT, b"5th")]


def test_limits_reset_between_messages() -> None:
    h = Conn(max_message_size=10, max_fragments=2)
    for _ in range(5):
        h.feed(frame(BINARY, b"12345", fin=False) + frame(CONT, b"67890"))
    assert h.messages() == [(BINARY, b"1234567890")] * 5
    assert h.closed is None


# ---- protocol errors ------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode_frame(TEXT, b"hi"), id="unmasked"),
        pytest.param(raw_frame(0x80 | 0x40 | TEXT, b"hi"), id="rsv1"),
        pytest.param(raw_frame(0x80 | 0x20 | BINARY, b"hi"), id="rsv2"),
        pytest.param(raw_frame(0x80 | 0x10 | PING, b""), id="rsv3-control"),
        pytest.param(raw_frame(0x80 | 0x3, b""), id="opcode-3"),
        pytest.param(raw_frame(0x80 | 0xB, b""), id="opcode-B"),
        pytest.param(raw_frame(PING, b"x"), id="fragmented-ping"),
        pytest.param(frame(CONT, b"x"), id="continuation-first"),
        pytest.param(frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), id="text-inside-text"),
        pytest.param(bytes([0x89, 0xFE, 0, 126]) + MASK + bytes(126), id="ping-126"),
        pytest.param(bytes([0x82, 0xFE, 0, 5]) + MASK + bytes(5), id="non-minimal-16"),
        pytest.param(bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + MASK, id="len-msb"),
    ],
)
def test_protocol_errors_fail_1002(data: bytes) -> None:
    h = Conn(want_control=True)
    h.feed(data + frame(TEXT, b"never") + frame(PING, b"never"))
    assert_failed(h, 1002)
    assert h.messages() == [] and h.controls() == []


def test_message_then_error_then_nothing() -> None:
    h = Conn(echo=True)
    n = h.feed(frame(TEXT, b"ok") + raw_frame(0xC1, b"zz") + frame(TEXT, b"no"))
    assert n == len(frame(TEXT, b"ok")) + 1  # up to the offending header byte
    assert h.messages() == [(TEXT, b"ok")]
    assert [f.opcode for f in h.out_frames()] == [TEXT, CLOSE]
    assert_failed(h, 1002)


def test_no_events_after_closed() -> None:
    h = Conn(want_control=True)
    h.feed(encode_frame(TEXT, b"unmasked"))
    assert_failed(h, 1002)
    before = list(h.events)
    assert h.feed(frame(TEXT, b"x") + frame(PING, b"y") + close_frame(1000)) == 0
    assert lib.ws_conn_send(h.c, TEXT, b"x", 1) == -1
    assert lib.ws_conn_send_frame(h.c, TEXT, 1, b"x", 1) == -1
    assert lib.ws_conn_ping(h.c, b"x", 1) == -1
    assert lib.ws_conn_close(h.c, 1000, ffi.NULL, 0) == -1
    lib.ws_conn_abort(h.c, 1006, ffi.NULL, 0)
    assert h.events == before


# ---- abort ----------------------------------------------------------------


def test_abort_reports_once() -> None:
    h = Conn()
    h.feed(frame(TEXT, b"half", fin=False))
    lib.ws_conn_abort(h.c, 1006, b"peer vanished", 13)
    lib.ws_conn_abort(h.c, 1006, b"again", 5)
    assert h.closed == (1006, b"peer vanished", False)
    assert h.kinds() == ["closed"]
    assert h.written() == b""
    assert h.feed(frame(CONT, b"rest")) == 0
    assert h.messages() == []


def test_abort_after_clean_close_is_silent() -> None:
    h = Conn()
    h.feed(close_frame(1000))
    lib.ws_conn_abort(h.c, 1006, ffi.NULL, 0)
    assert [e[0] for e in h.events].count("closed") == 1


def test_abort_from_the_message_callback_stops_the_feed() -> None:
    h = Conn()

    def abort(conn: Conn, opcode: int, payload: bytes) -> None:
        lib.ws_conn_abort(conn.c, 1011, b"handler failed", 14)

    h.on_message = abort
    first = frame(TEXT, b"one")
    n = h.feed(first + frame(TEXT, b"two") + frame(PING, b""))
    assert n == len(first)
    assert h.messages() == [(TEXT, b"one")]
    assert h.closed == (1011, b"handler failed", False)
    assert h.written() == b""


def test_close_from_the_message_callback_keeps_delivering() -> None:
    h = Conn()

    def close(conn: Conn, opcode: int, payload: bytes) -> None:
        if payload == b"one":
            assert lib.ws_conn_close(conn.c, 1000, ffi.NULL, 0) == 0

    h.on_message = close
    h.feed(frame(TEXT, b"one") + frame(TEXT, b"two") + close_frame(1000))
    assert h.messages() == [(TEXT, b"one"), (TEXT, b"two")]
    assert h.closed == (1000, b"", True)
    assert [close_payload(f) for f in h.out_frames()] == [(1000, b"")]


def _abort_on_write(conn: Conn, data: bytes) -> None:
    # A transport whose socket write failed gives up at once.
    lib.ws_conn_abort(conn.c, 1006, b"write failed", 12)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(PING, b"p"), id="pong"),
        pytest.param(close_frame(1000), id="close-echo"),
        pytest.param(frame(TEXT, b"\xff"), id="fail-close"),
        pytest.param(encode_frame(TEXT, b"unmasked"), id="parser-error"),
    ],
)
def test_abort_from_inside_a_write(data: bytes) -> None:
    h = Conn(want_control=True)
    h.on_write = _abort_on_write
    later = frame(TEXT, b"later") + frame(PING, b"later")
    h.feed(data + later)
    assert h.closed == (1006, b"write failed", False)
    assert h.kinds() == ["write", "closed"]
    assert h.state == lib.WS_CONN_CLOSED


def test_abort_from_inside_our_close_write() -> None:
    h = Conn()
    h.on_write = _abort_on_write
    assert lib.ws_conn_close(h.c, 1000, ffi.NULL, 0) == 0
    assert h.kinds() == ["write", "closed"]
    assert h.state == lib.WS_CONN_CLOSED
    assert h.feed(close_frame(1000)) == 0


# ---- sending --------------------------------------------------------------


def test_send_writes_one_frame_per_call() -> None:
    h = Conn()
    assert lib.ws_conn_send(h.c, TEXT, b"hello", 5) == 0
    assert lib.ws_conn_send(h.c, BINARY, b"", 0) == 0
    assert lib.ws_conn_send(h.c, BINARY, b"b" * 70000, 70000) == 0
    assert lib.ws_conn_ping(h.c, b"p", 1) == 0
    assert lib.ws_conn_pong(h.c, b"", 0) == 0
    assert h.out_frames() == [
        Frame(TEXT, b"hello"),
        Frame(BINARY, b""),
        Frame(BINARY, b"b" * 70000),
        Frame(PING, b"p"),
        Frame(PONG, b""),
    ]
    assert lib.ws_conn_send(h.c, PING, b"", 0) == -1
    assert lib.ws_conn_send(h.c, CONT, b"", 0) == -1
    assert lib.ws_conn_ping(h.c, b"x" * 126, 126) == -1
    assert len(h.out_frames()) == 5


def test_send_frame_enforces_fragment_order() -> None:
    h = Conn()
    assert lib.ws_conn_send_frame(h.c, CONT, 1, b"x", 1) == -1
    assert lib.ws_conn_send_frame(h.c, TEXT, 0, b"ab", 2) == 0
    assert lib.ws_conn_send_frame(h.c, BINARY, 1, b"x", 1) == -1
    assert lib.ws_conn_send(h.c, BINARY, b"x", 1) == -1
    assert lib.ws_conn_ping(h.c, b"mid", 3) == 0  # control frames may interleave
    assert lib.ws_conn_send_frame(h.c, CONT, 0, b"cd", 2) == 0
    assert lib.ws_conn_send_frame(h.c, CONT, 1, b"", 0) == 0
    assert lib.ws_conn_send(h.c, BINARY, b"x", 1) == 0
    assert h.out_frames() == [
        Frame(TEXT, b"ab", fin=False),
        Frame(PING, b"mid"),
        Frame(CONT, b"cd", fin=False),
        Frame(CONT, b""),
        Frame(BINARY, b"x"),
    ]


def test_free_and_reinit() -> None:
    h = Conn()
    h.feed(frame(BINARY, b"x" * 10000, fin=False))
    lib.ws_conn_free(h.c)
    lib.ws_conn_free(h.c)  # idempotent
    lib.ws_conn_init(h.c, _CALLBACKS, ffi.NULL)
    assert h.c.data == h._handle  # the transport's pointer survives init
    h.feed(frame(BINARY, b"fresh"))
    assert h.messages() == [(BINARY, b"fresh")]


def test_buffer_reused_across_messages() -> None:
    # Assembled messages of every size in turn: the kept buffer must never
    # leak bytes of an earlier message into a later one.
    h = Conn()
    expected = []
    for size in [5000, 10, 3000, 0, 70000, 1, 4096, 4097]:
        payload = bytes([size & 0xFF]) * size
        h.feed(frame(BINARY, payload[: size // 2], fin=False) + frame(CONT, payload[size // 2 :]))
        expected.append((BINARY, payload))
    assert h.messages() == expected


# ---- fuzz -----------------------------------------------------------------

_frame_spec = st.tuples(
    st.sampled_from([TEXT, BINARY, CONT, CLOSE, PING, PONG, 3, 0xB]),
    st.one_of(
        st.binary(max_size=40),
        st.text(max_size=20).map(str.encode),
        st.sampled_from([b"\x03\xe8", b"\x03\xe8ok", b"\x03", b"\x0f\xa0\xff", b"\xe2\x82"]),
    ),
    st.booleans(),
    st.booleans(),
)


def _build(spec: tuple[int, bytes, bool, bool]) -> bytes:
    op, payload, fin, masked = spec
    if op & 0x8:
        payload = payload[:125]
    b0 = (0x80 if fin else 0) | op
    if len(payload) < 126:
        return raw_frame(b0, payload, masked=masked)
    return frame(op, payload, fin=fin)  # pragma: no cover


def _check_run(h: Conn, pieces: list[bytes]) -> None:
    for p in pieces:
        h.feed(p)
    assert [e[0] for e in h.events].count("closed") <= 1
    if h.closed is not None:
        assert h.events[-1][0] == "closed"
    frames = h.out_frames()
    opcodes = [f.opcode for f in frames]
    # One close frame at most, and only pongs after it.
    assert opcodes.count(CLOSE) <= 1
    if CLOSE in opcodes:
        assert set(opcodes[opcodes.index(CLOSE) + 1:]) <= {PONG}
    assert all(op in (PONG, CLOSE) for op in opcodes)
    lib.ws_conn_abort(h.c, 1006, ffi.NULL, 0)
    assert [e[0] for e in h.events].count("closed") == 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.lists(st.integers(1, 64), max_size=10))
def test_random_bytes_never_misbehave(data: bytes, sizes: list[int]) -> None:
    h = Conn(want_control=True, max_message_size=200, max_fragments=8)
    pieces, pos = [], 0
    for s in sizes:
        pieces.append(data[pos : pos + s])
        pos += s
    pieces.append(data[pos:])
    _check_run(h, pieces)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_frame_spec, max_size=12),
    st.binary(max_size=20),
    st.lists(st.integers(0, 400), max_size=6),
    st.booleans(),
)
def test_random_frame_streams_never_misbehave(
    specs: list[tuple[int, bytes, bool, bool]], tail: bytes, cuts: list[int], close_first: bool
) -> None:
    data = b"".join(_build(s) for s in specs) + tail
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    h = Conn(want_control=True, max_message_size=60, max_fragments=4)
    if close_first:
        assert lib.ws_conn_close(h.c, 1001, ffi.NULL, 0) == 0
    _check_run(h, pieces)
    # The same stream fed whole gives the same events.
    h2 = Conn(want_control=True, max_message_size=60, max_fragments=4)
    if close_first:
        lib.ws_conn_close(h2.c, 1001, ffi.NULL, 0)
    h2.feed(data)
    lib.ws_conn_abort(h2.c, 1006, ffi.NULL, 0)
    assert h2.events == h.events
