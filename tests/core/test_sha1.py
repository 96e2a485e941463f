"""csrc/sha1: SHA-1 against hashlib, base64 against the base64 module, and
the RFC 6455 Sec-WebSocket-Accept example."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsuv._core import ffi, lib
from wsuv.accept import accept_key

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def sha1(data: bytes) -> bytes:
    out = ffi.new("uint8_t[]", lib.WS_SHA1_DIGEST_LEN)
    lib.ws_sha1(data, len(data), out)
    return bytes(ffi.buffer(out))


def sha1_chunked(chunks: list[bytes]) -> bytes:
    ctx = ffi.new("ws_sha1_ctx *")
    out = ffi.new("uint8_t[]", lib.WS_SHA1_DIGEST_LEN)
    lib.ws_sha1_init(ctx)
    for chunk in chunks:
        lib.ws_sha1_update(ctx, chunk, len(chunk))
    lib.ws_sha1_final(ctx, out)
    return bytes(ffi.buffer(out))


def b64encode(data: bytes, cap: int | None = None) -> bytes | None:
    need = (len(data) + 2) // 3 * 4
    cap = need if cap is None else cap
    dst = ffi.new("char[]", max(cap, 1))
    n = lib.ws_base64_encode(data, len(data), dst, cap)
    if n == 0 and data:
        return None
    return bytes(ffi.buffer(dst, n))


def b64decode(text: bytes, cap: int | None = None) -> bytes | None:
    cap = len(text) if cap is None else cap
    dst = ffi.new("uint8_t[]", max(cap, 1))
    n = lib.ws_base64_decode(text, len(text), dst, cap)
    return None if n < 0 else bytes(ffi.buffer(dst, n))


# ---- SHA-1 ---------------------------------------------------------------


def test_sha1_every_length_to_300() -> None:
    # Covers every position of the 0x80 pad byte and the length field
    # relative to the 64-byte block, including the extra-block case (56..63).
    rng = random.Random(6455)
    for n in range(301):
        data = rng.randbytes(n)
        assert sha1(data) == hashlib.sha1(data).digest(), n


def test_sha1_known_vectors() -> None:
    assert sha1(b"").hex() == "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    assert sha1(b"abc").hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert sha1(b"a" * 1_000_000).hex() == "34aa973cd4c4daa4f61eeb2bdbad27316534016f"


@given(st.binary(max_size=2000))
def test_sha1_random(data: bytes) -> None:
    assert sha1(data) == hashlib.sha1(data).digest()


@given(st.lists(st.binary(max_size=150), max_size=12))
def test_sha1_incremental_any_split(chunks: list[bytes]) -> None:
    assert sha1_chunked(chunks) == hashlib.sha1(b"".join(chunks)).digest()


# ---- base64 encode -------------------------------------------------------


@given(st.binary(max_size=300))
def test_base64_encode_matches_stdlib(data: bytes) -> None:
    assert b64encode(data) == base64.b64encode(data)


def test_base64_encode_capacity() -> None:
    assert b64encode(b"") == b""
    for n in range(1, 10):
        need = (n + 2) // 3 * 4
        assert b64encode(b"x" * n, need) == base64.b64encode(b"x" * n)
        assert b64encode(b"x" * n, need - 1) is None


# ---- base64 decode -------------------------------------------------------


@given(st.binary(max_size=300))
def test_base64_decode_roundtrip(data: bytes) -> None:
    assert b64decode(base64.b64encode(data)) == data


def stdlib_strict(text: bytes) -> bytes | None:
    """Decoded bytes if text is canonical, strictly padded base64, else None."""
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    # Re-encoding rules out what the stdlib tolerates: data after padding and
    # non-zero bits in the last character before the padding.
    return data if base64.b64encode(data) == text else None


@given(st.text(alphabet=B64_CHARS + "=-_ \n*", max_size=24))
def test_base64_decode_agrees_with_strict_stdlib(text: str) -> None:
    raw = text.encode("ascii")
    assert b64decode(raw) == stdlib_strict(raw)


@given(st.binary(max_size=40))
def test_base64_decode_arbitrary_bytes(raw: bytes) -> None:
    assert b64decode(raw) == stdlib_strict(raw)


@pytest.mark.parametrize(
    "text",
    [
        # characters outside the standard alphabet
        b"AAA*", b"AA A", b"AAAA\n", b"AAA-", b"AA_A", b"\x00AAA", b"AA\xc3\xa9",
        # bad padding
        b"A===", b"====", b"AA=A", b"=AAA", b"A=AA", b"AAA=AAAA", b"AA==AA==", b"AAAA====",
        # non-zero bits discarded by the padding
        b"AB==", b"AAB=", b"//==", b"AA/=",
        # wrong length
        b"A", b"AA", b"AAA", b"AAAAA", b"AA=", b"AAAA=",
    ],
)
def test_base64_decode_rejects(text: bytes) -> None:
    assert b64decode(text) is None


def test_base64_decode_capacity() -> None:
    assert b64decode(b"") == b""
    assert b64decode(b"AAAA", 3) == b"\0\0\0"
    assert b64decode(b"AAAA", 2) is None
    assert b64decode(b"AAA=", 2) == b"\0\0"
    assert b64decode(b"AAA=", 1) is None
    assert b64decode(b"AA==", 1) == b"\0"
    assert b64decode(b"AA==", 0) is None
    key = base64.b64encode(bytes(range(16)))
    assert b64decode(key, 16) == bytes(range(16))


# ---- Sec-WebSocket-Accept ------------------------------------------------


def test_accept_rfc6455_example() -> None:
    # RFC 6455 section 1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert lib.WS_ACCEPT_LEN == 28


@given(st.binary(max_size=64))
def test_accept_matches_definition(key: bytes) -> None:
    expected = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode("ascii")
    assert accept_key(key) == expected
    assert accept_key(key.decode("latin-1")) == expected
