"""Client conformance 7: the closing handshake (5.5.1, 7.1, 7.4) -- the
client answers a close with a close echoing its code (an empty one with an
empty one), waits for the server to end TCP (7.1.1) and ends at once when it
does; invalid close frames fail with 1002 (1007 for a bad reason); nothing
is sent after its close; a close the client starts is answered and the
client then waits for our FIN; a server that never ends TCP is cut off after
close_timeout."""

from __future__ import annotations

import socket

import pytest
from ccserver import (
    CLOSE,
    PING,
    TEXT,
    assert_clean_tcp,
    assert_failed,
    close_payload,
    frame,
    run_case,
)

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


def test_empty_close_is_answered_with_an_empty_close() -> None:
    out = run_case(b"", server_close=frame(CLOSE, b""))
    assert out.close == b"" and out.data == []
    assert_clean_tcp(out)
    assert out.handler_events[-1] == ("close", 1005)


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_code_is_echoed(code: int) -> None:
    out = run_case(b"", server_close=frame(CLOSE, close_payload(code, b"bye")))
    assert out.close_code == code and out.data == []
    assert_clean_tcp(out)
    assert out.handler_events[-1] == ("close", code)


def test_close_with_a_123_byte_reason() -> None:
    reason = "é".encode() * 61 + b"x"
    out = run_case(b"", server_close=frame(CLOSE, close_payload(1000, reason)))
    assert out.close_code == 1000
    assert_clean_tcp(out)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_code_is_1002(code: int) -> None:
    out = run_case(frame(CLOSE, close_payload(code)), fails=True)
    assert_failed(out, 1002)


def test_one_byte_close_payload_is_1002() -> None:
    out = run_case(frame(CLOSE, b"\x03"), fails=True)
    assert_failed(out, 1002)


def test_close_payload_over_125_bytes_is_1002() -> None:
    out = run_case(frame(CLOSE, close_payload(1000, b"r" * 124)), fails=True)
    assert_failed(out, 1002)


def test_invalid_utf8_reason_is_1007() -> None:
    out = run_case(frame(CLOSE, close_payload(1000, b"bad \xff reason")), fails=True)
    assert_failed(out, 1007)


def test_frames_after_the_close_are_ignored() -> None:
    data = frame(CLOSE, close_payload(1000)) + frame(TEXT, b"late") + frame(PING, b"late")
    out = run_case(data, expect=0, server_close=b"")
    assert out.data == [] and out.close_code == 1000
    assert_clean_tcp(out)


def test_message_then_close_in_one_write() -> None:
    out = run_case(frame(TEXT, b"last") + frame(CLOSE, close_payload(1001)), expect=1,
                   server_close=b"")
    assert out.data == [(TEXT, b"last")] and out.close_code == 1001
    assert_clean_tcp(out)


def test_client_started_close_waits_for_our_close_and_fin() -> None:
    """The handler closes (4001) on "close-me": the server answers, and the
    client ends TCP only after we did."""
    out = run_case(frame(TEXT, b"close-me"), fails=True)
    assert out.close == close_payload(4001, b"asked") and out.data == []
    assert_clean_tcp(out)
    assert out.handler_events[-1] == ("close", 4001)


def test_server_that_never_answers_our_close_is_cut_off() -> None:
    """The client closes, we never answer and never end TCP: after
    close_timeout the client drops the connection (1006)."""
    out = run_case(frame(TEXT, b"close-me"), fails=True, reply_close=False, hold=4.0,
                   client_options={"close_timeout": 0.5})
    assert out.close == close_payload(4001, b"asked")
    assert out.handler_events[-1] == ("close", 1006)
    assert 0.45 < out.run_time < 3.0  # cut off at close_timeout, not at our FIN (4 s)


def test_server_that_never_ends_tcp_after_the_exchange_is_cut_off() -> None:
    """Both close frames exchanged, but the server keeps TCP open: the client
    closes it itself after close_timeout; the close still counts as clean."""
    def keep_open(conn: socket.socket) -> None:
        conn.settimeout(5)
        conn.sendall(frame(CLOSE, close_payload(1000)))

    out = run_case(b"", after_send=keep_open, expect=0, fails=True, reply_close=False,
                   hold=4.0, client_options={"close_timeout": 0.5})
    assert out.close_code == 1000
    assert out.handler_events[-1] == ("close", 1000)
    assert 0.45 < out.run_time < 3.0  # cut off at close_timeout, not at our FIN (4 s)
