"""csrc/clienths.c: the client's opening handshake (RFC 6455 4.1), through wsuv._core.

No sockets: the request comes out of a buffer, response bytes go in, a
status and accessors come out. Every ws_client_hs_new() is paired with
ws_client_hs_free() through `client()`. The request is checked against
http-parser's twin on the server side (csrc/handshake.c) and against h11 and
wsproto, which also produce responses for the client to judge.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
import wsproto
import wsproto.events as wse
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.extensions import PerMessageDeflate

from wsuv._core import ffi, lib

NEED_MORE, OPEN, REFUSED, INVALID = (
    lib.WS_CLIENT_HS_NEED_MORE, lib.WS_CLIENT_HS_OPEN, lib.WS_CLIENT_HS_REFUSED,
    lib.WS_CLIENT_HS_INVALID,
)

NONCE = b"the sample nonce"  # RFC 6455 1.3: its base64 and accept are below
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# An unmasked text frame "Hi" and a ping: what a server may send right after its 101.
FRAMES = b"\x81\x02Hi\x89\x00"


def accept_for(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


# ---- building requests ---------------------------------------------------------


@dataclass
class Opts:
    """ws_client_hs_options in Python; `cdata()` keeps every buffer alive."""

    host: bytes = b"server.example.com"
    port: int = 0
    secure: bool = False
    target: bytes = b"/chat"
    origin: bytes | None = None
    subprotocols: Sequence[bytes] = ()
    extensions: bytes | None = None
    headers: Sequence[tuple[bytes, bytes]] = ()
    _keep: list[Any] = field(default_factory=list, repr=False)

    def _buf(self, b: bytes) -> Any:
        p = ffi.new("char[]", b)
        self._keep.append(p)
        return p

    def cdata(self) -> Any:
        o = ffi.new("ws_client_hs_options *")
        self._keep.append(o)
        o.host, o.host_len = self._buf(self.host), len(self.host)
        o.port = self.port
        o.secure = int(self.secure)
        o.target, o.target_len = self._buf(self.target), len(self.target)
        if self.origin is not None:
            o.origin, o.origin_len = self._buf(self.origin), len(self.origin)
        if self.subprotocols:
            arr = ffi.new("ws_client_hs_str[]", len(self.subprotocols))
            self._keep.append(arr)
            for i, s in enumerate(self.subprotocols):
                arr[i].ptr, arr[i].len = self._buf(s), len(s)
            o.subprotocols, o.subprotocol_count = arr, len(self.subprotocols)
        if self.extensions is not None:
            o.extensions, o.extensions_len = self._buf(self.extensions), len(self.extensions)
        if self.headers:
            arr = ffi.new("ws_client_hs_field[]", len(self.headers))
            self._keep.append(arr)
            for i, (name, value) in enumerate(self.headers):
                arr[i].name, arr[i].name_len = self._buf(name), len(name)
                arr[i].value, arr[i].value_len = self._buf(value), len(value)
            o.headers, o.header_count = arr, len(self.headers)
        return o


@contextmanager
def client(limits: Any = None) -> Iterator[Any]:
    hs = lib.ws_client_hs_new(limits if limits is not None else ffi.NULL)
    assert hs != ffi.NULL
    try:
        yield hs
    finally:
        lib.ws_client_hs_free(hs)


def make_limits(headers: int = 0, header_bytes: int = 0, body: int = 0) -> Any:
    lim = ffi.new("ws_client_hs_limits *")
    lib.ws_client_hs_limits_default(lim)
    if headers:
        lim.max_headers = headers
    if header_bytes:
        lim.max_header_bytes = header_bytes
    if body:
        lim.max_body = body
    return lim


def build(hs: Any, opts: Opts, nonce: bytes = NONCE, cap: int = 4096) -> int | bytes:
    """The request bytes, or the negative error code."""
    out = ffi.new("char[]", max(cap, 1))
    n = lib.ws_client_hs_request(hs, opts.cdata(), nonce, out, cap)
    return n if n < 0 else bytes(ffi.buffer(out, n))


def request_of(opts: Opts, nonce: bytes = NONCE) -> bytes:
    with client() as hs:
        req = build(hs, opts, nonce)
        assert isinstance(req, bytes), ffi.string(lib.ws_client_hs_strerror(req))
        return req


def request_error(opts: Opts) -> int:
    with client() as hs:
        req = build(hs, opts)
        assert isinstance(req, int), req
        assert lib.ws_client_hs_request_size(opts.cdata()) == req
        return req


def head_fields(req: bytes) -> list[tuple[bytes, bytes]]:
    lines = req.split(b"\r\n")
    assert lines[-2:] == [b"", b""]
    fields = []
    for line in lines[1:-2]:
        name, value = line.split(b": ", 1)
        fields.append((name, value))
    return fields


def field_value(req: bytes, name: bytes) -> bytes | None:
    for k, v in head_fields(req):
        if k.lower() == name.lower():
            return v
    return None


# ---- feeding responses --------------------------------------------------------------


def response(
    status: bytes = b"101 Switching Protocols",
    headers: list[tuple[bytes, bytes]] | None = None,
    drop: tuple[bytes, ...] = (),
    extra: list[tuple[bytes, bytes]] | None = None,
    version: bytes = b"HTTP/1.1",
    accept: bytes = ACCEPT,
) -> bytes:
    """A response head; `drop` removes default headers by lower-case name."""
    if headers is None:
        headers = [
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", accept),
        ]
    headers = [h for h in headers if h[0].lower() not in drop] + (extra or [])
    lines = [version + b" " + status] + [k + b": " + v for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


VALID = response()


def execute(hs: Any, data: bytes) -> tuple[int, int]:
    consumed = ffi.new("size_t *", 12345)
    status = lib.ws_client_hs_execute(hs, data, len(data), consumed)
    assert 0 <= consumed[0] <= len(data)
    return status, consumed[0]


def feed(hs: Any, chunks: list[bytes], eof: bool = False) -> tuple[int, int]:
    """Feeds chunks until the result is final; returns (status, total consumed)."""
    total = 0
    status = NEED_MORE
    for chunk in chunks:
        status, used = execute(hs, chunk)
        total += used
        if status != NEED_MORE:
            break
        assert used == len(chunk)  # NEED_MORE takes every byte
    if eof and status == NEED_MORE:
        status = lib.ws_client_hs_eof(hs)
    assert lib.ws_client_hs_status(hs) == status
    return status, total


def _bytes(ptr: Any, n: int) -> bytes | None:
    return None if ptr == ffi.NULL else bytes(ffi.buffer(ptr, n))


def header(hs: Any, name: bytes) -> bytes | None:
    n = ffi.new("size_t *")
    return _bytes(lib.ws_client_hs_header(hs, name, len(name), n), n[0])


def header_all(hs: Any, name: bytes) -> list[bytes]:
    pos = ffi.new("size_t *", 0)
    n = ffi.new("size_t *")
    out = []
    while (p := lib.ws_client_hs_header_next(hs, name, len(name), pos, n)) != ffi.NULL:
        out.append(bytes(ffi.buffer(p, n[0])))
    return out


def snapshot(hs: Any, status: int, consumed: int) -> dict[str, Any]:
    """Everything the API says about a finished response."""
    n = ffi.new("size_t *")
    snap: dict[str, Any] = {
        "status": status,
        "consumed": consumed,
        "fail": lib.ws_client_hs_fail_code(hs),
        "reason": ffi.string(lib.ws_client_hs_fail_reason(hs)),
        "code": lib.ws_client_hs_status_code(hs),
        "version": (lib.ws_client_hs_http_major(hs), lib.ws_client_hs_http_minor(hs)),
        "phrase": _bytes(lib.ws_client_hs_reason(hs, n), n[0]),
        "subprotocol": _bytes(lib.ws_client_hs_subprotocol(hs, n), n[0]),
        "extensions": _bytes(lib.ws_client_hs_extensions(hs, n), n[0]),
        "body": _bytes(lib.ws_client_hs_body(hs, n), n[0]),
        "truncated": lib.ws_client_hs_body_truncated(hs),
    }
    buf = _bytes(lib.ws_client_hs_buffer(hs, n), n[0]) or b""
    spans = lib.ws_client_hs_headers(hs)
    snap["headers"] = [
        (buf[s.name_off : s.name_off + s.name_len], buf[s.value_off : s.value_off + s.value_len])
        for s in (spans[i] for i in range(lib.ws_client_hs_header_count(hs)))
    ]
    return snap


def run(data: bytes | list[bytes], opts: Opts | None = None, limits: Any = None,
        eof: bool = False, nonce: bytes = NONCE) -> dict[str, Any]:
    with client(limits) as hs:
        assert isinstance(build(hs, opts or Opts(), nonce), bytes)
        status, consumed = feed(hs, [data] if isinstance(data, bytes) else data, eof)
        snap = snapshot(hs, status, consumed)
        # A final result is sticky and takes no more bytes.
        if status != NEED_MORE:
            assert execute(hs, FRAMES) == (status, 0)
            assert lib.ws_client_hs_eof(hs) == status
        return snap


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# ---- the request ------------------------------------------------------------------------


def test_default_request_is_exact() -> None:
    assert request_of(Opts()) == (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )


def test_full_request_field_order() -> None:
    req = request_of(Opts(
        origin=b"http://example.com", subprotocols=[b"chat", b"superchat"],
        extensions=b"permessage-deflate; client_max_window_bits",
        headers=[(b"User-Agent", b"wsuv/0.1"), (b"X-Empty", b""), (b"Cookie", b"a=1; b=2")],
    ))
    assert req.startswith(b"GET /chat HTTP/1.1\r\n")
    assert head_fields(req) == [
        (b"Host", b"server.example.com"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", KEY),
        (b"Sec-WebSocket-Version", b"13"),
        (b"Origin", b"http://example.com"),
        (b"Sec-WebSocket-Protocol", b"chat, superchat"),
        (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits"),
        (b"User-Agent", b"wsuv/0.1"),
        (b"X-Empty", b""),
        (b"Cookie", b"a=1; b=2"),
    ]


@pytest.mark.parametrize(
    "host, port, secure, expected",
    [
        (b"example.com", 0, False, b"example.com"),
        (b"example.com", 80, False, b"example.com"),
        (b"example.com", 443, False, b"example.com:443"),
        (b"example.com", 0, True, b"example.com"),
        (b"example.com", 443, True, b"example.com"),
        (b"example.com", 80, True, b"example.com:80"),
        (b"example.com", 8080, False, b"example.com:8080"),
        (b"example.com", 65535, True, b"example.com:65535"),
        (b"127.0.0.1", 9000, False, b"127.0.0.1:9000"),
        (b"xn--bcher-kva.example", 0, False, b"xn--bcher-kva.example"),
        (b"my_host.local", 0, False, b"my_host.local"),
        (b"::1", 0, False, b"[::1]"),
        (b"::1", 8080, False, b"[::1]:8080"),
        (b"[::1]", 8080, False, b"[::1]:8080"),
        (b"2001:db8::1", 443, True, b"[2001:db8::1]"),
        (b"::ffff:192.0.2.1", 0, False, b"[::ffff:192.0.2.1]"),
        (b"fe80::1%eth0", 0, False, b"[fe80::1%25eth0]"),
        (b"[fe80::1%25eth0]", 81, False, b"[fe80::1%25eth0]:81"),
    ],
)
def test_host_forms(host: bytes, port: int, secure: bool, expected: bytes) -> None:
    req = request_of(Opts(host=host, port=port, secure=secure))
    assert field_value(req, b"Host") == expected
    # h11 reads it back as one Host field.
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(req)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    assert [v for k, v in event.headers if k == b"host"] == [expected]


@pytest.mark.parametrize(
    "host",
    [b"", b"exa mple.com", b"a\r\nX-Evil: 1", b"a\nb", b"a\x00b", b"a/b", b"a?b", b"a#b",
     b"user@host", b"a%zz", b"a%4", "bücher.example".encode(), b"[::1", b"::1]", b"[]",
     b"[abc]", b"[::1]:80", b"[fe80::1%eth0]", b"fe80::1%", b"fe80::1%e/th", b"::g"],
)
def test_bad_hosts_are_refused(host: bytes) -> None:
    assert request_error(Opts(host=host)) == lib.WS_CLIENT_HS_E_HOST


@pytest.mark.parametrize(
    "target, expected",
    [(b"", b"/"), (b"/", b"/"), (b"/chat?room=1&x=%20y", b"/chat?room=1&x=%20y"),
     (b"/a/b/c;p=1", b"/a/b/c;p=1"), (b"/~u/a-b_c.d?x=/y?z:@!$&'()*+,;=", None),
     (b"//double", b"//double")],
)
def test_targets(target: bytes, expected: bytes | None) -> None:
    req = request_of(Opts(target=target))
    assert req.startswith(b"GET " + (expected or target) + b" HTTP/1.1\r\n")
    assert h11_request(req).target == (expected or target)


@pytest.mark.parametrize(
    "target",
    [b"chat", b"*", b"http://example.com/", b"/a b", b"/a#frag", b"/a\r\nX: y", b"/a\x00",
     b"/\x7f", "/ü".encode(), b"/\t", b"/%", b"/%2", b"/%zz", b'/"', b"/<a>", b"/a\\b",
     b"/{x}", b"/a|b", b"/a^b", b"/`"],
)
def test_bad_targets_are_refused(target: bytes) -> None:
    assert request_error(Opts(target=target)) == lib.WS_CLIENT_HS_E_TARGET


@pytest.mark.parametrize(
    "opts, code",
    [
        (Opts(origin=b"http://a\r\nX-Evil: 1"), lib.WS_CLIENT_HS_E_ORIGIN),
        (Opts(origin=b"http://a\x00"), lib.WS_CLIENT_HS_E_ORIGIN),
        (Opts(extensions=b"permessage-deflate\r\n"), lib.WS_CLIENT_HS_E_EXTENSIONS),
        (Opts(extensions=b"x\x7f"), lib.WS_CLIENT_HS_E_EXTENSIONS),
        (Opts(subprotocols=[b""]), lib.WS_CLIENT_HS_E_SUBPROTOCOL),
        (Opts(subprotocols=[b"a b"]), lib.WS_CLIENT_HS_E_SUBPROTOCOL),
        (Opts(subprotocols=[b"a,b"]), lib.WS_CLIENT_HS_E_SUBPROTOCOL),
        (Opts(subprotocols=[b"chat\r\nX: 1"]), lib.WS_CLIENT_HS_E_SUBPROTOCOL),
        (Opts(subprotocols=[b"chat", b"v2", b"chat"]), lib.WS_CLIENT_HS_E_SUBPROTOCOL),
        (Opts(subprotocols=["çhat".encode()]), lib.WS_CLIENT_HS_E_SUBPROTOCOL),
        (Opts(subprotocols=[b"a/b"]), lib.WS_CLIENT_HS_E_SUBPROTOCOL),
        (Opts(headers=[(b"", b"v")]), lib.WS_CLIENT_HS_E_HEADER_NAME),
        (Opts(headers=[(b"X Y", b"v")]), lib.WS_CLIENT_HS_E_HEADER_NAME),
        (Opts(headers=[(b"X:", b"v")]), lib.WS_CLIENT_HS_E_HEADER_NAME),
        (Opts(headers=[(b"X\r\nEvil", b"v")]), lib.WS_CLIENT_HS_E_HEADER_NAME),
        (Opts(headers=[(b"X-A", b"v\r\nEvil: 1")]), lib.WS_CLIENT_HS_E_HEADER_VALUE),
        (Opts(headers=[(b"X-A", b"v\nEvil: 1")]), lib.WS_CLIENT_HS_E_HEADER_VALUE),
        (Opts(headers=[(b"X-A", b"v\rx")]), lib.WS_CLIENT_HS_E_HEADER_VALUE),
        (Opts(headers=[(b"X-A", b"v\x00")]), lib.WS_CLIENT_HS_E_HEADER_VALUE),
        (Opts(headers=[(b"X-A", b"\x1b[31m")]), lib.WS_CLIENT_HS_E_HEADER_VALUE),
        (Opts(headers=[(b"X-A", b"ok"), (b"X-B", b"\x7f")]), lib.WS_CLIENT_HS_E_HEADER_VALUE),
        (Opts(origin=b"http://a", headers=[(b"origin", b"http://b")]),
         lib.WS_CLIENT_HS_E_RESERVED_HEADER),
        (Opts(headers=[(b"Host", b"a"), (b"HOST", b"b")]), lib.WS_CLIENT_HS_E_RESERVED_HEADER),
    ],
)
def test_injection_and_bad_values_are_refused(opts: Opts, code: int) -> None:
    assert request_error(opts) == code


@pytest.mark.parametrize(
    "name",
    [b"Upgrade", b"connection", b"Sec-WebSocket-Key", b"SEC-WEBSOCKET-VERSION",
     b"Sec-WebSocket-Protocol", b"Sec-WebSocket-Extensions", b"Sec-WebSocket-Accept",
     b"Content-Length", b"Transfer-Encoding"],
)
def test_reserved_header_names_are_refused(name: bytes) -> None:
    assert request_error(Opts(headers=[(name, b"x")])) == lib.WS_CLIENT_HS_E_RESERVED_HEADER


def test_extra_host_replaces_ours_and_origin_may_be_extra() -> None:
    req = request_of(Opts(host=b"10.0.0.1", port=8080,
                          headers=[(b"host", b"virtual.example"), (b"Origin", b"null")]))
    fields = head_fields(req)
    assert [v for k, v in fields if k.lower() == b"host"] == [b"virtual.example"]
    assert (b"Origin", b"null") in fields
    # The host itself is not needed then (the caller connects to it, we do not send it).
    assert isinstance(build_default(Opts(host=b"", headers=[(b"Host", b"x")])), bytes)


def build_default(opts: Opts) -> int | bytes:
    with client() as hs:
        return build(hs, opts)


def test_values_may_carry_tabs_and_obs_text() -> None:
    req = request_of(Opts(origin=b"http://\xc3\xa9.example", headers=[(b"X-T", b"a\tb \xff")]))
    assert field_value(req, b"Origin") == b"http://\xc3\xa9.example"
    assert field_value(req, b"X-T") == b"a\tb \xff"


def test_empty_origin_and_extensions_are_none() -> None:
    assert request_of(Opts(origin=b"", extensions=b"")) == request_of(Opts())


def test_buffer_size_exact_and_request_size() -> None:
    opts = Opts(origin=b"http://example.com", subprotocols=[b"chat"],
                headers=[(b"X-A", b"b" * 300)])
    full = request_of(opts)
    assert lib.ws_client_hs_request_size(opts.cdata()) == len(full)
    with client() as hs:
        assert build(hs, opts, cap=len(full) - 1) == lib.WS_CLIENT_HS_E_NOSPACE
        assert build(hs, opts, cap=0) == lib.WS_CLIENT_HS_E_NOSPACE
        n = ffi.new("size_t *")
        assert lib.ws_client_hs_key(hs, n) == ffi.NULL  # nothing was recorded
        assert build(hs, opts, cap=len(full)) == full


def test_error_strings() -> None:
    codes = [lib.WS_CLIENT_HS_E_NOSPACE, lib.WS_CLIENT_HS_E_HOST, lib.WS_CLIENT_HS_E_TARGET,
             lib.WS_CLIENT_HS_E_ORIGIN, lib.WS_CLIENT_HS_E_SUBPROTOCOL,
             lib.WS_CLIENT_HS_E_EXTENSIONS, lib.WS_CLIENT_HS_E_HEADER_NAME,
             lib.WS_CLIENT_HS_E_HEADER_VALUE, lib.WS_CLIENT_HS_E_RESERVED_HEADER,
             lib.WS_CLIENT_HS_E_STATE, lib.WS_CLIENT_HS_E_NOMEM]
    texts = [ffi.string(lib.ws_client_hs_strerror(c)) for c in codes]
    assert len(set(texts)) == len(codes)
    assert all(t and b"\n" not in t and t != b"unknown error" for t in texts)
    assert ffi.string(lib.ws_client_hs_strerror(-99)) == b"unknown error"


def test_key_is_base64_of_the_nonce() -> None:
    nonce = bytes(range(16))
    with client() as hs:
        req = build(hs, Opts(), nonce)
        assert isinstance(req, bytes)
        n = ffi.new("size_t *")
        key = _bytes(lib.ws_client_hs_key(hs, n), n[0])
        assert key == base64.b64encode(nonce) == field_value(req, b"Sec-WebSocket-Key")


def test_rebuilding_replaces_the_key_and_offers_until_the_response_starts() -> None:
    other = bytes(range(16))
    with client() as hs:
        assert isinstance(build(hs, Opts(subprotocols=[b"a"])), bytes)
        assert isinstance(build(hs, Opts(subprotocols=[b"b"]), other), bytes)
        # A failed build keeps the last good one.
        assert build(hs, Opts(host=b""), NONCE) == lib.WS_CLIENT_HS_E_HOST
        resp = response(accept=accept_for(base64.b64encode(other)),
                        extra=[(b"Sec-WebSocket-Protocol", b"b")])
        assert feed(hs, [resp[:10]]) == (NEED_MORE, 10)
        assert build(hs, Opts()) == lib.WS_CLIENT_HS_E_STATE
        assert feed(hs, [resp[10:]]) == (OPEN, len(resp) - 10)
        assert snapshot(hs, OPEN, 0)["subprotocol"] == b"b"


def test_response_before_request_is_invalid() -> None:
    with client() as hs:
        assert execute(hs, VALID) == (INVALID, 0)
        assert lib.ws_client_hs_fail_code(hs) == lib.WS_CLIENT_HS_FAIL_NO_REQUEST


# ---- valid responses --------------------------------------------------------------------


def test_valid_101_accessors() -> None:
    snap = run(VALID)
    assert snap == {
        "status": OPEN, "consumed": len(VALID), "fail": 0, "reason": b"", "code": 101,
        "version": (1, 1), "phrase": b"Switching Protocols", "subprotocol": None,
        "extensions": None, "body": None, "truncated": 0,
        "headers": [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                    (b"Sec-WebSocket-Accept", ACCEPT)],
    }


@pytest.mark.parametrize(
    "headers",
    [
        [(b"upgrade", b"WebSocket"), (b"connection", b"keep-alive, Upgrade"),
         (b"sec-websocket-accept", ACCEPT)],
        [(b"UPGRADE", b" websocket\t"), (b"CONNECTION", b"UPGRADE"),
         (b"SEC-WEBSOCKET-ACCEPT", b"  " + ACCEPT + b" ")],
        [(b"Upgrade", b"websocket,"), (b"Connection", b"close"), (b"Connection", b"upgrade"),
         (b"Sec-WebSocket-Accept", ACCEPT), (b"Server", b"x"), (b"Date", b"today")],
        [(b"Upgrade", b""), (b"Upgrade", b"websocket"), (b"Connection", b",Upgrade,"),
         (b"Sec-WebSocket-Accept", ACCEPT), (b"Content-Length", b"5")],
    ],
)
def test_valid_101_variants(headers: list[tuple[bytes, bytes]]) -> None:
    data = response(headers=headers)
    for chunks in ([data + FRAMES], bytewise(data) + [FRAMES]):
        snap = run(chunks)
        assert (snap["status"], snap["consumed"]) == (OPEN, len(data)), snap["reason"]


def test_lf_only_and_no_reason_phrase() -> None:
    data = b"HTTP/1.1 101\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Accept: " \
        + ACCEPT + b"\n\n"
    snap = run(data + FRAMES)
    assert (snap["status"], snap["consumed"], snap["phrase"]) == (OPEN, len(data), b"")


def test_subprotocol_chosen() -> None:
    opts = Opts(subprotocols=[b"chat", b"superchat"])
    snap = run(response(extra=[(b"Sec-WebSocket-Protocol", b"superchat")]), opts)
    assert (snap["status"], snap["subprotocol"]) == (OPEN, b"superchat")
    snap = run(response(extra=[(b"Sec-WebSocket-Protocol", b" chat ")]), opts)
    assert (snap["status"], snap["subprotocol"]) == (OPEN, b"chat")
    # Offered but none chosen: open, no subprotocol (the caller decides if that is fine).
    snap = run(VALID, opts)
    assert (snap["status"], snap["subprotocol"]) == (OPEN, None)


def test_extensions_value_is_handed_over_raw() -> None:
    opts = Opts(extensions=b"permessage-deflate; client_max_window_bits")
    value = b"permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
    snap = run(response(extra=[(b"Sec-WebSocket-Extensions", value)]), opts)
    assert (snap["status"], snap["extensions"]) == (OPEN, value)
    # Repeated fields are one list.
    two = response(extra=[(b"Sec-WebSocket-Extensions", b"a; x=1"), (b"X", b"y"),
                          (b"sec-websocket-extensions", b"b")])
    for chunks in ([two], bytewise(two)):
        snap = run(chunks, opts)
        assert (snap["status"], snap["extensions"]) == (OPEN, b"a; x=1, b")
        assert (b"X", b"y") in snap["headers"]
    # Offered, none accepted.
    assert run(VALID, opts)["extensions"] is None


def test_header_lookup_first_and_all() -> None:
    data = response(extra=[(b"Set-Cookie", b"a=1"), (b"X", b"1"), (b"set-cookie", b"b=2"),
                           (b"SET-COOKIE", b"")])
    with client() as hs:
        assert isinstance(build(hs, Opts()), bytes)
        assert feed(hs, [data])[0] == OPEN
        assert header(hs, b"Set-Cookie") == b"a=1"
        assert header_all(hs, b"set-cookie") == [b"a=1", b"b=2", b""]
        assert header_all(hs, b"Absent") == []
        assert header(hs, b"Set-Cooki") is None
        assert header(hs, b"upgrade") == b"websocket"


def test_accessors_before_completion() -> None:
    with client() as hs:
        assert isinstance(build(hs, Opts(subprotocols=[b"chat"])), bytes)
        assert execute(hs, VALID[:30]) == (NEED_MORE, 30)
        snap = snapshot(hs, NEED_MORE, 0)
        assert snap["code"] == 0 and snap["phrase"] is None and snap["headers"] == []
        assert snap["body"] is None and snap["subprotocol"] is None and snap["fail"] == 0
        assert header(hs, b"Upgrade") is None


# ---- invalid responses: one reason per check ----------------------------------------------


def refusal_head(status: bytes) -> bytes:
    return response(status=status, headers=[(b"Content-Length", b"0")])


F = lib
INVALID_CASES: list[tuple[str, bytes, Opts, int, bytes]] = [
    ("http10", response(version=b"HTTP/1.0"), Opts(), F.WS_CLIENT_HS_FAIL_VERSION, b"HTTP/1.1"),
    ("no upgrade", response(drop=(b"upgrade",)), Opts(), F.WS_CLIENT_HS_FAIL_UPGRADE,
     b"Upgrade"),
    ("upgrade h2c", response(drop=(b"upgrade",), extra=[(b"Upgrade", b"h2c")]), Opts(),
     F.WS_CLIENT_HS_FAIL_UPGRADE, b"Upgrade"),
    ("upgrade websockets", response(drop=(b"upgrade",), extra=[(b"Upgrade", b"websockets")]),
     Opts(), F.WS_CLIENT_HS_FAIL_UPGRADE, b"Upgrade"),
    ("upgrade two protocols", response(drop=(b"upgrade",),
                                       extra=[(b"Upgrade", b"websocket, h2c")]),
     Opts(), F.WS_CLIENT_HS_FAIL_UPGRADE, b"Upgrade"),
    ("upgrade repeated", response(extra=[(b"Upgrade", b"websocket")]), Opts(),
     F.WS_CLIENT_HS_FAIL_UPGRADE, b"Upgrade"),
    ("no connection", response(drop=(b"connection",)), Opts(), F.WS_CLIENT_HS_FAIL_CONNECTION,
     b"Connection"),
    ("connection close", response(drop=(b"connection",), extra=[(b"Connection", b"close")]),
     Opts(), F.WS_CLIENT_HS_FAIL_CONNECTION, b"Connection"),
    ("connection upgrades", response(drop=(b"connection",),
                                     extra=[(b"Connection", b"upgrades")]),
     Opts(), F.WS_CLIENT_HS_FAIL_CONNECTION, b"Connection"),
    ("no accept", response(drop=(b"sec-websocket-accept",)), Opts(),
     F.WS_CLIENT_HS_FAIL_ACCEPT_MISSING, b"missing Sec-WebSocket-Accept"),
    ("accept twice", response(extra=[(b"Sec-WebSocket-Accept", ACCEPT)]), Opts(),
     F.WS_CLIENT_HS_FAIL_ACCEPT_REPEATED, b"duplicate Sec-WebSocket-Accept"),
    ("accept of another key", response(accept=accept_for(b"x3JJHMbDL1EzLkh9GBhXDw==")), Opts(),
     F.WS_CLIENT_HS_FAIL_ACCEPT_MISMATCH, b"does not match"),
    ("accept of the key itself", response(accept=KEY), Opts(),
     F.WS_CLIENT_HS_FAIL_ACCEPT_MISMATCH, b"does not match"),
    ("accept lower case", response(accept=ACCEPT.lower()), Opts(),
     F.WS_CLIENT_HS_FAIL_ACCEPT_MISMATCH, b"does not match"),
    ("accept with a suffix", response(accept=ACCEPT + b"x"), Opts(),
     F.WS_CLIENT_HS_FAIL_ACCEPT_MISMATCH, b"does not match"),
    ("accept truncated", response(accept=ACCEPT[:-1]), Opts(),
     F.WS_CLIENT_HS_FAIL_ACCEPT_MISMATCH, b"does not match"),
    ("accept empty", response(accept=b""), Opts(), F.WS_CLIENT_HS_FAIL_ACCEPT_MISMATCH,
     b"does not match"),
    ("protocol none offered", response(extra=[(b"Sec-WebSocket-Protocol", b"chat")]), Opts(),
     F.WS_CLIENT_HS_FAIL_PROTOCOL_NOT_OFFERED, b"not offered"),
    ("protocol other", response(extra=[(b"Sec-WebSocket-Protocol", b"superchat")]),
     Opts(subprotocols=[b"chat"]), F.WS_CLIENT_HS_FAIL_PROTOCOL_NOT_OFFERED, b"not offered"),
    ("protocol case differs", response(extra=[(b"Sec-WebSocket-Protocol", b"Chat")]),
     Opts(subprotocols=[b"chat"]), F.WS_CLIENT_HS_FAIL_PROTOCOL_NOT_OFFERED, b"not offered"),
    ("protocol prefix", response(extra=[(b"Sec-WebSocket-Protocol", b"cha")]),
     Opts(subprotocols=[b"chat"]), F.WS_CLIENT_HS_FAIL_PROTOCOL_NOT_OFFERED, b"not offered"),
    ("protocol empty", response(extra=[(b"Sec-WebSocket-Protocol", b"")]),
     Opts(subprotocols=[b"chat"]), F.WS_CLIENT_HS_FAIL_PROTOCOL_NOT_OFFERED, b"not offered"),
    ("protocol list", response(extra=[(b"Sec-WebSocket-Protocol", b"chat, superchat")]),
     Opts(subprotocols=[b"chat", b"superchat"]), F.WS_CLIENT_HS_FAIL_PROTOCOL_MULTIPLE,
     b"more than one"),
    ("protocol repeated", response(extra=[(b"Sec-WebSocket-Protocol", b"chat"),
                                          (b"Sec-WebSocket-Protocol", b"chat")]),
     Opts(subprotocols=[b"chat"]), F.WS_CLIENT_HS_FAIL_PROTOCOL_MULTIPLE, b"more than one"),
    ("extensions not offered", response(extra=[(b"Sec-WebSocket-Extensions",
                                                b"permessage-deflate")]),
     Opts(), F.WS_CLIENT_HS_FAIL_EXTENSIONS_NOT_OFFERED, b"no extension was offered"),
    ("extensions empty, not offered", response(extra=[(b"Sec-WebSocket-Extensions", b"")]),
     Opts(), F.WS_CLIENT_HS_FAIL_EXTENSIONS_NOT_OFFERED, b"no extension was offered"),
    ("cr without lf", VALID[:-1] + FRAMES, Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED,
     b"LF character expected"),
    ("cr without lf in the status line",
     b"HTTP/1.1 101 OK\rXSec-WebSocket-Accept: " + ACCEPT + b"\r\nUpgrade: websocket\r\n"
     b"Connection: Upgrade\r\n\r\n", Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED,
     b"LF character expected"),
    ("cr without lf after the status code",
     b"HTTP/1.1 101\rXSec-WebSocket-Accept: " + ACCEPT + b"\r\nUpgrade: websocket\r\n"
     b"Connection: Upgrade\r\n\r\n", Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED,
     b"LF character expected"),
    ("cr without lf in a header line", response(extra=[(b"X-A", b"y\rZ")]), Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"LF character expected"),
    ("not HTTP/ but H and four bytes", b"Hxxxx1.1" + VALID[8:], Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"status line is not"),
    ("lower-case http", b"http/1.1" + VALID[8:], Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED,
     b"malformed HTTP response: "),
    ("four-digit status", response(status=b"0101 Switching Protocols"), Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"status line is not"),
    ("two spaces before the status", response(status=b" 101 Switching Protocols"), Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"status line is not"),
    ("status glued to the reason", response(status=b"101Switching"), Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"malformed HTTP response: "),
    ("four-digit refusal", refusal_head(b"0403 Forbidden"), Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"status line is not"),
    ("status over 999", refusal_head(b"4030 Forbidden"), Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"malformed HTTP response: "),
    ("not HTTP/ after an interim head",
     response(status=b"100 Continue", headers=[]) + b"HTTX/1.1" + VALID[8:], Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"status line is not"),
    ("not http", b"\x81\x05hello", Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED,
     b"malformed HTTP response: "),
    ("a request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED,
     b"malformed HTTP response: "),
    ("two-digit status", b"HTTP/1.1 10 x\r\n\r\n", Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED,
     b"malformed HTTP response: "),
    ("status 000", b"HTTP/1.1 000 x\r\n\r\n", Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED,
     b"status code below 100"),
    ("bad header line", b"HTTP/1.1 101 OK\r\nUpgrade websocket\r\n\r\n", Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"malformed HTTP response: "),
    ("space before the colon", VALID.replace(b"Sec-WebSocket-Accept:", b"Sec-WebSocket-Accept :"),
     Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED, b"header name is not a token"),
    ("space in a refusal's name", refusal_head(b"403 Forbidden").replace(b"Content-Length",
                                                                          b"Content-Length "),
     Opts(), F.WS_CLIENT_HS_FAIL_MALFORMED, b"header name is not a token"),
    ("control in a name", b"HTTP/1.1 101 OK\r\nUp\x01grade: websocket\r\n\r\n", Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"malformed HTTP response: "),
    ("bad content-length", response(extra=[(b"Content-Length", b"abc")]), Opts(),
     F.WS_CLIENT_HS_FAIL_MALFORMED, b"malformed HTTP response: "),
]


@pytest.mark.parametrize("name, data, opts, fail, reason", INVALID_CASES,
                         ids=[c[0] for c in INVALID_CASES])
def test_invalid_response(name: str, data: bytes, opts: Opts, fail: int, reason: bytes) -> None:
    for chunks in ([data], bytewise(data)):
        snap = run(chunks, opts)
        assert (snap["status"], snap["fail"]) == (INVALID, fail), (name, snap["reason"])
        assert reason in snap["reason"] and b"\n" not in snap["reason"]
        assert snap["subprotocol"] is None and snap["extensions"] is None
        assert snap["body"] is None


def test_each_failure_has_its_own_reason() -> None:
    reasons: dict[int, set[bytes]] = {}
    for _, data, opts, fail, _ in INVALID_CASES:
        reasons.setdefault(fail, set()).add(run(data, opts)["reason"])
    validation = {k: v for k, v in reasons.items() if k != lib.WS_CLIENT_HS_FAIL_MALFORMED}
    assert all(len(v) == 1 for v in validation.values())
    flat = [next(iter(v)) for v in validation.values()]
    assert len(set(flat)) == len(flat)


def test_headers_of_an_invalid_101_stay_readable() -> None:
    data = response(accept=KEY, extra=[(b"Server", b"evil")])
    with client() as hs:
        assert isinstance(build(hs, Opts()), bytes)
        assert feed(hs, [data]) == (INVALID, len(data))
        assert lib.ws_client_hs_status_code(hs) == 101
        assert header(hs, b"server") == b"evil"


def test_limits() -> None:
    lim = ffi.new("ws_client_hs_limits *")
    lib.ws_client_hs_limits_default(lim)
    assert (lim.max_headers, lim.max_header_bytes, lim.max_body) == (64, 16384, 65536)

    three = make_limits(headers=3)
    assert run(VALID, limits=three)["status"] == OPEN
    snap = run(response(extra=[(b"X", b"y")]), limits=three)
    assert (snap["status"], snap["fail"]) == (INVALID, lib.WS_CLIENT_HS_FAIL_TOO_MANY_HEADERS)
    assert run(response(extra=[(b"X", b"")] * 100))["fail"] == (
        lib.WS_CLIENT_HS_FAIL_TOO_MANY_HEADERS)

    size = len(VALID)
    snap = run(VALID + FRAMES, limits=make_limits(header_bytes=size))
    assert (snap["status"], snap["consumed"]) == (OPEN, size)
    for chunks in ([VALID], bytewise(VALID)):
        snap = run(chunks, limits=make_limits(header_bytes=size - 1))
        assert snap["fail"] == lib.WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE
    # Raw bytes count: blank lines before the status line, padding in a value.
    assert run(b"\r\n" * 9000)["fail"] == lib.WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE
    padded = response(extra=[(b"X-Pad", b" " * 17000 + b"v")])
    assert run(padded)["fail"] == lib.WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE
    # http-parser's own 80 KiB cap, under a larger limit of ours.
    big = response(extra=[(b"X-Big", b"v" * 100_000)])
    assert run(big, limits=make_limits(header_bytes=200_000))["fail"] == (
        lib.WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE)


def test_eof_before_the_head_is_complete() -> None:
    for data in (b"", VALID[:1], VALID[:-1]):
        snap = run(data, eof=True)
        assert (snap["status"], snap["fail"]) == (INVALID, lib.WS_CLIENT_HS_FAIL_EOF)
        assert snap["reason"] == b"connection closed before the response head was complete"


def test_zero_length_feed_is_not_eof() -> None:
    with client() as hs:
        assert isinstance(build(hs, Opts()), bytes)
        assert execute(hs, b"") == (NEED_MORE, 0)
        assert execute(hs, VALID[:10]) == (NEED_MORE, 10)
        assert execute(hs, b"") == (NEED_MORE, 0)
        assert execute(hs, VALID[10:]) == (OPEN, len(VALID) - 10)


# ---- splitting and the bytes after the head ---------------------------------------------


FULL_OPTS = Opts(subprotocols=[b"chat", b"superchat"], extensions=b"permessage-deflate")
FULL = response(extra=[(b"Sec-WebSocket-Protocol", b"superchat"),
                       (b"Sec-WebSocket-Extensions", b"permessage-deflate; a=1"),
                       (b"Sec-WebSocket-Extensions", b"x-other"), (b"Server", b"t")])


def test_every_split_point_gives_the_same_result() -> None:
    whole = run(FULL + FRAMES, FULL_OPTS)
    assert whole["status"] == OPEN and whole["consumed"] == len(FULL)
    assert whole["extensions"] == b"permessage-deflate; a=1, x-other"
    for i in range(len(FULL) + 1):
        assert run([FULL[:i], FULL[i:] + FRAMES], FULL_OPTS) == whole, i


def test_one_byte_at_a_time() -> None:
    data = FULL + FRAMES
    assert run(bytewise(data), FULL_OPTS) == run(data, FULL_OPTS)


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(0, len(FULL) + len(FRAMES)), max_size=8),
       tail=st.binary(max_size=64))
def test_random_splits_give_the_same_result(cuts: list[int], tail: bytes) -> None:
    data = FULL + tail
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:], strict=False)]
    snap = run(chunks, FULL_OPTS)
    assert snap == run(FULL, FULL_OPTS)  # consumed == len(FULL): the tail is untouched


def test_bytes_after_the_head_are_not_consumed() -> None:
    with client() as hs:
        assert isinstance(build(hs, Opts()), bytes)
        data = VALID + FRAMES + b"\x88\x02\x03\xe8"
        assert execute(hs, data) == (OPEN, len(VALID))
        assert data[len(VALID):] == FRAMES + b"\x88\x02\x03\xe8"  # the caller's to parse
        assert execute(hs, FRAMES) == (OPEN, 0)
    # Bytes that look like HTTP are frames too once the head is over.
    snap = run(VALID + b"HTTP/1.1 200 OK\r\n\r\n")
    assert (snap["status"], snap["consumed"]) == (OPEN, len(VALID))
    # A 101 never has a body, whatever Content-Length says.
    data = response(extra=[(b"Content-Length", b"4")])
    assert run(data + FRAMES)["consumed"] == len(data)


def test_leading_blank_lines_are_part_of_the_head() -> None:
    snap = run(b"\r\n\r\n" + VALID + FRAMES)
    assert (snap["status"], snap["consumed"]) == (OPEN, 4 + len(VALID))


# ---- refusals: status, headers and a bounded body -------------------------------------------


def refusal(status: bytes, body: bytes, extra: list[tuple[bytes, bytes]] | None = None,
            length: bool = True) -> bytes:
    headers = [(b"Content-Type", b"text/plain")] + (extra or [])
    if length:
        headers.append((b"Content-Length", str(len(body)).encode()))
    return response(status=status, headers=headers) + body


def test_refusal_with_content_length() -> None:
    data = refusal(b"403 Forbidden", b"go away", [(b"X-Reason", b"banned")])
    for chunks in ([data + b"junk after"], bytewise(data)):
        snap = run(chunks)
        assert (snap["status"], snap["code"], snap["phrase"]) == (REFUSED, 403, b"Forbidden")
        assert (snap["body"], snap["truncated"], snap["fail"]) == (b"go away", 0, 0)
        assert snap["consumed"] == len(data)
        assert (b"X-Reason", b"banned") in snap["headers"]
        assert snap["subprotocol"] is None


def test_refusal_with_redirect_and_no_body() -> None:
    data = response(status=b"302 Found",
                    headers=[(b"Location", b"ws://other/"), (b"Content-Length", b"0")])
    snap = run(data)
    assert (snap["status"], snap["code"], snap["body"]) == (REFUSED, 302, b"")
    assert (b"Location", b"ws://other/") in snap["headers"]


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_statuses_without_a_body(status: bytes) -> None:
    data = response(status=status, headers=[(b"Content-Length", b"5")])
    snap = run(data + b"abcde")
    assert (snap["status"], snap["body"], snap["consumed"]) == (REFUSED, b"", len(data))


INTERIM = (response(status=b"100 Continue", headers=[(b"X-Interim", b"1")])
           + response(status=b"103 Early Hints", headers=[(b"Link", b"</a.css>; rel=preload"),
                                                          (b"Content-Length", b"3")]))


def test_interim_responses_are_read_past() -> None:
    for chunks in ([INTERIM + VALID + FRAMES], bytewise(INTERIM + VALID) + [FRAMES]):
        snap = run(chunks)
        assert (snap["status"], snap["consumed"]) == (OPEN, len(INTERIM) + len(VALID))
        assert snap["phrase"] == b"Switching Protocols"
        assert snap["headers"] == run(VALID)["headers"]  # the interim fields are gone
    data = INTERIM + refusal(b"403 Forbidden", b"no")
    snap = run(data)
    assert (snap["status"], snap["code"], snap["body"]) == (REFUSED, 403, b"no")
    assert [k for k, _ in snap["headers"]] == [b"Content-Type", b"Content-Length"]
    # They count toward the head limit, and EOF after one is EOF in the head.
    flood = response(status=b"100 Continue", headers=[]) * 1000 + VALID
    assert run(flood)["fail"] == lib.WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE
    assert run(INTERIM, eof=True)["fail"] == lib.WS_CLIENT_HS_FAIL_EOF
    limits = make_limits(header_bytes=len(INTERIM) + len(VALID))
    assert run(INTERIM + VALID, limits=limits)["status"] == OPEN
    limits = make_limits(header_bytes=len(INTERIM) + len(VALID) - 1)
    assert run(INTERIM + VALID, limits=limits)["fail"] == lib.WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE


def test_body_until_eof() -> None:
    data = refusal(b"500 Internal Server Error", b"broken", length=False)
    with client() as hs:
        assert isinstance(build(hs, Opts()), bytes)
        assert feed(hs, [data]) == (NEED_MORE, len(data))
        assert lib.ws_client_hs_eof(hs) == REFUSED
        snap = snapshot(hs, REFUSED, 0)
        assert (snap["code"], snap["body"], snap["truncated"]) == (500, b"broken", 0)


def test_body_cut_short_by_eof() -> None:
    data = refusal(b"403 Forbidden", b"0123456789")[:-4]
    snap = run(data, eof=True)
    assert (snap["status"], snap["body"], snap["truncated"]) == (REFUSED, b"012345", 1)
    # EOF right after a head that announces a body.
    snap = run(refusal(b"403 Forbidden", b"0123")[:-4], eof=True)
    assert (snap["status"], snap["body"], snap["truncated"]) == (REFUSED, b"", 1)


def test_body_is_bounded() -> None:
    body = bytes(range(256)) * 40
    limits = make_limits(body=1000)
    for data in (refusal(b"403 Forbidden", body), refusal(b"403 Forbidden", body, length=False)):
        for chunks in ([data], [data[i : i + 97] for i in range(0, len(data), 97)]):
            snap = run(chunks, limits=limits)
            assert (snap["status"], snap["truncated"]) == (REFUSED, 1)
            assert snap["body"] == body[:1000]
    # Exactly at the limit is not truncated.
    snap = run(refusal(b"403 Forbidden", body[:1000]), limits=limits)
    assert (snap["body"], snap["truncated"]) == (body[:1000], 0)
    # The default cap is 64 KiB, whatever the server announces.
    head = response(status=b"413 Too Large", headers=[(b"Content-Length", b"10000000000")])
    snap = run(head + b"x" * 70000)
    assert (snap["status"], snap["truncated"], len(snap["body"])) == (REFUSED, 1, 65536)
    assert snap["consumed"] <= len(head) + 70000


def test_chunked_refusal_is_decoded_and_trailers_are_not_headers() -> None:
    data = (b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n"
            b"WWW-Authenticate: Basic\r\n\r\n"
            b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n")
    for chunks in ([data], bytewise(data)):
        snap = run(chunks)
        assert (snap["status"], snap["code"], snap["body"]) == (REFUSED, 401, b"hello, world")
        assert snap["consumed"] == len(data)
        assert [k for k, _ in snap["headers"]] == [b"Transfer-Encoding", b"WWW-Authenticate"]


def test_chunk_framing_is_bounded_too() -> None:
    # Endless chunk extensions or leading zeros carry no body byte, so the
    # body limit alone would never stop them: the raw bytes are capped too.
    # 2 * max_body raw bytes after the head, however the input is cut.
    head = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
    limits = make_limits(body=100)
    for framing in (b"1;" + b"x" * 1000, b"0" * 1000, b"1\r\na\r\n" * 200):
        data = head + framing
        whole = run(data, limits=limits)
        assert (whole["status"], whole["truncated"]) == (REFUSED, 1)
        assert whole["consumed"] == len(head) - 1 + 2 * 100  # from the final LF
        assert len(whole["body"]) <= 100
        for size in (1, 7, 50):
            chunks = [data[i : i + size] for i in range(0, len(data), size)]
            assert run(chunks, limits=limits) == whole


def test_malformed_refusal_body_keeps_the_status() -> None:
    data = (b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
    snap = run(data)
    assert (snap["status"], snap["code"], snap["body"], snap["truncated"]) == (
        REFUSED, 503, b"abc", 1)


def test_refusal_of_http10() -> None:
    data = b"HTTP/1.0 404 Not Found\r\n\r\nnope"
    snap = run(data, eof=True)
    assert (snap["status"], snap["code"], snap["version"], snap["body"]) == (
        REFUSED, 404, (1, 0), b"nope")


# ---- round trips: wsuv's own server side, h11 and wsproto -------------------------------------


@contextmanager
def server_handshake() -> Iterator[Any]:
    hs = lib.ws_handshake_new(ffi.NULL)
    assert hs != ffi.NULL
    try:
        yield hs
    finally:
        lib.ws_handshake_free(hs)


def server_header(hs: Any, name: bytes) -> bytes | None:
    n = ffi.new("size_t *")
    return _bytes(lib.ws_handshake_header(hs, name, len(name), n), n[0])


def test_round_trip_with_wsuv_server_side() -> None:
    opts = Opts(host=b"::1", port=9001, target=b"/room?id=7", origin=b"http://example.com",
                subprotocols=[b"v1.chat", b"v2.chat"], extensions=b"permessage-deflate",
                headers=[(b"Authorization", b"Bearer abc")])
    nonce = bytes(range(100, 116))
    with client() as chs, server_handshake() as shs:
        req = build(chs, opts, nonce)
        assert isinstance(req, bytes)
        consumed = ffi.new("size_t *")
        assert lib.ws_handshake_execute(shs, req, len(req), consumed) == lib.WS_HS_UPGRADE
        assert consumed[0] == len(req)
        n = ffi.new("size_t *")
        assert _bytes(lib.ws_handshake_target(shs, n), n[0]) == b"/room?id=7"
        assert server_header(shs, b"host") == b"[::1]:9001"
        assert server_header(shs, b"origin") == b"http://example.com"
        assert server_header(shs, b"authorization") == b"Bearer abc"
        assert server_header(shs, b"sec-websocket-protocol") == b"v1.chat, v2.chat"
        assert _bytes(lib.ws_handshake_key(shs, n), n[0]) == base64.b64encode(nonce)

        ext = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        out = ffi.new("char[]", 1024)
        k = lib.ws_handshake_accept_response(shs, b"v2.chat", 7, ext, len(ext), out, 1024)
        resp = bytes(ffi.buffer(out, k))
        assert feed(chs, [resp + FRAMES]) == (OPEN, len(resp))
        snap = snapshot(chs, OPEN, 0)
        assert (snap["subprotocol"], snap["extensions"]) == (b"v2.chat", b"permessage-deflate")


def test_wsuv_server_refusal_reaches_the_client() -> None:
    with client() as chs, server_handshake() as shs:
        req = build(chs, Opts())
        assert isinstance(req, bytes)
        bad = req.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8")
        consumed = ffi.new("size_t *")
        assert lib.ws_handshake_execute(shs, bad, len(bad), consumed) == lib.WS_HS_FAIL
        code = lib.ws_handshake_fail_status(shs)
        reason = ffi.string(lib.ws_handshake_fail_reason(shs))
        out = ffi.new("char[]", 1024)
        k = lib.ws_handshake_error_response(code, reason, len(reason), ffi.NULL, 0, out, 1024)
        assert feed(chs, [bytes(ffi.buffer(out, k))])[0] == REFUSED
        snap = snapshot(chs, REFUSED, 0)
        assert (snap["code"], snap["phrase"], snap["body"]) == (
            426, b"Upgrade Required", reason + b"\n")
        assert header(chs, b"Sec-WebSocket-Version") == b"13"


def test_wsuv_server_accept_for_another_key_is_rejected() -> None:
    # A server answering someone else's handshake: the accept is right for
    # its key, wrong for ours.
    with client() as chs, server_handshake() as shs:
        req = build(chs, Opts())
        assert isinstance(req, bytes)
        other = req.replace(KEY, base64.b64encode(b"another nonce 16"))
        consumed = ffi.new("size_t *")
        assert lib.ws_handshake_execute(shs, other, len(other), consumed) == lib.WS_HS_UPGRADE
        out = ffi.new("char[]", 1024)
        k = lib.ws_handshake_accept_response(shs, ffi.NULL, 0, ffi.NULL, 0, out, 1024)
        assert feed(chs, [bytes(ffi.buffer(out, k))])[0] == INVALID
        assert lib.ws_client_hs_fail_code(chs) == lib.WS_CLIENT_HS_FAIL_ACCEPT_MISMATCH


def wsproto_server(req: bytes) -> tuple[wsproto.WSConnection, wse.Request]:
    conn = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    conn.receive_data(req)
    events = list(conn.events())
    assert len(events) == 1 and isinstance(events[0], wse.Request), events
    return conn, events[0]


def test_round_trip_with_wsproto() -> None:
    opts = Opts(host=b"example.com", port=8443, secure=True, target=b"/socket?x=1",
                origin=b"https://example.com", subprotocols=[b"chat", b"superchat"],
                extensions=b"permessage-deflate; client_max_window_bits",
                headers=[(b"User-Agent", b"wsuv-test")])
    with client() as hs:
        req = build(hs, opts)
        assert isinstance(req, bytes)
        conn, event = wsproto_server(req)
        assert (event.host, event.target) == ("example.com:8443", "/socket?x=1")
        assert event.subprotocols == ["chat", "superchat"]
        assert list(event.extensions) == ["permessage-deflate; client_max_window_bits"]
        assert (b"user-agent", b"wsuv-test") in [(k, v) for k, v in event.extra_headers]
        resp = conn.send(wse.AcceptConnection(subprotocol="superchat",
                                              extensions=[PerMessageDeflate()]))
        assert feed(hs, [resp + FRAMES]) == (OPEN, len(resp))
        snap = snapshot(hs, OPEN, 0)
        assert snap["subprotocol"] == b"superchat"
        assert snap["extensions"] is not None
        assert snap["extensions"].startswith(b"permessage-deflate")


def test_wsproto_rejection_with_chunked_body() -> None:
    with client() as hs:
        req = build(hs, Opts())
        assert isinstance(req, bytes)
        conn, _ = wsproto_server(req)
        resp = conn.send(wse.RejectConnection(status_code=403, has_body=True,
                                              headers=[(b"X-Why", b"no")]))
        resp += conn.send(wse.RejectData(data=b"not ", body_finished=False))
        resp += conn.send(wse.RejectData(data=b"allowed", body_finished=True))
        for chunks in ([resp], bytewise(resp)):
            with client() as hs2:
                assert isinstance(build(hs2, Opts()), bytes)
                assert feed(hs2, chunks, eof=True)[0] == REFUSED
                snap = snapshot(hs2, REFUSED, 0)
                assert (snap["code"], snap["body"], snap["truncated"]) == (403, b"not allowed", 0)
                assert header(hs2, b"x-why") == b"no"


def h11_request(req: bytes) -> h11.Request:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(req)
    event = conn.next_event()
    assert isinstance(event, h11.Request), event
    end = conn.next_event()  # no body: the message ends with the head
    assert isinstance(end, h11.EndOfMessage) and not end.headers
    return event


def h11_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
    out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    return out


def test_h11_reads_our_request() -> None:
    req = request_of(Opts(origin=b"http://a.example", subprotocols=[b"x"],
                          headers=[(b"Cookie", b"k=v")]))
    event = h11_request(req)
    assert (event.method, event.target, event.http_version) == (b"GET", b"/chat", b"1.1")
    assert list(event.headers) == [
        (b"host", b"server.example.com"), (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"), (b"sec-websocket-key", KEY),
        (b"sec-websocket-version", b"13"), (b"origin", b"http://a.example"),
        (b"sec-websocket-protocol", b"x"), (b"cookie", b"k=v"),
    ]


@pytest.mark.parametrize("length", [True, False])
def test_h11_refusals(length: bool) -> None:
    headers = [(b"Content-Length", b"12")] if length else []  # without: chunked
    resp = h11_response(429, headers + [(b"Retry-After", b"3")], b"slow down!!\n")
    snap = run(resp)
    assert (snap["status"], snap["code"], snap["body"]) == (REFUSED, 429, b"slow down!!\n")
    assert (b"Retry-After", b"3") in snap["headers"]


TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_token = st.text(alphabet=TCHARS, min_size=1, max_size=12)
_value = st.binary(max_size=30).filter(lambda v: all(b >= 0x20 and b != 0x7F for b in v))
_reserved = {b"upgrade", b"connection", b"sec-websocket-key", b"sec-websocket-version",
             b"sec-websocket-protocol", b"sec-websocket-extensions", b"sec-websocket-accept",
             b"content-length", b"transfer-encoding", b"host"}


@settings(max_examples=200, deadline=None)
@given(fields=st.lists(st.tuples(_token.map(str.encode), _value), max_size=6),
       protocols=st.lists(_token.map(str.encode), max_size=4, unique=True))
def test_random_extra_headers_survive_h11(fields: list[tuple[bytes, bytes]],
                                          protocols: list[bytes]) -> None:
    fields = [(k, v) for k, v in fields if k.lower() not in _reserved]
    event = h11_request(request_of(Opts(headers=fields, subprotocols=protocols)))
    sent = [(k.lower(), v.strip(b" \t")) for k, v in fields]
    got = list(event.headers)
    assert got[len(got) - len(sent):] == sent  # last, in order, each as sent
    if protocols:
        assert (b"sec-websocket-protocol", b", ".join(protocols)) in got


@settings(max_examples=200, deadline=None)
@given(value=st.binary(min_size=1, max_size=20), bad=st.sampled_from([b"\r", b"\n", b"\x00"]),
       at=st.integers(0, 20))
def test_any_cr_lf_nul_in_a_value_is_refused(value: bytes, bad: bytes, at: int) -> None:
    v = value[:at] + bad + value[at:]
    assert request_error(Opts(headers=[(b"X-V", v)])) == lib.WS_CLIENT_HS_E_HEADER_VALUE
    assert request_error(Opts(origin=v)) == lib.WS_CLIENT_HS_E_ORIGIN
    assert request_error(Opts(extensions=v)) == lib.WS_CLIENT_HS_E_EXTENSIONS


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_random_bytes_never_crash(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:], strict=False)]
    for prefix in (b"", b"HTTP/1.1 101 Switching Protocols\r\n", b"HTTP/1.1 400 Bad\r\n"):
        snap = run([prefix] + chunks, limits=make_limits(headers=8, header_bytes=256, body=64),
                   eof=True)
        assert snap["status"] in (OPEN, REFUSED, INVALID)
        assert (snap["status"] == INVALID) == (snap["fail"] != 0)
        if snap["status"] == OPEN:  # only ever with the right accept
            accepts = [v for k, v in snap["headers"] if k.lower() == b"sec-websocket-accept"]
            assert accepts == [ACCEPT]
        if snap["body"] is not None:
            assert len(snap["body"]) <= 64


def test_nonces_from_the_csprng_pool() -> None:
    # How the client loop will do it: 16 bytes from its pool per handshake.
    pool = lib.ws_csprng_new(0)
    assert pool != ffi.NULL
    try:
        keys = set()
        for _ in range(50):
            nonce = ffi.new("uint8_t[16]")
            assert lib.ws_csprng_bytes(pool, nonce, 16) == 0
            with client() as hs:
                req = build(hs, Opts(), bytes(nonce))
                assert isinstance(req, bytes)
                key = field_value(req, b"Sec-WebSocket-Key")
                assert key is not None and base64.b64decode(key) == bytes(nonce)
                keys.add(key)
                assert feed(hs, [response(accept=accept_for(key))])[0] == OPEN
        assert len(keys) == 50
        assert lib.ws_csprng_refills(pool) == 1
    finally:
        lib.ws_csprng_free(pool)
