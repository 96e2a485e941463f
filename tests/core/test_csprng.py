"""csrc/csprng.c: the pool of OS random bytes behind masking keys and nonces.

Randomness cannot be asserted, only the ways it goes wrong: repeated keys,
visibly non-uniform bytes, bytes shared with a forked child, a syscall per
key (counted through ws_csprng_refills), and a failure that is not reported.
"""

from __future__ import annotations

import errno
import os
import resource
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from wsuv._core import ffi, lib

POOL = lib.WS_CSPRNG_POOL_BYTES


@contextmanager
def pool(flags: int = 0) -> Iterator[Any]:
    r = lib.ws_csprng_new(flags)
    assert r != ffi.NULL
    try:
        yield r
    finally:
        lib.ws_csprng_free(r)


def draw(r: Any, n: int) -> bytes:
    out = ffi.new("uint8_t[]", max(n, 1))
    assert lib.ws_csprng_bytes(r, out, n) == 0
    return bytes(ffi.buffer(out, n))


def mask_key(r: Any) -> bytes:
    out = ffi.new("uint8_t[4]")
    assert lib.ws_csprng_mask_key(r, out) == 0
    return bytes(out)


def chi_square(data: bytes) -> float:
    expected = len(data) / 256
    counts = Counter(data)
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(256))


def in_child(fn: Callable[[], bytes]) -> bytes:
    """Runs fn in a forked child and returns what it wrote (exit code 0 required)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(rfd)
            os.write(wfd, fn())
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    chunks = []
    while chunk := os.read(rfd, 4096):
        chunks.append(chunk)
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks)


def test_new_pool_is_empty_and_lazy() -> None:
    with pool() as r:
        assert lib.ws_csprng_refills(r) == 0
        assert lib.ws_csprng_available(r) == 0
        assert lib.ws_csprng_source(r) == lib.WS_CSPRNG_SOURCE_NONE
        assert draw(r, 0) == b""
        assert lib.ws_csprng_refills(r) == 0


def test_one_refill_per_pool_of_keys() -> None:
    with pool() as r:
        keys = [mask_key(r) for _ in range(POOL // 4)]
        assert lib.ws_csprng_refills(r) == 1  # 1024 keys, one syscall
        assert lib.ws_csprng_available(r) == 0
        keys.append(mask_key(r))
        assert lib.ws_csprng_refills(r) == 2
        assert lib.ws_csprng_available(r) == POOL - 4
        assert lib.ws_csprng_source(r) == lib.WS_CSPRNG_SOURCE_GETRANDOM
        # 1025 random 32-bit keys: a repeat has probability ~1e-4.
        assert len(set(keys)) >= len(keys) - 1


def test_draws_across_the_pool_boundary() -> None:
    with pool() as r:
        head = draw(r, POOL - 6)
        assert (lib.ws_csprng_refills(r), lib.ws_csprng_available(r)) == (1, 6)
        key = draw(r, 16)  # 6 old bytes, then 10 from a new refill
        assert (lib.ws_csprng_refills(r), lib.ws_csprng_available(r)) == (2, POOL - 10)
        assert key[:6] != key[6:12]
        big = draw(r, 3 * POOL)  # larger than the pool: several refills
        assert lib.ws_csprng_refills(r) == 5
        assert lib.ws_csprng_available(r) == POOL - 10
        assert len(set(big[i : i + 16] for i in range(0, len(big), 16))) == len(big) // 16
        assert head[:16] != key


def test_keys_differ_between_pools_and_calls() -> None:
    with pool() as a, pool() as b:
        ka = [draw(a, 16) for _ in range(200)]
        kb = [draw(b, 16) for _ in range(200)]
        assert len(set(ka) | set(kb)) == 400  # 128-bit nonces never repeat


@pytest.mark.parametrize("flags", [0, lib.WS_CSPRNG_URANDOM])
def test_bytes_look_uniform(flags: int) -> None:
    # 256 KiB: chi-square with 255 degrees of freedom has mean 255 and
    # standard deviation ~22.6; (150, 400) fails by chance with p < 1e-8 but
    # catches stuck, repeating or counter-like output.
    with pool(flags) as r:
        data = draw(r, 256 * 1024)
        assert 150 < chi_square(data) < 400
        keys = b"".join(mask_key(r) for _ in range(16 * 1024))
        assert 150 < chi_square(keys) < 400
        # Each bit set about half the time.
        for bit in range(8):
            ones = sum((x >> bit) & 1 for x in data)
            assert abs(ones - len(data) / 2) < 6 * (len(data) ** 0.5) / 2


def test_urandom_fallback() -> None:
    with pool(lib.WS_CSPRNG_URANDOM) as r:
        a = draw(r, 32)
        assert lib.ws_csprng_source(r) == lib.WS_CSPRNG_SOURCE_URANDOM
        b = draw(r, POOL)
        assert lib.ws_csprng_refills(r) == 2
        assert a != b[:32]


def test_fork_guard_kinds() -> None:
    with pool() as r:
        assert lib.ws_csprng_fork_guard(r) == lib.WS_CSPRNG_FORK_WIPE  # Linux >= 4.14
    with pool(lib.WS_CSPRNG_PID_CHECK) as r:
        assert lib.ws_csprng_fork_guard(r) == lib.WS_CSPRNG_FORK_PID


@pytest.mark.parametrize("flags", [0, lib.WS_CSPRNG_PID_CHECK])
def test_a_forked_child_never_reuses_the_parents_bytes(flags: int) -> None:
    with pool(flags) as r:
        draw(r, 100)  # the pool now holds bytes both processes could hand out
        left = lib.ws_csprng_available(r)

        def child() -> bytes:
            fresh = lib.ws_csprng_refills(r) == 0 or lib.ws_csprng_available(r) == 0
            data = draw(r, 64)
            return bytes([fresh, lib.ws_csprng_refills(r)]) + data

        out = in_child(child)
        if flags == 0:
            assert out[0] == 1  # wiped: the child's pool reads as new
        assert out[1] == 1  # the child refilled from the kernel once
        parent = draw(r, 64)
        assert lib.ws_csprng_available(r) == left - 64  # the parent's pool is untouched
        assert out[2:] != parent


def test_os_refusal_is_reported_and_output_zeroed() -> None:
    def child() -> bytes:
        with pool(lib.WS_CSPRNG_URANDOM) as r:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (0, hard))  # open() -> EMFILE
            out = ffi.new("uint8_t[16]", b"\xaa" * 16)
            rc = lib.ws_csprng_bytes(r, out, 16)
            key = ffi.new("uint8_t[4]", b"\xbb" * 4)
            rc_key = lib.ws_csprng_mask_key(r, key)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            ok = draw(r, 8)  # works again once the OS does
            return b"%d %d %s %s %d %d" % (
                rc, rc_key, bytes(out).hex().encode(), bytes(key).hex().encode(),
                lib.ws_csprng_refills(r), len(ok))

    rc, rc_key, out, key, refills, n = in_child(child).split()
    assert int(rc) == int(rc_key) == -errno.EMFILE
    assert out == b"00" * 16 and key == b"00" * 4
    assert (int(refills), int(n)) == (1, 8)
