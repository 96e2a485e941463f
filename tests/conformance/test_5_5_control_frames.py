"""RFC 6455 5.5: control frames (close, ping, pong).

5.5: "All control frames MUST have a payload length of 125 bytes or less
and MUST NOT be fragmented." Control frames MAY be injected in the middle of
a fragmented message.
5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
response, unless it already received a Close frame."
5.5.3: "A Pong frame sent in response to a Ping frame must have identical
"Application data" as found in the message body of the Ping frame being
replied to." "A Pong frame MAY be sent unsolicited. [...] A response to an
unsolicited Pong frame is not expected."
(Close, 5.5.1, is covered in test_7_closing.py.)
"""

from __future__ import annotations

import os

import pytest
from client import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Client,
    EchoHandler,
    frame,
    raw_frame,
    running_server,
)


def expect_pong(c, payload: bytes) -> None:
    f = c.recv_frame()
    assert f.opcode == PONG, f"expected a pong, got opcode {f.opcode}"
    assert f.fin and not (f.rsv1 or f.rsv2 or f.rsv3)
    assert f.payload == payload


@pytest.mark.parametrize("n", [0, 1, 2, 64, 124, 125])
def test_ping_answered_with_identical_pong(server, n):
    payload = os.urandom(n)
    with server.connect() as c:
        c.send_frame(PING, payload)
        expect_pong(c, payload)
        c.close_handshake()


def test_ping_with_every_byte_value(server):
    with server.connect() as c:
        for start in (0, 125, 250):
            payload = bytes(range(start, min(start + 125, 256)))
            c.send_frame(PING, payload)
            expect_pong(c, payload)
        c.close_handshake()


def test_ping_chopped_byte_by_byte(server):
    payload = b"*" * 125
    with server.connect() as c:
        c.send_frame(PING, payload, chop=1)
        expect_pong(c, payload)
        c.close_handshake()


def test_ten_pings_answered_in_order(server):
    """5.5.3 lets an endpoint answer only the latest of several pending pings;
    wsuv answers each (what Autobahn 2.10 checks), so all ten come back."""
    payloads = [b"payload-%d" % i for i in range(10)]
    with server.connect() as c:
        c.send(b"".join(frame(PING, p) for p in payloads))
        for p in payloads:
            expect_pong(c, p)
        c.echo(TEXT, b"after pings")
        c.close_handshake()


def test_ten_pings_in_separate_writes(server):
    with server.connect() as c:
        for i in range(10):
            c.send_frame(PING, bytes([i]) * i)
        for i in range(10):
            expect_pong(c, bytes([i]) * i)
        c.close_handshake()


@pytest.mark.parametrize("payload", [b"", b"unsolicited", b"\xff" * 125],
                         ids=["empty", "text", "125"])
def test_unsolicited_pong_is_ignored(server, payload):
    """No answer to a pong: the next frame the server sends is the echo."""
    with server.connect() as c:
        c.send_frame(PONG, payload)
        c.expect_silence(0.05)
        c.echo(TEXT, b"still here")
        c.close_handshake()


def test_unsolicited_pong_then_ping(server):
    with server.connect() as c:
        c.send(frame(PONG, b"unsolicited") + frame(PING, b"solicited"))
        expect_pong(c, b"solicited")
        c.close_handshake()


def test_ping_between_data_messages(server):
    with server.connect() as c:
        c.send(frame(TEXT, b"a") + frame(PING, b"p") + frame(BINARY, b"b"))
        assert c.recv_message() == (TEXT, b"a")
        expect_pong(c, b"p")
        assert c.recv_message() == (BINARY, b"b")
        c.close_handshake()


def test_ping_inside_fragmented_binary(server):
    with server.connect() as c:
        c.send(frame(BINARY, b"\x01", fin=False) + frame(PING, b"mid")
               + frame(CONT, b"\x02", fin=False) + frame(PING, b"mid2")
               + frame(CONT, b"\x03"))
        expect_pong(c, b"mid")
        expect_pong(c, b"mid2")
        assert c.recv_message() == (BINARY, b"\x01\x02\x03")
        c.close_handshake()


# -- payload limit: 125 bytes (1002) ----------------------------------------------------

@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE], ids=lambda o: o.name)
@pytest.mark.parametrize("n", [126, 127, 1000, 65536])
def test_control_frame_over_125_bytes(server, opcode, n):
    payload = b"\x03\xe8" + b"r" * (n - 2) if opcode == CLOSE else b"x" * n
    server.fail(raw_frame(opcode, payload), 1002)


@pytest.mark.parametrize("opcode", [PING, CLOSE], ids=lambda o: o.name)
def test_control_frame_too_long_fails_at_header(server, opcode):
    """The header announcing 126 bytes is enough: the payload never comes."""
    server.fail(raw_frame(opcode, b"", length=126), 1002)


def test_ping_126_after_echo(server):
    data = frame(TEXT, b"ok") + raw_frame(PING, b"x" * 126) + frame(TEXT, b"never")
    server.fail(data, 1002, before=((TEXT, b"ok"),))


# -- control frames MUST NOT be fragmented (1002) ------------------------------------------

@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE], ids=lambda o: o.name)
def test_fragmented_control_frame(server, opcode):
    payload = b"\x03\xe8" if opcode == CLOSE else b"frag"
    server.fail(raw_frame(opcode, payload, fin=False), 1002)


def test_ping_in_two_fragments(server):
    """A ping split as ping(FIN=0) + continuation(FIN=1): no pong, 1002."""
    server.fail(raw_frame(PING, b"frag", fin=False) + frame(CONT, b"ment"), 1002)


def test_fragmented_ping_inside_fragmented_text(server):
    data = frame(TEXT, b"a", fin=False) + raw_frame(PING, b"p", fin=False) + frame(CONT, b"b")
    server.fail(data, 1002)


# -- control frames and the server's own queued data ---------------------------------------

@pytest.mark.parametrize("n", [256 * 1024, 4 << 20], ids=["256K", "4M"])
def test_pong_never_splits_a_queued_frame(server, n):
    """We read nothing until everything is sent, so the echo sits partly in
    the server's write queue when the ping arrives: the pong must follow the
    whole echo frame, never land inside it (5.4: control frames go between
    frames, not within one)."""
    big = os.urandom(1024) * (n // 1024)
    with server.connect(rcvbuf=8192) as c:
        c.timeout = 30.0
        c.send(frame(BINARY, big) + frame(PING, b"one") + frame(BINARY, big[:1000])
               + frame(PING, b"two"))
        assert c.recv_message() == (BINARY, big)
        expect_pong(c, b"one")
        assert c.recv_message() == (BINARY, big[:1000])
        expect_pong(c, b"two")
        c.close_handshake()


def test_thousand_pings(server):
    with server.connect() as c:
        c.send(b"".join(frame(PING, b"%d" % i) for i in range(1000)))
        for i in range(1000):
            expect_pong(c, b"%d" % i)
        c.close_handshake()


# -- pings from the server (keepalive) ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["c-echo", "py-echo"])
def test_server_ping_is_well_formed_and_our_pong_keeps_the_connection(kind):
    handler = EchoHandler() if kind == "py-echo" else None
    with running_server(handler, ping_interval=0.1, ping_timeout=0.3) as srv, \
            Client(srv.port) as c:
        c.handshake()
        for _ in range(3):  # > ping_timeout in total: the pongs keep it open
            f = c.recv_frame(timeout=2.0)
            assert f.opcode == PING and f.fin and len(f.payload) <= 125
            c.send_frame(PONG, f.payload)
        c.echo(TEXT, b"alive")
        c.close_handshake()


@pytest.mark.parametrize("kind", ["c-echo", "py-echo"])
def test_server_gives_up_on_a_silent_peer(kind):
    """Not an RFC rule, but what it may send on the way out must be valid
    (any close frame is checked against 7.4) and TCP must end."""
    handler = EchoHandler() if kind == "py-echo" else None
    with running_server(handler, ping_interval=0.1, ping_timeout=0.2) as srv, \
            Client(srv.port) as c:
        c.handshake()
        while True:
            try:
                f = c.recv_frame(timeout=3.0)
            except AssertionError as exc:
                assert "closed the TCP connection" in str(exc)
                break
            assert f.opcode in (PING, CLOSE)
