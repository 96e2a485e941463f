"""Client conformance 5: fragmentation (5.4) -- fragmented text and binary
messages of every shape, control frames between fragments, and every way of
getting the continuation rules wrong (1002); a masked server frame (5.1)."""

from __future__ import annotations

import pytest
from ccserver import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    assert_echoed,
    assert_failed,
    close_payload,
    fragments,
    frame,
    run_case,
)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_two_fragments(opcode: int) -> None:
    out = run_case(fragments(opcode, b"fragmented message", [10]), expect=1)
    assert_echoed(out, [(opcode, b"fragmented message")])


def test_a_thousand_one_byte_fragments() -> None:
    payload = bytes(range(256)) * 4
    out = run_case(fragments(BINARY, payload[:1000], [1] * 999), expect=1)
    assert_echoed(out, [(BINARY, payload[:1000])])


def test_empty_fragments_first_middle_last() -> None:
    out = run_case(fragments(TEXT, b"abc", [0, 1, 0, 2, 0]), expect=1)
    assert_echoed(out, [(TEXT, b"abc")])


def test_all_fragments_empty() -> None:
    out = run_case(fragments(BINARY, b"", [0, 0, 0]), expect=1)
    assert_echoed(out, [(BINARY, b"")])


def test_large_message_in_64k_fragments() -> None:
    payload = bytes(range(256)) * (4 << 10)  # 1 MiB
    out = run_case(fragments(BINARY, payload, [65536] * 15), expect=1)
    assert_echoed(out, [(BINARY, payload)])


def test_ping_between_fragments_is_answered_at_once() -> None:
    data = (frame(TEXT, b"frag", fin=False) + frame(PING, b"in between") +
            frame(CONT, b"mented", fin=True))
    out = run_case(data, expect=2)
    assert_echoed(out, [(PONG, b"in between"), (TEXT, b"fragmented")])


def test_pings_between_fragments_sent_slowly() -> None:
    writes = [frame(TEXT, b"a", fin=False), frame(PING, b"1"), frame(CONT, b"b", fin=False),
              frame(PING, b"2"), frame(CONT, b"c", fin=True)]
    out = run_case(writes, expect=3, pause=0.02)
    assert_echoed(out, [(PONG, b"1"), (PONG, b"2"), (TEXT, b"abc")])


def test_pong_between_fragments_is_ignored() -> None:
    data = frame(BINARY, b"x", fin=False) + frame(PONG, b"?") + frame(CONT, b"y")
    out = run_case(data, expect=1)
    assert_echoed(out, [(BINARY, b"xy")])


def test_close_between_fragments_ends_without_the_message() -> None:
    data = frame(TEXT, b"never ", fin=False) + frame(CLOSE, close_payload(1000))
    out = run_case(data, expect=0, server_close=b"")  # our close is already in data
    assert_echoed(out, [])


def test_continuation_without_a_start_is_1002() -> None:
    out = run_case(frame(CONT, b"orphan"), fails=True)
    assert_failed(out, 1002)


def test_final_continuation_without_a_start_is_1002() -> None:
    out = run_case(frame(CONT, b"orphan", fin=False) + frame(CONT, b"end"), fails=True)
    assert_failed(out, 1002)


@pytest.mark.parametrize("second", [TEXT, BINARY])
def test_new_message_inside_a_fragmented_one_is_1002(second: int) -> None:
    out = run_case(frame(TEXT, b"start", fin=False) + frame(second, b"again"), fails=True)
    assert_failed(out, 1002)


def test_fragmented_close_is_1002() -> None:
    out = run_case(frame(CLOSE, close_payload(1000), fin=False) + frame(CONT, b""), fails=True)
    assert_failed(out, 1002)


def test_masked_server_frame_is_1002() -> None:
    out = run_case(frame(TEXT, b"masked", mask=b"\x01\x02\x03\x04"), fails=True)
    assert_failed(out, 1002)


def test_masked_continuation_is_1002() -> None:
    out = run_case(frame(TEXT, b"a", fin=False) + frame(CONT, b"b", mask=b"abcd"), fails=True)
    assert_failed(out, 1002)


def test_too_many_fragments_is_1009() -> None:
    out = run_case(fragments(BINARY, b"z" * 20, [1] * 19), fails=True,
                   client_options={"max_fragments": 10})
    assert_failed(out, 1009)


def test_fragments_over_max_message_size_are_1009() -> None:
    out = run_case(fragments(BINARY, b"z" * 3000, [1000, 1000]), fails=True,
                   client_options={"max_message_size": 2500})
    assert_failed(out, 1009)
