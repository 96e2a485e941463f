"""RFC 6455 8.1 (with 5.6): handling errors in UTF-8-encoded data.

"When an endpoint is to interpret a byte stream as UTF-8 but finds that the
byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail
the WebSocket Connection_." (7.4.1: 1007.) Valid UTF-8 is RFC 3629's: no
overlong forms, no surrogates (U+D800-DFFF), nothing above U+10FFFF, no
bytes C0, C1, F5-FF, no truncated sequence.

The strictest reading is taken: the byte stream is invalid as soon as a byte
arrives that no valid continuation could follow, so the server fails the
connection at that byte, without waiting for the end of the frame or of the
message (Autobahn's "fail fast" cases, 6.4). The tests check that by sending
a message only up to the invalid byte and then nothing more.
"""

from __future__ import annotations

import pytest
from client import BINARY, CONT, PING, PONG, TEXT, frame, raw_frame

# name -> (bytes, how many of them make the stream invalid; None: only its end)
INVALID: dict[str, tuple[bytes, int | None]] = {
    "lone-cont-80": (b"\x80", 1),
    "lone-cont-bf": (b"\xbf", 1),
    "cont-run": (b"\x80\x81\x82\x83", 1),
    "c0-overlong-nul": (b"\xc0\x80", 1),
    "c1-overlong": (b"\xc1\xbf", 1),
    "overlong-3-nul": (b"\xe0\x80\x80", 2),
    "overlong-3-slash": (b"\xe0\x80\xaf", 2),
    "overlong-3-max": (b"\xe0\x9f\xbf", 2),
    "overlong-4-nul": (b"\xf0\x80\x80\x80", 2),
    "overlong-4-max": (b"\xf0\x8f\xbf\xbf", 2),
    "surrogate-d800": (b"\xed\xa0\x80", 2),
    "surrogate-dfff": (b"\xed\xbf\xbf", 2),
    "surrogate-pair": (b"\xed\xa0\x80\xed\xb0\x80", 2),
    "above-max-110000": (b"\xf4\x90\x80\x80", 2),
    "above-max-1fffff": (b"\xf7\xbf\xbf\xbf", 1),
    "f5": (b"\xf5\x80\x80\x80", 1),
    "five-byte": (b"\xf8\x88\x80\x80\x80", 1),
    "six-byte": (b"\xfc\x84\x80\x80\x80\x80", 1),
    "fe": (b"\xfe", 1),
    "ff": (b"\xff", 1),
    "missing-cont-2": (b"\xc3\x41", 2),
    "missing-cont-3": (b"\xe2\x28\xa1", 2),
    "missing-cont-4": (b"\xf0\x9f\x98\x41", 4),
    "truncated-2": (b"\xc3", None),
    "truncated-3": (b"\xe2\x82", None),
    "truncated-4": (b"\xf0\x9f\x98", None),
}
EAGER = sorted(k for k, (_, d) in INVALID.items() if d is not None)
PREFIX = "\u03ba\u1f79\u03c3\u03bc\u03b5".encode()  # "kosme": valid, multi-byte
SUFFIX = b"-edited"


# -- whole messages --------------------------------------------------------------------

@pytest.mark.parametrize("where", ["start", "middle", "end"])
@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_single_frame(server, name, where):
    bad = INVALID[name][0]
    payload = {"start": bad + SUFFIX, "middle": PREFIX + bad + SUFFIX, "end": PREFIX + bad}[where]
    server.fail(frame(TEXT, b"ok") + frame(TEXT, payload) + frame(PING, b"late"), 1007,
                before=((TEXT, b"ok"),))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_in_fragmented_message_bytewise(server, name):
    """Every byte its own fragment: sequences split across every boundary."""
    payload = PREFIX + INVALID[name][0] + SUFFIX
    data = b"".join(frame(TEXT if i == 0 else CONT, payload[i:i + 1], fin=i == len(payload) - 1)
                    for i in range(len(payload)))
    server.fail(data, 1007)


@pytest.mark.parametrize("which", ["first", "middle", "last"])
@pytest.mark.parametrize("name", ["surrogate-d800", "ff", "truncated-3", "above-max-110000"])
def test_invalid_in_one_of_three_fragments(server, name, which):
    bad = INVALID[name][0]
    parts = [PREFIX, b"middle", SUFFIX]
    parts[["first", "middle", "last"].index(which)] += bad
    data = (frame(TEXT, parts[0], fin=False) + frame(CONT, parts[1], fin=False)
            + frame(CONT, parts[2]))
    server.fail(data, 1007)


def test_invalid_after_many_valid_fragments(server):
    data = b"".join(frame(TEXT if i == 0 else CONT, "\u00e9t\u00e9".encode(), fin=False)
                    for i in range(200))
    server.fail(data + frame(CONT, b"\xed\xa0\x80", fin=True), 1007)


def test_invalid_message_after_valid_one(server):
    """The validator restarts with each message: a message may not begin
    with the continuation bytes of the previous one's last character."""
    data = frame(TEXT, "\u20ac".encode()) + frame(TEXT, b"\x82\xac")
    server.fail(data, 1007, before=((TEXT, "\u20ac".encode()),))


def test_message_ending_mid_character_then_next_message(server):
    """A message ending inside a character is invalid even if the next
    message would complete it."""
    server.fail(frame(TEXT, b"\xe2\x82") + frame(TEXT, b"\xac"), 1007)


def test_binary_messages_are_not_validated(server):
    with server.connect() as c:
        c.send(frame(BINARY, b"\xed\xa0", fin=False) + frame(CONT, b"\x80\xff"))
        assert c.recv_message() == (BINARY, b"\xed\xa0\x80\xff")
        c.echo(TEXT, b"then text")
        c.close_handshake()


# -- fail fast ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", EAGER)
def test_fail_fast_in_unfinished_fragmented_message(server, name):
    """The fragment that brings the invalid byte is not final and nothing
    follows it: the close arrives anyway."""
    bad, decisive = INVALID[name]
    with server.connect() as c:
        c.send(frame(TEXT, PREFIX + bad[:decisive], fin=False))
        c.expect_close(1007)
    server.assert_serves()


@pytest.mark.parametrize("name", EAGER)
def test_fail_fast_in_unfinished_frame(server, name):
    """A single frame announces more payload than is sent: the bytes up to
    the invalid one are enough."""
    bad, decisive = INVALID[name]
    sent = PREFIX + bad[:decisive]
    payload = sent + b"x" * 1000
    data = frame(TEXT, payload)
    with server.connect() as c:
        c.send(data[: len(data) - len(payload) + len(sent)])
        c.expect_close(1007)
    server.assert_serves()


@pytest.mark.parametrize("name", [k for k in EAGER if INVALID[k][1] >= 2])
def test_fail_fast_on_the_fragment_that_completes_the_error(server, name):
    """Valid so far: no close. The next fragment (still not final) brings
    the invalid byte: close 1007, without the message ending."""
    bad, decisive = INVALID[name]
    with server.connect() as c:
        c.send_frame(TEXT, PREFIX + bad[: decisive - 1], fin=False)
        c.send_frame(PING, b"valid so far?")
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (PONG, b"valid so far?")
        c.send_frame(CONT, bad[decisive - 1 : decisive], fin=False)
        c.expect_close(1007)
    server.assert_serves()


@pytest.mark.parametrize("name", EAGER)
def test_fail_fast_within_a_frame_sent_in_pieces(server, name):
    """Autobahn 6.4.3-style: one frame in three writes (valid, invalid,
    rest); the close comes after the second write, before the third."""
    bad, decisive = INVALID[name]
    payload = PREFIX + bad + SUFFIX
    data = frame(TEXT, payload)
    head = len(data) - len(payload)
    cut1 = head + len(PREFIX)
    cut2 = cut1 + decisive
    with server.connect() as c:
        c.send(data[:cut1])
        c.expect_silence(0.05)
        c.send(data[cut1:cut2])
        c.expect_close(1007)
    server.assert_serves()


@pytest.mark.parametrize("name", ["truncated-2", "truncated-3", "truncated-4"])
def test_truncated_sequence_fails_at_message_end(server, name):
    """A sequence cut at a frame boundary is still valid so far (no close);
    the message ending there is what makes it invalid."""
    bad = INVALID[name][0]
    with server.connect() as c:
        c.send_frame(TEXT, PREFIX + bad, fin=False)
        c.send_frame(PING, b"")
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (PONG, b"")
        c.send_frame(CONT, b"", fin=True)
        c.expect_close(1007)
    server.assert_serves()


# -- valid text split anywhere --------------------------------------------------------------

CHARS = ["\u00e9", "\u07ff", "\u0800", "\u20ac", "\ud7ff", "\ue000", "\uffff",
         "\U00010000", "\U0001f600", "\U0010ffff"]


@pytest.mark.parametrize("char", CHARS, ids=lambda ch: f"U+{ord(ch):04X}")
def test_valid_character_split_across_fragments(server, char):
    """Every cut of a multi-byte character between fragments, and every
    byte its own fragment: the message is valid and echoed whole."""
    enc = char.encode()
    with server.connect() as c:
        for cut in range(1, len(enc)):
            c.send(frame(TEXT, b"<" + enc[:cut], fin=False) + frame(CONT, enc[cut:] + b">"))
            assert c.recv_message() == (TEXT, b"<" + enc + b">")
        parts = [enc[i:i + 1] for i in range(len(enc))]
        c.send(b"".join(frame(TEXT if i == 0 else CONT, p, fin=i == len(parts) - 1)
                        for i, p in enumerate(parts)))
        assert c.recv_message() == (TEXT, enc)
        c.close_handshake()


def test_character_split_around_control_frames(server):
    """A ping and a pong between the halves of a character do not disturb
    the validation of the message they interrupt."""
    with server.connect() as c:
        c.send(frame(TEXT, b"\xf0\x9f", fin=False) + frame(PING, b"\xff\xfe")
               + frame(PONG, b"\x80") + frame(CONT, b"\x98", fin=False)
               + frame(PING, b"") + frame(CONT, b"\x80"))
        for payload in (b"\xff\xfe", b""):
            f = c.recv_frame()
            assert (f.opcode, f.payload) == (PONG, payload)
        assert c.recv_message() == (TEXT, "\U0001f600".encode())
        c.close_handshake()


def test_valid_text_split_across_tcp_writes(server):
    payload = ("\u00e9\u20ac\U0001f600" * 50).encode()
    with server.connect() as c:
        c.send(frame(TEXT, payload), chop=1)
        assert c.recv_message() == (TEXT, payload)
        c.send(frame(TEXT, payload[:7], fin=False) + frame(PING, b"p")
               + frame(CONT, payload[7:]), chop=5)
        f = c.recv_frame()
        assert f.opcode == PONG
        assert c.recv_message() == (TEXT, payload)
        c.close_handshake()


def test_valid_long_text_with_invalid_byte_at_the_very_end(server):
    """Fast paths for long ASCII runs must still see the last byte."""
    for n in (15, 16, 17, 31, 32, 33, 63, 64, 65, 4095, 4096, 65536):
        with server.connect() as c:
            c.send(frame(TEXT, b"a" * n + b"\x80"))
            c.expect_close(1007)
    server.assert_serves()


def test_invalid_byte_inside_long_ascii_run(server):
    payload = bytearray(b"a" * 100000)
    payload[77777] = 0xC0
    server.fail(raw_frame(TEXT, bytes(payload)), 1007)
