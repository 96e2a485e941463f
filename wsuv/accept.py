"""Sec-WebSocket-Accept (RFC 6455 section 4.2.2), computed by the C core."""

from __future__ import annotations

from wsuv._core import ffi, lib

__all__ = ["accept_key"]


def accept_key(key: str | bytes) -> str:
    """Return the Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key.

    The key is used exactly as given (the caller trims header whitespace); a
    ``str`` is encoded as Latin-1, the byte-preserving reading of an HTTP
    header value, so it must not contain characters above U+00FF.
    """
    raw = key.encode("latin-1") if isinstance(key, str) else bytes(key)
    # One spare zero byte so ffi.string stops right after the 28 characters.
    out = ffi.new("char[]", lib.WS_ACCEPT_LEN + 1)
    lib.ws_accept_key(raw, len(raw), out)
    accept: str = ffi.string(out).decode("ascii")
    return accept
