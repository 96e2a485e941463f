"""RFC 6455 5.5.1 and 7: the close handshake, close codes and reasons.

5.5.1: a close payload is empty or a 2-byte code followed by a UTF-8
reason; on receiving a close, an endpoint sends a close in response ("typically
echos the status code it received") unless it already sent one; "after
sending a Close frame, the endpoint MUST NOT send any more data frames";
an endpoint may ignore data received after the peer's close.
5.5.2: no pong once a close was received.
7.1.1: "the server SHOULD close [the TCP connection] first"; the client waits.
7.1.5 / 7.1.6: no code in the close means 1005; no close frame at all means
1006. 7.4.1: 1005, 1006 and 1015 "MUST NOT be set as a status code in a Close
control frame by an endpoint". 7.4.2: 0-999 are not used, 1000-2999 are the
protocol's (only the assigned ones are valid), 3000-4999 are for libraries and
applications. An invalid code, a 1-byte payload or a reason that is not UTF-8
fails the connection (1002 / 1007).
"""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from client import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    Client,
    EchoHandler,
    close_payload,
    frame,
    raw_frame,
    running_server,
)

import wsuv


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, close_payload(code, reason))


# -- the server answers a close -------------------------------------------------------------

def test_close_without_payload(server):
    """The answer carries no status code, or 1000; never 1005 (7.4.1)."""
    with server.connect() as c:
        c.send(close_frame())
        f = c.recv_frame()
        assert f.opcode == CLOSE
        assert f.payload in (b"", b"\x03\xe8"), f.payload
        c.expect_eof()
        assert not c.reset, "the TCP connection ended with RST, not a clean close"
    server.assert_serves()


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 3999, 4000, 4999])
def test_valid_code_echoed(server, code):
    with server.connect() as c:
        c.send(close_frame(code))
        c.expect_close(code)
        assert not c.reset
    server.assert_serves()


@pytest.mark.parametrize("reason", [
    b"Hello World!",
    b"r" * 123,
    "\u20ac".encode() * 41,  # 123 bytes of 3-byte characters
    "\U0001f600".encode() * 30 + b"abc",  # 123 bytes with 4-byte characters
    "\u00fc".encode() * 61 + b"!",
], ids=["short", "123-ascii", "123-euro", "123-emoji", "123-mixed"])
def test_close_with_reason(server, reason):
    assert len(reason) <= 123
    with server.connect() as c:
        c.send(close_frame(1000, reason))
        c.expect_close(1000)
    server.assert_serves()


def test_close_chopped_byte_by_byte(server):
    with server.connect() as c:
        c.send(close_frame(1001, b"going away"), chop=1)
        c.expect_close(1001)
    server.assert_serves()


# -- invalid close payloads ---------------------------------------------------------------------

def test_close_payload_of_one_byte(server):
    server.fail(frame(CLOSE, b"\x03"), 1002)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                                  5000, 65535])
def test_invalid_code(server, code):
    server.fail(close_frame(code), 1002)


def test_invalid_code_with_reason(server):
    server.fail(close_frame(1005, b"no status is not a status"), 1002)


def test_reason_of_124_bytes(server):
    """2 + 124 = 126 bytes: over the control frame limit (5.5)."""
    server.fail(raw_frame(CLOSE, close_payload(1000, b"r" * 124)), 1002)


@pytest.mark.parametrize("reason", [
    b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
    "\u03ba\u1f79\u03c3\u03bc\u03b5".encode() + b"\xed\xa0\x80edited",
], ids=["ff", "overlong", "surrogate", "above-max", "truncated", "after-valid"])
def test_reason_not_utf8(server, reason):
    server.fail(close_frame(1000, reason), 1007)


# -- nothing after a close ---------------------------------------------------------------------

def test_frames_after_our_close_are_ignored(server):
    """Data and pings after the close frame get no echo and no pong."""
    data = (close_frame(1000) + frame(TEXT, b"after close") + frame(PING, b"after close")
            + frame(BINARY, b"\x00"))
    with server.connect() as c:
        c.send(data)
        c.expect_close(1000)
    server.assert_serves()


def test_ping_after_close_in_a_separate_write(server):
    with server.connect() as c:
        c.send(close_frame(1000))
        c.send(frame(PING, b"too late"))
        c.send(frame(TEXT, b"too late"))
        c.expect_close(1000)
    server.assert_serves()


def test_invalid_frame_after_close_is_not_reported(server):
    """Bytes after the close are ignored, even a frame that would be an error."""
    with server.connect() as c:
        c.send(close_frame(3000) + raw_frame(TEXT, b"x", rsv=7) + b"\xff" * 10)
        c.expect_close(3000)
    server.assert_serves()


def test_server_closes_tcp_first(server):
    """7.1.1: we keep our side open; the server ends the TCP connection."""
    with server.connect() as c:
        c.echo(TEXT, b"hello")
        c.send(close_frame(1000))
        c.expect_close(1000, eof=False)
        c.expect_eof(timeout=2.0)
        # Our side is still open: we can half-close after the server did.
        c.sock.shutdown(socket.SHUT_WR)


def test_failing_server_does_not_wait_for_our_close(server):
    """7.1.7: after failing the connection the server closes TCP promptly,
    whether or not we answer its close frame."""
    with server.connect() as c:
        c.send(raw_frame(TEXT, b"x", rsv=2))
        c.expect_close(1002, eof=False)
        c.expect_eof(timeout=2.0)


# -- close codes as the application sees them (7.1.5, 7.1.6) ------------------------------------

def _closes(action) -> list[tuple[int, str]]:
    handler = EchoHandler()
    with running_server(handler) as srv, Client(srv.port) as c:
        c.handshake()
        action(c)
        return handler.wait_closes(1)


def test_app_sees_code_and_reason():
    def act(c):
        c.send(close_frame(4001, "au revoir \u00e9".encode()))
        c.expect_close(4001)

    assert _closes(act) == [(4001, "au revoir \u00e9")]


def test_app_sees_1005_for_close_without_code():
    def act(c):
        c.send(close_frame())
        c.recv_frame()
        c.expect_eof()

    assert _closes(act) == [(1005, "")]


def test_app_sees_1006_when_tcp_drops():
    def act(c):
        c.echo(TEXT, b"hi")
        c.sock.close()

    assert [code for code, _ in _closes(act)] == [1006]


def test_app_sees_1006_when_tcp_drops_mid_message():
    def act(c):
        c.send(frame(TEXT, b"half", fin=False))
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_eof()

    assert [code for code, _ in _closes(act)] == [1006]


# -- the server starts the close ------------------------------------------------------------------

class Closer(wsuv.Handler):
    """On "close CODE REASON": closes, then tries to send (must not reach the wire).
    On "bad CODE": tries to close with a code that may not be sent."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.closed: list[tuple[int, str]] = []
        self.done = threading.Event()

    def on_message(self, ws, message):
        verb, _, rest = message.partition(" ")
        if verb == "close":
            code, _, reason = rest.partition(" ")
            ws.close(int(code), reason)
            try:
                ws.send("data after close")
            except wsuv.ConnectionClosed:
                pass
        elif verb == "bad":
            try:
                ws.close(int(rest))
            except ValueError as exc:
                ws.send(f"refused: {exc}")
        else:
            ws.send(message)

    def on_close(self, ws, code, reason):
        self.closed.append((code, reason))
        self.done.set()


def test_server_initiated_close():
    handler = Closer()
    with running_server(handler) as srv, Client(srv.port) as c:
        c.handshake()
        c.send_frame(TEXT, b"close 4000 bye")
        f = c.recv_frame()
        assert f.opcode == CLOSE and f.payload == struct.pack("!H", 4000) + b"bye"
        # A data frame after its close: the server MUST NOT answer it (5.5.1).
        c.send_frame(TEXT, b"echo me?")
        c.expect_silence(0.1)
        c.send(close_frame(4000))
        c.expect_eof()
        assert handler.done.wait(5)
        assert [code for code, _ in handler.closed] == [4000]


def test_server_initiated_close_then_peer_silent():
    """The server waits a bounded time for our close, then ends TCP itself."""
    handler = Closer()
    with running_server(handler, close_timeout=0.3) as srv, Client(srv.port) as c:
        c.handshake()
        c.send_frame(TEXT, b"close 1001 going")
        f = c.recv_frame()
        assert f.opcode == CLOSE and f.payload[:2] == b"\x03\xe9"
        c.expect_eof(timeout=3.0)


@pytest.mark.parametrize("code", [1005, 1006, 1015, 1004, 999, 5000])
def test_reserved_codes_never_sent(code):
    """7.4.1: the API refuses to put 1005/1006/1015 (or any invalid code) on the wire."""
    handler = Closer()
    with running_server(handler) as srv, Client(srv.port) as c:
        c.handshake()
        c.send_frame(TEXT, f"bad {code}".encode())
        op, data = c.recv_message()
        assert op == TEXT and data.startswith(b"refused"), data
        c.close_handshake()


def test_close_reply_follows_queued_echo(server):
    """Data already queued goes out before the close frame, never after it."""
    big = bytes(range(256)) * 16384  # 4 MiB
    with server.connect(rcvbuf=8192) as c:
        c.timeout = 30.0
        c.send(frame(BINARY, big) + close_frame(1000))
        assert c.recv_message() == (BINARY, big)
        c.expect_close(1000)


def test_ping_before_close_in_the_same_write(server):
    with server.connect() as c:
        c.send(frame(PING, b"first") + close_frame(1000) + frame(PING, b"second"))
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (PONG, b"first")
        c.expect_close(1000)


def test_close_while_text_message_is_unfinished(server):
    """The unfinished message (valid so far, ending mid-character) is dropped
    and the close handshake is clean: no 1007 for a message that never ended."""
    with server.connect() as c:
        c.send(frame(TEXT, b"abc\xe2\x82", fin=False) + close_frame(1000))
        c.expect_close(1000)


def test_simultaneous_close():
    """7.1.3 / 5.5.1: each side sent a close before seeing the other's. The
    server, having sent its close already, sends no second one; it ends TCP."""
    handler = Closer()
    with running_server(handler) as srv, Client(srv.port) as c:
        c.handshake()
        c.send(frame(TEXT, b"close 4000 mine") + close_frame(1000, b"yours"))
        c.expect_close(4000)
        assert handler.done.wait(5)


def test_server_close_with_123_byte_reason():
    handler = Closer()
    reason = "\u20ac" * 41  # 123 bytes
    with running_server(handler) as srv, Client(srv.port) as c:
        c.handshake()
        c.send_frame(TEXT, f"close 3001 {reason}".encode())
        f = c.recv_frame()
        assert f.opcode == CLOSE and f.payload == b"\x0b\xb9" + reason.encode()
        c.send_close(3001)
        c.expect_eof()


def test_ping_answered_while_waiting_for_our_close():
    """The server started the close; we have not answered it yet. Our ping
    still gets its pong (5.5.2: only a *received* close ends that duty)."""
    handler = Closer()
    with running_server(handler) as srv, Client(srv.port) as c:
        c.handshake()
        c.send_frame(TEXT, b"close 4000 bye")
        f = c.recv_frame()
        assert f.opcode == CLOSE and f.payload[:2] == b"\x0f\xa0"
        c.send_frame(PING, b"still there?")
        f = c.recv_frame(timeout=1.0)
        assert (f.opcode, f.payload) == (PONG, b"still there?")
        c.send_close(4000)
        c.expect_eof()
