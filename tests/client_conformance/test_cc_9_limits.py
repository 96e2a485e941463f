"""Client conformance 9: big and many -- large text (validated UTF-8) and
binary messages in one frame or many, long pipelined runs, and the client's
limits at their exact edge (max_message_size: equal passes, one more is 1009)."""

from __future__ import annotations

import pytest
from ccserver import BINARY, TEXT, assert_echoed, assert_failed, fragments, frame, run_case

MiB = 1 << 20


@pytest.mark.parametrize("size", [MiB, 4 * MiB, 16 * MiB])
def test_large_text_in_one_frame(size: int) -> None:
    text = ("κόσμε𝄞" * (size // 14 + 1)).encode()[:size]
    text = text.decode("utf-8", "ignore").encode()  # whole characters only
    out = run_case(frame(TEXT, text), expect=1, client_options={"max_message_size": 17 * MiB})
    assert_echoed(out, [(TEXT, text)])


@pytest.mark.parametrize("piece", [1 << 10, 64 << 10, MiB])
def test_4_mib_binary_in_fragments(piece: int) -> None:
    payload = bytes(range(256)) * (4 * MiB // 256)
    out = run_case(fragments(BINARY, payload, [piece] * (4 * MiB // piece - 1)), expect=1)
    assert_echoed(out, [(BINARY, payload)])


def test_a_thousand_small_messages_pipelined() -> None:
    msgs = [(TEXT, b"m%04d" % i + b"." * 59) for i in range(1000)]
    out = run_case(b"".join(frame(op, p) for op, p in msgs), expect=1000)
    assert_echoed(out, msgs)


def test_max_message_size_edge() -> None:
    out = run_case(frame(BINARY, b"e" * 4096), expect=1,
                   client_options={"max_message_size": 4096})
    assert_echoed(out, [(BINARY, b"e" * 4096)])
    out = run_case(frame(BINARY, b"e" * 4097), fails=True,
                   client_options={"max_message_size": 4096})
    assert_failed(out, 1009)
