"""csrc/utf8: the incremental validator against Python's strict decoder and
against a small reference validator written from RFC 3629's table, fed
whole, in two chunks split at every point, and one byte at a time."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib
from wsuv.utf8 import Utf8Validator, is_valid_utf8

# ---- reference: RFC 3629 section 4, one row per line of the ABNF ----------

TAIL = (0x80, 0xBF)
RFC3629_SEQUENCES: list[tuple[tuple[int, int], list[tuple[int, int]]]] = [
    ((0x00, 0x7F), []),                            # UTF8-1
    ((0xC2, 0xDF), [TAIL]),                        # UTF8-2
    ((0xE0, 0xE0), [(0xA0, 0xBF), TAIL]),          # UTF8-3
    ((0xE1, 0xEC), [TAIL, TAIL]),
    ((0xED, 0xED), [(0x80, 0x9F), TAIL]),
    ((0xEE, 0xEF), [TAIL, TAIL]),
    ((0xF0, 0xF0), [(0x90, 0xBF), TAIL, TAIL]),    # UTF8-4
    ((0xF1, 0xF3), [TAIL, TAIL, TAIL]),
    ((0xF4, 0xF4), [(0x80, 0x8F), TAIL, TAIL]),
]


def reference(data: bytes) -> tuple[int | None, bool]:
    """(index of the first byte that cannot begin or continue a sequence, or
    None; whether the data ends on a code point boundary)."""
    expect: list[tuple[int, int]] = []
    for i, b in enumerate(data):
        if expect:
            lo, hi = expect.pop(0)
            if not lo <= b <= hi:
                return i, False
            continue
        for (lo, hi), tails in RFC3629_SEQUENCES:
            if lo <= b <= hi:
                expect = list(tails)
                break
        else:
            return i, False
    return None, not expect


def python_first_bad(data: bytes) -> int | None:
    """First bad byte according to CPython's incremental decoder: the
    shortest prefix it rejects before seeing the end of the input."""

    def prefix_ok(n: int) -> bool:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(data[:n], final=False)
        except UnicodeDecodeError:
            return False
        return True

    if prefix_ok(len(data)):
        return None
    lo, hi = 0, len(data)  # prefix_ok(lo) holds, prefix_ok(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if prefix_ok(mid):
            lo = mid
        else:
            hi = mid
    return hi - 1


def python_valid(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---- the validator under test ---------------------------------------------


def feed_chunks(chunks: list[bytes]) -> tuple[bool, bool, int | None]:
    v = Utf8Validator()
    ok = True
    for chunk in chunks:
        ok = v.feed(chunk)
    return ok, v.complete, v.error_offset


def check(data: bytes) -> None:
    """Every way of feeding data agrees with the reference and with Python."""
    bad, boundary = reference(data)
    valid = bad is None and boundary
    assert valid == python_valid(data), "reference disagrees with CPython"
    # CPython's incremental decoder fails just as early except after ED, where
    # it waits for the third byte before calling a surrogate invalid
    # (or for the end of the input).
    py_bad = python_first_bad(data)
    if bad != py_bad:
        assert bad is not None and data[bad - 1] == 0xED
        assert py_bad is None or bad < py_bad

    expected = (bad is None, valid, bad)
    assert is_valid_utf8(data) == valid
    assert is_valid_utf8(bytearray(data)) == valid
    assert feed_chunks([data]) == expected
    assert feed_chunks([data[i : i + 1] for i in range(len(data))]) == expected
    for k in range(len(data) + 1):
        assert feed_chunks([data[:k], data[k:]]) == expected, k


# ---- strategies -------------------------------------------------------------

valid_text = st.text(max_size=120).map(lambda s: s.encode("utf-8"))
# Long ASCII runs between multibyte characters exercise the 16-byte fast path
# and its hand-over to the byte automaton at every alignment.
ascii_runs = st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=1, max_size=40)
mixed_text = st.lists(st.one_of(ascii_runs, st.text(max_size=6)), max_size=8).map(
    lambda parts: "".join(parts).encode("utf-8")
)
# Bytes at the edges of every range in RFC 3629's table.
EDGE_BYTES = [
    0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
    0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
]
edge_bytes = st.lists(st.sampled_from(EDGE_BYTES), max_size=60).map(bytes)


@st.composite
def mutated_text(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(mixed_text.filter(bool)))
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        if op == "replace":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data.insert(i, draw(st.integers(0, 255)))
        elif op == "delete":
            del data[i]
        else:
            del data[i:]
    return bytes(data)


# ---- property tests -----------------------------------------------------------


@settings(deadline=None)
@given(valid_text)
def test_valid_text(data: bytes) -> None:
    check(data)


@settings(deadline=None)
@given(mixed_text)
def test_mixed_ascii_and_multibyte(data: bytes) -> None:
    check(data)


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@settings(deadline=None)
@given(edge_bytes)
def test_edge_bytes(data: bytes) -> None:
    check(data)


@settings(deadline=None)
@given(mutated_text())
def test_mutated_text(data: bytes) -> None:
    check(data)


@given(st.lists(st.one_of(st.binary(max_size=40), mixed_text), max_size=6))
def test_bad_offset_is_relative_to_the_failing_chunk(chunks: list[bytes]) -> None:
    bad, _ = reference(b"".join(chunks))
    v = ffi.new("ws_utf8 *")
    lib.ws_utf8_init(v)
    offset = ffi.new("size_t *")
    start = 0
    for chunk in chunks:
        rc = lib.ws_utf8_feed(v, chunk, len(chunk), offset)
        if bad is not None and bad < start + len(chunk):
            assert rc == lib.WS_UTF8_INVALID
            assert start + offset[0] == bad
            break
        assert rc == lib.WS_UTF8_OK
        start += len(chunk)
    else:
        assert bad is None


# ---- edge cases -----------------------------------------------------------------


@pytest.mark.parametrize(
    "cp", [0x0, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF, 0x10000, 0x10FFFF]
)
def test_boundary_code_points(cp: int) -> None:
    data = chr(cp).encode("utf-8")
    assert is_valid_utf8(data)
    check(data)
    check(b"x" * 17 + data + b"y" * 17)


@pytest.mark.parametrize(
    ("data", "bad"),
    [
        (b"\xc0\x80", 0),           # overlong U+0000, C0 can never occur
        (b"\xc1\xbf", 0),           # overlong U+007F
        (b"\xe0\x80\x80", 1),       # overlong 3-byte
        (b"\xe0\x9f\xbf", 1),       # overlong U+07FF
        (b"\xf0\x80\x80\x80", 1),   # overlong 4-byte
        (b"\xf0\x8f\xbf\xbf", 1),   # overlong U+FFFF
        (b"\xed\xa0\x80", 1),       # surrogate U+D800
        (b"\xed\xbf\xbf", 1),       # surrogate U+DFFF
        (b"\xf4\x90\x80\x80", 1),   # U+110000
        (b"\xf5\x80\x80\x80", 0),   # lead byte beyond U+10FFFF
        (b"\xf8\x88\x80\x80\x80", 0),
        (b"\xfe", 0),
        (b"\xff", 0),
        (b"\x80", 0),               # lone continuation bytes
        (b"\xbf", 0),
        (b"a\x80b", 1),
        (b"\xc3\xa9\xa9", 2),       # one continuation too many
        (b"\xe2\x82a", 2),          # sequence cut short by ASCII
        (b"\xe2\x82\xe2\x82\xac", 2),  # ... or by a new lead byte
        (b"\xf0\x9f\x98", None),    # truncated at the end: valid so far
    ],
)
def test_invalid_and_truncated(data: bytes, bad: int | None) -> None:
    assert reference(data)[0] == bad
    check(data)
    v = Utf8Validator()
    assert v.feed(data) is (bad is None)
    assert v.error_offset == bad
    assert not v.complete


@pytest.mark.parametrize("seq", [b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80"])
def test_truncated_sequence_is_incomplete_until_finished(seq: bytes) -> None:
    v = Utf8Validator()
    for i in range(len(seq) - 1):
        assert v.feed(seq[i : i + 1])
        assert not v.complete
    assert v.feed(seq[-1:])
    assert v.complete


@pytest.mark.parametrize("pad", range(70))
def test_fast_path_hands_over_at_every_alignment(pad: int) -> None:
    for bad in (b"\x80", b"\xc0", b"\xed\xa0", b"\xe2\x82a", b"\xff"):
        data = b"a" * pad + bad + b"b" * 40
        expected = pad + (2 if bad == b"\xe2\x82a" else 1 if bad == b"\xed\xa0" else 0)
        assert feed_chunks([data]) == (False, False, expected)
    good = b"a" * pad + "\u00e9\u20ac\U0001f600".encode() + b"b" * 40
    assert feed_chunks([good]) == (True, True, None)
    assert feed_chunks([good[: pad + 3]]) == (True, False, None)


def test_failure_is_sticky_and_reset_clears_it() -> None:
    v = Utf8Validator()
    assert not v.feed(b"ok\xff")
    assert v.error_offset == 2
    assert not v.feed(b"fine")
    assert not v.feed(b"")
    assert not v.complete
    assert v.error_offset == 2
    v.reset()
    assert v.complete and v.error_offset is None
    assert v.feed(b"\xe2\x82") and not v.complete
    v.reset()
    assert v.feed(b"fine") and v.complete


def test_accepts_buffers_without_copying() -> None:
    data = "h\u00e9llo \U0001f600".encode()
    assert is_valid_utf8(memoryview(data))
    assert is_valid_utf8(bytearray(data))
    v = Utf8Validator()
    assert v.feed(memoryview(data)[:3]) and v.feed(bytearray(data[3:]))
    assert v.complete
    assert is_valid_utf8(b"") and Utf8Validator().complete


def test_empty_feed_keeps_state() -> None:
    v = Utf8Validator()
    assert v.feed(b"\xf0") and v.feed(b"") and not v.complete
    assert v.feed(b"\x9f\x98\x80") and v.complete
