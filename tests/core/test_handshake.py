"""csrc/handshake.c: the RFC 6455 4.2.1 upgrade request, driven through wsuv._core.

No sockets: request bytes go in, a status and accessors come out. Every
ws_handshake_new() is paired with ws_handshake_free() through `handshake()`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib

NEED_MORE, UPGRADE, HTTP, FAIL = (
    lib.WS_HS_NEED_MORE, lib.WS_HS_UPGRADE, lib.WS_HS_HTTP, lib.WS_HS_FAIL,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
# A masked text frame "Hi" a client may send in the same read as its request.
FRAME = b"\x81\x82\x01\x02\x03\x04" + bytes([ord("H") ^ 1, ord("i") ^ 2])


def request(
    method: bytes = b"GET",
    target: bytes = b"/chat?room=1",
    version: bytes = b"HTTP/1.1",
    headers: list[tuple[bytes, bytes]] | None = None,
    drop: tuple[bytes, ...] = (),
    extra: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """A request head; `drop` removes default headers by lower-case name."""
    if headers is None:
        headers = [
            (b"Host", b"server.example.com"),
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Key", KEY),
            (b"Origin", b"http://example.com"),
            (b"Sec-WebSocket-Version", b"13"),
        ]
    headers = [h for h in headers if h[0].lower() not in drop] + (extra or [])
    lines = [method + b" " + target + b" " + version]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


VALID = request()


@contextmanager
def handshake(limits: Any = None) -> Iterator[Any]:
    hs = lib.ws_handshake_new(limits if limits is not None else ffi.NULL)
    assert hs != ffi.NULL
    try:
        yield hs
    finally:
        lib.ws_handshake_free(hs)


def make_limits(url: int = 0, headers: int = 0, header_bytes: int = 0) -> Any:
    lim = ffi.new("ws_handshake_limits *")
    lib.ws_handshake_limits_default(lim)
    if url:
        lim.max_url = url
    if headers:
        lim.max_headers = headers
    if header_bytes:
        lim.max_header_bytes = header_bytes
    return lim


def execute(hs: Any, data: bytes) -> tuple[int, int]:
    consumed = ffi.new("size_t *", 12345)
    status = lib.ws_handshake_execute(hs, data, len(data), consumed)
    assert 0 <= consumed[0] <= len(data)
    return status, consumed[0]


def feed(hs: Any, chunks: list[bytes]) -> tuple[int, int]:
    """Feeds chunks until the result is final; returns (status, total consumed)."""
    total = 0
    status = NEED_MORE
    for chunk in chunks:
        status, used = execute(hs, chunk)
        total += used
        if status != NEED_MORE:
            assert used <= len(chunk)
            break
        assert used == len(chunk)  # NEED_MORE takes every byte
    return status, total


def _bytes(ptr: Any, n: int) -> bytes:
    return bytes(ffi.buffer(ptr, n)) if ptr != ffi.NULL else b""


def header(hs: Any, name: bytes) -> bytes | None:
    n = ffi.new("size_t *")
    p = lib.ws_handshake_header(hs, name, len(name), n)
    return None if p == ffi.NULL else _bytes(p, n[0])


def snapshot(hs: Any, status: int, consumed: int) -> dict[str, Any]:
    """Everything the API says about a finished handshake."""
    n = ffi.new("size_t *")
    snap: dict[str, Any] = {
        "status": status,
        "consumed": consumed,
        "fail": lib.ws_handshake_fail_status(hs),
        "reason": ffi.string(lib.ws_handshake_fail_reason(hs)),
    }
    if status in (UPGRADE, HTTP):
        snap["method"] = _bytes(lib.ws_handshake_method(hs, n), n[0])
        snap["target"] = _bytes(lib.ws_handshake_target(hs, n), n[0])
        snap["version"] = (lib.ws_handshake_http_major(hs), lib.ws_handshake_http_minor(hs))
        buf = _bytes(lib.ws_handshake_buffer(hs, n), n[0])
        spans = lib.ws_handshake_headers(hs)
        snap["headers"] = [
            (
                buf[s.name_off : s.name_off + s.name_len],
                buf[s.value_off : s.value_off + s.value_len],
            )
            for s in (spans[i] for i in range(lib.ws_handshake_header_count(hs)))
        ]
        snap["key"] = _bytes(lib.ws_handshake_key(hs, n), n[0])
    return snap


def run(data: bytes | list[bytes], limits: Any = None) -> dict[str, Any]:
    with handshake(limits) as hs:
        status, consumed = feed(hs, [data] if isinstance(data, bytes) else data)
        return snapshot(hs, status, consumed)


def accept_response(hs: Any, subprotocol: bytes = b"", extra: bytes = b"") -> bytes:
    out = ffi.new("char[]", 1024)
    n = lib.ws_handshake_accept_response(hs, subprotocol, len(subprotocol), extra, len(extra),
                                         out, 1024)
    return bytes(ffi.buffer(out, n))


def error_response(status: int, reason: bytes, extra: bytes = b"", cap: int = 1024) -> bytes:
    out = ffi.new("char[]", max(cap, 1))
    n = lib.ws_handshake_error_response(status, reason, len(reason), extra, len(extra), out, cap)
    return bytes(ffi.buffer(out, n))


# ---- a valid upgrade -------------------------------------------------------


def test_valid_upgrade_accessors() -> None:
    snap = run(VALID)
    assert snap["status"] == UPGRADE
    assert snap["consumed"] == len(VALID)
    assert (snap["fail"], snap["reason"]) == (0, b"")
    assert snap["method"] == b"GET"
    assert snap["target"] == b"/chat?room=1"
    assert snap["version"] == (1, 1)
    assert snap["key"] == KEY
    assert snap["headers"][0] == (b"Host", b"server.example.com")
    assert len(snap["headers"]) == 6
    with handshake() as hs:
        assert feed(hs, [VALID]) == (UPGRADE, len(VALID))
        assert header(hs, b"ORIGIN") == b"http://example.com"
        assert header(hs, b"sec-websocket-version") == b"13"
        assert header(hs, b"X-Absent") is None
        assert header(hs, b"Hos") is None


def test_accept_response() -> None:
    with handshake() as hs:
        assert feed(hs, [VALID])[0] == UPGRADE
        assert accept_response(hs) == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n"
            b"\r\n"
        )
        resp = accept_response(hs, b"chat", b"X-A: 1\r\nX-B: 2\r\n")
        assert resp.endswith(
            b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n"
            b"Sec-WebSocket-Protocol: chat\r\nX-A: 1\r\nX-B: 2\r\n\r\n"
        )
        # Too small a buffer gives 0, never a truncated response.
        out = ffi.new("char[]", 64)
        assert lib.ws_handshake_accept_response(hs, ffi.NULL, 0, ffi.NULL, 0, out, 64) == 0
        full = len(accept_response(hs))
        out = ffi.new("char[]", full)
        assert lib.ws_handshake_accept_response(hs, ffi.NULL, 0, ffi.NULL, 0, out, full) == full


def test_accept_matches_rfc_formula_for_random_keys() -> None:
    for _ in range(20):
        key = base64.b64encode(os.urandom(16))
        with handshake() as hs:
            assert feed(hs, [request(drop=(b"sec-websocket-key",),
                                     extra=[(b"Sec-WebSocket-Key", key)])])[0] == UPGRADE
            digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            assert b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n" in (
                accept_response(hs))


def test_no_accept_response_unless_upgrade() -> None:
    with handshake() as hs:
        out = ffi.new("char[]", 1024)
        assert lib.ws_handshake_accept_response(hs, ffi.NULL, 0, ffi.NULL, 0, out, 1024) == 0
        assert feed(hs, [request(drop=(b"upgrade",))])[0] == HTTP
        assert lib.ws_handshake_accept_response(hs, ffi.NULL, 0, ffi.NULL, 0, out, 1024) == 0


# ---- splitting and pipelining -----------------------------------------------


def test_every_split_point_gives_the_same_result() -> None:
    whole = run(VALID + FRAME)
    assert whole["status"] == UPGRADE and whole["consumed"] == len(VALID)
    for i in range(len(VALID) + 1):
        assert run([VALID[:i], VALID[i:] + FRAME]) == whole, i


def test_three_way_splits() -> None:
    whole = run(VALID)
    for i in range(0, len(VALID), 7):
        for j in range(i, len(VALID), 11):
            assert run([VALID[:i], VALID[i:j], VALID[j:]]) == whole, (i, j)


def test_one_byte_at_a_time() -> None:
    data = VALID + FRAME
    assert run([data[i : i + 1] for i in range(len(data))]) == run(data)


@pytest.mark.parametrize(
    "data",
    [
        request(drop=(b"host",)),
        request(version=b"HTTP/1.0"),
        request(extra=[(b"X-Filler", b"y" * 300)]),
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
    ],
)
def test_splits_of_other_outcomes(data: bytes) -> None:
    limits = make_limits(header_bytes=300)
    whole = run(data, limits)
    assert run([data[i : i + 1] for i in range(len(data))], limits) == whole
    for i in range(len(data) + 1):
        assert run([data[:i], data[i:]], limits) == whole


def test_bytes_after_head_are_not_consumed() -> None:
    with handshake() as hs:
        status, used = execute(hs, VALID + FRAME + FRAME)
        assert (status, used) == (UPGRADE, len(VALID))
        # The result is final: later bytes are never taken.
        assert execute(hs, FRAME) == (UPGRADE, 0)


def test_pipelined_http_request_is_not_consumed() -> None:
    first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    second = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    with handshake() as hs:
        assert execute(hs, first + second) == (HTTP, len(first))
        assert snapshot(hs, HTTP, 0)["target"] == b"/a"
        assert execute(hs, second) == (HTTP, 0)


def test_zero_length_feed_is_not_eof() -> None:
    with handshake() as hs:
        assert execute(hs, b"") == (NEED_MORE, 0)
        assert execute(hs, VALID[:10]) == (NEED_MORE, 10)
        assert execute(hs, b"") == (NEED_MORE, 0)
        assert execute(hs, VALID[10:]) == (UPGRADE, len(VALID) - 10)


def test_head_must_end_in_lf() -> None:
    # http-parser is built non-strict: it would take any byte after the final
    # CR as the LF, swallowing what may be a client's first frame byte.
    data = VALID[:-1] + FRAME
    assert status_of(data) == (FAIL, 400)
    assert status_of([data[:-len(FRAME)], FRAME]) == (FAIL, 400)


def test_leading_blank_lines_are_part_of_the_head() -> None:
    data = b"\r\n\r\n" + VALID
    snap = run(data + FRAME)
    assert (snap["status"], snap["consumed"]) == (UPGRADE, len(data))


# ---- failures ----------------------------------------------------------------


def status_of(data: bytes | list[bytes], limits: Any = None) -> tuple[int, int]:
    snap = run(data, limits)
    assert snap["status"] in (FAIL, HTTP), snap
    assert snap["reason"] and b"\n" not in snap["reason"]
    return snap["status"], snap["fail"]


@pytest.mark.parametrize(
    "data, code",
    [
        (request(drop=(b"host",)), 400),
        (request(extra=[(b"Host", b"other.example.com")]), 400),
        (request(drop=(b"upgrade",), extra=[(b"Upgrade", b"h2c")]), 400),
        (request(drop=(b"upgrade",), extra=[(b"Upgrade", b"")]), 400),
        (request(drop=(b"upgrade",), extra=[(b"Upgrade", b"websockets")]), 400),
        (request(drop=(b"connection",)), 400),
        (request(drop=(b"connection",), extra=[(b"Connection", b"keep-alive")]), 400),
        (request(drop=(b"connection",), extra=[(b"Connection", b"upgrades, close")]), 400),
        (request(drop=(b"sec-websocket-key",)), 400),
        (request(drop=(b"sec-websocket-key",),
                 extra=[(b"Sec-WebSocket-Key", base64.b64encode(b"x" * 15))]), 400),
        (request(drop=(b"sec-websocket-key",),
                 extra=[(b"Sec-WebSocket-Key", base64.b64encode(b"x" * 17))]), 400),
        (request(drop=(b"sec-websocket-key",),
                 extra=[(b"Sec-WebSocket-Key", b"not base64 at all, 24ch")]), 400),
        (request(drop=(b"sec-websocket-key",), extra=[(b"Sec-WebSocket-Key", b"")]), 400),
        (request(extra=[(b"Sec-WebSocket-Key", KEY)]), 400),
        (request(drop=(b"sec-websocket-version",),
                 extra=[(b"Sec-WebSocket-Version", b"8")]), 426),
        (request(drop=(b"sec-websocket-version",)), 426),
        (request(drop=(b"sec-websocket-version",),
                 extra=[(b"Sec-WebSocket-Version", b"13, 8")]), 426),
        (request(extra=[(b"Sec-WebSocket-Version", b"13")]), 400),
        (request(method=b"POST"), 405),
        (request(method=b"PUT"), 405),
        (request(version=b"HTTP/1.0"), 505),
        (request(extra=[(b"Content-Length", b"5")]), 400),
        (request(extra=[(b"Transfer-Encoding", b"chunked")]), 400),
        (request(drop=(b"upgrade",), extra=[(b"Content-Length", b"3")]), 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHo\x01st: x\r\n\r\n", 400),
        (b"GET / XTTP/1.1\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\n\r\n", 400),
        # Non-strict http-parser takes "H" and any four bytes for "HTTP/", and
        # keeps a space before the colon in the name: both are 400 here.
        (request(version=b"Hxxxx1.1"), 400),
        (request(version=b"HTTP/1.1x"), 400),
        (b"GET /chat HTTP/1.1\nHost: x\r\n\r\n", 400),
        (request(drop=(b"host",), extra=[(b"Host ", b"server.example.com")]), 400),
        (request(extra=[(b"X-Pad\t", b"1")]), 400),
    ],
)
def test_failure_status(data: bytes, code: int) -> None:
    assert status_of(data) == (FAIL, code)
    assert status_of([data[i : i + 1] for i in range(len(data))]) == (FAIL, code)


def test_malformed_reason_names_the_parser_error() -> None:
    snap = run(b"BREW /pot HTTP/1.1\r\n\r\n")
    assert (snap["status"], snap["fail"]) == (FAIL, 400)
    assert snap["reason"].startswith(b"malformed HTTP request: ")
    assert b"method" in snap["reason"]


def test_version_mismatch_is_checked_before_key() -> None:
    data = request(drop=(b"sec-websocket-version", b"sec-websocket-key"),
                   extra=[(b"Sec-WebSocket-Version", b"8")])
    assert status_of(data) == (FAIL, 426)


def test_content_length_zero_is_no_body() -> None:
    data = request(extra=[(b"Content-Length", b"0")])
    assert run(data + FRAME)["consumed"] == len(data)
    assert run(data)["status"] == UPGRADE


# ---- limits --------------------------------------------------------------------


def test_default_limits() -> None:
    lim = ffi.new("ws_handshake_limits *")
    lib.ws_handshake_limits_default(lim)
    assert (lim.max_url, lim.max_headers, lim.max_header_bytes) == (8192, 64, 16384)


def test_url_limit() -> None:
    limits = make_limits(url=100)
    assert run(request(target=b"/" + b"a" * 99), limits)["status"] == UPGRADE
    long = request(target=b"/" + b"a" * 100)
    assert status_of(long, limits) == (FAIL, 414)
    assert status_of([long[:50], long[50:]], limits) == (FAIL, 414)
    # Caught while the target is still arriving, long before the head ends.
    with handshake(limits) as hs:
        status, _ = execute(hs, b"GET /" + b"a" * 200)
        assert (status, lib.ws_handshake_fail_status(hs)) == (FAIL, 414)
    assert status_of(request(target=b"/" + b"a" * 9000)) == (FAIL, 414)  # default 8 KiB


def test_header_count_limit() -> None:
    base = len(request().split(b"\r\n")) - 3  # six default fields
    limits = make_limits(headers=base + 2)
    ok = request(extra=[(b"X-1", b"a"), (b"X-2", b"b")])
    assert run(ok, limits)["status"] == UPGRADE
    over = request(extra=[(b"X-1", b"a"), (b"X-2", b"b"), (b"X-3", b"c")])
    assert status_of(over, limits) == (FAIL, 431)
    flood = request(extra=[(b"X", b"")] * 100)
    assert status_of(flood) == (FAIL, 431)  # default 64


def test_header_bytes_limit() -> None:
    size = len(VALID)
    assert run(VALID, make_limits(header_bytes=size))["status"] == UPGRADE
    assert status_of(VALID, make_limits(header_bytes=size - 1)) == (FAIL, 431)
    # Exactly at the limit with trailing frame bytes in the same read.
    snap = run(VALID + FRAME, make_limits(header_bytes=size))
    assert (snap["status"], snap["consumed"]) == (UPGRADE, size)
    big = request(extra=[(b"Cookie", b"c" * 17000)])
    assert status_of(big) == (FAIL, 431)  # default 16 KiB
    assert status_of([big[i : i + 1000] for i in range(0, len(big), 1000)]) == (FAIL, 431)


def test_header_bytes_limit_counts_whitespace_and_blank_lines() -> None:
    limits = make_limits(header_bytes=1000)
    assert status_of(b"\r\n" * 600, limits) == (FAIL, 431)
    padded = request(extra=[(b"X-Pad", b" " * 900 + b"v")])
    assert status_of(padded, limits) == (FAIL, 431)


def test_http_parser_own_cap_is_431() -> None:
    limits = make_limits(header_bytes=200_000)
    big = request(extra=[(b"Cookie", b"c" * 100_000)])
    assert status_of(big, limits) == (FAIL, 431)


def test_limits_are_per_handshake() -> None:
    with handshake(make_limits(url=10)) as small, handshake() as default:
        data = request(target=b"/" + b"a" * 50)
        assert feed(small, [data])[0] == FAIL
        assert feed(default, [data])[0] == UPGRADE


# ---- token lists and plain HTTP ---------------------------------------------------


@pytest.mark.parametrize(
    "upgrade, connection",
    [
        (b"websocket", b"keep-alive, Upgrade"),
        (b"WebSocket", b"upgrade"),
        (b"WEBSOCKET", b"UPGRADE"),
        (b"h2c, websocket", b"Upgrade,keep-alive"),
        (b"websocket", b"keep-alive ,  upgrade  ,close"),
        (b"foo,,websocket", b",upgrade,"),
    ],
)
def test_token_lists(upgrade: bytes, connection: bytes) -> None:
    data = request(drop=(b"upgrade", b"connection"),
                   extra=[(b"upgrade", upgrade), (b"connection", connection)])
    assert run(data)["status"] == UPGRADE


def test_repeated_fields_form_one_list() -> None:
    data = request(drop=(b"connection",),
                   extra=[(b"Connection", b"keep-alive"), (b"Connection", b"Upgrade")])
    assert run(data)["status"] == UPGRADE


def test_plain_http_request() -> None:
    data = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
    snap = run(data)
    assert snap["status"] == HTTP
    assert snap["consumed"] == len(data)
    assert snap["fail"] == 426
    assert snap["method"] == b"GET" and snap["target"] == b"/index.html"
    assert snap["headers"] == [(b"Host", b"example.com"), (b"Accept", b"*/*")]
    assert snap["key"] == b""
    # HTTP/1.0 and other methods without Upgrade are plain HTTP too: the caller decides.
    assert run(b"HEAD / HTTP/1.0\r\n\r\n")["status"] == HTTP
    assert run(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")["method"] == b"OPTIONS"


def test_whitespace_is_trimmed() -> None:
    data = (b"GET / HTTP/1.1\r\nHost: \t example.com \t \r\nUpgrade:websocket\r\n"
            b"Connection:   Upgrade   \r\nSec-WebSocket-Key:   " + KEY + b"  \r\n"
            b"Sec-WebSocket-Version:\t13\t\r\nX-Empty:\r\nX-Blank:    \r\n\r\n")
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        snap = run(chunks)
        assert snap["status"] == UPGRADE
        assert snap["key"] == KEY
        assert snap["headers"] == [
            (b"Host", b"example.com"),
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Key", KEY),
            (b"Sec-WebSocket-Version", b"13"),
            (b"X-Empty", b""),
            (b"X-Blank", b""),
        ]


def test_accessors_before_completion() -> None:
    with handshake() as hs:
        n = ffi.new("size_t *", 7)
        assert lib.ws_handshake_target(hs, n) == ffi.NULL and n[0] == 0
        assert lib.ws_handshake_method(hs, n) == ffi.NULL
        assert lib.ws_handshake_key(hs, n) == ffi.NULL
        assert lib.ws_handshake_header_count(hs) == 0
        assert header(hs, b"Host") is None
        assert lib.ws_handshake_fail_status(hs) == 0
        assert execute(hs, VALID[:40])[0] == NEED_MORE
        assert lib.ws_handshake_header_count(hs) == 0
        assert lib.ws_handshake_key(hs, n) == ffi.NULL


# ---- error responses ---------------------------------------------------------------


def test_error_response_format() -> None:
    assert error_response(400, b"missing Host header") == (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"Connection: close\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 20\r\n"
        b"\r\n"
        b"missing Host header\n"
    )
    resp = error_response(426, b"upgrade", b"X-A: 1\r\n")
    head, body = resp.split(b"\r\n\r\n")
    assert body == b"upgrade\n"
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in resp
    assert b"\r\nUpgrade: websocket\r\n" in resp
    assert head.endswith(b"\r\nX-A: 1")
    assert b"\r\nAllow: GET\r\n" in error_response(405, b"GET only")
    assert error_response(503, b"").endswith(b"Content-Length: 1\r\n\r\n\n")


@pytest.mark.parametrize(
    "code, phrase",
    [
        (400, b"Bad Request"), (403, b"Forbidden"), (404, b"Not Found"),
        (405, b"Method Not Allowed"), (414, b"URI Too Long"), (426, b"Upgrade Required"),
        (431, b"Request Header Fields Too Large"), (500, b"Internal Server Error"),
        (503, b"Service Unavailable"), (505, b"HTTP Version Not Supported"),
        (418, b"Client Error"), (599, b"Server Error"),
    ],
)
def test_status_phrases(code: int, phrase: bytes) -> None:
    assert error_response(code, b"x").startswith(b"HTTP/1.1 %d %s\r\n" % (code, phrase))
    assert ffi.string(lib.ws_handshake_status_phrase(code)) == phrase


def test_error_response_small_buffer_and_bad_status() -> None:
    full = error_response(400, b"reason")
    assert error_response(400, b"reason", cap=len(full)) == full
    assert error_response(400, b"reason", cap=len(full) - 1) == b""
    assert error_response(0, b"reason") == b""
    assert error_response(1000, b"reason") == b""


def test_fail_result_feeds_error_response() -> None:
    with handshake() as hs:
        assert feed(hs, [request(drop=(b"sec-websocket-version",),
                                 extra=[(b"Sec-WebSocket-Version", b"8")])])[0] == FAIL
        code = lib.ws_handshake_fail_status(hs)
        reason = ffi.string(lib.ws_handshake_fail_reason(hs))
        resp = error_response(code, reason)
        assert resp.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
        assert resp.endswith(b"\r\n\r\n" + reason + b"\n")


# ---- robustness ----------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=6))
def test_random_bytes_never_crash(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:], strict=False)]
    with handshake(make_limits(url=64, headers=8, header_bytes=256)) as hs:
        status = NEED_MORE
        for chunk in chunks:
            status, used = execute(hs, chunk)  # asserts used <= len(chunk)
            if status != NEED_MORE:
                assert execute(hs, b"more") == (status, 0)
                assert lib.ws_handshake_fail_status(hs) != 0 or status == UPGRADE
                break
            assert used == len(chunk)
        snapshot(hs, status, 0)


_lines = st.sampled_from([
    b"Host: x", b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Key: " + KEY,
    b"Sec-WebSocket-Version: 13", b"Content-Length: 0", b"X: \t", b"", b"Upgrade: h2c",
])


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_lines, max_size=10), tail=st.binary(max_size=20),
       split=st.integers(0, 400))
def test_random_requests_split_consistently(lines: list[bytes], tail: bytes, split: int) -> None:
    data = b"GET / HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + tail
    whole = run(data)
    assert run([data[:split], data[split:]]) == whole
    if whole["status"] in (UPGRADE, HTTP):
        # RFC 7230 3.5: a bare LF may end a line, so "\n\n" ends a head too.
        assert data[: whole["consumed"]].endswith((b"\n\r\n", b"\n\n"))


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
@pytest.mark.skipif(bool(os.environ.get("WSUV_SANITIZE")),
                    reason="ASan's quarantine holds freed memory, so RSS says nothing there; "
                    "make memcheck (valgrind) checks these paths for leaks")
def test_no_leak_over_many_handshakes() -> None:
    big = request(extra=[(b"Cookie", b"c" * 4000)] + [(b"X-%d" % i, b"v") for i in range(40)])
    inputs = [VALID, big, request(drop=(b"host",)), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
              b"\x00\x01garbage", request(target=b"/" + b"a" * 9000)]

    def cycle(n: int) -> None:
        for _ in range(n):
            for data in inputs:
                with handshake() as hs:
                    feed(hs, [data[:100], data[100:]])

    cycle(500)  # warm up the allocator
    before = _rss_kib()
    cycle(3000)  # ~ 18000 handshakes; leaking even the span array would show
    assert _rss_kib() - before < 2048
