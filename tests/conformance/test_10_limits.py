"""RFC 6455 10.4 (with 7.4.1 code 1009): implementation-specific limits.

10.4: "Implementations SHOULD impose implementation-specific limits on frame
sizes and the total message size after reassembly from multiple frames";
7.4.1: 1009 "indicates that an endpoint is terminating the connection because
it has received a message that is too big for it to process". Messages up to
the limit must work (large ones included: Autobahn 9.x sends text and binary
of 64 KiB..16 MiB, fragmented into 64-byte..4 MiB frames and chopped into
64-byte..4 KiB writes); the first frame header that would pass the limit
fails the connection with 1009, without waiting for the payload.
wsuv's defaults: max_message_size 16 MiB, max_fragments 100000.
"""

from __future__ import annotations

import os

import pytest
from client import (
    BINARY,
    CONT,
    PING,
    PONG,
    TEXT,
    EchoHandler,
    Target,
    frame,
    raw_frame,
    running_server,
)

MiB = 1 << 20
DEFAULT_MAX = 16 * MiB


def fragments(opcode: int, payload: bytes, size: int) -> bytes:
    chunks = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    mask = os.urandom(4)
    return b"".join(frame(opcode if i == 0 else CONT, ch, fin=i == len(chunks) - 1, mask=mask)
                    for i, ch in enumerate(chunks))


@pytest.fixture(params=["c-echo", "py-echo"])
def limited(request):
    """A server with a 1000-byte message limit and at most 10 fragments."""
    handler = EchoHandler() if request.param == "py-echo" else None
    with running_server(handler, max_message_size=1000, max_fragments=10) as srv:
        yield Target(srv, request.param, handler)


# -- large messages within the default limits ------------------------------------------------

@pytest.mark.parametrize("opcode, n", [(TEXT, 256 * 1024), (BINARY, MiB), (TEXT, 4 * MiB)],
                         ids=["text-256K", "binary-1M", "text-4M"])
def test_large_message(server, opcode, n):
    payload = (b"\xce\xbaa" if opcode == TEXT else b"\x00\xfe\x7f") * (n // 3)
    with server.connect() as c:
        c.echo(opcode, payload)
        c.close_handshake()


def test_message_of_exactly_the_default_limit(server):
    """16 MiB is allowed: the limit is inclusive."""
    payload = os.urandom(1024) * (DEFAULT_MAX // 1024)
    with server.connect() as c:
        c.timeout = 30.0
        c.echo(BINARY, payload)
        c.close_handshake()


def test_one_byte_over_the_default_limit_fails_at_the_header(server):
    """Only the header announcing 16 MiB + 1 is sent: 1009 without the payload."""
    with server.connect() as c:
        c.send(raw_frame(BINARY, b"", length=DEFAULT_MAX + 1))
        c.expect_close(1009)
    server.assert_serves()


def test_largest_legal_length_is_too_big(server):
    """2^63 - 1 is a well-formed length (MSB 0): too big (1009), not malformed."""
    with server.connect() as c:
        c.send(raw_frame(TEXT, b"", length=(1 << 63) - 1, length_bytes=8))
        c.expect_close(1009)
    server.assert_serves()


def test_4mib_in_65536_fragments_of_64_bytes(server):
    """Autobahn 9.3.1 / 9.4.1 shape: fragment count far below the default limit."""
    payload = os.urandom(64) * 65536
    with server.connect() as c:
        c.timeout = 30.0
        c.send(fragments(BINARY, payload, 64))
        assert c.recv_message() == (BINARY, payload)
        c.close_handshake()


@pytest.mark.parametrize("size", [256, 65536, 4 * MiB])
def test_4mib_text_in_fragments(server, size):
    payload = ("\u20ac" * 21 + "x").encode() * (4 * MiB // 64)
    with server.connect() as c:
        c.timeout = 30.0
        c.send(fragments(TEXT, payload, size))
        assert c.recv_message() == (TEXT, payload)
        c.close_handshake()


@pytest.mark.parametrize("chop", [64, 4096])
def test_1mib_sent_in_small_writes(server, chop):
    """Autobahn 9.5 / 9.6 shape: one frame arriving in many TCP writes."""
    payload = ("\U0001f600abcd" * (MiB // 8)).encode()
    if chop == 64:
        payload = payload[: MiB // 8]  # 128 KiB in 64-byte writes is plenty
    with server.connect() as c:
        c.send(frame(TEXT, payload), chop=chop)
        assert c.recv_message() == (TEXT, payload)
        c.close_handshake()


def test_1000_messages_round_trip(server):
    """Autobahn 9.7 / 9.8 shape: many messages pipelined, echoed in order."""
    msgs = [(TEXT, f"{i:06d}".encode() * 20) if i % 2 else (BINARY, os.urandom(i % 257))
            for i in range(1000)]
    with server.connect() as c:
        c.send(b"".join(frame(op, p) for op, p in msgs))
        for m in msgs:
            assert c.recv_message() == m
        c.close_handshake()


def test_65536_text_in_1300_byte_fragments(server):
    """Autobahn 10.1.1 shape."""
    payload = b"*" * 65536
    with server.connect() as c:
        c.send(fragments(TEXT, payload, 1300))
        assert c.recv_message() == (TEXT, payload)
        c.close_handshake()


# -- configured limits ----------------------------------------------------------------------

def test_message_at_configured_limit(limited):
    with limited.connect() as c:
        c.echo(BINARY, b"x" * 1000)
        c.send(fragments(TEXT, b"y" * 1000, 100))  # exactly 10 fragments, 1000 bytes
        assert c.recv_message() == (TEXT, b"y" * 1000)
        c.close_handshake()


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=lambda o: o.name)
def test_single_frame_over_configured_limit(limited, opcode):
    limited.fail(frame(opcode, b"z" * 1001), 1009)


def test_header_over_configured_limit_without_payload(limited):
    with limited.connect() as c:
        c.send(raw_frame(BINARY, b"", length=1001))
        c.expect_close(1009)
    limited.assert_serves()


def test_fragments_passing_the_limit(limited):
    """The continuation whose header would take the message past 1000 bytes
    is refused at that header: its payload is never sent."""
    with limited.connect() as c:
        c.send_frame(BINARY, b"a" * 600, fin=False)
        c.send_frame(PING, b"under")
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (PONG, b"under")
        c.send(raw_frame(CONT, b"", length=401))
        c.expect_close(1009)
    limited.assert_serves()


def test_too_many_fragments(limited):
    """The 11th frame of a message is one too many (1009), even if empty."""
    data = b"".join(frame(TEXT if i == 0 else CONT, b"f", fin=False) for i in range(10))
    with limited.connect() as c:
        c.send(data)
        c.expect_silence(0.05)
        c.send_frame(CONT, b"", fin=True)
        c.expect_close(1009)
    limited.assert_serves()


def test_limit_applies_per_message(limited):
    """Many messages under the limit add up to far more than it."""
    with limited.connect() as c:
        for i in range(30):
            c.echo(BINARY, bytes([i]) * 999)
        c.close_handshake()


def test_control_frames_do_not_count_towards_the_limit(limited):
    with limited.connect() as c:
        data = frame(TEXT, b"a" * 500, fin=False)
        for _ in range(5):
            data += frame(PING, b"p" * 125)
        data += frame(CONT, b"b" * 500, fin=True)
        c.send(data)
        for _ in range(5):
            assert c.recv_frame().opcode == PONG
        assert c.recv_message() == (TEXT, b"a" * 500 + b"b" * 500)
        c.close_handshake()
