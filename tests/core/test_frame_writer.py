"""Frame writer, masking and close codes (csrc/wsframe.c, wsuv.frames.encode_frame).

Everything is checked against a small pure-Python reference written from
RFC 6455 5.2 (header layout), 5.3 (masking) and 7.4 (close codes).
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib
from wsuv.frames import Frame, FrameChunk, FrameHeader, FrameParser, Opcode, StreamingFrameParser
from wsuv.frames import encode_frame as encode

VALID_OPCODES = [int(op) for op in Opcode]
BOUNDARY_LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 65537]


# --- reference ------------------------------------------------------------------


def ref_mask(data: bytes, key: bytes, phase: int = 0) -> bytes:
    """RFC 6455 5.3: octet i is XORed with key octet (i + phase) mod 4."""
    return bytes(b ^ key[(phase + i) % 4] for i, b in enumerate(data))


def ref_header(opcode: int, fin: bool, rsv: int, length: int, mask: bytes | None) -> bytes:
    """RFC 6455 5.2, minimal length encoding."""
    first = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if mask is not None else 0
    if length <= 125:
        head = struct.pack("!BB", first, mbit | length)
    elif length <= 0xFFFF:
        head = struct.pack("!BBH", first, mbit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mbit | 127, length)
    return head + (mask or b"")


def ref_encode(opcode: int, payload: bytes, fin: bool, rsv1: bool, mask: bytes | None) -> bytes:
    head = ref_header(opcode, fin, 0x40 if rsv1 else 0, len(payload), mask)
    return head + (payload if mask is None else ref_mask(payload, mask))


def payload_of(n: int, seed: int) -> bytes:
    # Random bytes without going through Hypothesis's (size-limited) buffer.
    return random.Random(seed).randbytes(n)


# --- RFC 6455 5.7 examples ---------------------------------------------------


def test_rfc_5_7_examples_encode_byte_exact():
    key = bytes.fromhex("37fa213d")
    assert encode(Opcode.TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert encode(Opcode.TEXT, b"Hello", mask=key) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert encode(Opcode.TEXT, b"Hel", fin=False) == bytes.fromhex("010348656c")
    assert encode(Opcode.CONTINUATION, b"lo") == bytes.fromhex("80026c6f")
    assert encode(Opcode.PING, b"Hello") == bytes.fromhex("890548656c6c6f")
    assert encode(Opcode.PONG, b"Hello", mask=key) == bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert encode(Opcode.BINARY, bytes(256))[:4] == bytes.fromhex("827e0100")
    big = encode(Opcode.BINARY, bytes(65536))
    assert big[:10] == bytes.fromhex("827f0000000000010000")
    assert len(big) == 10 + 65536


# --- ws_frame_header ---------------------------------------------------------------


def c_header(opcode: int, fin: bool, rsv: int, length: int, mask: bytes | None) -> bytes:
    out = ffi.new("uint8_t[14]")
    key = ffi.NULL if mask is None else ffi.from_buffer("uint8_t[]", mask)
    n = lib.ws_frame_header(out, opcode, fin, rsv, length, key)
    return ffi.buffer(out, n)[:]


@pytest.mark.parametrize("length", [*BOUNDARY_LENGTHS, 2**32, 2**63 - 1])
@pytest.mark.parametrize("mask", [None, b"\x00\x00\x00\x00", b"\xde\xad\xbe\xef"])
def test_header_lengths(length, mask):
    for opcode in range(16):
        for fin in (False, True):
            for rsv in (0, lib.WS_RSV1, lib.WS_RSV2, lib.WS_RSV3, 0x70):
                got = c_header(opcode, fin, rsv, length, mask)
                assert got == ref_header(opcode, fin, rsv, length, mask)


@given(
    opcode=st.integers(0, 15),
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70]),
    length=st.integers(0, 2**63 - 1) | st.sampled_from(BOUNDARY_LENGTHS),
    mask=st.none() | st.binary(min_size=4, max_size=4),
)
def test_header_matches_reference(opcode, fin, rsv, length, mask):
    got = c_header(opcode, fin, rsv, length, mask)
    assert got == ref_header(opcode, fin, rsv, length, mask)
    assert 2 <= len(got) <= lib.WS_FRAME_MAX_HEADER


# --- encode_frame and the round trip through the parser ------------------------


@st.composite
def frames(draw):
    """One encodable frame: (opcode, payload, fin, rsv1, mask)."""
    opcode = draw(st.sampled_from(VALID_OPCODES))
    control = opcode & 0x8
    if control:
        size = draw(st.sampled_from([0, 1, 2, 124, 125]) | st.integers(0, 125))
    else:
        size = draw(st.sampled_from(BOUNDARY_LENGTHS) | st.integers(0, 70000))
    payload = payload_of(size, draw(st.integers(0, 2**32)))
    fin = True if control else draw(st.booleans())
    # RSV1 belongs on a message's first frame only (RFC 7692 6).
    rsv1 = opcode in (Opcode.TEXT, Opcode.BINARY) and draw(st.booleans())
    mask = draw(st.none() | st.binary(min_size=4, max_size=4))
    return opcode, payload, fin, rsv1, mask


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(frames())
def test_encode_matches_reference(f):
    opcode, payload, fin, rsv1, mask = f
    wire = encode(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)
    assert wire == ref_encode(opcode, payload, fin, rsv1, mask)
    assert encode(opcode, bytearray(payload), fin=fin, rsv1=rsv1, mask=mask) == wire
    assert encode(opcode, memoryview(payload), fin=fin, rsv1=rsv1, mask=mask) == wire


@SETTINGS
@given(frames())
def test_round_trip(f):
    opcode, payload, fin, rsv1, mask = f
    wire = encode(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)
    # A continuation needs a message open before it (RFC 6455 5.4).
    opener = encode(Opcode.BINARY, b"", fin=False, mask=mask) if opcode == 0 else b""
    opened = [Frame(Opcode.BINARY, b"", False)] if opener else []
    expected = [*opened, Frame(opcode, payload, fin, rsv1)]
    matching = "server" if mask is not None else "client"
    for role in (matching, "any"):
        parser = FrameParser(role=role, rsv_allowed=1)
        assert parser.feed(opener + wire) == expected
        events = StreamingFrameParser(role=role, rsv_allowed=1).feed(opener + wire)
        headers = [e for e in events if isinstance(e, FrameHeader)]
        assert headers[-1] == FrameHeader(opcode, len(payload), fin, rsv1, False, False)
        after = events[events.index(headers[-1]) + 1 :]
        body = b"".join(e.data for e in after if isinstance(e, FrameChunk))
        assert body == payload


@pytest.mark.parametrize("length", BOUNDARY_LENGTHS)
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_round_trip_boundaries(length, opcode):
    payload = payload_of(length, length)
    for mask, role in ((None, "client"), (b"\x01\x02\x03\x04", "server")):
        wire = encode(opcode, payload, mask=mask)
        assert wire == ref_encode(opcode, payload, True, False, mask)
        assert FrameParser(role=role).feed(wire) == [Frame(opcode, payload)]


def test_encode_does_not_touch_the_payload():
    payload = bytearray(b"abcdefgh" * 10)
    encode(Opcode.BINARY, payload, mask=b"\xff\xff\xff\xff")
    assert payload == bytearray(b"abcdefgh" * 10)


@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((Opcode.PING, bytes(126)), {}),
        ((Opcode.CLOSE, bytes(200)), {}),
        ((Opcode.PONG, b""), {"fin": False}),
        ((16, b""), {}),
        ((-1, b""), {}),
        ((Opcode.TEXT, b""), {"mask": b"abc"}),
        ((Opcode.TEXT, b""), {"mask": b"abcde"}),
    ],
)
def test_encode_refuses(args, kwargs):
    with pytest.raises(ValueError):
        encode(*args, **kwargs)


def test_encode_control_limit_is_inclusive():
    assert encode(Opcode.PING, bytes(125))[:2] == b"\x89\x7d"


# --- ws_frame_mask ---------------------------------------------------------------


def c_mask(data: bytes, key: bytes, phase: int, cuts: list[int], align: int) -> tuple[bytes, int]:
    """Mask data in place in the pieces cut at ``cuts``, starting ``align``
    bytes into a buffer, chaining the returned phase."""
    buf = bytearray(align) + bytearray(data)
    cbuf = ffi.from_buffer("uint8_t[]", buf)
    ckey = ffi.from_buffer("uint8_t[]", key)
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        n = cut - prev
        ret = lib.ws_frame_mask(cbuf + align + prev, n, ckey, phase)
        assert ret == (phase + n) & 3
        phase, prev = ret, cut
    del cbuf
    assert buf[:align] == bytearray(align), "wrote before the buffer"
    return bytes(buf[align:]), phase


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300),
    key=st.binary(min_size=4, max_size=4),
    phase=st.integers(0, 3) | st.integers(0, 2**64 - 1),
    align=st.integers(0, 15),
    cut_fracs=st.lists(st.floats(0, 1), max_size=6),
)
def test_mask_matches_reference(data, key, phase, align, cut_fracs):
    cuts = [int(f * len(data)) for f in cut_fracs]
    got, end_phase = c_mask(data, key, phase, cuts, align)
    assert got == ref_mask(data, key, phase)
    assert end_phase == (phase + len(data)) & 3


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 200_000),
    seed=st.integers(0, 2**32),
    key=st.binary(min_size=4, max_size=4),
    phase=st.integers(0, 3),
    align=st.integers(0, 7),
    ncuts=st.integers(0, 8),
)
def test_mask_large_random_pieces(size, seed, key, phase, align, ncuts):
    rng = random.Random(seed)
    data = rng.randbytes(size)
    cuts = [rng.randint(0, size) for _ in range(ncuts)]
    got, _ = c_mask(data, key, phase, cuts, align)
    # Reference by whole 4-byte words of the rotated key: fast enough for 200 KB.
    rot = bytes(key[(phase + i) % 4] for i in range(4))
    stream = (rot * (size // 4 + 1))[:size]
    assert got == (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        size, "big"
    )


def test_mask_is_an_involution_and_zero_key_is_identity():
    data = payload_of(1000, 1)
    key = b"\x12\x34\x56\x78"
    once, _ = c_mask(data, key, 1, [3, 500], 3)
    twice, _ = c_mask(once, key, 1, [999], 0)
    assert twice == data
    assert c_mask(data, bytes(4), 2, [], 1)[0] == data


# --- close codes -------------------------------------------------------------------


def rfc_close_code_valid(code: int) -> bool:
    """RFC 6455 7.4.1/7.4.2 and the IANA registry: what may be sent on the wire.
    1004 is reserved; 1005, 1006 and 1015 must never be sent."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def test_close_code_valid_all_16_bit_codes():
    valid = lib.ws_frame_close_code_valid
    bad = [c for c in range(65536) if bool(valid(c)) != rfc_close_code_valid(c)]
    assert bad == []


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535, 65536,
                                  2**32 - 1])
def test_close_code_invalid_examples(code):
    assert lib.ws_frame_close_code_valid(code) == 0


def test_close_payload():
    out = ffi.new("uint8_t[125]")
    n = lib.ws_frame_close_payload(out, 125, 1000, b"bye", 3)
    assert ffi.buffer(out, n)[:] == b"\x03\xe8bye"
    assert lib.ws_frame_close_payload(out, 125, 0, b"ignored", 7) == 0
    assert lib.ws_frame_close_payload(out, 125, 4999, b"x" * 123, 123) == 125
    assert ffi.buffer(out, 2)[:] == b"\x13\x87"
    assert lib.ws_frame_close_payload(out, 125, 1000, b"x" * 124, 124) == 0  # over 125
    assert lib.ws_frame_close_payload(out, 4, 1000, b"bye", 3) == 0  # over cap
    assert lib.ws_frame_close_payload(out, 2, 1001, ffi.NULL, 0) == 2
    assert ffi.buffer(out, 2)[:] == b"\x03\xe9"


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF, 16, -1])
def test_encode_frame_refuses_reserved_opcodes(opcode: int) -> None:
    with pytest.raises(ValueError, match="reserved"):
        encode(opcode, b"x")


@pytest.mark.parametrize("opcode", [0x0, 0x8, 0x9, 0xA])
def test_encode_frame_refuses_rsv1_where_no_extension_allows_it(opcode: int) -> None:
    payload = b"\x03\xe8" if opcode == 0x8 else b""
    with pytest.raises(ValueError, match="RSV1"):
        encode(opcode, payload, rsv1=True)
    assert encode(0x1, b"x", rsv1=True)[0] == 0xC1  # a message's first frame may
