#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<harness>/ from valid (and a few
deliberately invalid) WebSocket traffic.

Plain Python, no dependencies, deterministic (fixed mask keys from a seeded
PRNG), so re-running it reproduces the committed files. Each input starts with
the harness's configuration bytes (see the comment at the top of each
harness). Usage: python3 fuzz/gen_corpus.py [outdir]   (default fuzz/corpus)
"""

from __future__ import annotations

import hashlib
import random
import struct
import sys
from pathlib import Path

RNG = random.Random(6455)


def frame(op: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          mask: bool = True, key: bytes | None = None) -> bytes:
    """One RFC 6455 frame; masked with a fixed-seed key unless mask=False."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | op
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    if key is None:
        key = bytes(RNG.randrange(256) for _ in range(4))
    body = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + body


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


TEXT = "héllo wörld € 😀".encode()

# ---- frame parser: [role|rsv<<2, max_frame, seed, seed] + stream ----------


def frame_parser() -> dict[str, bytes]:
    srv, cli, any_ = 0, 1, 2
    rsv1 = 4 << 2  # header-byte bit 0x40 allowed
    seqs = {
        "client_text": (srv, frame(1, b"Hello, WebSocket")),
        "client_binary_16bit": (srv, frame(2, bytes(range(256)) * 2)),
        "client_fragmented_ping": (srv, frame(1, b"frag", fin=False) + frame(9, b"ping")
                                   + frame(0, b"ment", fin=False) + frame(0, b"ed")),
        "client_close": (srv, frame(8, close_payload(1000, b"bye"))),
        "client_empty_frames": (srv, frame(2, b"", fin=False) + frame(0, b"", fin=False)
                                + frame(0, b"") + frame(10, b"") + frame(8, b"")),
        "client_64bit_partial": (srv, frame(2, bytes(70000))[:600]),
        "client_session": (srv, frame(1, b"a" * 125) + frame(1, b"b" * 126)
                           + frame(9, b"x" * 125) + frame(2, bytes(300))
                           + frame(8, close_payload(1001))),
        "server_text": (cli, frame(1, TEXT, mask=False)),
        "server_mixed": (cli, frame(2, bytes(200), mask=False, fin=False)
                         + frame(10, b"pong", mask=False) + frame(0, b"end", mask=False)),
        "any_both": (any_, frame(1, b"masked") + frame(1, b"plain", mask=False)),
        "rsv1_compressed": (srv | rsv1, frame(1, b"\xf2\x48\xcd", rsv=0x40)
                            + frame(0, b"abc")),
        "err_rsv": (srv, frame(1, b"x", rsv=0x20)),
        "err_opcode": (srv, frame(3, b"x")),
        "err_control_long": (srv, bytes([0x89, 0xFE, 0, 126]) + bytes(130)),
        "err_control_fragmented": (srv, frame(9, b"p", fin=False)),
        "err_continuation": (srv, frame(0, b"x")),
        "err_expected_continuation": (srv, frame(1, b"a", fin=False) + frame(1, b"b")),
        "err_nonminimal16": (srv, bytes([0x82, 0xFE, 0, 5, 1, 2, 3, 4]) + bytes(5)),
        "err_nonminimal64": (srv, bytes([0x82, 0xFF]) + struct.pack("!Q", 300) + bytes(8)),
        "err_msb64": (srv, bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 63) + bytes(4)),
        "err_unmasked": (srv, frame(1, b"x", mask=False)),
        "err_masked_from_server": (cli, frame(1, b"x")),
    }
    out = {}
    for name, (cfg, data) in seqs.items():
        out[name] = bytes([cfg, 0, 1, 2]) + data
    # Size limits: a frame just under, at and over a small limit.
    out["limit_at"] = bytes([srv, 16, 3, 4]) + frame(2, bytes(16))
    out["limit_over"] = bytes([srv, 16, 5, 6]) + frame(2, bytes(17))
    out["limit_pow2"] = bytes([srv, 128 + 10, 7, 8]) + frame(2, bytes(1024)) + frame(2, bytes(1025))
    return out


# ---- UTF-8: [seed] + text ---------------------------------------------------


def utf8() -> dict[str, bytes]:
    texts = {
        "ascii": b"The quick brown fox jumps over the lazy dog 0123456789",
        "multilingual": "Ελληνικά русский 中文 日本語 한국어 עברית العربية".encode(),
        "emoji": "😀🎉👍🏽 🇩🇪".encode(),
        "boundaries": "".join(chr(c) for c in (0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000,
                                               0xFFFD, 0xFFFF, 0x10000, 0x10FFFF)).encode(),
        "long_ascii_then_multi": b"a" * 31 + "é".encode() + b"b" * 17 + "€".encode() + b"c" * 16,
        "multi_at_16": b"x" * 15 + "😀".encode() + b"y" * 40,
        "overlong_2": b"abc\xc0\x80def",
        "overlong_3": b"\xe0\x80\xafxyz",
        "overlong_4": b"\xf0\x80\x80\xaf",
        "surrogate": b"ok\xed\xa0\x80no",
        "above_max": b"\xf4\x90\x80\x80",
        "f5": b"\xf5\x80\x80\x80",
        "truncated_end": b"hello \xe2\x82",
        "cut_by_ascii": b"\xe2\x82a",
        "lone_continuation": b"abc\x80",
        "autobahn_6_3_1": bytes.fromhex("cebae1bdb9cf83cebcceb5eda080656469746564"),
        "valid_long_mixed": ("0123456789abcdef" * 4 + "ü" * 20 + "€" * 10).encode(),
    }
    return {name: bytes([i * 37 % 256]) + t for i, (name, t) in enumerate(texts.items())}


# ---- handshake: [max_url, max_headers, max_header_bytes, seed] + request ---

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def req(target: bytes = b"/chat", headers: list[tuple[bytes, bytes]] | None = None,
        method: bytes = b"GET", version: bytes = b"HTTP/1.1", eol: bytes = b"\r\n") -> bytes:
    if headers is None:
        headers = [(b"Host", b"server.example.com"), (b"Upgrade", b"websocket"),
                   (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Key", KEY),
                   (b"Sec-WebSocket-Version", b"13")]
    lines = [method + b" " + target + b" " + version]
    lines += [k + b": " + v for k, v in headers]
    return eol.join(lines) + eol + eol


def handshake() -> dict[str, bytes]:
    base = [(b"Host", b"server.example.com"), (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Key", KEY),
            (b"Sec-WebSocket-Version", b"13")]
    chrome = [(b"Host", b"localhost:8080"), (b"Connection", b"Upgrade"),
              (b"Pragma", b"no-cache"), (b"Cache-Control", b"no-cache"),
              (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
              (b"Upgrade", b"websocket"), (b"Origin", b"http://localhost:8080"),
              (b"Sec-WebSocket-Version", b"13"), (b"Accept-Encoding", b"gzip, deflate, br"),
              (b"Accept-Language", b"en-US,en;q=0.9"),
              (b"Sec-WebSocket-Key", b"x3JJHMbDL1EzLkh9GBhXDw=="),
              (b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits")]
    firefox = [(b"Host", b"example.org"), (b"User-Agent", b"Mozilla/5.0 Firefox/120.0"),
               (b"Accept", b"*/*"), (b"Sec-WebSocket-Version", b"13"),
               (b"Origin", b"https://example.org"), (b"Sec-WebSocket-Protocol", b"chat, superchat"),
               (b"Sec-WebSocket-Key", b"AQIDBAUGBwgJCgsMDQ4PEA=="),
               (b"Connection", b"keep-alive, Upgrade"), (b"Upgrade", b"websocket")]

    def drop(name: bytes) -> list[tuple[bytes, bytes]]:
        return [h for h in base if h[0] != name]

    def repl(name: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
        return [(k, value if k == name else v) for k, v in base]

    reqs = {
        "rfc_example": req(),
        "chrome": req(b"/ws?room=1&user=a%20b", chrome),
        "firefox": req(b"/socket", firefox),
        "with_first_frame": req() + frame(1, b"Hello"),
        "lowercase_tabs": req(b"/", [(k.lower(), b"\t" + v + b" ") for k, v in base]),
        "lf_only": req(eol=b"\n"),
        "plain_get": req(b"/index.html", [(b"Host", b"a"), (b"Accept", b"text/html")]),
        "pipelined": req(b"/a", [(b"Host", b"a")]) + req(b"/b", [(b"Host", b"a")]),
        "post_body": req(method=b"POST", headers=base + [(b"Content-Length", b"4")]) + b"abcd",
        "chunked": req(headers=base + [(b"Transfer-Encoding", b"chunked")]),
        "http10": req(version=b"HTTP/1.0"),
        "no_host": req(headers=drop(b"Host")),
        "two_hosts": req(headers=base + [(b"Host", b"b")]),
        "no_key": req(headers=drop(b"Sec-WebSocket-Key")),
        "bad_key": req(headers=repl(b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ")),
        "version_8": req(headers=repl(b"Sec-WebSocket-Version", b"8")),
        "upgrade_h2c": req(headers=repl(b"Upgrade", b"h2c")),
        "connection_close": req(headers=repl(b"Connection", b"close")),
        "connection_list": req(headers=repl(b"Connection", b"keep-alive,  upgrade ")),
        "repeated_upgrade": req(headers=base + [(b"Upgrade", b"foo")]),
        "malformed": b"GET /x HTTP/1.1\r\nHost a\r\n\r\n",
        "cr_no_lf": req()[:-1] + b"\x81",
    }
    out = {name: bytes([0, 0, 0, i]) + r for i, (name, r) in enumerate(reqs.items())}
    out["limit_url"] = bytes([4, 0, 0, 50]) + req(b"/a/long/path")
    out["limit_headers"] = bytes([0, 3, 0, 51]) + req()
    out["limit_bytes"] = bytes([0, 0, 100, 52]) + req()
    out["limit_bytes_mid"] = bytes([0, 0, 130, 53]) + req(b"/", chrome)
    return out


# ---- client handshake: [max_headers, max_header_bytes, max_body, mode, seed] -----

ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # for KEY, the nonce fuzz_clienths.c sends


def resp(status: bytes = b"101 Switching Protocols",
         headers: list[tuple[bytes, bytes]] | None = None, eol: bytes = b"\r\n",
         version: bytes = b"HTTP/1.1") -> bytes:
    if headers is None:
        headers = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                   (b"Sec-WebSocket-Accept", ACCEPT)]
    lines = [version + b" " + status] + [k + b": " + v for k, v in headers]
    return eol.join(lines) + eol + eol


def clienths() -> dict[str, bytes]:
    ok = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
          (b"Sec-WebSocket-Accept", ACCEPT)]
    server_frames = frame(1, b"Hi", mask=False) + frame(9, b"", mask=False)
    protos, exts, prefix, eof, request = 1, 2, 4, 8, 16
    cases: dict[str, tuple[int, bytes]] = {
        "rfc_101": (0, resp() + server_frames),
        "101_subprotocol": (protos, resp(headers=ok + [(b"Sec-WebSocket-Protocol", b"superchat")])),
        "101_extensions": (exts, resp(headers=ok + [
            (b"Sec-WebSocket-Extensions", b"permessage-deflate; server_no_context_takeover"),
            (b"Sec-WebSocket-Extensions", b"x-other")])),
        "101_case_lists": (0, resp(headers=[(b"upgrade", b"WebSocket"),
                                           (b"connection", b"keep-alive, upgrade"),
                                           (b"sec-websocket-accept", b" " + ACCEPT + b"\t")])),
        "101_lf_only": (0, resp(eol=b"\n") + server_frames),
        "101_folded_accept": (0, resp(headers=ok[:2]).replace(
            b"\r\n\r\n", b"\r\nSec-WebSocket-Accept:\r\n " + ACCEPT + b"\r\n\r\n")),
        "prefix_more_fields": (prefix | protos | exts, b"Sec-WebSocket-Protocol: chat\r\n"
                               b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
                               b"Server: x\r\n\r\n" + server_frames),
        "prefix_empty": (prefix, b"\r\n"),
        "wrong_accept": (0, resp(headers=ok[:2] + [(b"Sec-WebSocket-Accept", KEY)])),
        "two_accepts": (0, resp(headers=ok + [(b"Sec-WebSocket-Accept", ACCEPT)])),
        "no_upgrade": (0, resp(headers=ok[1:])),
        "connection_close": (0, resp(headers=[ok[0], (b"Connection", b"close"), ok[2]])),
        "protocol_list": (protos, resp(headers=ok + [(b"Sec-WebSocket-Protocol",
                                                      b"chat, superchat")])),
        "protocol_not_offered": (0, resp(headers=ok + [(b"Sec-WebSocket-Protocol", b"chat")])),
        "extensions_not_offered": (0, resp(headers=ok + [(b"Sec-WebSocket-Extensions", b"x")])),
        "http10_101": (0, resp(version=b"HTTP/1.0")),
        "cr_no_lf_end": (0, resp()[:-1] + server_frames),
        "cr_no_lf_status": (0, resp(status=b"101 OK\rX" + b"Sec-WebSocket-Accept: " + ACCEPT)),
        "refused_length": (0, resp(b"403 Forbidden", [(b"Content-Length", b"7")]) + b"go away"),
        "refused_chunked": (0, resp(b"401 Unauthorized", [(b"Transfer-Encoding", b"chunked")])
                            + b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
        "refused_to_eof": (eof, resp(b"500 Oops", [(b"Server", b"x")]) + b"no length"),
        "refused_cut_by_eof": (eof, resp(b"404 Not Found", [(b"Content-Length", b"100")]) + b"x"),
        "refused_no_body": (0, resp(b"204 No Content", [(b"Content-Length", b"3")]) + b"abc"),
        "eof_in_head": (eof, resp()[:40]),
        "garbage": (0, b"\x81\x05hello"),
        "interim_then_101": (0, resp(b"100 Continue", []) + resp(b"103 Early Hints", [
            (b"Link", b"</a>; rel=preload")]) + resp() + server_frames),
        "interim_then_403": (0, resp(b"100 Continue", [(b"X", b"y")])
                             + resp(b"403 Forbidden", [(b"Content-Length", b"2")]) + b"no"),
    }
    out = {name: bytes([0, 0, 0, mode, i]) + data for i, (name, (mode, data)) in
           enumerate(cases.items())}
    out["limit_headers"] = bytes([3, 0, 0, 0, 60]) + resp(headers=ok + [(b"X", b"y")])
    out["limit_head_bytes"] = bytes([0, 100, 0, 0, 61]) + resp()
    out["limit_body"] = bytes([0, 0, 4, 0, 62]) + resp(
        b"403 Forbidden", [(b"Content-Length", b"40")]) + bytes(range(40))

    def req_case(host: bytes, target: bytes, name: bytes, value: bytes) -> bytes:
        return bytes([len(host), len(target), len(name), len(value)]) + host + target + name \
            + value
    out["request_plain"] = bytes([0, 0, 0, request, 63]) + req_case(
        b"example.com", b"/chat?x=1", b"X-A", b"b")
    out["request_ipv6"] = bytes([0, 0, 0, request, 64]) + req_case(
        b"fe80::1%eth0", b"/", b"Cookie", b"a=1; b=2")
    out["request_injection"] = bytes([0, 0, 0, request, 65]) + req_case(
        b"example.com", b"/", b"X-A", b"v\r\nEvil: 1")
    out["request_host_field"] = bytes([0, 0, 0, request, 66]) + req_case(
        b"", b"", b"Host", b"virtual.example")
    return out


# ---- engine: [flags, max_message, max_fragments, seed] + peer bytes --------


def script(*recs: tuple[int, bytes]) -> bytes:
    """Script-mode records (see encode_script in fuzz_wsconn.c)."""
    out = b""
    for b0, payload in recs:
        n = len(payload)
        if n < 126:
            out += bytes([b0, n]) + payload
        else:
            out += bytes([b0, 126]) + struct.pack("!H", n) + payload
    return out


def wsconn() -> dict[str, bytes]:
    big = bytes(RNG.randrange(256) for _ in range(3000))
    streams = {
        "echo_text": frame(1, TEXT) + frame(2, b"\x00\x01\x02"),
        "fragmented_with_controls": frame(1, "héllo ".encode()[:2], fin=False) + frame(9, b"p1")
        + frame(0, "héllo ".encode()[2:], fin=False) + frame(10, b"") + frame(0, b"world"),
        "close_normal": frame(1, b"bye") + frame(8, close_payload(1000, "ciao ☺".encode()))
        + frame(1, b"after close"),
        "close_empty": frame(8, b""),
        "close_bad_code": frame(8, close_payload(1005)),
        "close_1byte": frame(8, b"\x03"),
        "close_bad_reason": frame(8, close_payload(1000, b"\xff")),
        "bad_utf8_text": frame(1, b"abc\xed\xa0\x80"),
        "utf8_split_over_fragments": frame(1, b"\xe2", fin=False) + frame(0, b"\x82", fin=False)
        + frame(0, b"\xac"),
        "utf8_truncated_message": frame(1, b"ok\xe2\x82"),
        "big_binary": frame(2, big),
        "big_fragmented": frame(2, big[:1000], fin=False) + frame(0, big[1000:2000], fin=False)
        + frame(0, big[2000:]),
        "unmasked": frame(1, b"x", mask=False),
        "many_small_fragments": frame(2, b"a", fin=False)
        + b"".join(frame(0, b"b", fin=False) for _ in range(40)) + frame(0, b"c"),
        "ping_flood": b"".join(frame(9, bytes([i]) * i) for i in range(0, 120, 7)),
    }
    out = {}
    for i, (name, s) in enumerate(streams.items()):
        out[name] = bytes([0, 0, 0, i]) + s  # passive, default limits
    out["want_control"] = bytes([1, 0, 0, 40]) + streams["fragmented_with_controls"]
    out["active_session"] = bytes([1 | 3 << 2 | 1 << 4, 0, 0, 41]) + streams["echo_text"] \
        + streams["fragmented_with_controls"] + streams["big_fragmented"]
    out["active_close"] = bytes([2 << 2, 0, 0, 42]) + streams["close_normal"]
    out["limit_message"] = bytes([0, 128 + 16, 0, 43]) + streams["big_fragmented"]
    out["limit_fragments"] = bytes([0, 255, 10, 44]) + streams["many_small_fragments"]
    out["limit_tiny"] = bytes([0, 5, 3, 45]) + frame(2, b"1234") + frame(2, b"123456")
    out["script_session"] = bytes([2, 0, 0, 46]) + script(
        (0x01, b"hello"), (0x89, b"ping"), (0x02, b"frag"), (0x80, b"ment"),
        (0x88, close_payload(1000)))
    out["script_big"] = bytes([2 | 1 << 2, 200, 0, 47]) + bytes([0x02, 126, 0x30, 0x00]) + b"xyz"
    out["script_huge_claim"] = bytes([2, 0, 0, 48]) + bytes([0x82, 127, 40]) + b"abc"
    return out


# ---- Python API: [mode, config, seed] + data (see fuzz_python.py) -----------


def python() -> dict[str, bytes]:
    out = {}
    fp = frame_parser()
    for i, name in enumerate(("client_fragmented_ping", "client_session", "server_mixed",
                              "rsv1_compressed", "err_expected_continuation", "limit_over")):
        data = fp[name]
        role = data[0] % 3
        rsv = (data[0] >> 2) & 7
        rsv_allowed = (1 if rsv & 4 else 0) | (2 if rsv & 2 else 0) | (4 if rsv & 1 else 0)
        size = 2 << 5 if name == "limit_over" else 0  # max_size 16
        out["frames_" + name] = bytes([0, role | rsv_allowed << 2 | size, i]) + data[4:]
    for i, name in enumerate(("multilingual", "boundaries", "multi_at_16", "surrogate",
                              "truncated_end", "cut_by_ascii")):
        out["utf8_" + name] = bytes([1, 0, i]) + utf8()[name][1:]
    out["encode_text"] = bytes([2, 0, 1, 0x81]) + TEXT
    out["encode_masked_ping"] = bytes([2, 0x10, 2, 0x89]) + b"ping"
    out["encode_16bit"] = bytes([2, 1, 3, 0x02]) + bytes(range(256)) * 2
    out["encode_rsv1_cont"] = bytes([2, 0x10, 4, 0x40]) + b"x"
    out["all_session"] = bytes([3, 2, 5]) + fp["client_session"][4:]
    big = bytes(RNG.randrange(256) for _ in range(3000))
    out["frames_big"] = bytes([0, 0, 6]) + frame(2, big, fin=False) + frame(9, b"p") \
        + frame(0, big[:1500])
    return out


def pmd_script(*recs: tuple[int, bytes]) -> bytes:
    """Script records of fuzz_pmdeflate.c: op, 16-bit length, data."""
    return b"".join(bytes([op]) + struct.pack("<H", len(d)) + d for op, d in recs)


def pmdeflate() -> dict[str, bytes]:
    import zlib

    out: dict[str, bytes] = {}
    offers = {
        "chrome": b"permessage-deflate; client_max_window_bits",
        "firefox": b"permessage-deflate",
        "window8": b"permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
        "fallback": b"permessage-deflate; server_max_window_bits=7, permessage-deflate; "
                    b"client_max_window_bits=10",
        "quoted": b'x; y="a,b", permessage-deflate; client_max_window_bits="9"',
        "nct": b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "dup": b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    }
    for name, value in offers.items():
        out[f"offer_{name}"] = bytes([0, 0x3C, 0, 0]) + value
    json_msg = b'{"id": 1, "name": "alpha", "tags": ["a", "b"], "ok": true}' * 4
    out["script_text"] = bytes([1, 0x3F, 0, 1]) + pmd_script(
        (0, json_msg), (0x20 | 0, json_msg), (2, b"ping"), (1, bytes(range(200))))
    out["script_echo"] = bytes([3, 0x3F, 0, 2]) + pmd_script(
        (0, json_msg), (0x40 | 1, json_msg * 3), (0x08 | 0, b"plain text"))
    out["script_nct_small_windows"] = bytes([1 | 4 | 8, 0x09, 0, 3]) + pmd_script(
        (0, json_msg), (0, json_msg))
    out["script_bomb"] = bytes([3, 0x3F, 4, 4]) + pmd_script((3, b"\0" * 300))
    out["script_bad_rsv"] = bytes([1, 0x3F, 0, 5]) + pmd_script((0x10 | 0x20, json_msg))
    out["script_corrupt"] = bytes([1, 0x3F, 0, 6]) + pmd_script((0x04 | 1, json_msg))
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    z = (c.compress(json_msg) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    out["raw_compressed"] = bytes([2, 0x3F, 0, 7]) + frame(1, z, rsv=0x40) + frame(
        9, b"p", rsv=0x40)
    # Mode 2 with bit 7: payload records (flags, 16-bit length, bytes sent as
    # they are with RSV1): valid ones, one ending in a final block, a flipped
    # byte, a truncation, random bytes; with and without takeover.
    c = zlib.compressobj(6, zlib.DEFLATED, -9)
    z1 = (c.compress(json_msg) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    z2 = (c.compress(json_msg[::-1]) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    final = zlib.compress(json_msg, 6, -9)
    flipped = bytes([z1[0], z1[1] ^ 0x20]) + z1[2:]
    out["payloads_takeover"] = bytes([0x82, 0x09, 0, 8]) + pmd_script(
        (0, z1), (0x02 | 1, z2), (0, final), (1, z1[: len(z1) // 2]), (0x04, flipped))
    out["payloads_nct"] = bytes([0x82 | 4, 0x3F, 2, 9]) + pmd_script(
        (0, final), (1, bytes(range(40))), (0x06, z1))
    return out


# ---- TLS, server role: [mode, seed] + data (see fuzz/fuzz_tls.c) ---------


def tls() -> dict[str, bytes]:
    record = bytes([0x16, 0x03, 0x01, 0x00, 0x05]) + b"\x01\x00\x00\x01\x00"
    return {
        "plain_http": b"\x00\x01" + req(),
        "plain_ws_frame": b"\x00\x02" + frame(1, b"hello"),
        "short_handshake_record": b"\x00\x03" + record,
        "alert_record": b"\x00\x04" + bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]),
        "after_handshake_appdata": b"\x01\x05" + bytes([0x17, 0x03, 0x03, 0x00, 0x11])
        + bytes(17),
        "after_handshake_huge_length": b"\x01\x06" + bytes([0x17, 0x03, 0x03, 0xff, 0xff]),
        "clean_handshake": b"\x02\x07",
        "edited_hello": b"\x02\x08" + bytes([5, 0x01, 40, 0x80, 90, 0xff]),
    }


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "corpus"
    total_files = total_bytes = 0
    for harness, gen in (("fuzz_frame_parser", frame_parser), ("fuzz_utf8", utf8),
                         ("fuzz_handshake", handshake), ("fuzz_wsconn", wsconn),
                         ("fuzz_pmdeflate", pmdeflate), ("fuzz_python", python),
                         ("fuzz_clienths", clienths), ("fuzz_tls", tls)):
        d = root / harness
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        for name, data in gen().items():
            digest = hashlib.sha1(data).hexdigest()[:8]
            (d / f"{name}-{digest}").write_bytes(data)
            total_files += 1
            total_bytes += len(data)
    print(f"wrote {total_files} files, {total_bytes} bytes under {root}")


if __name__ == "__main__":
    main()
