"""Client conformance 1: framing -- text and binary messages of every length
form (7-bit, 16-bit, 64-bit), in one write, byte by byte, pipelined, and in
the 101's own packet; each must come back exactly once, in order."""

from __future__ import annotations

import pytest
from ccserver import BINARY, TEXT, assert_echoed, assert_failed, frame, run_case

SIZES = [0, 1, 125, 126, 127, 128, 65535, 65536, 65537, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_one_message_of_each_length(opcode: int, size: int) -> None:
    payload = b"*" * size
    out = run_case(frame(opcode, payload), expect=1)
    assert_echoed(out, [(opcode, payload)])


@pytest.mark.parametrize("size", [0, 1, 125, 126, 300])
def test_byte_by_byte(size: int) -> None:
    payload = bytes(range(256)) * 2
    payload = payload[:size]
    out = run_case(frame(BINARY, payload), expect=1, chunk=1, pause=0.0005)
    assert_echoed(out, [(BINARY, payload)])


def test_a_length_not_in_its_minimal_form_is_1002() -> None:
    """5.2: "the minimal number of bytes MUST be used to encode the length";
    wsuv holds the server to it (5 bytes announced in 16 or 64 bits)."""
    for form in (126, 127):
        out = run_case(frame(TEXT, b"hello", length=form), fails=True)
        assert_failed(out, 1002)


def test_pipelined_messages_in_one_write_come_back_in_order() -> None:
    msgs = [(TEXT if i % 2 else BINARY, b"%05d" % i * 12) for i in range(200)]
    out = run_case(b"".join(frame(op, p) for op, p in msgs), expect=len(msgs))
    assert_echoed(out, msgs)


def test_frames_in_the_101_packet_are_kept() -> None:
    out = run_case(frame(TEXT, b"early") + frame(BINARY, b"\x01\x02"), expect=2, with_101=True)
    assert_echoed(out, [(TEXT, b"early"), (BINARY, b"\x01\x02")])


def test_a_16_mib_binary_message() -> None:
    payload = bytes(range(256)) * (1 << 16)
    out = run_case(frame(BINARY, payload), expect=1)
    assert_echoed(out, [(BINARY, payload)])


def test_over_max_message_size_is_1009() -> None:
    out = run_case(frame(BINARY, b"x" * 70000), fails=True,
                   client_options={"max_message_size": 65536})
    assert_failed(out, 1009)
