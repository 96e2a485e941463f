"""Client conformance 2: pings and pongs -- a ping is answered with a pong
carrying its payload (5.5.2), an unsolicited pong is ignored (5.5.3), a
control frame over 125 bytes or fragmented fails with 1002 (5.5)."""

from __future__ import annotations

import pytest
from ccserver import CONT, PING, PONG, TEXT, assert_echoed, assert_failed, frame, run_case


@pytest.mark.parametrize("payload", [b"", b"x", b"\x00\xff" * 62 + b"z", bytes(range(125))])
def test_ping_gets_a_pong_with_its_payload(payload: bytes) -> None:
    out = run_case(frame(PING, payload), expect=1)
    assert_echoed(out, [(PONG, payload)])


def test_ping_byte_by_byte() -> None:
    out = run_case(frame(PING, b"slowly"), expect=1, chunk=1, pause=0.001)
    assert_echoed(out, [(PONG, b"slowly")])


def test_ten_pings_ten_pongs_in_order() -> None:
    out = run_case(b"".join(frame(PING, b"p%d" % i) for i in range(10)), expect=10)
    assert_echoed(out, [(PONG, b"p%d" % i) for i in range(10)])


def test_unsolicited_pong_is_ignored() -> None:
    out = run_case(frame(PONG, b"unasked") + frame(TEXT, b"after"), expect=1)
    assert_echoed(out, [(TEXT, b"after")])


def test_ping_then_text_keep_their_order() -> None:
    out = run_case(frame(PING, b"a") + frame(TEXT, b"b") + frame(PING, b"c"), expect=3)
    assert_echoed(out, [(PONG, b"a"), (TEXT, b"b"), (PONG, b"c")])


@pytest.mark.parametrize("opcode", [PING, PONG])
def test_control_frame_of_126_bytes_is_1002(opcode: int) -> None:
    out = run_case(frame(opcode, b"x" * 126), fails=True)
    assert_failed(out, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG])
def test_fragmented_control_frame_is_1002(opcode: int) -> None:
    out = run_case(frame(opcode, b"half", fin=False) + frame(CONT, b"rest"), fails=True)
    assert_failed(out, 1002)


def test_ping_after_a_protocol_error_is_not_answered() -> None:
    out = run_case(frame(TEXT, b"", rsv=4) + frame(PING, b"late"), fails=True)
    assert_failed(out, 1002)
