"""TLS options (uvicorn's ``ssl_*`` names) turned into the C layer's context.

The files are read once, when the server is made; a missing or unreadable
file, a key that does not match the certificate, a wrong password or a cipher
string that selects nothing is a ValueError of one sentence. Connections that
fail TLS later are logged at debug level by ``wsuv.tls`` (they end alone).
"""

from __future__ import annotations

import logging

from wsuv._core import ffi, lib

TYPE_CHECKING = False  # typing is not imported at run time (wsuv-serve RSS)
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("wsuv.tls")

SERVER_OPTIONS = ("ssl_certfile", "ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs",
                  "ssl_cert_reqs", "ssl_ciphers")


def wants_tls(opts: dict[str, Any]) -> bool:
    """True if any TLS option is set (then ssl_certfile is required)."""
    return any(opts[name] not in (None, 0, "") for name in SERVER_OPTIONS)


def _context(role: int, fields: dict[str, tuple[str, str | None]], cert_reqs: int = 0,
             insecure: bool = False) -> Any:
    """A ws_tls_ctx; fields maps a C field to (option name, value or None)."""
    cfg = ffi.new("ws_tls_config *")
    lib.ws_tls_config_default(cfg)
    cfg.role = role
    cfg.cert_reqs = cert_reqs
    cfg.insecure_no_verify = int(insecure)
    keep = []
    for field, (opt, value) in fields.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"{opt} must be a str, not {type(value).__name__}")
        if "\0" in value:
            raise ValueError(f"{opt} must not contain a NUL character")
        buf = ffi.new("char[]", value.encode())
        keep.append(buf)
        setattr(cfg, field, buf)
    err = ffi.new("char[]", lib.WS_TLS_ERRBUF)
    ctx = lib.ws_tls_ctx_new(cfg, err, lib.WS_TLS_ERRBUF)
    if ctx == ffi.NULL:
        raise ValueError(ffi.string(err).decode(errors="replace"))
    return ctx


def server_context(opts: dict[str, Any]) -> Any:
    """A server-role ws_tls_ctx from the ssl_* options (the caller owns it:
    ws_server_set_tls takes it over, else ws_tls_ctx_free)."""
    if not opts["ssl_certfile"]:
        given = [n for n in SERVER_OPTIONS if opts[n] not in (None, 0, "")]
        raise ValueError(f"{given[0]} needs ssl_certfile (the server's certificate chain)")
    return _context(lib.WS_TLS_SERVER, {
        "certfile": ("ssl_certfile", opts["ssl_certfile"]),
        "keyfile": ("ssl_keyfile", opts["ssl_keyfile"]),
        "password": ("ssl_keyfile_password", opts["ssl_keyfile_password"]),
        "ca_file": ("ssl_ca_certs", opts["ssl_ca_certs"]),
        "ciphers": ("ssl_ciphers", opts["ssl_ciphers"]),
    }, cert_reqs=opts["ssl_cert_reqs"])


def client_context(*, ca_certs: str | None = None, certfile: str | None = None,
                   keyfile: str | None = None, keyfile_password: str | None = None,
                   ciphers: str | None = None, insecure_no_verify: bool = False) -> Any:
    """A client-role ws_tls_ctx (for wss:// clients; freed with ws_tls_ctx_free):
    the peer is verified against ca_certs, or the system trust store when it is
    None, unless insecure_no_verify; certfile/keyfile are a client certificate."""
    return _context(lib.WS_TLS_CLIENT, {
        "certfile": ("ssl_certfile", certfile),
        "keyfile": ("ssl_keyfile", keyfile),
        "password": ("ssl_keyfile_password", keyfile_password),
        "ca_file": ("ssl_ca_certs", ca_certs),
        "ciphers": ("ssl_ciphers", ciphers),
    }, insecure=insecure_no_verify)


def check(opts: dict[str, Any]) -> None:
    """Raise ValueError/TypeError if the TLS options cannot make a context."""
    lib.ws_tls_ctx_free(server_context(opts))


def wsuv_tls_log(s: Any, peer: Any, reason: Any) -> None:
    """A connection that failed TLS ended (srv_tls.c)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("TLS connection from %s ended: %s", ffi.string(peer).decode(errors="replace"),
                  ffi.string(reason).decode(errors="replace"))


ffi.def_extern(name="wsuv_tls_log")(wsuv_tls_log)
