"""Client conformance 3: reserved bits -- RSV1-3 set without an extension
that defines them fail the connection with 1002 (5.2), on data and control
frames, also after a message that was echoed."""

from __future__ import annotations

import pytest
from ccserver import BINARY, CLOSE, PING, TEXT, assert_failed, close_payload, frame, run_case


@pytest.mark.parametrize("rsv", range(1, 8))
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING])
def test_rsv_bits_without_an_extension_are_1002(opcode: int, rsv: int) -> None:
    out = run_case(frame(opcode, b"hello", rsv=rsv), fails=True)
    assert_failed(out, 1002)


def test_rsv_on_a_close_frame_is_1002() -> None:
    out = run_case(frame(CLOSE, close_payload(1000), rsv=2), fails=True)
    assert_failed(out, 1002)


def test_rsv_after_a_good_message() -> None:
    out = run_case(frame(TEXT, b"good") + frame(TEXT, b"bad", rsv=1), expect=1, fails=True)
    assert_failed(out, 1002, before=[(TEXT, b"good")])


def test_rsv1_on_a_continuation_with_deflate_negotiated_is_1002() -> None:
    """Even with permessage-deflate, RSV1 belongs on the first frame only (RFC
    7692 6): here no extension was negotiated at all (our 101 has none), so
    RSV1 anywhere is 1002."""
    out = run_case(frame(TEXT, b"a", fin=False) + frame(0, b"b", rsv=4), fails=True,
                   client_options={"compression": "deflate"})
    assert_failed(out, 1002)
