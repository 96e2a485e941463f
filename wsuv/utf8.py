"""Incremental UTF-8 validation (RFC 3629) by the C core.

Text messages arrive in fragments, and RFC 6455 section 8.1 wants a bad byte
reported as soon as it arrives, so the validator keeps its state between
chunks instead of waiting for the whole message.
"""

from __future__ import annotations

from typing import Any

from wsuv._core import ffi, lib

__all__ = ["Utf8Validator", "is_valid_utf8"]

Buffer = bytes | bytearray | memoryview


class Utf8Validator:
    """Validates a stream of UTF-8 fed in chunks of any size.

    Rejects overlong forms, surrogates and code points above U+10FFFF, and
    stops at the first byte that cannot begin or continue a valid sequence.
    """

    __slots__ = ("_v", "_bad", "_fed", "_error_offset")

    def __init__(self) -> None:
        self._v: Any = ffi.new("ws_utf8 *")
        self._bad: Any = ffi.new("size_t *")  # reused: one allocation per validator
        self._fed = 0
        self._error_offset: int | None = None
        lib.ws_utf8_init(self._v)

    def feed(self, data: Buffer) -> bool:
        """Feed the next chunk; return whether every byte so far is valid."""
        if self._error_offset is not None:
            return False
        buf = ffi.from_buffer("uint8_t[]", data)
        n = len(buf)
        if lib.ws_utf8_feed(self._v, buf, n, self._bad) != lib.WS_UTF8_OK:
            self._error_offset = self._fed + int(self._bad[0])
            return False
        self._fed += n
        return True

    @property
    def complete(self) -> bool:
        """Whether everything fed so far is valid and ends on a code point."""
        return bool(lib.ws_utf8_complete(self._v))

    @property
    def error_offset(self) -> int | None:
        """Index in the whole stream of the first invalid byte, or None."""
        return self._error_offset

    def reset(self) -> None:
        """Start over, as for a new message."""
        lib.ws_utf8_init(self._v)
        self._fed = 0
        self._error_offset = None


def is_valid_utf8(data: Buffer) -> bool:
    """Whether data is complete, valid UTF-8 (one call, no copy)."""
    buf = ffi.from_buffer("uint8_t[]", data)
    return bool(lib.ws_utf8_valid(buf, len(buf)))
