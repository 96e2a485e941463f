"""RFC 6455 4.2: the server's side of the opening handshake.

4.2.1 lists what a client's handshake is (an HTTP/1.1 or later GET with Host,
an Upgrade field containing "websocket", a Connection field containing the
"Upgrade" token, a Sec-WebSocket-Key that decodes to 16 bytes, and
Sec-WebSocket-Version 13); a request that does not match MUST be refused with
an HTTP error (such as 400). 4.2.2 lists the 101 response: Upgrade,
Connection, and Sec-WebSocket-Accept = base64(SHA-1(key + GUID)); no
Sec-WebSocket-Protocol unless the server chose one of the client's, no
extension the client did not offer. 4.4: an unsupported version is answered
with an error that carries Sec-WebSocket-Version.
"""

from __future__ import annotations

import base64

import pytest
from client import (
    BINARY,
    TEXT,
    Client,
    EchoHandler,
    Target,
    expected_accept,
    raw_frame,
    running_server,
)

import wsuv

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the example nonce of RFC 6455 1.3 and 4.2.2


def test_rfc_example_accept_value(server):
    """1.3 / 4.2.2: the example key yields s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    assert expected_accept(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    with Client(server.port) as c:
        c.sock.sendall(c.request(key=KEY))
        resp = c.read_response()
        assert resp.status == 101
        assert resp.get_all("sec-websocket-accept") == ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
        assert resp.get("upgrade").lower() == "websocket"
        assert "upgrade" in resp.get("connection").lower()


def test_accept_then_messages_flow(server):
    with server.connect() as c:
        c.echo(TEXT, b"Hello")
        c.echo(BINARY, b"\x01\x02")
        c.close_handshake()


@pytest.mark.parametrize("headers", [
    # 4.2.1 / RFC 7230: field names are case-insensitive, so is "websocket",
    # and Connection is a token list.
    [("host", "127.0.0.1"), ("upgrade", "websocket"), ("connection", "Upgrade"),
     ("sec-websocket-key", "{key}"), ("sec-websocket-version", "13")],
    [("HOST", "127.0.0.1"), ("UPGRADE", "WebSocket"), ("CONNECTION", "keep-alive, upgrade"),
     ("SEC-WEBSOCKET-KEY", "{key}"), ("SEC-WEBSOCKET-VERSION", "13")],
    [("Host", "127.0.0.1:80"), ("Upgrade", "WEBSOCKET"), ("Connection", "Upgrade, Keep-Alive"),
     ("Sec-WebSocket-Key", "{key}"), ("Sec-WebSocket-Version", "13"),
     ("Origin", "http://example.com"), ("User-Agent", "rfc6455-conformance")],
    [("Host", "127.0.0.1"), ("Upgrade", "foo/1, websocket"),
     ("Connection", "keep-alive,Upgrade"), ("Sec-WebSocket-Key", " {key} "),
     ("Sec-WebSocket-Version", "13")],
], ids=["lower", "upper", "extra-fields", "lists-and-whitespace"])
def test_accepts_any_valid_spelling(server, headers):
    with Client(server.port) as c:
        key = base64.b64encode(bytes(range(16))).decode()
        fields = [(n, v.format(key=key)) for n, v in headers]
        c.key = key
        c.sock.sendall(c.request(headers=fields, default_headers=False, key=key))
        resp = c.read_response()
        assert resp.status == 101, (resp.status, resp.body)
        assert resp.get_all("sec-websocket-accept") == [expected_accept(key)]
        if c.buf:
            c.frames.extend(c.parser.feed(c.buf))
        c.echo(TEXT, b"ok")
        c.close_handshake()


def test_request_target_with_query(server):
    """4.1: the resource name is path plus query."""
    with server.connect(path="/chat/room?x=1&y=%20") as c:
        c.echo(TEXT, b"q")
        c.close_handshake()


def test_handshake_arriving_byte_by_byte(server):
    """The request may reach the server in any number of TCP segments."""
    with Client(server.port) as c:
        c.send(c.request(), chop=1)
        resp = c.read_response()
        assert resp.status == 101
        assert resp.get_all("sec-websocket-accept") == [expected_accept(c.key)]
        c.echo(TEXT, b"split")
        c.close_handshake()


def _key(n: int) -> str:
    return base64.b64encode(bytes(range(n))).decode()


GOOD = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": _key(16), "Sec-WebSocket-Version": "13"}


def _fields(**changes: str | None) -> list[tuple[str, str]]:
    out = dict(GOOD)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            del out[name]
        else:
            out[name] = value
    return list(out.items())


BAD_REQUESTS = {
    # 4.2.1 item 1: an HTTP/1.1 or higher GET request
    "post": ("POST", "HTTP/1.1", _fields()),
    "put": ("PUT", "HTTP/1.1", _fields()),
    "http-1.0": ("GET", "HTTP/1.0", _fields()),
    # item 2: a Host header field
    "no-host": ("GET", "HTTP/1.1", _fields(Host=None)),
    # item 3: an Upgrade header field containing "websocket"
    "upgrade-h2c": ("GET", "HTTP/1.1", _fields(Upgrade="h2c")),
    "upgrade-websockets": ("GET", "HTTP/1.1", _fields(Upgrade="websockets")),
    # item 4: a Connection header field that includes the token "Upgrade"
    "no-connection": ("GET", "HTTP/1.1", _fields(Connection=None)),
    "connection-keep-alive": ("GET", "HTTP/1.1", _fields(Connection="keep-alive")),
    "connection-not-a-token": ("GET", "HTTP/1.1", _fields(Connection="upgraded")),
    # item 5: a Sec-WebSocket-Key that, base64-decoded, is 16 bytes long
    "no-key": ("GET", "HTTP/1.1", _fields(**{"Sec-WebSocket-Key": None})),
    "key-15-bytes": ("GET", "HTTP/1.1", _fields(**{"Sec-WebSocket-Key": _key(15)})),
    "key-17-bytes": ("GET", "HTTP/1.1", _fields(**{"Sec-WebSocket-Key": _key(17)})),
    "key-not-base64": ("GET", "HTTP/1.1", _fields(**{"Sec-WebSocket-Key": "!" * 24})),
    "key-empty": ("GET", "HTTP/1.1", _fields(**{"Sec-WebSocket-Key": ""})),
    # 11.3.1: Sec-WebSocket-Key MUST NOT appear more than once
    "key-twice": ("GET", "HTTP/1.1",
                  _fields() + [("Sec-WebSocket-Key", _key(16).replace("A", "B"))]),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_refuses_request_that_is_not_a_handshake(server, name):
    """4.2.1: such a request MUST get an HTTP error, never a 101."""
    method, version, fields = BAD_REQUESTS[name]
    with Client(server.port) as c:
        c.sock.sendall(c.request(method=method, version=version, headers=fields,
                                 default_headers=False))
        resp = c.read_response()
        assert 400 <= resp.status <= 599, (resp.status, resp.headers)
        assert resp.get("sec-websocket-accept") is None
    server.assert_serves()


@pytest.mark.parametrize("version", [None, "8", "12", "14", "0", "13, 8", "abc"])
def test_unsupported_version(server, version):
    """4.2.1 item 6 and 4.4: an error naming the version we speak (13)."""
    with Client(server.port) as c:
        fields = _fields(**{"Sec-WebSocket-Version": version})
        c.sock.sendall(c.request(headers=fields, default_headers=False))
        resp = c.read_response()
        assert 400 <= resp.status <= 499, resp.status
        assert resp.get("sec-websocket-accept") is None
        versions = [v.strip() for v in (resp.get("sec-websocket-version") or "").split(",")]
        assert "13" in versions, resp.headers
    server.assert_serves()


def test_no_subprotocol_unless_chosen(server):
    """4.2.2 step 5.4 / 4.2.2 /subprotocol/: an echo picks none, so the field
    MUST NOT appear (a client MUST fail a 101 naming one it did not offer)."""
    with server.connect(headers=[("Sec-WebSocket-Protocol", "chat, superchat")]) as c:
        assert c.response.get("sec-websocket-protocol") is None
        c.echo(TEXT, b"x")
        c.close_handshake()


def test_chosen_subprotocol_is_one_offered():
    """4.2.2: the server selects one of the client's values and returns it alone."""

    class Pick(wsuv.Handler):
        def on_connect(self, request):
            return wsuv.Accept(subprotocol="superchat")

        def on_message(self, ws, message):
            ws.send(message)

    with running_server(Pick()) as srv, Client(srv.port) as c:
        c.handshake(headers=[("Sec-WebSocket-Protocol", "chat, superchat")])
        assert c.response.get_all("sec-websocket-protocol") == ["superchat"]
        c.echo(TEXT, b"sub")
        c.close_handshake()


def test_offered_deflate_is_accepted(server):
    """9.1 / RFC 7692: the server accepts permessage-deflate (what Chrome offers)
    and then a compressed (RSV1) frame is a message."""
    ext = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    with server.connect(headers=ext) as c:
        assert c.response.get("sec-websocket-extensions") == (
            "permessage-deflate; client_max_window_bits=14")
        c.echo(TEXT, b"plain")
        c.send(raw_frame(TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=1))  # "Hello"
        assert c.recv_message() == (TEXT, b"Hello")
        c.close_handshake()
    server.assert_serves()


@pytest.mark.parametrize("kind", ["c-echo", "py-echo"])
def test_offered_extension_not_accepted_without_compression(kind):
    """9.1: with compression off the server accepts no extension, and then an
    RSV1 frame (what permessage-deflate would send) is a protocol error (5.2)."""
    handler = None if kind == "c-echo" else EchoHandler()
    with running_server(handler, compression=None) as srv:
        server = Target(srv, kind, handler)
        ext = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
        with server.connect(headers=ext) as c:
            assert c.response.get("sec-websocket-extensions") is None
            c.echo(TEXT, b"plain")
            c.send(raw_frame(TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=1))
            c.expect_close(1002)
        server.assert_serves()


def test_server_speaks_only_after_101(server):
    """After a 101 the server sends nothing on its own before the client does."""
    with server.connect() as c:
        c.expect_silence()
        c.close_handshake()


def test_application_refusal_is_an_http_error():
    """4.2.2: a server that does not accept the connection answers with an
    HTTP error (here the application's 403), never a 101."""

    class Refuse(wsuv.Handler):
        def on_connect(self, request):
            return wsuv.Response(403, "not you")

    with running_server(Refuse()) as srv, Client(srv.port) as c:
        c.sock.sendall(c.request())
        resp = c.read_response()
        assert resp.status == 403
        assert resp.get("sec-websocket-accept") is None
