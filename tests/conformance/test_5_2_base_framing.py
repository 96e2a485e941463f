"""RFC 6455 5.2: base framing protocol.

RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings
for non-zero values. If a nonzero value is received and none of the
negotiated extensions defines the meaning of such a nonzero value, the
receiving endpoint MUST _Fail the WebSocket Connection_."
Opcodes %x3-7 and %xB-F are reserved: "If an unknown opcode is received, the
receiving endpoint MUST _Fail the WebSocket Connection_."
Payload length: 7 bits, or 126 + 16 bits, or 127 + 64 bits whose most
significant bit MUST be 0; "the minimal number of bytes MUST be used to
encode the length". (Failing is answered here with close 1002, 7.4.1.)
"""

from __future__ import annotations

import struct

import pytest
from client import BINARY, CLOSE, CONT, PING, PONG, TEXT, frame, raw_frame

# -- RSV bits ----------------------------------------------------------------------


@pytest.mark.parametrize("rsv", [1, 2, 4, 3, 5, 6, 7], ids=lambda r: f"rsv={r:03b}"[::-1])
def test_rsv_bits_on_text(server, rsv):
    server.fail(raw_frame(TEXT, b"Hello", rsv=rsv), 1002)


@pytest.mark.parametrize("opcode", [BINARY, PING, PONG, CLOSE], ids=lambda o: o.name)
@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_rsv_bits_on_other_frames(server, opcode, rsv):
    payload = b"\x03\xe8" if opcode == CLOSE else b"\x00\xff"
    server.fail(raw_frame(opcode, payload, rsv=rsv), 1002)


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_rsv_bits_on_continuation(server, rsv):
    server.fail(frame(TEXT, b"a", fin=False) + raw_frame(CONT, b"b", rsv=rsv), 1002)


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_rsv_after_valid_frames_then_ping_unanswered(server, rsv):
    """Valid text first (echoed), the RSV frame fails the connection, so the
    ping after it in the same write gets no pong."""
    data = (frame(TEXT, b"before") + raw_frame(BINARY, b"bad", rsv=rsv)
            + frame(PING, b"after"))
    server.fail(data, 1002, before=((TEXT, b"before"),))


def test_rsv_frame_arriving_slowly(server):
    with server.connect() as c:
        c.echo(TEXT, b"first")
        c.send(raw_frame(TEXT, b"slow", rsv=7), chop=1)
        c.expect_close(1002)
    server.assert_serves()


# -- reserved opcodes ----------------------------------------------------------------

RESERVED = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]


@pytest.mark.parametrize("opcode", RESERVED, ids=lambda o: f"op{o:X}")
def test_reserved_opcode(server, opcode):
    server.fail(raw_frame(opcode, b""), 1002)


@pytest.mark.parametrize("opcode", [5, 0xB], ids=lambda o: f"op{o:X}")
def test_reserved_opcode_with_payload_after_echo(server, opcode):
    data = frame(TEXT, b"ok") + raw_frame(opcode, b"reserved payload") + frame(PING, b"p")
    server.fail(data, 1002, before=((TEXT, b"ok"),))


@pytest.mark.parametrize("opcode", [3, 0xC], ids=lambda o: f"op{o:X}")
def test_reserved_opcode_not_final(server, opcode):
    server.fail(raw_frame(opcode, b"x", fin=False), 1002)


def test_reserved_opcode_inside_fragmented_message(server):
    server.fail(frame(TEXT, b"a", fin=False) + raw_frame(4, b"b"), 1002)


# -- payload length --------------------------------------------------------------------

LENGTHS = [0, 1, 124, 125, 126, 127, 128, 1000, 65534, 65535, 65536, 65537, 131072]


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=lambda o: o.name)
def test_echo_lengths(server, opcode):
    """Each encoding and its edges, as one connection's sequence of echoes."""
    with server.connect() as c:
        for n in LENGTHS:
            payload = (b"*" if opcode == TEXT else b"\xfe") * n
            c.echo(opcode, payload)
        c.close_handshake()


@pytest.mark.parametrize("n, head", [
    (0, b"\x82\x00"), (125, b"\x82\x7d"), (126, b"\x82\x7e\x00\x7e"),
    (65535, b"\x82\x7e\xff\xff"), (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
])
def test_server_uses_minimal_length(server, n, head):
    """5.2: the server's own frames use the minimal length encoding."""
    with server.connect() as c:
        c.send_frame(BINARY, b"\x01" * n)
        assert c.recv_raw(len(head)) == head
        assert c.recv_raw(n) == b"\x01" * n
        c.send_frame(CLOSE, b"\x03\xe8")
        assert c.recv_raw(4) == b"\x88\x02\x03\xe8"
        c.expect_eof()


@pytest.mark.parametrize("n, width", [(0, 2), (5, 2), (125, 2), (0, 8), (125, 8),
                                      (126, 8), (65535, 8)])
def test_non_minimal_length(server, n, width):
    server.fail(raw_frame(BINARY, b"x" * n, length_bytes=width), 1002)


def test_non_minimal_length_on_ping(server):
    server.fail(raw_frame(PING, b"abc", length_bytes=2), 1002)


@pytest.mark.parametrize("length", [1 << 63, (1 << 64) - 1, (1 << 63) | 5])
def test_64_bit_length_with_msb_set(server, length):
    """5.2: the most significant bit of a 64-bit length MUST be 0. The header
    alone decides: no payload is sent."""
    server.fail(raw_frame(BINARY, b"", length=length, length_bytes=8), 1002)


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_header_arriving_byte_by_byte(server, n):
    with server.connect() as c:
        c.send(frame(BINARY, b"\x07" * n) + frame(TEXT, b"next"), chop=1 if n < 200 else 7)
        assert c.recv_message() == (BINARY, b"\x07" * n)
        assert c.recv_message() == (TEXT, b"next")
        c.close_handshake()


def test_many_frames_in_one_write_echoed_in_order(server):
    msgs = [(TEXT, f"{i:04x}".encode() * (i % 7)) if i % 2
            else (BINARY, struct.pack("!I", i) * (i % 7)) for i in range(300)]
    with server.connect() as c:
        c.send(b"".join(frame(op, p) for op, p in msgs))
        for m in msgs:
            assert c.recv_message() == m
        c.close_handshake()
