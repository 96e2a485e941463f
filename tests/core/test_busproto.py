"""Worker bus frames (csrc/busproto.c) against a reference model in Python:
the same frames and the same error for any bytes, split anywhere."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib

HEADER = 28
Frame = tuple[int, int, int, int, bytes, bytes]  # type, opcode, origin, seq, topic, payload


def encode(f: Frame) -> bytes:
    t, op, origin, seq, topic, payload = f
    return (b"wB" + bytes([1, t, op, 0]) + struct.pack(">HIQQ", len(topic), len(payload),
                                                       origin, seq) + topic + payload)


def reference(data: bytes, max_topic: int, max_payload: int) -> tuple[list[Frame], int]:
    """The rules of busproto.h, restated: frames until the first bad header."""
    out: list[Frame] = []
    pos = 0
    while len(data) - pos >= HEADER:
        h = data[pos:pos + HEADER]
        t, op = h[3], h[4]
        tl, pl, origin, seq = struct.unpack(">HIQQ", h[6:HEADER])
        if h[:2] != b"wB":
            return out, lib.WS_BUS_E_MAGIC
        if h[2] != 1:
            return out, lib.WS_BUS_E_VERSION
        if not 1 <= t <= 5:
            return out, lib.WS_BUS_E_TYPE
        if (op not in (1, 2)) if t == 4 else op != 0:
            return out, lib.WS_BUS_E_OPCODE
        if h[5]:
            return out, lib.WS_BUS_E_RESERVED
        if (tl != 0) if t in (1, 5) else not 1 <= tl <= max_topic:
            return out, lib.WS_BUS_E_TOPIC
        if (pl > max_payload) if t == 4 else pl != (56 if t == 5 else 0):
            return out, lib.WS_BUS_E_PAYLOAD
        if len(data) - pos < HEADER + tl + pl:
            break
        body = data[pos + HEADER:pos + HEADER + tl + pl]
        out.append((t, op, origin, seq, body[:tl], body[tl:]))
        pos += HEADER + tl + pl
    return out, 0


class Decoder:
    def __init__(self, max_topic: int, max_payload: int) -> None:
        self.d: Any = ffi.new("ws_bus_decoder *")
        lim = ffi.new("ws_bus_limits *", {"max_topic": max_topic, "max_payload": max_payload})
        lib.ws_bus_decoder_init(self.d, lim)

    def feed(self, data: bytes) -> tuple[list[Frame], int]:
        cap = len(data) // HEADER + 2
        recs = ffi.new("ws_bus_record[]", cap)
        space = ffi.new("char[]", len(data) + 70000)  # a buffered frame's bytes come too
        n, blen = ffi.new("size_t *"), ffi.new("size_t *")
        rc = lib.ws_bus_decoder_collect(self.d, data, len(data), recs, cap, n, space,
                                        len(space), blen)
        assert rc != 1, "the record table was too small"
        raw = ffi.buffer(space, blen[0])[:]
        out = []
        for r in recs[0:n[0]]:
            body = raw[r.off:r.off + r.topic_len + r.payload_len]
            out.append((r.type, r.opcode, r.origin, r.seq, body[:r.topic_len],
                        body[r.topic_len:]))
        return out, rc

    def close(self) -> None:
        lib.ws_bus_decoder_free(self.d)


def feed_split(data: bytes, cuts: list[int], max_topic: int = 256,
               max_payload: int = 65536) -> tuple[list[Frame], int]:
    dec = Decoder(max_topic, max_payload)
    frames: list[Frame] = []
    rc = 0
    try:
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        for a, b in zip(points, points[1:], strict=False):
            got, rc = dec.feed(data[a:b])
            frames += got
            if rc:
                break
    finally:
        dec.close()
    return frames, rc


frames_st = st.lists(st.one_of(
    st.tuples(st.just(1), st.just(0), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
              st.just(b""), st.just(b"")),
    st.tuples(st.sampled_from([2, 3]), st.just(0), st.integers(0, 2**64 - 1),
              st.integers(0, 2**64 - 1), st.binary(min_size=1, max_size=40), st.just(b"")),
    st.tuples(st.just(4), st.sampled_from([1, 2]), st.integers(0, 2**64 - 1),
              st.integers(0, 2**64 - 1), st.binary(min_size=1, max_size=40),
              st.binary(max_size=300)),
    st.tuples(st.just(5), st.just(0), st.just(0), st.just(0), st.just(b""),
              st.binary(min_size=56, max_size=56)),
), max_size=12)


@settings(max_examples=300, deadline=None)
@given(frames_st, st.lists(st.integers(0, 10**6), max_size=20))
def test_valid_streams_decode_to_the_same_frames_split_anywhere(frames: list[Frame],
                                                                cuts: list[int]) -> None:
    data = b"".join(encode(f) for f in frames)
    assert feed_split(data, cuts) == (frames, 0)


@settings(max_examples=400, deadline=None)
@given(frames_st, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       st.lists(st.integers(0, 10**6), max_size=10), st.integers(1, 8), st.integers(0, 64))
def test_damaged_streams_agree_with_the_reference(frames: list[Frame],
                                                  damage: list[tuple[int, int]],
                                                  cuts: list[int], max_topic: int,
                                                  max_payload: int) -> None:
    data = bytearray(b"".join(encode(f) for f in frames))
    for where, value in damage:
        if data:
            data[where % len(data)] = value
    want = reference(bytes(data), max_topic, max_payload)
    assert feed_split(bytes(data), cuts, max_topic, max_payload) == want


def test_each_error_has_a_sentence() -> None:
    for code in range(-8, 1):
        assert ffi.string(lib.ws_bus_strerror(code)).decode()


def test_an_error_is_sticky() -> None:
    dec = Decoder(16, 16)
    try:
        assert dec.feed(b"xB" + bytes(26))[1] == lib.WS_BUS_E_MAGIC
        assert dec.feed(encode((1, 0, 1, 1, b"", b"")))[1] == lib.WS_BUS_E_MAGIC
    finally:
        dec.close()
