"""RFC 6455 5.4: fragmentation.

A fragmented message is one frame with FIN clear and a non-zero opcode,
zero or more continuation frames (opcode 0) with FIN clear, and one with FIN
set and opcode 0. "Control frames MAY be injected in the middle of a
fragmented message"; "An endpoint MUST be capable of handling control frames
in the middle of a fragmented message." "The fragments of one message MUST
NOT be interleaved between the fragments of another message unless an
extension has been negotiated" (none is). A continuation with no message
open, or a new data frame while one is, breaks these rules: the server fails
the connection (1002).
"""

from __future__ import annotations

import pytest
from client import BINARY, CLOSE, CONT, PING, PONG, TEXT, frame


def fragments(opcode: int, parts: list[bytes]) -> bytes:
    out = b""
    for i, part in enumerate(parts):
        out += frame(opcode if i == 0 else CONT, part, fin=i == len(parts) - 1)
    return out


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=lambda o: o.name)
@pytest.mark.parametrize("parts", [
    [b"fragment1", b"fragment2"],
    [b"frag", b"men", b"ted ", b"mess", b"age"],
    [b"", b"x"],
    [b"x", b""],
    [b"", b"", b""],
    [b"a" * 126, b"b" * 65536, b"c"],
], ids=["2", "5", "first-empty", "last-empty", "all-empty", "mixed-lengths"])
def test_fragmented_message_echoed_whole(server, opcode, parts):
    with server.connect() as c:
        c.send(fragments(opcode, parts))
        assert c.recv_message() == (opcode, b"".join(parts))
        c.echo(opcode, b"next message")
        c.close_handshake()


def test_fragments_in_separate_writes(server):
    with server.connect() as c:
        for i, part in enumerate([b"one ", b"two ", b"three"]):
            c.send_frame(TEXT if i == 0 else CONT, part, fin=i == 2)
            if i < 2:
                c.expect_silence(0.05)  # nothing until the message is complete
        assert c.recv_message() == (TEXT, b"one two three")
        c.close_handshake()


def test_one_byte_fragments(server):
    text = b"fragmented into single bytes"
    with server.connect() as c:
        c.send(fragments(TEXT, [bytes([b]) for b in text]))
        assert c.recv_message() == (TEXT, text)
        c.close_handshake()


def test_fragmented_message_chopped_byte_by_byte(server):
    with server.connect() as c:
        c.send(fragments(BINARY, [b"abc", b"", b"defg"]) + frame(PING, b"p"), chop=1)
        assert c.recv_message() == (BINARY, b"abcdefg")
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (PONG, b"p")
        c.close_handshake()


@pytest.mark.parametrize("chop", [None, 1])
def test_ping_between_fragments_answered_first(server, chop):
    """A pong answers a ping at once, before the message it interrupts ends."""
    data = (frame(TEXT, b"fragment1", fin=False) + frame(PING, b"ping payload")
            + frame(CONT, b"fragment2", fin=True))
    with server.connect() as c:
        c.send(data, chop=chop)
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (PONG, b"ping payload")
        assert c.recv_message() == (TEXT, b"fragment1fragment2")
        c.close_handshake()


def test_ping_answered_while_message_is_still_open(server):
    with server.connect() as c:
        c.send_frame(TEXT, b"open", fin=False)
        c.send_frame(PING, b"now")
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (PONG, b"now")
        c.send_frame(CONT, b"ed", fin=True)
        assert c.recv_message() == (TEXT, b"opened")
        c.close_handshake()


def test_many_controls_between_many_fragments(server):
    data = b""
    expected_pongs = []
    for i in range(10):
        data += frame(BINARY if i == 0 else CONT, bytes([i]) * i, fin=False)
        data += frame(PONG, b"unsolicited")
        data += frame(PING, b"%d" % i)
        expected_pongs.append(b"%d" % i)
    data += frame(CONT, b"end", fin=True)
    with server.connect() as c:
        c.send(data)
        for p in expected_pongs:
            f = c.recv_frame()
            assert (f.opcode, f.payload) == (PONG, p)
        assert c.recv_message() == (BINARY, b"".join(bytes([i]) * i for i in range(10)) + b"end")
        c.close_handshake()


def test_close_in_the_middle_of_a_message(server):
    """A close may be injected too: the handshake completes and the partial
    message is never delivered."""
    with server.connect() as c:
        c.send(frame(TEXT, b"partial", fin=False) + frame(CLOSE, b"\x03\xe8"))
        c.expect_close(1000)
    server.assert_serves()


# -- broken sequences (1002) -------------------------------------------------------------

BROKEN = {
    "continuation-final-without-start": frame(CONT, b"orphan", fin=True),
    "continuation-not-final-without-start": frame(CONT, b"orphan", fin=False),
    "continuation-without-start-then-text": frame(CONT, b"orphan", fin=False)
    + frame(CONT, b"more", fin=True) + frame(TEXT, b"text"),
    "empty-continuation-without-start": frame(CONT, b"", fin=True),
    "text-inside-text": frame(TEXT, b"a", fin=False) + frame(TEXT, b"b", fin=True),
    "text-inside-text-not-final": frame(TEXT, b"a", fin=False) + frame(TEXT, b"b", fin=False),
    "binary-inside-text": frame(TEXT, b"a", fin=False) + frame(BINARY, b"b", fin=True),
    "text-inside-binary": frame(BINARY, b"a", fin=False) + frame(CONT, b"b", fin=False)
    + frame(TEXT, b"c", fin=True),
    "continuation-after-finished-message": frame(TEXT, b"a", fin=False)
    + frame(CONT, b"b", fin=True) + frame(CONT, b"c", fin=True),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_fragment_sequence(server, name):
    before = ((TEXT, b"ab"),) if name == "continuation-after-finished-message" else ()
    server.fail(BROKEN[name], 1002, before=before)


def test_continuation_without_start_after_echoes(server):
    data = frame(TEXT, b"one") + frame(CONT, b"orphan", fin=True) + frame(PING, b"late")
    server.fail(data, 1002, before=((TEXT, b"one"),))


def test_fragmented_message_then_new_one(server):
    """After the final fragment a new message starts with a data opcode."""
    with server.connect() as c:
        c.send(fragments(TEXT, [b"a", b"b"]) + fragments(BINARY, [b"c", b"d"])
               + frame(TEXT, b"e"))
        assert c.recv_message() == (TEXT, b"ab")
        assert c.recv_message() == (BINARY, b"cd")
        assert c.recv_message() == (TEXT, b"e")
        c.close_handshake()
