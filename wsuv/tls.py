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


def server_context(opts: dict[str, Any]) -> Any:
    """A server-role ws_tls_ctx from the ssl_* options (the caller owns it:
    ws_server_set_tls takes it over, else ws_tls_ctx_free)."""
    if not opts["ssl_certfile"]:
        given = [n for n in SERVER_OPTIONS if opts[n] not in (None, 0, "")]
        raise ValueError(f"{given[0]} needs ssl_certfile (the server's certificate chain)")
    cfg = ffi.new("ws_tls_config *")
    lib.ws_tls_config_default(cfg)
    cfg.role = lib.WS_TLS_SERVER
    cfg.cert_reqs = opts["ssl_cert_reqs"]
    keep = []
    for opt, field in (("ssl_certfile", "certfile"), ("ssl_keyfile", "keyfile"),
                       ("ssl_keyfile_password", "password"), ("ssl_ca_certs", "ca_file"),
                       ("ssl_ciphers", "ciphers")):
        value = opts[opt]
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


def check(opts: dict[str, Any]) -> None:
    """Raise ValueError/TypeError if the TLS options cannot make a context."""
    lib.ws_tls_ctx_free(server_context(opts))


def wsuv_tls_log(s: Any, peer: Any, reason: Any) -> None:
    """A connection that failed TLS ended (srv_tls.c)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("TLS connection from %s ended: %s", ffi.string(peer).decode(errors="replace"),
                  ffi.string(reason).decode(errors="replace"))


ffi.def_extern(name="wsuv_tls_log")(wsuv_tls_log)
