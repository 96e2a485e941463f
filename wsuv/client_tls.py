"""The client's TLS (``wss://``): its ``ssl_*`` options as a C client context,
and the failures of a TLS handshake as typed errors.

Verification is on by default: the server's chain must lead to the system
trust store (or to ``ssl_ca_certs``) and its certificate must name the URL's
host (a DNS name, sent as SNI too, or an IP literal). Turning that off takes
``ssl_insecure_skip_verify=True``, logged as a warning on every connection.
"""

from __future__ import annotations

import logging
import os

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


def client_context(opts: dict[str, Any], where: str) -> Any:
    """A client-role ws_tls_ctx (the caller frees it with ws_tls_ctx_free once
    the connection's ws_server is freed)."""
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
    cfg = ffi.new("ws_tls_config *")
    lib.ws_tls_config_default(cfg)
    cfg.role = lib.WS_TLS_CLIENT
    cfg.insecure_no_verify = int(insecure)
    keep = []
    for opt, field in (("ssl_certfile", "certfile"), ("ssl_keyfile", "keyfile"),
                       ("ssl_ca_certs", "ca_file")):
        if opts[opt] is not None:
            buf = ffi.new("char[]", _path(opt, opts[opt]))
            keep.append(buf)
            setattr(cfg, field, buf)
    password = opts["ssl_keyfile_password"]
    if password is not None:
        if isinstance(password, str):
            password = password.encode()
        if not isinstance(password, bytes) or b"\0" in password:
            raise TypeError("ssl_keyfile_password must be a str or bytes without NUL")
        buf = ffi.new("char[]", password)
        keep.append(buf)
        cfg.password = buf
    err = ffi.new("char[]", lib.WS_TLS_ERRBUF)
    ctx = lib.ws_tls_ctx_new(cfg, err, lib.WS_TLS_ERRBUF)
    if ctx == ffi.NULL:
        raise ValueError(ffi.string(err).decode(errors="replace"))
    if insecure:
        log.warning("ssl_insecure_skip_verify=True: the certificate of %s is NOT verified "
                    "(anyone on the path can read and change this connection)", where)
    return ctx


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
