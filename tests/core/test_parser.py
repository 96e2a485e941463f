"""The frame parser (csrc/wsparser.c) through FrameParser and directly through cffi.

RFC 6455 section numbers name where each rule comes from. No sockets: every
test feeds bytes.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib
from wsuv.exceptions import ProtocolError, WsuvError
from wsuv.frames import (
    Frame,
    FrameChunk,
    FrameEnd,
    FrameHeader,
    FrameParser,
    Opcode,
    StreamingFrameParser,
)

CONT, TEXT, BINARY = Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG
DATA_OPCODES = (CONT, TEXT, BINARY)
CONTROL_OPCODES = (CLOSE, PING, PONG)
RESERVED_OPCODES = (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)
KEY = bytes.fromhex("37fa213d")


# --- a pure-Python frame builder, able to write invalid frames too ---------


def xor(data: bytes, key: bytes, phase: int = 0) -> bytes:
    return bytes(b ^ key[(phase + i) & 3] for i, b in enumerate(data))


def raw(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    form: int | None = None,
    length: int | None = None,
) -> bytes:
    """One frame, RFC 6455 5.2. ``form`` forces the 7/16/64-bit length field
    (7, 16, 64); ``length`` overrides the declared length."""
    n = len(payload) if length is None else length
    if form is None:
        form = 7 if n < 126 else 16 if n <= 0xFFFF else 64
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mbit = 0x80 if mask is not None else 0
    if form == 7:
        head += bytes([mbit | n])
    elif form == 16:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    return head + mask + xor(payload, mask)


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False) -> Frame:
    return Frame(opcode, payload, fin, rsv1, False, False)


def feed_pieces(parser: FrameParser | StreamingFrameParser, data: bytes, cuts: list[int]) -> list:
    out: list = []
    prev = 0
    for cut in [*cuts, len(data)]:
        out += parser.feed(data[prev:cut])
        prev = cut
    return out


def fold_events(events: list) -> list[Frame]:
    """Rebuild whole frames from StreamingFrameParser events, checking their order."""
    frames: list[Frame] = []
    header: FrameHeader | None = None
    body = bytearray()
    for ev in events:
        if isinstance(ev, FrameHeader):
            assert header is None, "header inside a frame"
            header, body = ev, bytearray()
        elif isinstance(ev, FrameChunk):
            assert header is not None, "chunk outside a frame"
            assert len(ev.data) > 0, "empty chunk"
            body += ev.data
        else:
            assert isinstance(ev, FrameEnd)
            assert header is not None, "end outside a frame"
            assert (ev.opcode, ev.fin) == (header.opcode, header.fin)
            assert len(body) == header.length
            frames.append(Frame(header.opcode, bytes(body), header.fin, header.rsv1,
                                header.rsv2, header.rsv3))
            header = None
    assert header is None, "stream ended inside a frame"
    return frames


# --- RFC 6455 5.7 examples, byte for byte -----------------------------------

HELLO = b"Hello"
RFC_EXAMPLES = [
    # (name, wire bytes, role, frames)
    ("unmasked text", bytes.fromhex("810548656c6c6f"), "client", [frame(TEXT, HELLO)]),
    ("masked text", bytes.fromhex("818537fa213d7f9f4d5158"), "server", [frame(TEXT, HELLO)]),
    (
        "fragmented unmasked text",
        bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"),
        "client",
        [frame(TEXT, b"Hel", fin=False), frame(CONT, b"lo")],
    ),
    ("unmasked ping", bytes.fromhex("890548656c6c6f"), "client", [frame(PING, HELLO)]),
    ("masked pong", bytes.fromhex("8a8537fa213d7f9f4d5158"), "server", [frame(PONG, HELLO)]),
    (
        "256 bytes binary, 16-bit length",
        bytes.fromhex("827e0100") + bytes(range(256)),
        "client",
        [frame(BINARY, bytes(range(256)))],
    ),
    (
        "64 KiB binary, 64-bit length",
        bytes.fromhex("827f0000000000010000") + bytes(range(256)) * 256,
        "client",
        [frame(BINARY, bytes(range(256)) * 256)],
    ),
]


@pytest.mark.parametrize("role_kind", ["matching", "any"])
@pytest.mark.parametrize("name,wire,role,expected", RFC_EXAMPLES, ids=[e[0] for e in RFC_EXAMPLES])
def test_rfc_5_7_examples(name, wire, role, expected, role_kind):
    role = role if role_kind == "matching" else "any"
    original = bytes(wire)
    assert FrameParser(role=role).feed(wire) == expected
    assert wire == original, "feed must not unmask the caller's bytes"
    assert fold_events(StreamingFrameParser(role=role).feed(wire)) == expected


def test_rfc_5_7_length_forms_seen_by_streaming_header():
    events = StreamingFrameParser(role="client").feed(RFC_EXAMPLES[6][1][:10])
    assert events == [FrameHeader(BINARY, 65536, True, False, False, False)]
    events = StreamingFrameParser(role="client").feed(RFC_EXAMPLES[5][1][:4])
    assert events == [FrameHeader(BINARY, 256, True, False, False, False)]


def test_feed_accepts_bytearray_and_memoryview_without_mutating():
    wire = bytearray.fromhex("818537fa213d7f9f4d5158")
    assert FrameParser().feed(wire) == [frame(TEXT, HELLO)]
    assert FrameParser().feed(memoryview(wire)) == [frame(TEXT, HELLO)]
    assert wire == bytearray.fromhex("818537fa213d7f9f4d5158")


# --- a mixed stream fed in every possible way --------------------------------


def _payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def build_stream(big: bool) -> tuple[bytes, list[Frame]]:
    """Mixed opcodes and sizes, masked and not, fragmented messages with
    control frames between their fragments (RFC 6455 5.4)."""
    parts: list[tuple[bytes, Frame]] = []

    def add(op, payload=b"", fin=True, mask=None):
        parts.append((raw(op, payload, fin=fin, mask=mask), frame(op, payload, fin)))

    add(TEXT, b"")
    add(BINARY, b"\x00", mask=KEY)
    add(PING, _payload(125, 1), mask=b"\x01\x02\x03\x04")
    add(TEXT, "frag1 é".encode(), fin=False, mask=KEY)
    add(PING, b"p")
    add(CONT, _payload(126, 2), fin=False, mask=b"\xff\x00\xaa\x55")
    add(PONG, b"", mask=KEY)
    add(CONT, b"", fin=True)
    add(BINARY, _payload(125, 3))
    add(CLOSE, b"\x03\xe8bye", mask=KEY)
    add(BINARY, _payload(126, 4), mask=b"\x00\x00\x00\x00")
    add(BINARY, _payload(127, 5))
    add(BINARY, b"", fin=False)
    add(CONT, _payload(3, 6), fin=False, mask=KEY)
    add(PING, _payload(125, 7))
    add(CONT, _payload(1, 8))
    if big:
        add(BINARY, _payload(65536, 9), fin=False, mask=b"\x9a\xbc\xde\xf0")
        add(PING, b"mid", mask=KEY)
        add(CONT, _payload(65535, 10), fin=False)
        add(CONT, _payload(65537, 11), mask=KEY)
        add(TEXT, _payload(70000, 12), mask=KEY)
        add(PONG, b"end")
    return b"".join(p[0] for p in parts), [p[1] for p in parts]


def frame_offsets(wire: bytes) -> list[tuple[int, int, int]]:
    """(start, header end, frame end) of each frame in a valid stream."""
    out = []
    i = 0
    while i < len(wire):
        b1 = wire[i + 1]
        n, h = b1 & 0x7F, i + 2
        if n == 126:
            n, h = struct.unpack_from("!H", wire, h)[0], h + 2
        elif n == 127:
            n, h = struct.unpack_from("!Q", wire, h)[0], h + 8
        if b1 & 0x80:
            h += 4
        out.append((i, h, h + n))
        i = h + n
    return out


SMALL_WIRE, SMALL_FRAMES = build_stream(big=False)
BIG_WIRE, BIG_FRAMES = build_stream(big=True)


def test_stream_whole():
    assert FrameParser(role="any").feed(SMALL_WIRE) == SMALL_FRAMES
    assert FrameParser(role="any").feed(BIG_WIRE) == BIG_FRAMES
    assert fold_events(StreamingFrameParser(role="any").feed(BIG_WIRE)) == BIG_FRAMES


def test_small_stream_every_split_point():
    for cut in range(len(SMALL_WIRE) + 1):
        assert feed_pieces(FrameParser(role="any"), SMALL_WIRE, [cut]) == SMALL_FRAMES, cut
        events = feed_pieces(StreamingFrameParser(role="any"), SMALL_WIRE, [cut])
        assert fold_events(events) == SMALL_FRAMES, cut


def _big_split_points() -> list[int]:
    points = set(random.Random(5).sample(range(len(BIG_WIRE) + 1), 150))
    for start, hend, end in frame_offsets(BIG_WIRE):
        points.update(range(start, hend + 2))  # every point in the header, and just past it
        points.update((end - 1, end))
    return sorted(p for p in points if p <= len(BIG_WIRE))


def test_big_stream_split_points():
    points = _big_split_points()
    parser, streaming = FrameParser(role="any"), StreamingFrameParser(role="any")
    for cut in points:
        # One parser reused across streams: each stream ends on a frame boundary.
        assert feed_pieces(parser, BIG_WIRE, [cut]) == BIG_FRAMES, cut
        assert fold_events(feed_pieces(streaming, BIG_WIRE, [cut])) == BIG_FRAMES, cut


@pytest.mark.parametrize("wire,frames", [(SMALL_WIRE, SMALL_FRAMES), (BIG_WIRE, BIG_FRAMES)],
                         ids=["small", "big"])
def test_stream_one_byte_at_a_time(wire, frames):
    cuts = list(range(1, len(wire)))
    assert feed_pieces(FrameParser(role="any"), wire, cuts) == frames
    events = feed_pieces(StreamingFrameParser(role="any"), wire, cuts)
    assert fold_events(events) == frames
    # One byte in, at most one chunk out, holding exactly that byte.
    assert all(len(ev.data) == 1 for ev in events if isinstance(ev, FrameChunk))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, len(BIG_WIRE)), max_size=12))
def test_big_stream_random_pieces(cuts):
    cuts = sorted(cuts)
    assert feed_pieces(FrameParser(role="any"), BIG_WIRE, cuts) == BIG_FRAMES
    assert fold_events(feed_pieces(StreamingFrameParser(role="any"), BIG_WIRE, cuts)) == BIG_FRAMES


def test_frames_returned_by_the_feed_that_completes_them():
    p = FrameParser(role="any")
    start, hend, end = frame_offsets(SMALL_WIRE)[5]  # the 126-byte masked continuation
    assert p.feed(SMALL_WIRE[:hend + 60]) == SMALL_FRAMES[:5]
    assert p.feed(SMALL_WIRE[hend + 60:end]) == [SMALL_FRAMES[5]]
    assert p.feed(SMALL_WIRE[end:]) == SMALL_FRAMES[6:]


def test_many_frames_in_one_feed_then_a_partial_one():
    """More frames than one C call reads back, followed by a split frame."""
    small = [frame(BINARY, bytes([i % 256]) * (i % 7)) for i in range(1000)]
    tail = _payload(5000, 99)
    wire = b"".join(raw(f.opcode, f.payload, mask=KEY) for f in small)
    last = raw(BINARY, tail, mask=KEY)
    p = FrameParser()
    assert p.feed(wire + last[:2000]) == small
    assert p.feed(last[2000:]) == [frame(BINARY, tail)]
    s = StreamingFrameParser()
    assert fold_events(s.feed(wire + last)) == [*small, frame(BINARY, tail)]


def _batch_edge_streams():
    """Streams whose events fall on every alignment around the 256 records one
    C call writes (frames.py _BATCH), ending with an empty or 1-byte frame."""
    for lead_empty in range(3):
        for count in range(80, 90):
            for last in (b"", b"x"):
                frames = [frame(BINARY)] * lead_empty + [frame(BINARY, b"y")] * count
                frames.append(frame(BINARY, last))
                yield b"".join(raw(f.opcode, f.payload) for f in frames), frames


def test_frame_parser_batch_edges():
    for wire, frames in _batch_edge_streams():
        assert FrameParser(role="client").feed(wire) == frames


def test_streaming_parser_batch_edges():
    for wire, frames in _batch_edge_streams():
        # fold_events fails if the feed leaves the last frame without its end.
        assert fold_events(StreamingFrameParser(role="client").feed(wire)) == frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 65537])
@pytest.mark.parametrize("masked", [False, True])
def test_single_frame_sizes_split_at_header(size, masked):
    payload = _payload(size, size)
    wire = raw(BINARY, payload, mask=KEY if masked else None)
    role = "server" if masked else "client"
    hlen = len(wire) - size
    for cut in range(hlen + 2):
        assert feed_pieces(FrameParser(role=role), wire, [cut]) == [frame(BINARY, payload)]


# --- protocol violations -------------------------------------------------------

OK_TEXT = raw(TEXT, b"ok")
OPEN_MSG = raw(TEXT, b"op", fin=False)

# (id, prefix, bad, options, code, frames before). The error is revealed by
# the last byte of ``bad`` (RFC 6455 5.2 lets a parser fail at once).
VIOLATIONS = [
    ("rsv1", OK_TEXT, b"\xc1", {}, 1002, [frame(TEXT, b"ok")]),
    ("rsv2", OK_TEXT, b"\xa1", {}, 1002, [frame(TEXT, b"ok")]),
    ("rsv3", OK_TEXT, b"\x91", {}, 1002, [frame(TEXT, b"ok")]),
    ("rsv1 on binary", b"", b"\xc2", {}, 1002, []),
    ("rsv2 with only rsv1 allowed", b"", b"\xa1", {"rsv_allowed": 1}, 1002, []),
    ("rsv3 with only rsv1 allowed", b"", b"\x92", {"rsv_allowed": 1}, 1002, []),
    ("rsv1 allowed, on ping", b"", b"\xc9", {"rsv_allowed": 1}, 1002, []),
    ("rsv1 allowed, on close", b"", b"\xc8", {"rsv_allowed": 1}, 1002, []),
    ("rsv1 allowed, on pong", OK_TEXT, b"\xca", {"rsv_allowed": 1}, 1002, [frame(TEXT, b"ok")]),
    ("rsv1 allowed, on continuation", raw(TEXT, b"a", fin=False, rsv=0x40), b"\xc0",
     {"rsv_allowed": 1}, 1002, [frame(TEXT, b"a", fin=False, rsv1=True)]),
    *[
        (f"opcode {op:#x}", OK_TEXT, bytes([0x80 | op]), {}, 1002, [frame(TEXT, b"ok")])
        for op in RESERVED_OPCODES
    ],
    *[
        (f"non-final opcode {op:#x}", b"", bytes([op]), {}, 1002, [])
        for op in RESERVED_OPCODES
    ],
    *[
        (f"control {op.name} 126 bytes", b"", bytes([0x80 | op, 126]), {}, 1002, [])
        for op in CONTROL_OPCODES
    ],
    ("control ping 64-bit length", b"", b"\x89\x7f", {}, 1002, []),
    *[
        (f"control {op.name} without FIN", OK_TEXT, bytes([op]), {}, 1002, [frame(TEXT, b"ok")])
        for op in CONTROL_OPCODES
    ],
    ("ping without FIN inside a message", OPEN_MSG, b"\x09", {}, 1002,
     [frame(TEXT, b"op", fin=False)]),
    ("continuation, nothing open", b"", b"\x80", {}, 1002, []),
    ("non-final continuation, nothing open", OK_TEXT, b"\x00", {}, 1002, [frame(TEXT, b"ok")]),
    (
        "continuation after the message ended",
        OPEN_MSG + raw(CONT, b"x"),
        b"\x80",
        {},
        1002,
        [frame(TEXT, b"op", fin=False), frame(CONT, b"x")],
    ),
    ("text inside a message", OPEN_MSG, b"\x81", {}, 1002, [frame(TEXT, b"op", fin=False)]),
    ("binary inside a message", OPEN_MSG, b"\x82", {}, 1002, [frame(TEXT, b"op", fin=False)]),
    ("non-final text inside a message", OPEN_MSG, b"\x01", {}, 1002,
     [frame(TEXT, b"op", fin=False)]),
    (
        "text inside a message, after a ping",
        OPEN_MSG + raw(PING, b"!"),
        b"\x81",
        {},
        1002,
        [frame(TEXT, b"op", fin=False), frame(PING, b"!")],
    ),
    ("64-bit length with MSB set", b"", b"\x82\x7f\x80" + bytes(7), {}, 1002, []),
    ("64-bit length all ones", b"", b"\x82\x7f" + b"\xff" * 8, {}, 1002, []),
    ("16-bit form for 0", b"", raw(BINARY, form=16)[:4], {}, 1002, []),
    ("16-bit form for 125", OK_TEXT, raw(BINARY, length=125, form=16)[:4], {}, 1002,
     [frame(TEXT, b"ok")]),
    ("64-bit form for 0", b"", raw(BINARY, form=64)[:10], {}, 1002, []),
    ("64-bit form for 125", b"", raw(BINARY, length=125, form=64)[:10], {}, 1002, []),
    ("64-bit form for 126", b"", raw(BINARY, length=126, form=64)[:10], {}, 1002, []),
    ("64-bit form for 65535", b"", raw(BINARY, length=65535, form=64)[:10], {}, 1002, []),
    ("over max_size, 7-bit", OK_TEXT, raw(BINARY, length=11)[:2], {"max_size": 10}, 1009,
     [frame(TEXT, b"ok")]),
    ("over max_size, 16-bit", b"", raw(BINARY, length=1001)[:4], {"max_size": 1000}, 1009, []),
    ("over max_size, 64-bit", b"", raw(BINARY, length=65537)[:10], {"max_size": 65536}, 1009,
     []),
    ("over max_size, 2**63-1", b"", raw(BINARY, length=2**63 - 1)[:10], {"max_size": 2**40},
     1009, []),
    ("control frame over max_size", b"", raw(PING, length=11)[:2], {"max_size": 10}, 1009, []),
    ("unmasked to server", raw(TEXT, b"ok", mask=KEY), b"\x81\x02", {"role": "server"}, 1002,
     [frame(TEXT, b"ok")]),
    ("unmasked empty to server", b"", b"\x88\x00", {"role": "server"}, 1002, []),
    ("masked to client", OK_TEXT, b"\x81\x82", {"role": "client"}, 1002, [frame(TEXT, b"ok")]),
    ("masked empty to client", b"", b"\x8a\x80", {"role": "client"}, 1002, []),
]


def _opts(options: dict) -> dict:
    return {"role": "any", **options}


@pytest.mark.parametrize(
    "prefix,bad,options,code,before", [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_violation(prefix, bad, options, code, before):
    # The bytes before the revealing one are fine.
    assert FrameParser(**_opts(options)).feed(prefix + bad[:-1]) == before
    for trailer in (b"", b"\x81\x00garbage" * 3):
        parser = FrameParser(**_opts(options))
        with pytest.raises(ProtocolError) as info:
            parser.feed(prefix + bad + trailer)
        err = info.value
        assert isinstance(err, WsuvError)
        assert err.code == code
        assert err.frames == before
        assert err.reason and str(code) in str(err)
        # The error is sticky until reset().
        with pytest.raises(ProtocolError) as again:
            parser.feed(OK_TEXT if options.get("role") != "server" else raw(TEXT, mask=KEY))
        assert again.value.code == code
        parser.reset()
        good = raw(PING, b"again", mask=KEY if options.get("role") == "server" else None)
        assert parser.feed(good) == [frame(PING, b"again")]


@pytest.mark.parametrize(
    "prefix,bad,options,code,before", [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_violation_byte_at_a_time(prefix, bad, options, code, before):
    """The error surfaces on the feed that brings the revealing byte."""
    wire = prefix + bad
    parser = FrameParser(**_opts(options))
    got: list[Frame] = []
    for i in range(len(wire) - 1):
        got += parser.feed(wire[i : i + 1])
    assert got == before
    with pytest.raises(ProtocolError) as info:
        parser.feed(wire[-1:])
    assert info.value.code == code
    assert info.value.frames == []

    streaming = StreamingFrameParser(**_opts(options))
    with pytest.raises(ProtocolError) as info:
        streaming.feed(wire)
    assert info.value.code == code
    assert fold_events(info.value.frames) == before


def test_errors_carry_frames_of_the_failing_feed_only():
    p = FrameParser(role="any")
    assert p.feed(OK_TEXT) == [frame(TEXT, b"ok")]
    with pytest.raises(ProtocolError) as info:
        p.feed(raw(PING, b"1") + raw(PONG, b"2") + b"\x83\x00")
    assert info.value.frames == [frame(PING, b"1"), frame(PONG, b"2")]


def test_rsv1_allowed_on_first_data_frame():
    p = FrameParser(role="any", rsv_allowed=1)
    wire = (
        raw(TEXT, b"a", rsv=0x40)
        + raw(BINARY, b"b", fin=False, rsv=0x40)
        + raw(PING, b"c")
        + raw(CONT, b"d")
    )
    assert p.feed(wire) == [
        frame(TEXT, b"a", rsv1=True),
        frame(BINARY, b"b", fin=False, rsv1=True),
        frame(PING, b"c"),
        frame(CONT, b"d"),
    ]
    events = StreamingFrameParser(role="any", rsv_allowed=1).feed(wire)
    assert events[0] == FrameHeader(TEXT, 1, True, True, False, False)


def test_all_rsv_bits_allowed():
    p = FrameParser(role="any", rsv_allowed=7)
    assert p.feed(raw(TEXT, b"x", rsv=0x70)) == [Frame(TEXT, b"x", True, True, True, True)]
    assert p.feed(raw(BINARY, b"y", rsv=0x20)) == [Frame(BINARY, b"y", True, False, True, False)]
    with pytest.raises(ProtocolError) as info:
        p.feed(raw(PING, b"", rsv=0x10))
    assert info.value.code == 1002


@pytest.mark.parametrize("size", [10, 125, 126, 65535, 65536])
def test_max_size_is_inclusive(size):
    payload = _payload(size, 0)
    p = FrameParser(role="any", max_size=size)
    assert p.feed(raw(BINARY, payload)) == [frame(BINARY, payload)]
    with pytest.raises(ProtocolError) as info:
        p.feed(raw(BINARY, payload + b"!"))
    assert info.value.code == 1009


def test_max_size_refuses_at_the_header():
    """A huge declared length fails before any payload arrives or is buffered."""
    p = FrameParser(role="any", max_size=1 << 20)
    with pytest.raises(ProtocolError) as info:
        p.feed(raw(BINARY, length=1 << 40)[:10])
    assert info.value.code == 1009


def test_minimal_lengths_accepted():
    p = FrameParser(role="any")
    for n in (125, 126, 65535, 65536):
        assert p.feed(raw(BINARY, bytes(n))) == [frame(BINARY, bytes(n))]


def test_roles():
    masked, unmasked = raw(TEXT, HELLO, mask=KEY), raw(TEXT, HELLO)
    assert FrameParser().feed(masked) == [frame(TEXT, HELLO)]  # default: server
    assert FrameParser(role="client").feed(unmasked) == [frame(TEXT, HELLO)]
    assert FrameParser(role="any").feed(masked + unmasked) == [frame(TEXT, HELLO)] * 2
    with pytest.raises(ProtocolError):
        FrameParser().feed(unmasked)
    with pytest.raises(ValueError):
        FrameParser(role="proxy")  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"max_size": 0}, {"max_size": 2**63}, {"rsv_allowed": 8}])
def test_bad_options(kwargs):
    with pytest.raises(ValueError):
        FrameParser(**kwargs)
    with pytest.raises(ValueError):
        StreamingFrameParser(**kwargs)


def test_reset_drops_partial_frame():
    p = FrameParser(role="any")
    p.feed(raw(BINARY, b"x" * 300)[:100])
    p.reset()
    assert p.feed(OK_TEXT) == [frame(TEXT, b"ok")]
    p.feed(OPEN_MSG)
    p.reset()  # the open message is forgotten too
    with pytest.raises(ProtocolError):
        p.feed(raw(CONT, b"x"))


# --- the C parser driven directly through cffi --------------------------------

OK, PAUSE, ABORT = lib.WS_CB_OK, lib.WS_CB_PAUSE, lib.WS_CB_ABORT


class CParser:
    """ws_parser with Python callbacks; ``policy(kind, index)`` gives each
    callback's return value. Events: ("header", opcode, fin, rsv, length,
    masked, key, remaining), ("chunk", bytes, remaining), ("complete", opcode, fin)."""

    def __init__(self, role: int = lib.WS_ROLE_ANY, policy=None) -> None:
        self.p = ffi.new("ws_parser *")
        lib.ws_parser_init(self.p)
        self.p.role = role
        self.policy = policy or (lambda kind, index: OK)
        self.events: list[tuple] = []
        self.chunk_at: list[int] = []  # address of each chunk
        self._cbs = (
            ffi.callback("ws_parser_cb", self._on_header, error=ABORT),
            ffi.callback("ws_parser_data_cb", self._on_chunk, error=ABORT),
            ffi.callback("ws_parser_cb", self._on_complete, error=ABORT),
        )
        self.settings = ffi.new("ws_settings *", self._cbs)

    def _event(self, ev: tuple) -> int:
        self.events.append(ev)
        return self.policy(ev[0], len(self.events) - 1)

    def _on_header(self, p) -> int:
        return self._event(("header", p.opcode, p.fin, p.rsv, p.length, p.masked,
                            bytes(p.mask_key), p.remaining))

    def _on_chunk(self, p, at, n) -> int:
        self.chunk_at.append(int(ffi.cast("uintptr_t", at)))
        return self._event(("chunk", ffi.buffer(at, n)[:], p.remaining))

    def _on_complete(self, p) -> int:
        return self._event(("complete", p.opcode, p.fin))

    def execute(self, buf, off: int, n: int) -> int:
        return lib.ws_parser_execute(self.p, self.settings, buf + off, n)


def cbuf(data: bytes):
    return ffi.new("char[]", data) if data else ffi.new("char[]", 1)


def merged(events: list[tuple]) -> list[tuple]:
    """Events with consecutive chunks joined (chunk boundaries follow the input's)."""
    out: list[tuple] = []
    for ev in events:
        if ev[0] == "chunk" and out and out[-1][0] == "chunk":
            out[-1] = ("chunk", out[-1][1] + ev[1], ev[2])
        else:
            out.append(ev)
    return out


C_WIRE = (
    raw(TEXT, b"", mask=KEY)
    + raw(BINARY, _payload(300, 1), fin=False, mask=b"\x10\x20\x30\x40")
    + raw(PING, b"ping")
    + raw(CONT, _payload(7, 2), mask=KEY)
    + raw(CLOSE, b"\x03\xe8")
    + raw(BINARY, b"", mask=KEY)
)
C_LAYOUT = frame_offsets(C_WIRE)


def reference_events() -> tuple[list[tuple], list[int]]:
    """Events of C_WIRE parsed in one go, and the input offset at which each
    event's bytes end (what execute reports as consumed after pausing there)."""
    cp = CParser()
    buf = cbuf(C_WIRE)
    assert cp.execute(buf, 0, len(C_WIRE)) == len(C_WIRE)
    ends, k = [], -1
    base = int(ffi.cast("uintptr_t", buf))
    chunks = iter(cp.chunk_at)
    for ev in cp.events:
        if ev[0] == "header":
            k += 1
            ends.append(C_LAYOUT[k][1])
        elif ev[0] == "chunk":
            ends.append(next(chunks) - base + len(ev[1]))
        else:
            ends.append(C_LAYOUT[k][2])
    return cp.events, ends


def test_c_reference_events():
    events, ends = reference_events()
    kinds = [e[0] for e in events]
    assert kinds == ["header", "complete",
                     "header", "chunk", "complete",
                     "header", "chunk", "complete",
                     "header", "chunk", "complete",
                     "header", "chunk", "complete",
                     "header", "complete"]
    assert events[0] == ("header", TEXT, 1, 0, 0, 1, KEY, 0)
    assert events[2] == ("header", BINARY, 0, 0, 300, 1, b"\x10\x20\x30\x40", 300)
    assert events[3] == ("chunk", _payload(300, 1), 0)
    assert events[5] == ("header", PING, 1, 0, 4, 0, bytes(4), 4)
    assert events[6] == ("chunk", b"ping", 0)
    assert ends[-1] == len(C_WIRE)


def test_c_struct_size_and_init():
    assert ffi.sizeof("ws_parser") == 48
    p = ffi.new("ws_parser *")
    ffi.buffer(p)[:] = b"\xa5" * ffi.sizeof("ws_parser")
    lib.ws_parser_init(p)
    assert (p.role, p.rsv_allowed, p.max_frame_size, p.error) == (lib.WS_ROLE_SERVER, 0, 0, 0)
    assert p.data == ffi.NULL
    assert lib.ws_parser_at_frame_boundary(p) == 1


def test_c_null_callbacks():
    p = ffi.new("ws_parser *")
    lib.ws_parser_init(p)
    p.role = lib.WS_ROLE_ANY
    s = ffi.new("ws_settings *")
    assert lib.ws_parser_execute(p, s, cbuf(C_WIRE), len(C_WIRE)) == len(C_WIRE)
    assert p.error == lib.WS_PE_OK
    assert lib.ws_parser_at_frame_boundary(p) == 1


def test_c_every_split_point_consumes_all_and_tracks_boundaries():
    ref, _ = reference_events()
    boundaries = {0} | {end for _, _, end in C_LAYOUT}
    for cut in range(len(C_WIRE) + 1):
        cp = CParser()
        buf = cbuf(C_WIRE)
        assert cp.execute(buf, 0, cut) == cut
        assert lib.ws_parser_at_frame_boundary(cp.p) == (cut in boundaries), cut
        assert cp.execute(buf, cut, len(C_WIRE) - cut) == len(C_WIRE) - cut
        assert merged(cp.events) == ref, cut
        assert all(len(e[1]) > 0 for e in cp.events if e[0] == "chunk")


@pytest.mark.parametrize("k", range(16))
def test_c_pause_at_each_event(k):
    ref, ends = reference_events()
    assert len(ref) == 16
    cp = CParser(policy=lambda kind, i: PAUSE if i == k else OK)
    buf = cbuf(C_WIRE)
    n = len(C_WIRE)
    got = cp.execute(buf, 0, n)
    assert got == ends[k], "execute returns right after the pausing event"
    assert cp.events == ref[: k + 1]
    assert cp.p.error == lib.WS_PE_OK
    rest = cp.execute(buf, got, n - got)
    assert rest == n - got
    assert cp.events == ref
    assert cp.p.error == lib.WS_PE_OK
    assert lib.ws_parser_at_frame_boundary(cp.p) == 1


def test_c_pause_on_every_event():
    ref, ends = reference_events()
    cp = CParser(policy=lambda kind, i: PAUSE)
    buf = cbuf(C_WIRE)
    off, calls = 0, 0
    while True:
        before = len(cp.events)
        got = cp.execute(buf, off, len(C_WIRE) - off)
        calls += 1
        off += got
        if len(cp.events) == before:
            assert got == 0
            break
        assert len(cp.events) == before + 1, "one event per call when every callback pauses"
        assert off == ends[before]
    assert off == len(C_WIRE)
    assert cp.events == ref
    assert calls == len(ref) + 1


def test_c_zero_length_frame_paused_in_header_resumes_with_empty_buffer():
    wire = raw(PING, b"", mask=KEY)
    cp = CParser(policy=lambda kind, i: PAUSE if kind == "header" else OK)
    buf = cbuf(wire)
    assert cp.execute(buf, 0, len(wire)) == len(wire)
    assert cp.events == [("header", PING, 1, 0, 0, 1, KEY, 0)]
    assert lib.ws_parser_at_frame_boundary(cp.p) == 0
    assert cp.execute(buf, len(wire), 0) == 0
    assert cp.events[-1] == ("complete", PING, 1)
    assert lib.ws_parser_at_frame_boundary(cp.p) == 1


def test_c_pause_byte_at_a_time():
    ref, _ = reference_events()
    rng = random.Random(3)
    cp = CParser(policy=lambda kind, i: PAUSE if rng.random() < 0.5 else OK)
    buf = cbuf(C_WIRE)
    off = 0
    for i in range(len(C_WIRE)):
        while True:  # resume after each pause with the rest of this 1-byte piece
            before = len(cp.events)
            got = cp.execute(buf, off, i + 1 - off)
            off += got
            if off == i + 1 and len(cp.events) == before:
                break
    while True:
        before = len(cp.events)
        cp.execute(buf, off, 0)
        if len(cp.events) == before:
            break
    assert merged(cp.events) == ref


@pytest.mark.parametrize("k", range(16))
def test_c_abort_at_each_event(k):
    ref, _ = reference_events()
    cp = CParser(policy=lambda kind, i: ABORT if i == k else OK)
    buf = cbuf(C_WIRE)
    n = len(C_WIRE)
    got = cp.execute(buf, 0, n)
    assert got <= n
    assert cp.events == ref[: k + 1]
    assert cp.p.error == lib.WS_PE_ABORTED
    assert lib.ws_parser_close_code(cp.p.error) == 0
    assert ffi.string(lib.ws_parser_strerror(cp.p.error))
    # Stopped: nothing more is consumed, no callback runs.
    assert cp.execute(buf, got, n - got) == 0
    fresh = cbuf(C_WIRE)
    assert cp.execute(fresh, 0, n) == 0
    assert cp.events == ref[: k + 1]
    # Reset makes it usable again.
    lib.ws_parser_reset(cp.p)
    assert cp.p.error == lib.WS_PE_OK
    cp.events.clear()
    cp.policy = lambda kind, i: OK
    assert cp.execute(fresh, 0, n) == n
    assert cp.events == ref


def test_c_reset_keeps_configuration_and_data():
    p = ffi.new("ws_parser *")
    lib.ws_parser_init(p)
    p.role, p.rsv_allowed, p.max_frame_size = lib.WS_ROLE_CLIENT, lib.WS_RSV1, 1234
    token = ffi.new("int *")
    p.data = token
    s = ffi.new("ws_settings *")
    bad = cbuf(b"\x83\x00")
    assert lib.ws_parser_execute(p, s, bad, 2) <= 1
    assert p.error == lib.WS_PE_BAD_OPCODE
    lib.ws_parser_reset(p)
    assert (p.role, p.rsv_allowed, p.max_frame_size) == (lib.WS_ROLE_CLIENT, lib.WS_RSV1, 1234)
    assert p.data == token
    assert p.error == lib.WS_PE_OK
    assert lib.ws_parser_at_frame_boundary(p) == 1


C_ERRORS = [
    # (wire, index of the revealing byte, role, error)
    (b"\xc1\x00", 0, lib.WS_ROLE_ANY, lib.WS_PE_RESERVED_BITS),
    (b"\x83\x00", 0, lib.WS_ROLE_ANY, lib.WS_PE_BAD_OPCODE),
    (b"\x89\x7e\x00\x7e", 1, lib.WS_ROLE_ANY, lib.WS_PE_CONTROL_TOO_LONG),
    (b"\x09\x00", 0, lib.WS_ROLE_ANY, lib.WS_PE_CONTROL_FRAGMENTED),
    (b"\x80\x00", 0, lib.WS_ROLE_ANY, lib.WS_PE_BAD_CONTINUATION),
    (b"\x01\x00\x81\x00", 2, lib.WS_ROLE_ANY, lib.WS_PE_EXPECTED_CONTINUATION),
    (b"\x82\x7f\x80" + bytes(7) + b"xx", 9, lib.WS_ROLE_ANY, lib.WS_PE_BAD_LENGTH),
    (b"\x82\x7e\x00\x05xxxxx", 3, lib.WS_ROLE_ANY, lib.WS_PE_BAD_LENGTH),
    (b"\x81\x00\x82\x00", 1, lib.WS_ROLE_SERVER, lib.WS_PE_MASK_REQUIRED),
    (b"\x81\x80abcd", 1, lib.WS_ROLE_CLIENT, lib.WS_PE_MASK_FORBIDDEN),
]


@pytest.mark.parametrize("wire,at,role,error", C_ERRORS)
def test_c_errors(wire, at, role, error):
    cp = CParser(role=role)
    buf = cbuf(wire)
    got = cp.execute(buf, 0, len(wire))
    assert got <= at + 1, "bytes after the offending header byte are never consumed"
    assert cp.p.error == error
    assert lib.ws_parser_close_code(error) == 1002
    assert ffi.string(lib.ws_parser_strerror(error)).decode()
    assert cp.execute(buf, got, len(wire) - got) == 0
    lib.ws_parser_reset(cp.p)
    ok = raw(PING, b"", mask=None if role == lib.WS_ROLE_CLIENT else KEY)
    assert cp.execute(cbuf(ok), 0, len(ok)) == len(ok)
    assert cp.p.error == lib.WS_PE_OK


def test_c_too_big_close_code():
    p = ffi.new("ws_parser *")
    lib.ws_parser_init(p)
    p.role, p.max_frame_size = lib.WS_ROLE_ANY, 3
    assert lib.ws_parser_execute(p, ffi.new("ws_settings *"), cbuf(b"\x82\x04"), 2) <= 2
    assert p.error == lib.WS_PE_TOO_BIG
    assert lib.ws_parser_close_code(p.error) == 1009
    assert lib.ws_parser_close_code(lib.WS_PE_OK) == 0


def test_c_strerror_is_distinct_per_error():
    errors = range(lib.WS_PE_OK, lib.WS_PE_ABORTED + 1)
    texts = {ffi.string(lib.ws_parser_strerror(e)) for e in errors}
    assert len(texts) == len(errors)
