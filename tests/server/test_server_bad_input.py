"""DESIGN.md's bad-input table over real sockets: every row gets its answer,
and the same server then still serves a normal client (an echo round trip)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import websockets
from srvkit import (
    KEY,
    TIMEOUT,
    EchoHandler,
    FrameReader,
    assert_eof,
    assert_serves,
    client_frame,
    close_payload,
    echo_raw,
    http_exchange,
    on_loop,
    open_raw,
    raw_connect,
    raw_frame,
    read_response,
    running_server,
    upgrade_request,
    url,
    wait_for,
)
from websockets.sync.client import connect as ws_connect

from wsuv.request import Response
from wsuv.server import Accept

# -- plain HTTP ---------------------------------------------------------------------


def test_plain_get_is_426_and_server_goes_on() -> None:
    with running_server(EchoHandler()) as server:
        resp = http_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.status == 426
        assert resp.headers["sec-websocket-version"] == "13"
        assert resp.headers["connection"].lower() == "close"
        assert resp.body.endswith(b"\n") and resp.body.count(b"\n") == 1
        assert_serves(server)


def test_echo_server_serves_its_page_on_get_root(echo_server) -> None:
    resp = http_exchange(echo_server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert b"<html" in resp.body.lower()
    # Any other path of the echo server is not a page: 426.
    resp = http_exchange(echo_server, b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.status == 426
    assert_serves(echo_server)


# -- upgrade requests that fail the RFC 6455 4.2.1 checks ---------------------------

BAD_REQUESTS = {
    # A request without Upgrade is plain HTTP (handshake.h classification): 426.
    "missing-upgrade": (upgrade_request("/chat", upgrade=None), 426, "Upgrade request"),
    "bad-upgrade": (upgrade_request(upgrade="h2c"), 400, "Upgrade"),
    "missing-connection": (upgrade_request(connection=None), 400, "Connection"),
    "bad-connection": (upgrade_request(connection="keep-alive"), 400, "Connection"),
    "missing-host": (upgrade_request(host=None), 400, "Host"),
    "duplicate-host": (upgrade_request(extra=[("Host", "other")]), 400, "Host"),
    "missing-key": (upgrade_request(key=None), 400, "Sec-WebSocket-Key"),
    "short-key": (upgrade_request(key="c2hvcnQ="), 400, "Sec-WebSocket-Key"),
    "non-base64-key": (upgrade_request(key="!" * 24), 400, "Sec-WebSocket-Key"),
    "duplicate-key": (upgrade_request(extra=[("Sec-WebSocket-Key", KEY)]), 400,
                      "Sec-WebSocket-Key"),
    "version-8": (upgrade_request(version="8"), 426, "13"),
    "missing-version": (upgrade_request(version=None), 426, "13"),
    "post": (upgrade_request(method="POST"), 405, "GET"),
    "http-1.0": (upgrade_request(http="HTTP/1.0"), 505, "HTTP/1.1"),
    "body": (upgrade_request(extra=[("Content-Length", "5")]) + b"hello", 400, "bod"),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "malformed"),
    "bad-header-line": (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400, "malformed"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_upgrade_request(echo_server, name: str) -> None:
    request, status, words = BAD_REQUESTS[name]
    resp = http_exchange(echo_server, request)
    assert resp.status == status, (resp.status, resp.body)
    # One line of reason, ending in a newline, saying what was wrong.
    assert resp.body.endswith(b"\n") and resp.body.count(b"\n") == 1, resp.body
    assert words.encode() in resp.body, resp.body
    assert resp.headers["connection"].lower() == "close"
    if status == 426:
        assert resp.headers["sec-websocket-version"] == "13"
    assert_serves(echo_server)


def test_url_over_max_url_is_414() -> None:
    with running_server(max_url=256) as server:
        resp = http_exchange(server, upgrade_request("/" + "a" * 300))
        assert resp.status == 414, resp.body
        assert b"too long" in resp.body
        # Just under the limit is fine.
        sock, reader = open_raw(server, "/" + "a" * 250)
        with sock:
            echo_raw(sock, reader)
        assert_serves(server)


def test_url_over_default_max_url_is_414(echo_server) -> None:
    resp = http_exchange(echo_server, upgrade_request("/" + "a" * (8 * 1024 + 10)))
    assert resp.status == 414
    assert_serves(echo_server)


def test_too_many_headers_is_431() -> None:
    with running_server(max_headers=8) as server:
        extra = [(f"X-H{i}", "v") for i in range(10)]
        resp = http_exchange(server, upgrade_request(extra=extra))
        assert resp.status == 431, resp.body
        assert b"too many header" in resp.body
        assert_serves(server)


def test_header_section_over_max_header_bytes_is_431() -> None:
    with running_server(max_header_bytes=1024) as server:
        resp = http_exchange(server, upgrade_request(extra=[("X-Big", "b" * 2000)]))
        assert resp.status == 431, resp.body
        assert b"too large" in resp.body
        assert_serves(server)


def test_header_bytes_limit_counts_across_reads() -> None:
    """The head arrives in 100-byte pieces: the limit still holds."""
    with running_server(max_header_bytes=1024) as server:
        request = upgrade_request(extra=[(f"X-H{i}", "v" * 60) for i in range(20)])
        with raw_connect(server) as sock:
            for i in range(0, len(request), 100):
                try:
                    sock.sendall(request[i:i + 100])
                except (BrokenPipeError, ConnectionResetError):
                    break
            resp = read_response(sock)
            assert resp.status == 431
            assert_eof(sock)
        assert_serves(server)


def test_handshake_timeout_closes_silent_and_slow_clients() -> None:
    with running_server(handshake_timeout=0.5) as server:
        silent = raw_connect(server)
        partial = raw_connect(server)
        with silent, partial:
            partial.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            start = time.monotonic()
            assert_eof(silent)
            assert_eof(partial)
            took = time.monotonic() - start
            assert 0.3 <= took < 3.0, took
        assert_serves(server)


def test_over_max_connections_is_503() -> None:
    handler = EchoHandler()
    with running_server(handler, max_connections=2, handshake_timeout=1.0) as server:
        a, ra = open_raw(server)
        b, rb = open_raw(server)
        with a, b:
            # Answered once the request head is read, not before.
            with raw_connect(server) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                sock.settimeout(0.3)
                with pytest.raises(TimeoutError):
                    sock.recv(4096)
                sock.sendall(b"\r\n")
                resp = read_response(sock)
                assert resp.status == 503
                assert b"too many connections" in resp.body
                assert_eof(sock)
            # A full WebSocket attempt is refused the same way.
            resp = http_exchange(server, upgrade_request())
            assert resp.status == 503
            # One that sends nothing is closed at the handshake timeout.
            with raw_connect(server) as silent:
                assert 0.5 < assert_eof(silent) < 4.0
            # A client library sees the 503, never a dropped connection (an
            # answer sent before the request reached it as one).
            for _ in range(20):
                with pytest.raises(websockets.InvalidStatus) as refused:
                    ws_connect(url(server), open_timeout=TIMEOUT)
                assert refused.value.response.status_code == 503
            echo_raw(a, ra)  # the two admitted are unaffected
            echo_raw(b, rb)
            a.sendall(client_frame(0x8, close_payload(1000)))
            ra.expect_close(1000)
        # One slot is free again once the server has let go of the closed one.
        wait_for(lambda: len(handler.closed) == 2)
        assert_serves(server)


# -- after the handshake: protocol errors are 1002 ------------------------------------

PROTOCOL_ERRORS = {
    "rsv1": raw_frame(0x80 | 0x40 | 0x1, b"hi"),
    "rsv2": raw_frame(0x80 | 0x20 | 0x2, b"hi"),
    "rsv3": raw_frame(0x80 | 0x10 | 0x1, b"hi"),
    "opcode-3": raw_frame(0x80 | 0x3, b"hi"),
    "opcode-0xb": raw_frame(0x80 | 0xB, b"hi"),
    "unmasked": raw_frame(0x80 | 0x1, b"hi", masked=False),
    "continuation-first": raw_frame(0x80 | 0x0, b"hi"),
    "new-message-inside-fragmented": (raw_frame(0x01, b"a") + raw_frame(0x80 | 0x1, b"b")),
    "ping-126": raw_frame(0x80 | 0x9, b"p" * 126),
    "close-126": raw_frame(0x80 | 0x8, close_payload(1000, b"r" * 124)),
    "fragmented-ping": raw_frame(0x09, b"p"),
    "close-code-999": raw_frame(0x88, close_payload(999)),
    "close-code-1004": raw_frame(0x88, close_payload(1004)),
    "close-code-1005": raw_frame(0x88, close_payload(1005)),
    "close-code-1006": raw_frame(0x88, close_payload(1006)),
    "close-code-1015": raw_frame(0x88, close_payload(1015)),
    "close-code-2999": raw_frame(0x88, close_payload(2999)),
    "close-code-5000": raw_frame(0x88, close_payload(5000)),
    "close-1-byte": raw_frame(0x88, b"\x03"),
    "length-126-for-small": bytes([0x82, 0x80 | 126]) + struct.pack("!H", 5) + b"abcd"
    + b"\x00" * 5,
    # RFC 6455 5.2: the 64-bit length's most significant bit MUST be 0.
    "length-2**63": bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"abcd",
}


@pytest.mark.parametrize("name", sorted(PROTOCOL_ERRORS))
@pytest.mark.parametrize("app", ["c-echo", "python"])
def test_protocol_error_is_1002(name: str, app: str) -> None:
    handler = EchoHandler() if app == "python" else None
    with running_server(handler) as server:
        sock, reader = open_raw(server)
        with sock:
            echo_raw(sock, reader)  # a good message first: the error is mid-stream
            sock.sendall(PROTOCOL_ERRORS[name])
            reader.expect_close(1002)
        if handler is not None:
            wait_for(lambda: handler.close_codes() == [1002])
        assert_serves(server)


def test_control_frames_interleaved_in_a_fragmented_message_are_fine(echo_server) -> None:
    sock, reader = open_raw(echo_server)
    with sock:
        sock.sendall(client_frame(0x1, b"hel", fin=False) + client_frame(0x9, b"p")
                     + client_frame(0x0, b"lo", fin=False) + client_frame(0xA, b"")
                     + client_frame(0x0, b"!"))
        pong = reader.next()
        assert (pong.opcode, pong.payload) == (0xA, b"p")
        msg = reader.next()
        assert (msg.opcode, msg.payload) == (0x1, b"hello!")


# -- invalid UTF-8 is 1007 ----------------------------------------------------------------

UTF8_ERRORS = {
    "single-frame": client_frame(0x1, b"ok \xff"),
    "overlong": client_frame(0x1, b"\xc0\xaf"),
    "surrogate": client_frame(0x1, b"\xed\xa0\x80"),
    "split-across-fragments": client_frame(0x1, b"caf\xe2\x82", fin=False)
    + client_frame(0x0, b"\x28"),
    "ends-inside-sequence": client_frame(0x1, b"abc\xe2\x82", fin=False)
    + client_frame(0x0, b""),
    "close-reason": client_frame(0x8, close_payload(1000, b"bye \xff")),
}


@pytest.mark.parametrize("name", sorted(UTF8_ERRORS))
@pytest.mark.parametrize("app", ["c-echo", "python"])
def test_invalid_utf8_is_1007(name: str, app: str) -> None:
    handler = EchoHandler() if app == "python" else None
    with running_server(handler) as server:
        sock, reader = open_raw(server)
        with sock:
            sock.sendall(UTF8_ERRORS[name])
            reader.expect_close(1007)
        assert_serves(server)


def test_utf8_fails_fast_before_the_message_ends(echo_server) -> None:
    """The first fragment is already invalid: 1007 without waiting for the rest."""
    sock, reader = open_raw(echo_server)
    with sock:
        sock.sendall(client_frame(0x1, b"\xff", fin=False))
        reader.expect_close(1007)


def test_valid_utf8_split_inside_a_character(echo_server) -> None:
    sock, reader = open_raw(echo_server)
    with sock:
        text = "€ and 😀".encode()
        sock.sendall(client_frame(0x1, text[:1], fin=False) + client_frame(0x0, text[1:5],
                                                                           fin=False)
                     + client_frame(0x0, text[5:]))
        frame = reader.next()
        assert (frame.opcode, frame.payload) == (0x1, text)


# -- size limits are 1009 ---------------------------------------------------------------


def test_message_over_max_message_size_is_1009() -> None:
    with running_server(max_message_size=1000) as server:
        sock, reader = open_raw(server)
        with sock:
            echo_raw(sock, reader, b"x" * 1000)  # exactly the limit passes
            sock.sendall(client_frame(0x2, b"x" * 1001))
            reader.expect_close(1009)
        assert_serves(server)


def test_fragments_adding_up_over_the_limit_are_1009() -> None:
    with running_server(EchoHandler(), max_message_size=1000) as server:
        sock, reader = open_raw(server)
        with sock:
            sock.sendall(client_frame(0x2, b"x" * 600, fin=False)
                         + client_frame(0x0, b"x" * 600))
            reader.expect_close(1009)
        assert_serves(server)


def test_frame_header_claiming_more_than_the_max_is_1009_at_once() -> None:
    """Only the header is sent: the server must not wait for the payload."""
    with running_server(max_message_size=1 << 20) as server:
        sock, reader = open_raw(server)
        with sock:
            sock.sendall(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", (1 << 20) + 1) + b"abcd")
            reader.expect_close(1009)
        assert_serves(server)


def test_largest_length_field_is_1009(echo_server) -> None:
    """2**63 - 1, the largest legal length field, with the default 16 MiB limit."""
    sock, reader = open_raw(echo_server)
    with sock:
        sock.sendall(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", (1 << 63) - 1) + b"abcd")
        reader.expect_close(1009)
    assert_serves(echo_server)


def test_fragment_flood_is_1009() -> None:
    with running_server(max_fragments=100) as server:
        sock, reader = open_raw(server)
        with sock:
            flood = client_frame(0x2, b"", fin=False) + client_frame(0x0, b"", fin=False) * 200
            try:
                sock.sendall(flood)
            except (BrokenPipeError, ConnectionResetError):
                pass
            reader.expect_close(1009)
        assert_serves(server)


# -- handler failures -------------------------------------------------------------------


class FailingHandler(EchoHandler):
    def on_connect(self, request):  # type: ignore[no-untyped-def]
        if request.path == "/boom":
            raise RuntimeError("on_connect exploded")
        if request.path == "/forbidden":
            return Response(403, "no")
        return None

    def on_message(self, ws, message):  # type: ignore[no-untyped-def]
        if message == "boom":
            raise RuntimeError("on_message exploded")
        ws.send(message)


def test_on_message_raising_closes_that_connection_1011(caplog) -> None:
    handler = FailingHandler()
    with running_server(handler) as server:
        with ws_connect(url(server, "/other"), open_timeout=TIMEOUT) as other, \
                ws_connect(url(server, "/victim"), open_timeout=TIMEOUT) as victim:
            other.send("before")
            assert other.recv(timeout=TIMEOUT) == "before"
            victim.send("boom")
            with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
                victim.recv(timeout=TIMEOUT)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011
            other.send("after")
            assert other.recv(timeout=TIMEOUT) == "after"
        wait_for(lambda: ("/victim", 1011) in [(p, c) for p, c, _ in handler.closed])
        assert "on_message raised" in caplog.text
        assert "on_message exploded" in caplog.text  # the traceback is logged
        assert_serves(server)


def test_on_message_raising_raw_client_sees_1011() -> None:
    with running_server(FailingHandler()) as server:
        sock, reader = open_raw(server)
        with sock:
            echo_raw(sock, reader, b"fine", opcode=0x1)
            sock.sendall(client_frame(0x1, b"boom"))
            frame = reader.next()
            assert frame.opcode == 0x8
            assert struct.unpack("!H", frame.payload[:2])[0] == 1011
            sock.sendall(client_frame(0x8, close_payload(1011)))
            assert_eof(sock)
        assert_serves(server)


def test_on_connect_raising_is_500(caplog) -> None:
    with running_server(FailingHandler()) as server:
        resp = http_exchange(server, upgrade_request("/boom"))
        assert resp.status == 500
        assert "on_connect exploded" in caplog.text
        assert_serves(server)


def test_on_connect_response_403() -> None:
    with running_server(FailingHandler()) as server:
        resp = http_exchange(server, upgrade_request("/forbidden"))
        assert resp.status == 403
        assert resp.body == b"no\n"
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            ws_connect(url(server, "/forbidden"), open_timeout=TIMEOUT)
        assert info.value.response.status_code == 403
        assert_serves(server)


class Deciding(EchoHandler):
    def on_connect(self, request):  # type: ignore[no-untyped-def]
        if request.path == "/big":
            return Accept(headers=[(f"X-Big-{i}", "v" * 100) for i in range(30)])
        if request.path == "/redirect":
            return Response(302, "", [("Location", "/elsewhere")])
        if request.path == "/auth":
            return Response(401, "r" * 5000, [("WWW-Authenticate", "Basic")])
        if request.path == "/bad-header":
            return Response(400, "x", [("X-Evil", "a\r\nSet-Cookie: y")])
        return None


def test_on_connect_decisions_with_headers() -> None:
    with running_server(Deciding()) as server:
        with raw_connect(server) as sock:  # a 101 larger than the stack buffer
            sock.sendall(upgrade_request("/big"))
            resp = read_response(sock)
            assert resp.status == 101
            assert [resp.headers[f"x-big-{i}"] for i in range(30)] == ["v" * 100] * 30
            reader = FrameReader(sock, resp.rest)
            echo_raw(sock, reader)
        resp = http_exchange(server, upgrade_request("/redirect"))
        assert (resp.status, resp.headers["location"]) == (302, "/elsewhere")
        resp = http_exchange(server, upgrade_request("/auth"))
        assert (resp.status, resp.headers["www-authenticate"]) == (401, "Basic")
        assert resp.body == b"r" * 5000 + b"\n"
        # Header injection is refused: 500, and no injected header.
        resp = http_exchange(server, upgrade_request("/bad-header"))
        assert resp.status == 500 and "set-cookie" not in resp.headers
        assert_serves(server)


# -- pipelining -------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["c-echo", "python"])
def test_first_frame_pipelined_with_the_handshake(app: str) -> None:
    with running_server(EchoHandler() if app == "python" else None) as server:
        with raw_connect(server) as sock:
            sock.sendall(upgrade_request() + client_frame(0x1, b"first")
                         + client_frame(0x2, b"second"))
            resp = read_response(sock)
            assert resp.status == 101
            reader = FrameReader(sock, resp.rest)
            one, two = reader.next(), reader.next()
            assert (one.opcode, one.payload) == (0x1, b"first")
            assert (two.opcode, two.payload) == (0x2, b"second")
        assert_serves(server)


# -- peers too slow to read ---------------------------------------------------------------


class FloodHandler(EchoHandler):
    """Sends `total` bytes in 64 KiB messages from on_open to /flood clients."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total
        self.drains = 0
        self.buffered_after_open = -1
        self.send_errors = 0
        self.flood_ws = None
        self.flood_closed = threading.Event()
        self.flood_sent = threading.Event()  # on_open's sending loop is over

    def on_open(self, ws) -> None:  # type: ignore[no-untyped-def]
        super().on_open(ws)
        if ws.path != "/flood":
            return
        self.flood_ws = ws
        chunk = b"z" * 65536
        for _ in range(self.total // len(chunk)):
            try:
                ws.send(chunk)
            except Exception:
                self.send_errors += 1
        self.buffered_after_open = ws.buffered_amount
        self.flood_sent.set()

    def on_drain(self, ws) -> None:  # type: ignore[no-untyped-def]
        self.drains += 1

    def on_close(self, ws, code, reason) -> None:  # type: ignore[no-untyped-def]
        super().on_close(ws, code, reason)
        if ws.path == "/flood":
            self.flood_closed.set()


def test_slow_reader_hits_high_water_and_drain_fires_only_after_reading() -> None:
    handler = FloodHandler(4 << 20)
    with running_server(handler, write_high_water=64 * 1024) as server:
        sock, reader = open_raw(server, "/flood", rcvbuf=4096)
        with sock:
            wait_for(lambda: handler.buffered_after_open >= 0)
            assert handler.buffered_after_open > 64 * 1024
            time.sleep(0.3)  # let anything the kernel can take go
            assert handler.drains == 0
            assert on_loop(server, lambda: handler.flood_ws.buffered_amount) > 0
            # Other clients are served meanwhile.
            assert_serves(server)
            assert handler.drains == 0
            # Now read everything: the buffer empties and on_drain fires.
            got = 0
            deadline = time.monotonic() + 20
            while got < 4 << 20 and time.monotonic() < deadline:
                frame = reader.next()
                assert frame.opcode == 0x2
                got += len(frame.payload)
            assert got == 4 << 20
            wait_for(lambda: handler.drains >= 1)
            assert on_loop(server, lambda: handler.flood_ws.buffered_amount) == 0
            assert not handler.flood_closed.is_set()
            assert handler.send_errors == 0


def test_slow_reader_over_write_limit_is_dropped_1006() -> None:
    handler = FloodHandler(16 << 20)
    with running_server(handler, write_high_water=64 * 1024, write_limit=512 * 1024) as server:
        sock, _reader = open_raw(server, "/flood", rcvbuf=4096)
        with sock:
            assert handler.flood_closed.wait(TIMEOUT)
            assert handler.flood_sent.wait(TIMEOUT)
            codes = [c for p, c, _ in handler.closed if p == "/flood"]
            assert codes == [1006]
            assert handler.send_errors > 0  # later sends saw the closed connection
            assert handler.flood_ws.closed
            assert_eof(sock, allow_data=True, timeout=10)
        assert_serves(server)


def test_c_echo_stops_reading_a_peer_that_does_not_read(echo_server) -> None:
    """The built-in echo pauses a peer that floods it without reading the echoes;
    the server stays responsive and the peer gets everything once it reads."""
    sock, reader = open_raw(echo_server, rcvbuf=4096)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        frame = client_frame(0x2, b"q" * 60000)
        sent = 0
        sock.settimeout(0.5)
        for _ in range(2000):  # until the server stops taking bytes
            try:
                sock.sendall(frame)
            except TimeoutError:
                break
            sent += 1
        else:
            raise AssertionError("the echo server never pushed back")
        assert_serves(echo_server)
        got = 0
        sock.settimeout(TIMEOUT)
        for _ in range(sent):
            got += len(reader.next().payload)
        assert got >= (sent - 1) * 60000
