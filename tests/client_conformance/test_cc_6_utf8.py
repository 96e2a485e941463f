"""Client conformance 6: UTF-8 in text messages (8.1) -- valid text of every
sequence length arrives whole however it is fragmented; invalid text fails
with 1007, as soon as the bad byte arrives (fail fast), also when the bad
sequence is split across fragments."""

from __future__ import annotations

import pytest
from ccserver import TEXT, assert_echoed, assert_failed, fragments, frame, run_case

VALID = [
    "Hello-µ@ßöäüàá-UTF-8!!".encode(),
    "κόσμε".encode(),
    "\u0080\u07ff\u0800\uffff".encode(),
    "\U00010000\U0010ffff".encode(),
    "𝄞 music".encode(),
    b"\xef\xbb\xbfBOM",
]

INVALID = [
    b"\x80",                      # lone continuation byte
    b"\xbf",
    b"\xc0\xaf",                  # overlong '/'
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xc1\xbf",                  # overlong U+007F
    b"\xed\xa0\x80",              # UTF-16 surrogate U+D800
    b"\xed\xbf\xbf",              # U+DFFF
    b"\xf4\x90\x80\x80",          # U+110000
    b"\xf5\x80\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xe2\x82",                  # truncated at the end
    b"\xce",
    b"ok until \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
]


@pytest.mark.parametrize("text", VALID, ids=range(len(VALID)))
def test_valid_text(text: bytes) -> None:
    out = run_case(frame(TEXT, text), expect=1)
    assert_echoed(out, [(TEXT, text)])


@pytest.mark.parametrize("text", VALID[2:5], ids=range(3))
def test_valid_text_split_at_every_byte(text: bytes) -> None:
    cases = [fragments(TEXT, text, [i]) for i in range(len(text) + 1)]
    out = run_case(b"".join(cases), expect=len(cases))
    assert_echoed(out, [(TEXT, text)] * len(cases))


def test_valid_text_one_byte_per_fragment() -> None:
    text = "\U0001d11e κόσμε \uffff".encode()
    out = run_case(fragments(TEXT, text, [1] * (len(text) - 1)), expect=1)
    assert_echoed(out, [(TEXT, text)])


@pytest.mark.parametrize("text", INVALID, ids=range(len(INVALID)))
def test_invalid_text_is_1007(text: bytes) -> None:
    out = run_case(frame(TEXT, text), fails=True)
    assert_failed(out, 1007)


@pytest.mark.parametrize("text", INVALID[2:11], ids=range(9))
def test_invalid_sequence_split_across_fragments_is_1007(text: bytes) -> None:
    for cut in range(1, len(text)):
        out = run_case(fragments(TEXT, b"abc" + text + b"xyz", [3 + cut]), fails=True)
        assert_failed(out, 1007)


def test_fail_fast_before_the_message_ends() -> None:
    """The bad byte is in the first fragment; the rest never comes: the
    client fails at once instead of waiting for the end of the message."""
    out = run_case(frame(TEXT, b"good \xed\xa0\x80 then", fin=False), fails=True)
    assert_failed(out, 1007)


def test_fail_fast_inside_a_single_frame_not_yet_complete() -> None:
    """A 64 KiB frame whose first bytes are invalid: only its first 100 bytes
    are sent, and the client must not wait for the rest."""
    head = frame(TEXT, b"\xff" + b"a" * 65535)[:104]
    out = run_case(head, fails=True)
    assert_failed(out, 1007)


def test_binary_messages_are_not_validated() -> None:
    out = run_case(frame(2, b"\xff\xfe\xed\xa0\x80"), expect=1)
    assert_echoed(out, [(2, b"\xff\xfe\xed\xa0\x80")])


def test_valid_then_invalid_message() -> None:
    out = run_case(frame(TEXT, "ok ✓".encode()) + frame(TEXT, b"\xc0\x80"), expect=1,
                   fails=True)
    assert_failed(out, 1007, before=[(TEXT, "ok ✓".encode())])
