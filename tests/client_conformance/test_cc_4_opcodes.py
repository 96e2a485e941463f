"""Client conformance 4: opcodes -- the reserved non-control (3-7) and
control (11-15) opcodes fail the connection with 1002 (5.2), with or
without payload, before or after a good message."""

from __future__ import annotations

import pytest
from ccserver import PING, PONG, TEXT, assert_failed, frame, run_case

RESERVED = [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]


@pytest.mark.parametrize("opcode", RESERVED)
def test_reserved_opcode_is_1002(opcode: int) -> None:
    out = run_case(frame(opcode, b""), fails=True)
    assert_failed(out, 1002)


@pytest.mark.parametrize("opcode", RESERVED)
def test_reserved_opcode_after_good_frames(opcode: int) -> None:
    out = run_case(frame(TEXT, b"ok") + frame(PING, b"p") + frame(opcode, b"payload") +
                   frame(PING, b"never"), expect=2, fails=True)
    assert_failed(out, 1002, before=[(TEXT, b"ok"), (PONG, b"p")])
