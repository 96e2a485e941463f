"""A TLS context outlives its owner's free while connections made from it
live (tls.h: each connection holds a reference). Run under `make asan`, a
use after free here would be a report."""

from __future__ import annotations

from typing import Any

from test_tls import End, make_ctx, pump

from wsuv._core import ffi, lib


def _ctx(role: int, **opts: Any) -> Any:
    """An owned (not garbage-collected) context: this test frees it itself."""
    ctx = make_ctx(role, **opts)
    ffi.gc(ctx, None)  # detach the collector: freed by hand below
    return ctx


def test_connections_keep_their_context(tlskit: Any) -> None:
    sctx = _ctx(lib.WS_TLS_SERVER, certfile=tlskit.server.cert, keyfile=tlskit.server.key)
    cctx = _ctx(lib.WS_TLS_CLIENT, ca_file=tlskit.ca.cert)
    client, server = End(cctx, "localhost"), End(sctx)
    lib.ws_tls_ctx_free(cctx)  # the owners let go before their connections
    lib.ws_tls_ctx_free(sctx)
    assert lib.ws_tls_start(client.t) == 0
    pump(client, server)
    assert client.done and server.done
    assert client.write(b"after the owners' free") == 0
    pump(client, server)
    assert bytes(server.received) == b"after the owners' free"
    # A second connection from the client context still works too: it lives
    # while any of its connections does.
    assert lib.ws_tls_ctx_role(cctx) == lib.WS_TLS_CLIENT
    other = End(cctx, "localhost")
    assert lib.ws_tls_start(other.t) == 0
    del other, client, server  # the last references: the contexts go with them


def test_extra_reference(tlskit: Any) -> None:
    cctx = _ctx(lib.WS_TLS_CLIENT, ca_file=tlskit.ca.cert)
    assert lib.ws_tls_ctx_ref(cctx) == cctx  # a second holder (a client connection's)
    lib.ws_tls_ctx_free(cctx)
    end = End(cctx, "localhost")  # still valid: one reference left
    assert lib.ws_tls_start(end.t) == 0 and end.take()  # a ClientHello
    lib.ws_tls_ctx_free(cctx)  # the last holder's; the connection keeps it alive
    del end
