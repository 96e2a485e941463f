"""csrc/redisproto: the Redis bridge's envelope codec and pubsub URL parser."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsuv._core import ffi, lib

ORIGIN = bytes(range(16))


def header(origin: bytes, seq: int, opcode: int, epoch: int = 1) -> bytes:
    out = ffi.new("uint8_t[32]")
    assert lib.ws_redis_envelope_header(out, origin, epoch, seq, opcode) == 32
    return bytes(out)


def decode(data: bytes) -> tuple[int, Any]:
    env = ffi.new("ws_redis_envelope *")
    buf = ffi.new("char[]", data)
    rc = lib.ws_redis_envelope_decode(buf, len(data), env)
    if rc:
        return rc, None
    payload = bytes(ffi.buffer(env.payload, env.len)) if env.len else b""
    assert (env.payload == ffi.NULL) == (env.len == 0)
    return rc, (bytes(env.origin), env.epoch, env.seq, env.opcode, payload)


def test_header_layout() -> None:
    h = header(ORIGIN, 0x0102030405060708, 2, epoch=0x0A0B0C0D)
    assert h == b"wU\x02\x02" + ORIGIN + bytes([10, 11, 12, 13, 1, 2, 3, 4, 5, 6, 7, 8])
    out = ffi.new("uint8_t[32]")
    assert lib.ws_redis_envelope_header(out, ORIGIN, 1, 1, 9) == lib.WS_REDIS_ENV_BAD_OPCODE


@given(st.binary(min_size=16, max_size=16), st.integers(0, 2**32 - 1),
       st.integers(0, 2**64 - 1), st.sampled_from([1, 2]), st.binary(max_size=300))
def test_round_trip(origin: bytes, epoch: int, seq: int, opcode: int, payload: bytes) -> None:
    got = decode(header(origin, seq, opcode, epoch) + payload)
    assert got == (0, (origin, epoch, seq, opcode, payload))


@given(st.binary(max_size=64))
def test_decode_never_misreads(data: bytes) -> None:
    """Any bytes: either the documented error for the first bad field, or a
    version-2 envelope whose fields are the bytes at their offsets."""
    rc, env = decode(data)
    if len(data) < 32:
        assert rc == lib.WS_REDIS_ENV_SHORT
    elif data[:2] != b"wU":
        assert rc == lib.WS_REDIS_ENV_BAD_MAGIC
    elif data[2] != 2:
        assert rc == lib.WS_REDIS_ENV_BAD_VERSION  # version 1 too: never misread
    elif data[3] not in (1, 2):
        assert rc == lib.WS_REDIS_ENV_BAD_OPCODE
    else:
        assert rc == 0 and env == (data[4:20], int.from_bytes(data[20:24], "big"),
                                   int.from_bytes(data[24:32], "big"), data[3], data[32:])


@pytest.mark.parametrize("data,err", [
    (b"", lib.WS_REDIS_ENV_SHORT),
    (b"wU\x02\x01" + ORIGIN + b"\x00" * 11, lib.WS_REDIS_ENV_SHORT),
    (b"hello world, not an envelope at all", lib.WS_REDIS_ENV_BAD_MAGIC),
    (b"wU\x01\x01" + ORIGIN + b"\x00" * 12, lib.WS_REDIS_ENV_BAD_VERSION),  # version 1
    (b"wU\x03\x01" + ORIGIN + b"\x00" * 12, lib.WS_REDIS_ENV_BAD_VERSION),
    (b"wU\x02\x00" + ORIGIN + b"\x00" * 12, lib.WS_REDIS_ENV_BAD_OPCODE),
    (b"wU\x02\x08" + ORIGIN + b"\x00" * 12, lib.WS_REDIS_ENV_BAD_OPCODE),
])
def test_malformed_envelopes(data: bytes, err: int) -> None:
    assert decode(data) == (err, None)
    assert ffi.string(lib.ws_redis_envelope_strerror(err))


def parse(url: str) -> dict[str, Any]:
    u = ffi.new("ws_redis_url *")
    err = ffi.new("const char **")
    raw = url.encode()
    rc = lib.ws_redis_url_parse(raw, len(raw), u, err)
    if rc:
        return {"error": ffi.string(err[0]).decode()}
    return {"unix": u.is_unix, "host": ffi.string(u.host).decode(), "port": u.port,
            "path": ffi.string(u.path).decode(), "user": ffi.string(u.user).decode(),
            "password": ffi.string(u.password).decode(), "db": u.db}


def tcp(host: str, port: int = 6379, db: int = 0, password: str = "",
        user: str = "") -> dict[str, Any]:
    return {"unix": 0, "host": host, "port": port, "path": "", "user": user,
            "password": password, "db": db}


def unix(path: str, db: int = 0, password: str = "", user: str = "") -> dict[str, Any]:
    return {"unix": 1, "host": "", "port": 0, "path": path, "user": user,
            "password": password, "db": db}


GOOD = [
    ("redis://127.0.0.1:6380/2", tcp("127.0.0.1", 6380, 2)),
    ("redis://localhost", tcp("localhost")),
    ("redis://localhost/", tcp("localhost")),
    ("REDIS://h:1/65535", tcp("h", 1, 65535)),
    ("redis://:s3cret@10.0.0.1:6379/0", tcp("10.0.0.1", password="s3cret")),
    ("redis://alice:pw@h:7000", tcp("h", 7000, user="alice", password="pw")),
    ("redis://:p%40ss%3Aw@h", tcp("h", password="p@ss:w")),
    ("redis://:a@b@h", tcp("h", password="a@b")),
    ("redis://[::1]:7000/1", tcp("::1", 7000, 1)),
    ("redis://[fe80::1]", tcp("fe80::1")),
    ("unix:///run/redis.sock", unix("/run/redis.sock")),
    ("unix:///run/redis.sock?db=3", unix("/run/redis.sock", 3)),
    ("redis+unix:///tmp/r.sock?db=1&password=x%26y", unix("/tmp/r.sock", 1, "x&y")),
    ("unix:///tmp/r.sock?user=bob&password=pw", unix("/tmp/r.sock", password="pw", user="bob")),
]

BAD = [
    ("", "empty pubsub URL"),
    ("http://h:1", "unknown scheme"),
    ("h:6379", "unknown scheme"),
    ("rediss://h:6380", "TLS) is not supported"),
    ("redis://", "missing host"),
    ("redis://:pw@/0", "missing host"),
    ("redis://:6379", "missing host"),
    ("redis://h:0", "bad port"),
    ("redis://h:65536", "bad port"),
    ("redis://h:", "bad port"),
    ("redis://h:12ab", "bad port"),
    ("redis://h/x", "bad database number"),
    ("redis://h/1/2", "bad database number"),
    ("redis://h/65536", "bad database number"),
    ("redis://pw@h", "user info without ':'"),
    ("redis://:p%4@h", "bad %-escape"),
    ("redis://:p%zz@h", "bad %-escape"),
    ("redis://:p%00@h", "%00"),
    ("redis://[::1", "unterminated [IPv6]"),
    ("redis://[::1]x", "after the ']'"),
    ("redis://h h", "bad character in the host"),
    ("redis://" + "h" * 256, "host longer than 255"),
    ("redis://:" + "p" * 256 + "@h", "password longer than 255"),
    ("unix://", "without a path"),
    ("unix://relative.sock", "must be absolute"),
    ("unix:///" + "p" * 107, "longer than 107"),
    ("unix:///s?db=x", "bad database number"),
    ("unix:///s?db=70000", "bad database number"),
    ("unix:///s?timeout=1", "unknown query parameter"),
    ("unix:///s?", "unknown query parameter"),
]


@pytest.mark.parametrize("url,want", GOOD)
def test_url_good(url: str, want: dict[str, Any]) -> None:
    assert parse(url) == want


@pytest.mark.parametrize("url,error", BAD)
def test_url_bad(url: str, error: str) -> None:
    got = parse(url)
    assert "error" in got, got
    assert error in got["error"]


def test_url_nul_byte() -> None:
    u = ffi.new("ws_redis_url *")
    err = ffi.new("const char **")
    assert lib.ws_redis_url_parse(b"redis://h\x00x", 11, u, err) == -1
    assert b"NUL" in ffi.string(err[0])
