"""permessage-deflate (RFC 7692) in C, without sockets: csrc/pmdeflate.c and the engine.

Negotiation is table-driven (one row per named offer); the streams are
checked against Python's ``zlib`` as the reference implementation, with
hypothesis choosing messages and split points; the engine (wsconn.c) is fed
compressed frames and must inflate, validate and limit them as RFC 7692 and
RFC 6455 say.
"""

from __future__ import annotations

import os
import random
import weakref
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib
from wsuv.frames import Frame, FrameParser, encode_frame

MASK = b"\x11\x22\x33\x44"
TEXT, BINARY, CONT = lib.WS_OP_TEXT, lib.WS_OP_BINARY, lib.WS_OP_CONTINUATION
CLOSE, PING = lib.WS_OP_CLOSE, lib.WS_OP_PING
TAIL = b"\x00\x00\xff\xff"
KiB = 1024
MiB = 1024 * KiB


def default_config(**changes: int) -> Any:
    cfg = ffi.new("ws_pmd_config *")
    lib.ws_pmd_config_default(cfg)
    for k, v in changes.items():
        setattr(cfg, k, v)
    return cfg


# ---- negotiation: the server's answer to named offers ------------------------

CHROME = "permessage-deflate; client_max_window_bits"
FIREFOX = "permessage-deflate"

# (name, offer, answer or None for "declined, no header at all")
SERVER_ROWS: list[tuple[str, str, str | None]] = [
    ("chrome", CHROME, "permessage-deflate; client_max_window_bits=14"),
    ("firefox-bare", FIREFOX, "permessage-deflate"),
    ("websockets-and-node-ws", "permessage-deflate; client_max_window_bits",
     "permessage-deflate; client_max_window_bits=14"),
    ("server-window-8", "permessage-deflate; server_max_window_bits=8",
     "permessage-deflate; server_max_window_bits=8"),
    ("client-window-8", "permessage-deflate; client_max_window_bits=8",
     "permessage-deflate; client_max_window_bits=8"),
    # A client that did not offer 8 is never asked for 8: see
    # test_a_client_window_of_8_is_asked_only_of_clients_that_offered_it.
    ("server-window-above-ours", "permessage-deflate; server_max_window_bits=15",
     "permessage-deflate; server_max_window_bits=12"),
    ("client-window-above-ours", "permessage-deflate; client_max_window_bits=15",
     "permessage-deflate; client_max_window_bits=14"),
    ("client-window-below-ours", "permessage-deflate; client_max_window_bits=10",
     "permessage-deflate; client_max_window_bits=10"),
    ("both-no-context-takeover",
     "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    ("all-four",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=10; client_max_window_bits=9",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=10; client_max_window_bits=9"),
    # The longest answer (128 characters): it once lost its last byte.
    ("all-four-two-digit-windows",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=12; client_max_window_bits=12",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=12; client_max_window_bits=12"),
    ("fallback-after-bad-window",
     "permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits=10",
     "permessage-deflate; client_max_window_bits=10"),
    ("fallback-after-unknown-extension", "x-webkit-deflate-frame, permessage-deflate",
     "permessage-deflate"),
    ("fallback-after-duplicate",
     "permessage-deflate; server_no_context_takeover; server_no_context_takeover, "
     "permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover"),
    ("fallback-after-garbage", "permessage-deflate; =, permessage-deflate", "permessage-deflate"),
    ("first-acceptable-wins",
     "permessage-deflate; client_max_window_bits=9, permessage-deflate",
     "permessage-deflate; client_max_window_bits=9"),
    ("duplicate-parameter", "permessage-deflate; client_max_window_bits; client_max_window_bits",
     None),
    ("duplicate-window-values",
     "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11", None),
    ("unknown-parameter", "permessage-deflate; foo", None),
    ("unknown-parameter-with-value", "permessage-deflate; max_window_bits=10", None),
    ("value-on-no-context-takeover", "permessage-deflate; server_no_context_takeover=1", None),
    ("server-window-without-value", "permessage-deflate; server_max_window_bits", None),
    ("server-window-empty-value", "permessage-deflate; server_max_window_bits=", None),
    ("window-16", "permessage-deflate; server_max_window_bits=16", None),
    ("window-7", "permessage-deflate; client_max_window_bits=7", None),
    ("window-0", "permessage-deflate; client_max_window_bits=0", None),
    ("window-leading-zero", "permessage-deflate; server_max_window_bits=09", None),
    ("window-negative", "permessage-deflate; server_max_window_bits=-9", None),
    ("window-not-a-number", "permessage-deflate; client_max_window_bits=ten", None),
    ("quoted-value", 'permessage-deflate; client_max_window_bits="10"',
     "permessage-deflate; client_max_window_bits=10"),
    ("quoted-pair-value", 'permessage-deflate; server_max_window_bits="1\\1"',
     "permessage-deflate; server_max_window_bits=11"),
    ("quoted-value-not-a-token", 'permessage-deflate; client_max_window_bits="1 0"', None),
    ("quoted-empty", 'permessage-deflate; client_max_window_bits=""', None),
    ("unterminated-quote", 'permessage-deflate; client_max_window_bits="10', None),
    ("quoted-comma-in-other-extension", 'foo; bar="a, permessage-deflate", permessage-deflate',
     "permessage-deflate"),
    ("case-insensitive-names", "PerMessage-Deflate; Client_Max_Window_Bits",
     "permessage-deflate; client_max_window_bits=14"),
    ("whitespace", " \tpermessage-deflate ;client_max_window_bits = 10\t ",
     "permessage-deflate; client_max_window_bits=10"),
    ("empty-elements", ", ,permessage-deflate,,", "permessage-deflate"),
    ("too-many-parameters", "permessage-deflate" + "; x" * 12, None),
    ("other-extension-only", "x-webkit-deflate-frame", None),
    ("empty", "", None),
    ("garbage-semicolons", ";;;", None),
    ("trailing-semicolon", "permessage-deflate;", None),
    ("name-with-slash", "permessage/deflate", None),
    ("control-bytes", "permessage-deflate\x00; client_max_window_bits", None),
    ("equals-without-name", "permessage-deflate; =10", None),
]


def negotiate(offer: str | bytes, cfg: Any = None) -> tuple[int, str, Any]:
    data = offer.encode("latin-1") if isinstance(offer, str) else offer
    out = ffi.new("ws_pmd_params *")
    resp = ffi.new("char[]", lib.WS_PMD_HEADER_MAX)
    n = ffi.new("size_t *")
    rc = lib.ws_pmd_negotiate(cfg if cfg is not None else default_config(), data, len(data),
                              out, resp, lib.WS_PMD_HEADER_MAX, n)
    return int(rc), ffi.unpack(resp, n[0]).decode(), out


@pytest.mark.parametrize(("offer", "answer"), [(o, a) for _n, o, a in SERVER_ROWS],
                         ids=[n for n, _o, _a in SERVER_ROWS])
def test_server_negotiation_table(offer: str, answer: str | None) -> None:
    rc, got, params = negotiate(offer)
    if answer is None:
        assert (rc, got) == (0, "")  # declined: no header, never an empty one
        return
    assert (rc, got) == (1, answer)
    # What the engine will use agrees with what was answered.
    assert ("server_no_context_takeover" in answer) == bool(params.server_no_context_takeover)
    assert ("client_no_context_takeover" in answer) == bool(params.client_no_context_takeover)
    for side in ("server", "client"):
        key = f"{side}_max_window_bits="
        bits = getattr(params, f"{side}_max_window_bits")
        if key in answer:
            assert int(answer.split(key)[1].split(";")[0]) == bits
        else:
            assert bits == 15
    # The answer is itself a valid offer (it parses to the same parameters).
    again = ffi.new("ws_pmd_params *")
    assert lib.ws_pmd_format_answer(params, ffi.new("char[]", lib.WS_PMD_HEADER_MAX),
                                    lib.WS_PMD_HEADER_MAX) == len(answer)
    cfg15 = default_config(window_bits=15, peer_window_bits=15)
    rc2, _, again = negotiate(answer, cfg15)
    assert rc2 == 1


def test_server_answer_never_names_client_window_unless_offered() -> None:
    for _name, offer, answer in SERVER_ROWS:
        if answer is not None and "client_max_window_bits" not in offer.lower():
            assert "client_max_window_bits" not in answer


def test_our_choices_appear_in_the_answer() -> None:
    cfg = default_config(peer_no_context_takeover=1, no_context_takeover=1)
    rc, got, params = negotiate(FIREFOX, cfg)
    assert rc == 1
    assert got == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    cfg = default_config(window_bits=9, peer_window_bits=15)
    assert negotiate("permessage-deflate; server_max_window_bits=10; client_max_window_bits",
                     cfg)[1] == (
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=15")


def test_a_client_window_of_8_is_asked_only_of_clients_that_offered_it() -> None:
    """zlib cannot compress raw deflate within 8 bits; websockets' client fails
    the connection on an answer of 8 it did not offer (seen in conformance 13)."""
    cfg = default_config(peer_window_bits=8)
    for offer, bits in [("permessage-deflate; client_max_window_bits", 9),
                        ("permessage-deflate; client_max_window_bits=9", 9),
                        ("permessage-deflate; client_max_window_bits=15", 9),
                        ("permessage-deflate; client_max_window_bits=8", 8)]:
        assert negotiate(offer, cfg)[1] == f"permessage-deflate; client_max_window_bits={bits}"


def test_small_response_buffer_is_refused() -> None:
    out = ffi.new("ws_pmd_params *")
    n = ffi.new("size_t *")
    buf = ffi.new("char[16]")
    assert lib.ws_pmd_negotiate(default_config(), b"permessage-deflate", 18, out, buf, 16, n) == -1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_negotiation_never_crashes_and_answers_are_well_formed(data: bytes) -> None:
    rc, got, params = negotiate(data)
    assert rc in (0, 1)
    if rc:
        assert got.startswith("permessage-deflate")
        assert 8 <= params.server_max_window_bits <= 15
        assert 8 <= params.client_max_window_bits <= 15
    else:
        assert got == ""


# ---- negotiation: the client role --------------------------------------------

def client_offer(cfg: Any) -> str:
    buf = ffi.new("char[]", lib.WS_PMD_HEADER_MAX)
    n = lib.ws_pmd_client_offer(cfg, buf, lib.WS_PMD_HEADER_MAX)
    return ffi.unpack(buf, n).decode()


def client_accept(answer: str, cfg: Any) -> tuple[int, Any]:
    out = ffi.new("ws_pmd_params *")
    data = answer.encode("latin-1")
    return int(lib.ws_pmd_client_accept(cfg, data, len(data), out)), out


CLIENT_ROWS: list[tuple[str, str, int]] = [
    ("as-asked", "permessage-deflate; server_max_window_bits=12", 1),
    ("smaller-and-client-window",
     "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9", 1),
    ("with-no-context-takeover",
     "permessage-deflate; server_max_window_bits=12; client_no_context_takeover", 1),
    ("quoted", 'permessage-deflate; server_max_window_bits="11"', 1),
    ("no-extension", "", 0),
    ("missing-asked-server-window", "permessage-deflate", -1),
    ("server-window-larger-than-asked", "permessage-deflate; server_max_window_bits=13", -1),
    ("client-window-without-value",
     "permessage-deflate; server_max_window_bits=12; client_max_window_bits", -1),
    ("other-extension", "x-foo", -1),
    ("two-elements", "permessage-deflate; server_max_window_bits=12, permessage-deflate", -1),
    ("duplicate", "permessage-deflate; server_max_window_bits=12; server_max_window_bits=12", -1),
    ("unknown-parameter", "permessage-deflate; server_max_window_bits=12; foo", -1),
    ("garbage", "permessage-deflate; ;", -1),
]


@pytest.mark.parametrize(("answer", "expected"), [(a, e) for _n, a, e in CLIENT_ROWS],
                         ids=[n for n, _a, _e in CLIENT_ROWS])
def test_client_accept_table(answer: str, expected: int) -> None:
    cfg = default_config(peer_window_bits=12)
    assert client_offer(cfg) == "permessage-deflate; client_max_window_bits; " \
                                "server_max_window_bits=12"
    rc, params = client_accept(answer, cfg)
    assert rc == expected
    if rc == 1:
        assert params.server_max_window_bits <= 12


def test_client_offer_and_accept_follow_the_config() -> None:
    cfg = default_config(peer_window_bits=15, peer_no_context_takeover=1)
    assert client_offer(cfg) == "permessage-deflate; client_max_window_bits; " \
                                "server_no_context_takeover"
    assert client_accept("permessage-deflate", cfg)[0] == -1  # asked takeover off, not granted
    rc, params = client_accept("permessage-deflate; server_no_context_takeover", cfg)
    assert rc == 1 and params.server_no_context_takeover == 1
    assert params.server_max_window_bits == 15 and params.client_max_window_bits == 15
    # What our server answers, our client accepts.
    for _name, _offer, answer in SERVER_ROWS:
        if answer and "server_max_window_bits" in answer:
            assert client_accept(answer, default_config(peer_window_bits=15))[0] == 1


# ---- streams against Python's zlib ---------------------------------------------

class Streams:
    """One ws_pmd (server role) with its own accounting ctx."""

    def __init__(self, params: dict[str, int] | None = None, **cfg: int) -> None:
        self.ctx = ffi.new("ws_pmd_ctx *")
        lib.ws_pmd_ctx_init(self.ctx, default_config(**cfg))
        p = ffi.new("ws_pmd_params *")
        p.server_max_window_bits = p.client_max_window_bits = 15
        for k, v in (params or {}).items():
            setattr(p, k, v)
        self.m = lib.ws_pmd_new(self.ctx, p, lib.WS_PMD_SERVER)
        assert self.m != ffi.NULL
        weakref.finalize(self, lib.ws_pmd_free, self.m)

    def inflate(self, pieces: list[bytes], out_cap: int = 1000) -> bytes:
        out = ffi.new("uint8_t[]", out_cap)
        used = ffi.new("size_t *")
        got = ffi.new("size_t *")
        result = bytearray()
        for piece in pieces:
            buf = ffi.from_buffer(piece)
            off = 0
            while True:
                r = lib.ws_pmd_inflate(self.m, buf + off, len(piece) - off, used, out, out_cap, got)
                assert r in (lib.WS_PMD_OK, lib.WS_PMD_MORE), r
                result += ffi.buffer(out, got[0])
                off += used[0]
                if r == lib.WS_PMD_OK:
                    assert off == len(piece)
                    break
        while True:
            r = lib.ws_pmd_inflate_end(self.m, out, out_cap, got)
            assert r in (lib.WS_PMD_OK, lib.WS_PMD_MORE), r
            result += ffi.buffer(out, got[0])
            if r == lib.WS_PMD_OK:
                return bytes(result)

    def deflate(self, data: bytes, fin: bool = True) -> tuple[int, bytes]:
        out = ffi.new("const uint8_t **")
        n = ffi.new("size_t *")
        r = lib.ws_pmd_deflate(self.m, data, len(data), int(fin), out, n)
        return int(r), (bytes(ffi.buffer(out[0], n[0])) if r == lib.WS_PMD_OK else b"")


def py_compress(c: Any, data: bytes) -> bytes:
    """One message as a permessage-deflate sender writes it (RFC 7692 7.2.1)."""
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]


MESSAGE = st.one_of(
    st.binary(max_size=3000),
    st.text(max_size=800).map(lambda s: s.encode()),
    st.builds(lambda n, b: b * n, st.integers(0, 20000), st.sampled_from([b"a", b"{\"k\":1}"])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(MESSAGE, st.lists(st.integers(0, 4000), max_size=6)),
                min_size=1, max_size=5),
       st.sampled_from([9, 12, 15]), st.booleans(), st.integers(1, 5000))
def test_inflate_matches_zlib(messages: list[tuple[bytes, list[int]]], bits: int,
                              takeover: bool, out_cap: int) -> None:
    s = Streams({"client_max_window_bits": bits, "client_no_context_takeover": int(not takeover)})
    c = zlib.compressobj(6, zlib.DEFLATED, -bits)
    for data, cuts in messages:
        if not takeover:
            c = zlib.compressobj(6, zlib.DEFLATED, -bits)
        wire = py_compress(c, data)
        assert s.inflate(splits(wire, cuts), out_cap) == data


class RefInflater:
    """Python's zlib as the reference for arbitrary compressed payloads, with
    the receiver's rules of RFC 7692 7.2.2: the tail appended to each message;
    after a final block the rest of that message is ignored and the next one
    starts a new stream that still refers to the window (unless the sender
    resets per message)."""

    def __init__(self, bits: int, reset: bool) -> None:
        self.bits, self.reset = bits, reset
        self.history = b""
        self.d = zlib.decompressobj(-bits)

    def message(self, payload: bytes) -> bytes | None:
        """The inflated message, or None if the data is invalid (close 1007)."""
        try:
            out = self.d.decompress(payload + TAIL)
        except zlib.error:
            return None
        self.history = (self.history + out)[-(1 << self.bits):]
        if self.reset:
            self.history = b""
            self.d = zlib.decompressobj(-self.bits)
        elif self.d.eof:
            self.d = (zlib.decompressobj(-self.bits, zdict=self.history) if self.history
                      else zlib.decompressobj(-self.bits))
        return out


def mutated(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    """data with some bytes changed (position, xor) and possibly truncated."""
    b = bytearray(data)
    for pos, x in edits:
        if b:
            b[pos % len(b)] ^= x
    return bytes(b[:cut] if cut is not None else b)


def inflate_or_none(s: Streams, pieces: list[bytes], out_cap: int) -> bytes | None:
    """Streams.inflate, with WS_PMD_ERROR as None (the engine's 1007)."""
    out = ffi.new("uint8_t[]", out_cap)
    used, got = ffi.new("size_t *"), ffi.new("size_t *")
    result = bytearray()
    for piece in pieces:
        buf, off = ffi.from_buffer(piece), 0
        while True:
            r = lib.ws_pmd_inflate(s.m, buf + off, len(piece) - off, used, out, out_cap, got)
            if r == lib.WS_PMD_ERROR:
                return None
            assert r in (lib.WS_PMD_OK, lib.WS_PMD_MORE), r
            result += ffi.buffer(out, got[0])
            off += used[0]
            if r == lib.WS_PMD_OK:
                break
    while True:
        r = lib.ws_pmd_inflate_end(s.m, out, out_cap, got)
        if r == lib.WS_PMD_ERROR:
            return None
        assert r in (lib.WS_PMD_OK, lib.WS_PMD_MORE), r
        result += ffi.buffer(out, got[0])
        if r == lib.WS_PMD_OK:
            return bytes(result)


def compressed_variant(data: bytes, level: int, edits: list[tuple[int, int]], cut: int | None,
                       final: bool) -> bytes:
    """A message compressed within 9 bits, ending in a flush or in a final block
    (RFC 7692 7.2.3.4 allows both), then edited and possibly truncated."""
    z = (zlib.compress(data, level, -9) if final
         else py_compress(zlib.compressobj(level, zlib.DEFLATED, -9), data))
    return mutated(z, edits, cut)


PAYLOAD = st.one_of(
    st.binary(max_size=300),  # arbitrary bytes: mostly invalid, sometimes not
    st.builds(compressed_variant, MESSAGE, st.integers(1, 9),
              st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), max_size=3),
              st.one_of(st.none(), st.integers(0, 3000)), st.booleans()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(PAYLOAD, st.lists(st.integers(0, 3000), max_size=4)),
                min_size=1, max_size=6),
       st.sampled_from([8, 9, 12, 15]), st.booleans(), st.integers(1, 4000))
def test_arbitrary_compressed_payloads_inflate_as_zlib_does(
        payloads: list[tuple[bytes, list[int]]], bits: int, reset: bool, out_cap: int) -> None:
    """RSV1 payloads that no compressor wrote (random bytes, zlib output with
    flipped bytes, truncated, or ending in a final block): whatever the split,
    wsuv's inflater gives the bytes Python's zlib gives, message by message,
    or fails where zlib fails (and stays failed)."""
    s = Streams({"client_max_window_bits": bits, "client_no_context_takeover": int(reset)})
    ref = RefInflater(max(bits, 9), reset)  # wsuv inflates within at least 9 bits
    for payload, cuts in payloads:
        want = ref.message(payload)
        got = inflate_or_none(s, splits(payload, cuts), out_cap)
        assert got == want, (len(payload), None if want is None else len(want))
        if want is None:
            assert inflate_or_none(s, [b"\x00"], out_cap) is None  # broken for good
            return


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(MESSAGE, min_size=1, max_size=3), min_size=1, max_size=4),
       st.sampled_from([8, 9, 12, 15]), st.booleans())
def test_deflate_decodes_with_zlib(messages: list[list[bytes]], bits: int, takeover: bool) -> None:
    """Each inner list is one message sent in fragments (fin on the last)."""
    s = Streams({"server_max_window_bits": bits, "server_no_context_takeover": int(not takeover)},
                window_bits=15)
    # The peer's inflater has the negotiated window: 8 bits is what zlib calls 9 at least
    # for raw streams, but a stricter 8-bit decoder must work too, see below.
    d = zlib.decompressobj(-max(bits, 9))
    for fragments in messages:
        wire = b""
        raw = False
        for i, frag in enumerate(fragments):
            r, out = s.deflate(frag, fin=i == len(fragments) - 1)
            if r == lib.WS_PMD_RAW:
                assert not takeover and len(fragments) == 1
                raw = True
            else:
                assert r == lib.WS_PMD_OK
                wire += out
        if raw:
            continue
        if not takeover:
            d = zlib.decompressobj(-max(bits, 9))
        assert d.decompress(wire + TAIL) == b"".join(fragments)


def test_window_8_output_never_reaches_back_more_than_256_bytes() -> None:
    """zlib has no raw 8-bit compressor; the 9-bit one we use instead emits
    distances of at most 250 bytes, which an 8-bit (256-byte) inflater decodes."""
    s = Streams({"server_max_window_bits": 8}, window_bits=15)
    data = (os.urandom(200) * 3 + b"x" * 300) * 20
    r, out = s.deflate(data)
    assert r == lib.WS_PMD_OK
    d = zlib.decompressobj(-9)
    assert d.decompress(out + TAIL) == data
    # A 9-bit window is the smallest zlib inflates with; check the distances by
    # decoding with our own inflater configured for the negotiated 8 bits.
    s2 = Streams({"client_max_window_bits": 8})
    assert s2.inflate([out]) == data


def test_no_context_takeover_sends_raw_when_compression_would_grow() -> None:
    s = Streams({"server_no_context_takeover": 1})
    noise = os.urandom(500)
    assert s.deflate(noise)[0] == lib.WS_PMD_RAW
    r, out = s.deflate(b"abc" * 100)
    assert r == lib.WS_PMD_OK and len(out) < 300
    assert zlib.decompressobj(-15).decompress(out + TAIL) == b"abc" * 100
    # With context takeover the compressor has taken the bytes in: never raw.
    s2 = Streams()
    r, out = s2.deflate(noise)
    assert r == lib.WS_PMD_OK and len(out) >= 500


def test_empty_message_compresses_to_one_byte() -> None:
    r, out = Streams().deflate(b"")
    assert (r, out) == (lib.WS_PMD_OK, b"\x00")  # RFC 7692 7.2.3.6


def test_inflate_accepts_a_final_block_and_keeps_the_window() -> None:
    """A peer may end a message with a BFINAL block (RFC 7692 7.2.3.4)."""
    s = Streams()
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = c.compress(b"hello hello hello") + c.flush(zlib.Z_FINISH)
    assert s.inflate([first]) == b"hello hello hello"
    # The next message may refer to the first one's bytes: a fresh compressor
    # primed with them stands in for a sender that kept its window.
    c2 = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=b"hello hello hello")
    assert s.inflate([py_compress(c2, b"hello hello hello!")]) == b"hello hello hello!"


def test_corrupt_data_is_an_error_and_stays_one() -> None:
    s = Streams()
    out = ffi.new("uint8_t[100]")
    used, got = ffi.new("size_t *"), ffi.new("size_t *")
    bad = b"\xff\xff\xff\xff\xff"
    r = lib.ws_pmd_inflate(s.m, bad, len(bad), used, out, 100, got)
    if r == lib.WS_PMD_OK:
        r = lib.ws_pmd_inflate_end(s.m, out, 100, got)
    assert r == lib.WS_PMD_ERROR
    assert lib.ws_pmd_inflate(s.m, b"\x00", 1, used, out, 100, got) == lib.WS_PMD_ERROR


def test_inflate_output_is_bounded_per_call() -> None:
    """A bomb comes out in pieces of at most out_cap bytes: the caller can stop it."""
    s = Streams()
    wire = py_compress(zlib.compressobj(9, zlib.DEFLATED, -15), bytes(64 * MiB))
    assert len(wire) < 100 * KiB
    out = ffi.new("uint8_t[]", 4096)
    used, got = ffi.new("size_t *"), ffi.new("size_t *")
    r = lib.ws_pmd_inflate(s.m, wire, len(wire), used, out, 4096, got)
    assert r == lib.WS_PMD_MORE and got[0] == 4096 and used[0] < len(wire)
    assert s.ctx.bytes < 64 * KiB  # the inflater's state and window, nothing per output byte


def test_memory_is_counted_created_lazily_and_released() -> None:
    s = Streams({"client_max_window_bits": 12}, window_bits=12, mem_level=5)
    base = int(s.ctx.bytes)
    assert 0 < base < 256  # the ws_pmd struct only: no zlib state at creation
    assert lib.ws_pmd_live(s.m) == 0
    c = zlib.compressobj(6, zlib.DEFLATED, -12)
    msg = b'{"id": 12345, "name": "alpha", "tags": ["a", "b"]}' * 20
    assert s.inflate([py_compress(c, msg)]) == msg
    r, out = s.deflate(msg)
    assert r == lib.WS_PMD_OK
    live = int(s.ctx.bytes)
    assert lib.ws_pmd_live(s.m) == 1
    assert int(lib.ws_pmd_memory(s.m)) == live
    assert 32 * KiB < live < 96 * KiB
    assert lib.ws_pmd_take_used(s.m) == 1 and lib.ws_pmd_take_used(s.m) == 0
    released = lib.ws_pmd_release(s.m)
    assert released > 32 * KiB
    kept = int(s.ctx.bytes)
    # The struct and the inflater's window, min(bytes inflated, 2^12), deflated
    # (this message repeats itself: a few dozen bytes).
    assert 0 < kept - base <= 256
    assert lib.ws_pmd_live(s.m) == 0
    # The window comes back: the client's compressor still refers to it.
    again = msg[::-1] + msg
    assert s.inflate([py_compress(c, again)]) == again
    # And the compressor starts fresh, which the peer decodes either way.
    d = zlib.decompressobj(-12)
    d.decompress(out + TAIL)
    r, out2 = s.deflate(msg)
    assert r == lib.WS_PMD_OK and d.decompress(out2 + TAIL) == msg
    assert s.ctx.peak >= live


def json_records(n: int, seed: int) -> bytes:
    """n JSON records of random numbers: text that compresses to about a quarter."""
    rng = random.Random(seed)
    return b"".join(b'{"id":%d,"name":"item-%02d","price":%d.%02d,"ok":%s},' % (
        rng.randrange(10**6), rng.randrange(100), rng.randrange(1000), rng.randrange(100),
        b"true" if rng.random() < 0.5 else b"false") for _ in range(n))


def test_an_idle_window_of_32_kib_is_kept_deflated_and_restored_whole() -> None:
    """The client's compressor may refer back 32 KiB across the idle period: what
    the released inflater keeps is that window, deflated, and a message that
    points at its far end still decodes."""
    s = Streams()  # client_max_window_bits 15
    base = int(s.ctx.bytes)
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 8)
    history = json_records(1200, 1)  # ~64 KiB: the window is full
    for i in range(0, len(history), 4096):
        assert s.inflate([py_compress(c, history[i:i + 4096])]) == history[i:i + 4096]
    lib.ws_pmd_release(s.m)
    kept = int(s.ctx.bytes) - base
    assert lib.ws_pmd_live(s.m) == 0
    assert 2 * KiB < kept < 12 * KiB  # 32 KiB of window, deflated
    # 1 KiB from 31 KiB back, then from the most recent 1 KiB: two far references.
    far = history[-31 * KiB:-30 * KiB] + history[-KiB:]
    z = py_compress(c, far)
    assert len(z) < 64  # the sender did refer back into the window
    assert s.inflate([z]) == far


def test_the_filtered_strategy_is_a_choice_the_peer_decodes_either_way() -> None:
    """compression_filtered picks zlib's Z_FILTERED: on records of numbers it
    sends fewer bytes than the default strategy; both decode the same."""
    data = json_records(600, 2)
    sizes = []
    for filtered in (0, 1):
        s = Streams(filtered=filtered)
        d = zlib.decompressobj(-15)
        total = 0
        for i in range(0, len(data), 1024):
            r, out = s.deflate(data[i:i + 1024])
            assert r == lib.WS_PMD_OK and d.decompress(out + TAIL) == data[i:i + 1024]
            total += len(out)
        sizes.append(total)
    assert sizes[1] < sizes[0]


def test_release_keeps_nothing_without_client_context_takeover() -> None:
    s = Streams({"client_no_context_takeover": 1})
    base = int(s.ctx.bytes)
    assert s.inflate([py_compress(zlib.compressobj(6, zlib.DEFLATED, -15), b"x" * 999)]) == (
        b"x" * 999)
    lib.ws_pmd_release(s.m)
    assert int(s.ctx.bytes) == base


def test_prime_keeps_a_takeover_stream_in_step_after_a_shared_message() -> None:
    """A broadcast compressed once, without context, then the connection's own
    messages: the peer decodes all of it only if the connection's compressor
    learned the broadcast (ws_pmd_deflate_prime)."""
    shared = Streams({"server_no_context_takeover": 1})
    bcast = b'{"event": "tick", "symbol": "WSUV", "price": 101.25}' * 8
    # Refers back to the warm-up message, which the broadcast now sits after.
    direct = b"warm up " * 20 + b'{"event": "tick", "symbol": "WSUV", "price": 101.50}'

    def run(prime: bool) -> bytes | None:
        own = Streams()
        peer = zlib.decompressobj(-15)
        peer.decompress(own.deflate(b"hello, first direct message " * 4)[1] + TAIL)
        peer.decompress(own.deflate(b"warm up " * 20)[1] + TAIL)
        r, z = shared.deflate(bcast)
        assert r == lib.WS_PMD_OK
        assert peer.decompress(z + TAIL) == bcast
        if prime:
            assert lib.ws_pmd_deflate_prime(own.m, bcast, len(bcast)) == 0
        try:
            return bytes(peer.decompress(own.deflate(direct)[1] + TAIL))
        except zlib.error:
            return None

    assert run(prime=True) == direct
    assert run(prime=False) != direct  # without it the stream is out of step


# ---- the engine with deflate negotiated -------------------------------------------

def _h(c: Any) -> DConn:
    h: DConn = ffi.from_handle(c.data)
    return h


@ffi.callback("void(ws_conn *, const ws_conn_buf *, size_t)")
def _on_write(c: Any, bufs: Any, n: int) -> None:
    _h(c).written += b"".join(ffi.buffer(bufs[i].base, bufs[i].len)[:] for i in range(n))


@ffi.callback("void(ws_conn *, unsigned, const uint8_t *, size_t)")
def _on_message(c: Any, opcode: int, data: Any, length: int) -> None:
    h = _h(c)
    h.messages.append((opcode, ffi.buffer(data, length)[:]))
    if h.echo:
        lib.ws_conn_send(c, opcode, data, length)


@ffi.callback("void(ws_conn *, unsigned, const char *, size_t, int)")
def _on_closed(c: Any, code: int, reason: Any, length: int, clean: int) -> None:
    _h(c).closed = (code, ffi.buffer(reason, length)[:])


_CALLBACKS = ffi.new("ws_conn_callbacks *",
                     {"write": _on_write, "message": _on_message, "closed": _on_closed})


class DConn:
    """A server-role engine with permessage-deflate negotiated (or not)."""

    def __init__(self, params: dict[str, int] | None = None, *, deflate: bool = True,
                 max_message_size: int | None = None, echo: bool = False, **cfg: int) -> None:
        self.ctx = ffi.new("ws_pmd_ctx *")
        lib.ws_pmd_ctx_init(self.ctx, default_config(**cfg))
        self.c = ffi.new("ws_conn *")
        self._handle = ffi.new_handle(self)
        self.c.data = self._handle
        limits = ffi.new("ws_conn_limits *")
        lib.ws_conn_limits_default(limits)
        if max_message_size is not None:
            limits.max_message_size = max_message_size
        lib.ws_conn_init(self.c, _CALLBACKS, limits)
        if deflate:
            p = ffi.new("ws_pmd_params *")
            p.server_max_window_bits = p.client_max_window_bits = 15
            for k, v in (params or {}).items():
                setattr(p, k, v)
            assert lib.ws_conn_enable_deflate(self.c, self.ctx, p) == 0
        weakref.finalize(self, lib.ws_conn_free, self.c)
        self.written = b""
        self.messages: list[tuple[int, bytes]] = []
        self.closed: tuple[int, bytes] | None = None
        self.echo = echo

    def feed(self, data: bytes, piece: int | None = None) -> None:
        step = piece or max(len(data), 1)
        for i in range(0, len(data), step):
            chunk = data[i:i + step]
            buf = ffi.new("uint8_t[]", chunk)
            lib.ws_conn_feed(self.c, buf, len(chunk))
            if self.closed:
                return

    def frames(self) -> list[Frame]:
        return FrameParser(role="client", rsv_allowed=1).feed(self.written)

    def close_code(self) -> int | None:
        return self.closed[0] if self.closed else None


def cframe(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame; RSV1 may be set on any frame (for bad input)."""
    raw = encode_frame(opcode, payload, fin=fin, mask=MASK)
    return bytes([raw[0] | (0x40 if rsv1 else 0)]) + raw[1:]


def compressed_message(opcode: int, data: bytes, nfrag: int = 1, c: Any = None) -> bytes:
    """A compressed message from a client, in nfrag frames (RSV1 on the first)."""
    c = c or zlib.compressobj(6, zlib.DEFLATED, -15)
    wire = py_compress(c, data)
    step = max(1, -(-len(wire) // nfrag))
    parts = [wire[i:i + step] for i in range(0, len(wire), step)] or [b""]
    out = b""
    for i, part in enumerate(parts):
        out += cframe(opcode if i == 0 else CONT, part, fin=i == len(parts) - 1, rsv1=i == 0)
    return out


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 65536, MiB])
def test_compressed_messages_arrive_inflated(opcode: int, size: int) -> None:
    data = ("é" * size).encode()[:size] if opcode == TEXT else os.urandom(size // 2) * 2
    if opcode == TEXT:
        data = data.decode("utf-8", "ignore").encode()
    h = DConn()
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    h.feed(compressed_message(opcode, data, 1, c) + compressed_message(opcode, data, 3, c))
    assert h.closed is None
    assert h.messages == [(opcode, data), (opcode, data)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.integers(1, 6), st.integers(1, 50))
def test_fragmented_compressed_text_split_anywhere(text: str, nfrag: int, piece: int) -> None:
    h = DConn()
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    wire = compressed_message(TEXT, text.encode(), nfrag, c) + cframe(PING, b"p") + \
        compressed_message(TEXT, text.encode(), nfrag, c)
    h.feed(wire, piece)
    assert h.closed is None
    assert h.messages == [(TEXT, text.encode())] * 2


def test_uncompressed_messages_still_flow_when_negotiated() -> None:
    h = DConn()
    h.feed(cframe(TEXT, b"plain") + compressed_message(TEXT, b"packed") + cframe(BINARY, b"\x00"))
    assert h.messages == [(TEXT, b"plain"), (TEXT, b"packed"), (BINARY, b"\x00")]


@pytest.mark.parametrize(("name", "wire", "code"), [
    ("rsv1-on-continuation",
     cframe(TEXT, b"ab", fin=False) + cframe(CONT, b"cd", rsv1=True), 1002),
    ("rsv1-on-ping", cframe(PING, b"x", rsv1=True), 1002),
    ("rsv1-on-close", cframe(CLOSE, b"\x03\xe8", rsv1=True), 1002),
    ("corrupt-deflate", cframe(BINARY, b"\xff\xff\xff\xff", rsv1=True), 1007),
    ("distance-before-the-stream", cframe(BINARY, py_compress(zlib.compressobj(
        6, zlib.DEFLATED, -15, zdict=b"hello world " * 10), b"hello world " * 10), rsv1=True),
     1007),
    ("bad-utf8-inside", compressed_message(TEXT, b"ok \xc3\x28 not ok"), 1007),
    ("truncated-utf8-at-end", compressed_message(TEXT, b"ends in \xe2\x82"), 1007),
])
def test_bad_compressed_input(name: str, wire: bytes, code: int) -> None:
    h = DConn()
    h.feed(wire)
    assert h.close_code() == code, (name, h.closed)
    assert h.messages == []
    assert h.frames()[-1].opcode == CLOSE


def test_rsv1_without_negotiation_is_1002() -> None:
    h = DConn(deflate=False)
    h.feed(compressed_message(TEXT, b"hello"))
    assert h.close_code() == 1002 and h.messages == []


def test_bomb_stops_at_the_limit_with_1009() -> None:
    """64 MiB of zeros in ~64 KiB: stopped when the inflated bytes pass 1 MiB."""
    h = DConn(max_message_size=MiB)
    bomb = compressed_message(BINARY, bytes(64 * MiB))
    assert len(bomb) < 100 * KiB
    h.feed(bomb)
    assert h.close_code() == 1009 and h.messages == []


def test_limit_counts_inflated_bytes_across_fragments() -> None:
    h = DConn(max_message_size=1000)
    h.feed(compressed_message(BINARY, b"a" * 1000, nfrag=4))
    assert h.messages == [(BINARY, b"a" * 1000)]
    h = DConn(max_message_size=1000)
    h.feed(compressed_message(BINARY, b"a" * 1001, nfrag=4))
    assert h.close_code() == 1009


def test_send_compresses_above_the_threshold_and_decodes_with_zlib() -> None:
    h = DConn(threshold=64)
    d = zlib.decompressobj(-15)
    msgs = [b"short", b'{"json": "yes", "n": 1}' * 10, b'{"json": "yes", "n": 2}' * 10]
    for m in msgs:
        assert lib.ws_conn_send(h.c, TEXT, m, len(m)) == 0
    frames = h.frames()
    assert [f.rsv1 for f in frames] == [False, True, True]
    assert frames[0].payload == b"short"
    got = [d.decompress(f.payload + TAIL) for f in frames[1:]]
    assert got == msgs[1:]
    assert len(frames[2].payload) < len(frames[1].payload) < 60  # context taken over


def test_send_frame_compresses_fragments() -> None:
    h = DConn()
    parts = [b"part one, " * 30, b"part two, " * 30, b"end"]
    assert lib.ws_conn_send_frame(h.c, TEXT, 0, parts[0], len(parts[0])) == 0
    assert lib.ws_conn_send_frame(h.c, CONT, 0, parts[1], len(parts[1])) == 0
    assert lib.ws_conn_send_frame(h.c, CONT, 1, parts[2], len(parts[2])) == 0
    frames = h.frames()
    assert [(f.opcode, f.fin, f.rsv1) for f in frames] == [
        (TEXT, False, True), (CONT, False, False), (CONT, True, False)]
    d = zlib.decompressobj(-15)
    assert d.decompress(b"".join(f.payload for f in frames) + TAIL) == b"".join(parts)


def test_echo_of_compressed_traffic_is_compressed() -> None:
    h = DConn(echo=True)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    msg = b'{"hello": "world"}' * 20
    h.feed(compressed_message(TEXT, msg, 1, c) + compressed_message(TEXT, msg, 2, c))
    d = zlib.decompressobj(-15)
    frames = h.frames()
    assert len(frames) == 2 and all(f.rsv1 for f in frames)
    assert [d.decompress(f.payload + TAIL) for f in frames] == [msg, msg]


def test_in_place_delivery_is_kept_for_uncompressed_frames() -> None:
    """sizeof(ws_conn) grows by the deflate pointer only; the uncompressed path
    does not touch the deflate state."""
    h = DConn()
    h.feed(cframe(BINARY, b"x" * 1000))
    assert h.messages == [(BINARY, b"x" * 1000)]
    assert lib.ws_pmd_live(h.c.pmd) == 0  # no zlib stream was created for it
