"""The client's TLS (``wss://``): its ``ssl_*`` options as a C client context,
and the failures of a TLS handshake as typed errors.

Verification is on by default: the server's chain must lead to the system
trust store (or to ``ssl_ca_certs``) and its certificate must name the URL's
host (a DNS name, sent as SNI too, or an IP literal). Turning that off takes
``ssl_insecure_skip_verify=True``, logged as a warning on every connection.
"""

from __future__ import annotations

import collections
import logging
import os
import threading

from wsuv import tls
from wsuv._core import ffi, lib
from wsuv.exceptions import InvalidCertificate, TLSError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("wsuv.client")

#: The client's TLS options and their defaults.
CLIENT_OPTIONS: dict[str, Any] = {
    "ssl_ca_certs": None,
    "ssl_certfile": None,
    "ssl_keyfile": None,
    "ssl_keyfile_password": None,
    "ssl_insecure_skip_verify": False,
}

# Contexts are kept for the next connection: making one reads the whole system
# trust store (measured: 98 ms and ~820 KiB for Debian's 140 roots), which a
# connection must not pay each time. Keyed by thread (tls.h: a context serves
# connections of one thread), the options and each file's identity (path,
# mtime, size: a rotated file makes a new context); at most _CACHE_SIZE kept.
_CACHE_SIZE = 8
_cache: collections.OrderedDict[tuple[Any, ...], Context] = collections.OrderedDict()
_cache_lock = threading.Lock()

# enum ws_tls_verify_error -> InvalidCertificate.reason
_REASONS = {1: "expired", 2: "unknown_issuer", 3: "hostname_mismatch", 4: "other"}
_SAYS = {
    "expired": "the server's certificate has expired (or is not valid yet)",
    "unknown_issuer": "the server's certificate is not signed by a trusted CA "
                      "(self-signed or unknown issuer)",
    "hostname_mismatch": "the server's certificate is not valid for",
    "other": "the server's certificate was refused",
}


def given(opts: dict[str, Any]) -> list[str]:
    """The ssl_* options that differ from their defaults."""
    return [name for name, default in CLIENT_OPTIONS.items() if opts.get(name, default) != default]


def _path(name: str, value: Any) -> bytes:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), not "
                        f"{type(value).__name__}")
    b = os.fsencode(value)
    if b"\0" in b or not b:
        raise ValueError(f"{name} must be a non-empty path without NUL characters")
    return b


class Context:
    """A client-role ws_tls_ctx, given up when the last Python holder lets go
    (the cache, each connection using it); the C context itself lives on
    while a connection's TLS state still holds its reference (tls.h)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: Any) -> None:
        self.ptr = ptr

    def __del__(self) -> None:
        ptr, self.ptr = self.ptr, ffi.NULL
        if ptr != ffi.NULL:
            lib.ws_tls_ctx_free(ptr)


def _file_id(value: Any) -> Any:
    if value is None:
        return None
    path = os.path.abspath(os.fsdecode(value))
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)  # not cached past the error _make raises
    return (path, st.st_mtime_ns, st.st_size)


def client_context(opts: dict[str, Any], where: str) -> Context:
    """The client context for these ssl_* options (shared with other
    connections of this thread that use the same options)."""
    check(opts)
    if opts["ssl_insecure_skip_verify"]:
        log.warning("ssl_insecure_skip_verify=True: the certificate of %s is NOT verified "
                    "(anyone on the path can read and change this connection)", where)
    key = (threading.get_ident(), opts["ssl_insecure_skip_verify"],
           _file_id(opts["ssl_ca_certs"]), _file_id(opts["ssl_certfile"]),
           _file_id(opts["ssl_keyfile"]), opts["ssl_keyfile_password"])
    with _cache_lock:
        ctx = _cache.get(key)
        if ctx is not None:
            _cache.move_to_end(key)
            return ctx
    ctx = Context(_make(opts))
    with _cache_lock:
        _cache[key] = ctx
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)  # freed once its connections are gone
    return ctx


def check(opts: dict[str, Any]) -> None:
    """Refuses bad option types and combinations (one sentence) before any
    file is read."""
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if opts[name] is not None:
            _path(name, opts[name])
    insecure = opts["ssl_insecure_skip_verify"]
    if not isinstance(insecure, bool):
        raise TypeError("ssl_insecure_skip_verify must be True or False")
    if opts["ssl_keyfile"] is not None and opts["ssl_certfile"] is None:
        raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate)")
    if opts["ssl_keyfile_password"] is not None and opts["ssl_certfile"] is None:
        raise ValueError("ssl_keyfile_password needs ssl_certfile (the client certificate)")
    if insecure and opts["ssl_ca_certs"] is not None:
        raise ValueError("ssl_ca_certs has no use with ssl_insecure_skip_verify=True "
                         "(nothing is verified): choose one")
    password = opts["ssl_keyfile_password"]
    if password is not None and not isinstance(password, str):
        raise TypeError(f"ssl_keyfile_password must be a str, not {type(password).__name__}")


def _make(opts: dict[str, Any]) -> Any:
    """A new ws_tls_ctx from checked options (ValueError: one sentence)."""
    def path(name: str) -> str | None:
        value = opts[name]
        return None if value is None else os.fsdecode(value)

    return tls.client_context(ca_certs=path("ssl_ca_certs"), certfile=path("ssl_certfile"),
                              keyfile=path("ssl_keyfile"),
                              keyfile_password=opts["ssl_keyfile_password"],
                              insecure_no_verify=opts["ssl_insecure_skip_verify"])


def handshake_error(c: Any, where: str, host: str) -> TLSError:
    """The error for a connection whose TLS handshake failed (WS_CLIENT_TLS)."""
    verify = ffi.new("int *")
    why = ffi.string(lib.ws_client_conn_tls_error(c, verify)).decode(errors="replace")
    reason = _REASONS.get(verify[0])
    if reason is None:
        return TLSError(f"TLS handshake with {where} failed: {why or 'no reason given'}")
    says = _SAYS[reason]
    if reason == "hostname_mismatch":
        says = f"{says} {host!r}"
    return InvalidCertificate(reason, why, f"{says}: {where} ({why})")
