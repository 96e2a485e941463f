"""RFC 6455 5.1 (and 5.3): masking.

5.1: "a client MUST mask all frames that it sends to the server"; "The
server MUST close the connection upon receiving a frame that is not masked"
(it may send a close frame with 1002); "A server MUST NOT mask any frames
that it sends to the client". 5.3: the key is any 32-bit value chosen by the
client, octet i of the payload is XORed with octet i mod 4 of the key, and a
new key is used for each frame.
"""

from __future__ import annotations

import pytest
from client import BINARY, CLOSE, CONT, PING, PONG, TEXT, frame, raw_frame


@pytest.mark.parametrize("opcode, payload", [
    (TEXT, b"Hello"), (TEXT, b""), (BINARY, b"\x00\x01\x02"), (BINARY, bytes(200)),
    (PING, b"ping"), (PONG, b""), (CLOSE, b"\x03\xe8"),
], ids=["text", "text-empty", "binary", "binary-200", "ping", "pong", "close"])
def test_unmasked_frame_fails_connection(server, opcode, payload):
    server.fail(raw_frame(opcode, payload, mask=None), 1002)


def test_unmasked_continuation_fails_connection(server):
    data = frame(TEXT, b"frag", fin=False) + raw_frame(CONT, b"ment", mask=None)
    server.fail(data, 1002)


def test_messages_before_unmasked_frame_are_echoed(server):
    """Frames before the offending one are processed; nothing after it."""
    data = (frame(TEXT, b"one") + frame(BINARY, b"two") + raw_frame(TEXT, b"bad", mask=None)
            + frame(TEXT, b"never echoed") + frame(PING, b"never answered"))
    server.fail(data, 1002, before=((TEXT, b"one"), (BINARY, b"two")))


@pytest.mark.parametrize("key", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                                 b"\x37\xfa\x21\x3d", b"\x80\x00\x00\x01"])
def test_any_masking_key_is_accepted(server, key):
    """5.3: the key is any 32-bit value, zero included."""
    with server.connect() as c:
        for payload in (b"", b"a", b"abcd", b"abcde", bytes(range(256)) * 3):
            c.send_frame(BINARY, payload, mask=key)
            assert c.recv_message() == (BINARY, payload)
        c.close_handshake()


def test_masking_is_xor_by_octet_position(server):
    """5.3: the frame built here by hand (Python XOR, not wsuv) unmasks right."""
    payload = "masked \u00fc\u20ac\U0001f600 text".encode()
    with server.connect() as c:
        c.send(raw_frame(TEXT, payload, mask=b"\x01\x02\x03\x04"))
        assert c.recv_message() == (TEXT, payload)
        c.close_handshake()


def test_each_fragment_has_its_own_key(server):
    with server.connect() as c:
        parts = [b"abc", b"defgh", b"", b"i", b"jklmnopq"]
        keys = [b"\x11\x22\x33\x44", b"\xaa\xbb\xcc\xdd", b"\x00\x00\x00\x00",
                b"\xff\x00\xff\x00", b"\x01\x02\x03\x04"]
        for i, (part, key) in enumerate(zip(parts, keys, strict=True)):
            op = BINARY if i == 0 else CONT
            c.send_frame(op, part, fin=i == len(parts) - 1, mask=key)
        assert c.recv_message() == (BINARY, b"".join(parts))
        c.close_handshake()


@pytest.mark.parametrize("chop", [1, 3, 5, 7])
def test_masked_frame_split_anywhere(server, chop):
    """Key and payload may arrive split at any byte: the key phase carries over."""
    payload = bytes(range(251)) * 2
    with server.connect() as c:
        c.send(frame(BINARY, payload) + frame(TEXT, b"after"), chop=chop)
        assert c.recv_message() == (BINARY, payload)
        assert c.recv_message() == (TEXT, b"after")
        c.close_handshake()


@pytest.mark.parametrize("length", [0, 5, 125, 126, 65536])
def test_server_frames_are_not_masked(server, length):
    """5.1: the MASK bit of every server frame is 0 (read raw, not parsed)."""
    payload = b"m" * length
    with server.connect() as c:
        c.send_frame(BINARY, payload)
        head = c.recv_raw(2)
        assert head[0] == 0x82, head
        assert head[1] & 0x80 == 0, "server frame has the MASK bit set"
        ext = {126: 2, 127: 8}.get(head[1] & 0x7F, 0)
        rest = c.recv_raw(ext + length)
        assert rest[ext:] == payload
        c.send_frame(PING, b"p")
        assert c.recv_raw(3) == b"\x8a\x01p"
        c.send_frame(CLOSE, b"\x03\xe8")
        assert c.recv_raw(4) == b"\x88\x02\x03\xe8"
        c.expect_eof()
