"""Client connections in the callback style: ``Handler`` methods on connections we dial.

``server.connect(url, handler)`` dials out on a server's own loop (one process
serves and connects on one loop); :class:`Client` is the same host without a
listener, and :func:`connect` builds one for a single URL. A dialled
connection is a :class:`~wsuv.WebSocket` like an accepted one: the C
callbacks of wsuv.server call its handler's ``on_open``, ``on_message``
(batched per poll phase), ``on_ping``/``on_pong``, ``on_drain`` and
``on_close``; no queue, no thread. A failure before the open (DNS, refused,
a refusing or invalid handshake response, the open timeout, a cancel) calls
``on_connect_failed(ws, error)`` with the exception :func:`wsuv.sync.connect`
would raise; without that method it is logged, and :meth:`Client.run`
raises the first such error once it returns.
"""

from __future__ import annotations

import inspect
import signal
import threading
from typing import Any

from wsuv import client_tls
from wsuv._core import ffi, lib
from wsuv.handler import resolve_handler
from wsuv.request import Headers, Request
from wsuv.server import DIALING, Server, _addr, log
from wsuv.sync import _os_error, _read_response, _split_url, client_options, failure
from wsuv.sync import opened as _response_of
from wsuv.websocket import WebSocket

__all__ = ["Client", "connect"]

#: Options of one connection (the rest are the host's: timeouts, limits).
CONNECTION_OPTIONS = ("subprotocols", "origin", "additional_headers", "compression",
                      *client_tls.CLIENT_OPTIONS)
#: Server options that make no sense on a host that never listens.
_LISTENING = ("host", "port", "unix_path", "fd", "backlog", "reuseport", "max_connections",
              "max_url", "max_headers", "max_header_bytes", "static_dir", "handle_signals",
              "busy_poll_us")
_SLICE_MS = 200  # on the main thread: the longest wait before Ctrl-C is seen


def _client_handler(handler: Any, where: str) -> Any:
    """A Python handler for client connections, or one sentence of TypeError."""
    if handler is None or getattr(type(handler), "_wsuv_c_app", False):
        raise TypeError(f"{where} needs a wsuv.Handler instance or class for its "
                        f"connections, not {handler!r:.60}")
    resolved = resolve_handler(handler, where)
    method = getattr(resolved, "on_connect_failed", None)
    if method is not None and not callable(method):
        raise TypeError(f"{where}.on_connect_failed must be a method, not "
                        f"{type(method).__name__}")
    if method is not None and inspect.iscoroutinefunction(method):
        raise TypeError(f"{where}.on_connect_failed is an async function: define it with "
                        f"plain def (for async code use wsuv.aio.connect)")
    return resolved


def dial(srv: Server, url: str, handler: Any = None, *,
         subprotocols: Any = None, origin: str | None = None,
         additional_headers: Any = None, compression: Any = "server",
         ssl_ca_certs: Any = None, ssl_certfile: Any = None, ssl_keyfile: Any = None,
         ssl_keyfile_password: str | None = None,
         ssl_insecure_skip_verify: bool = False) -> WebSocket:
    """Server.connect: a client connection on srv's loop, its WebSocket at once
    (wss:// with the ssl_* options of wsuv.client_tls)."""
    if handler is None:
        if srv.handler is None or srv._c_app is not None:
            kind = "the built-in C echo" if srv.handler is None else "a C application"
            raise TypeError(f"Server.connect needs a handler: this server runs {kind}, so "
                            f"pass one (server.connect(url, MyHandler()))")
        handler = srv.handler
    else:
        handler = _client_handler(handler, "handler")
    if srv.handler is None or srv._c_app is not None:
        raise TypeError("Server.connect needs a server with a Python handler: the built-in "
                        "echo and C applications answer in C, without calling Python")
    if compression == "server":
        compression = srv.options["compression"]
    if compression not in ("deflate", None):
        raise ValueError(f'compression must be "deflate" or None, not {compression!r}')
    if subprotocols is not None and (isinstance(subprotocols, (str, bytes)) or not all(
            isinstance(p, str) for p in subprotocols)):
        raise TypeError("subprotocols is a list of str, e.g. ['chat']")
    if origin is not None and not isinstance(origin, str):
        raise TypeError(f"origin is a str, not {type(origin).__name__}")
    host, port, unix_path, target, secure = _split_url(url)
    where = unix_path or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    given = {"ssl_ca_certs": ssl_ca_certs, "ssl_certfile": ssl_certfile,
             "ssl_keyfile": ssl_keyfile, "ssl_keyfile_password": ssl_keyfile_password,
             "ssl_insecure_skip_verify": ssl_insecure_skip_verify}
    tls_opts: dict[str, Any] | None = None
    if secure:
        client_tls.check(given)  # misuse raises here, on the caller's thread
        tls_opts = given
    elif client_tls.given(given):
        raise ValueError(f"{client_tls.given(given)[0]} is a TLS option: it needs a wss:// "
                         f"URL, not {url}")
    fields = list(additional_headers.items() if isinstance(additional_headers, dict)
                  else additional_headers or ())
    args = (srv, handler, host, port, unix_path, target, subprotocols, origin, fields,
            compression == "deflate", where, tls_opts)
    if threading.get_ident() != srv._thread_id:
        ws: WebSocket | None = None

        def call() -> int:
            nonlocal ws
            ws = _start(*args)
            return 1

        srv._on_loop(call)
        if ws is None:
            raise RuntimeError("the server stopped before the connection could start")
        return ws
    return _start(*args)


def _start(srv: Server, handler: Any, host: str, port: int, unix_path: str | None,
           target: str, subprotocols: Any, origin: str | None, fields: list[tuple[str, str]],
           deflate: bool, where: str, tls_opts: dict[str, Any] | None) -> WebSocket:
    if srv._s == ffi.NULL:
        raise RuntimeError("the server is closed: it dials no more connections")
    o, keep = client_options(host, port, unix_path, target, subprotocols, origin, fields,
                             deflate)
    ctx = None
    if tls_opts is not None:
        # Made on the loop's thread (a context serves one thread's connections);
        # the connection takes its own reference in ws_client_connect.
        ctx = client_tls.client_context(tls_opts, where)
        o.tls = ctx.ptr
    o.want_control = int(callable(getattr(handler, "on_ping", None))
                         or callable(getattr(handler, "on_pong", None)))
    out = ffi.new("ws_server_conn **")
    req_err = ffi.new("long *")
    r = lib.ws_client_connect(srv._s, o, out, req_err)
    del keep, ctx  # borrowed by o until here
    if r == lib.WS_CLIENT_E_REQUEST:
        why = ffi.string(lib.ws_client_hs_strerror(req_err[0])).decode()
        raise ValueError(f"cannot build the upgrade request: {why}")
    if r == lib.WS_CLIENT_E_STOPPING:
        raise RuntimeError("the server is stopping: it dials no more connections")
    if r < 0:
        raise _os_error(r, where)
    c = out[0]
    request = Request("GET", target, Headers(list(fields)), where)
    ws = WebSocket(c, srv, request, None)
    ws._c = None  # not open: sends raise until on_open
    ws._dialing = c
    ws._handler = handler
    ws._on_message = getattr(handler, "on_message", _ignore)
    ws.close_reason = "not open yet"
    ws.state = None
    DIALING[_addr(c)] = ws
    return ws


def _ignore(*_args: Any) -> None:
    """Stands in for a handler method the application did not define."""


def opened(ws: WebSocket, c: Any) -> None:
    """From wsuv_on_open: the dialled connection is open."""
    ws._c, ws._dialing = c, None
    ws.close_reason = ""
    ws.response, ws.subprotocol, ws.extensions = _response_of(c)


def failed(ws: WebSocket, c: Any, err: int, hs: Any) -> None:
    """From wsuv_on_connect_failed: the dialled connection never opened."""
    ws._dialing = None
    where = ws.request.remote_address
    # The URL's host, for a certificate that does not name it: where is
    # "host:port" or "[v6]:port" (a TLS connection is never a unix socket).
    host = where.rsplit(":", 1)[0].removeprefix("[").removesuffix("]")
    exc = failure(err, hs, where, c, host)
    if err == lib.WS_CLIENT_REFUSED:
        ws.response = _read_response(hs)  # the refusal: status, headers, body
    # Closed without ever opening: 1006, as for a connection that dropped
    # (what websockets reports too); the reason is the error's sentence.
    ws.close_code = 1006
    ws.close_reason = str(exc)
    method = getattr(ws._handler, "on_connect_failed", None)
    if method is not None:
        try:
            method(ws, exc)
        except Exception:
            log.exception("on_connect_failed raised for %r", ws)
    elif err != -125:  # UV_ECANCELED: the application gave up (ws.close) or stopped
        log.error("%s", exc)
        srv = ws._server
        if isinstance(srv, Client):
            srv._unhandled.append(exc)
    flag = ws._server._idle_flag
    if flag is not None:
        flag[0] = 1


class Client(Server):
    """A host for client connections on its own loop, without a listener.

    ``handler`` is the default handler of its connections (any
    :class:`wsuv.Handler`; ``connect`` may give each its own). Options are the
    server's that apply to a connection (README "Client options"), with
    ``open_timeout`` for ``handshake_timeout``. :meth:`run` returns when no
    connection, timer or pending call is left (or after :meth:`stop`).
    """

    def __init__(self, handler: Any, **options: Any) -> None:
        handler = _client_handler(handler, "handler")
        bad = sorted(set(options) & set(_LISTENING))
        if bad:
            raise TypeError(f"wsuv.Client does not listen: {', '.join(bad)} "
                            f"{'is a server option' if len(bad) == 1 else 'are server options'}"
                            f" (use wsuv.Server and server.connect to serve and dial)")
        if "open_timeout" in options:
            if "handshake_timeout" in options:
                raise TypeError("give open_timeout or handshake_timeout, not both")
            options["handshake_timeout"] = options.pop("open_timeout")
        # A browser's offer: no server_max_window_bits asked unless given.
        options.setdefault("compression_client_window_bits", 15)
        options["handle_signals"] = False
        self._unhandled: list[BaseException] = []
        super().__init__(handler, **options)
        self._idle_flag = ffi.new("int[1]")

    def listen(self) -> list[str]:
        raise TypeError("wsuv.Client does not listen (use wsuv.Server to serve)")

    def _start_running(self) -> None:
        """Served by a shared loop's run (wsuv.Loop): nothing to listen on."""
        self._ran = True
        self._thread_id = threading.get_ident()
        with self._waiters_lock:
            self._running = True

    def run(self) -> None:
        """Run the loop until no connection, timer or pending call is left, or
        :meth:`stop`; then free it. Raises the first connection failure that
        no ``on_connect_failed`` handled. On the main thread it handles SIGINT
        while it runs: Ctrl-C closes gracefully (1001; a second one at once),
        then raises KeyboardInterrupt."""
        if self._ran or self._s == ffi.NULL:
            raise RuntimeError("a Client runs once (and not after close); make a new one")
        if getattr(self, "loop", None) is not None:
            raise RuntimeError("this Client is on a shared wsuv.Loop: run the loop "
                               "(Loop.run()) instead")
        self._ran = True
        self._thread_id = threading.get_ident()
        main = threading.current_thread() is threading.main_thread()
        flag = self._idle_flag
        sigints = [0]

        def on_sigint(_signum: int, _frame: Any) -> None:
            # A KeyboardInterrupt raised inside a C callback would be lost:
            # stop the loop instead (gracefully; a second Ctrl-C at once).
            sigints[0] += 1
            lib.ws_server_request_stop(self._s, int(sigints[0] == 1))

        old = signal.signal(signal.SIGINT, on_sigint) if main else None
        with self._waiters_lock:
            self._running = True
        try:
            while True:
                if (lib.ws_server_connection_count(self._s) == 0 and not self._timers
                        and not self._pending):
                    break
                flag[0] = 0
                if lib.ws_server_run_until(self._s, flag, _SLICE_MS if main else -1) < 0:
                    break
        except BaseException:
            lib.ws_server_stop(self._s, 0)
            raise
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
            self._release()
        if sigints[0]:
            raise KeyboardInterrupt
        if self._unhandled:
            raise self._unhandled[0]


def connect(url: str, handler: Any, **options: Any) -> Client:
    """A :class:`Client` with one connection to ``url`` (started at once);
    call ``.run()``. Connection options: ``subprotocols``, ``origin``,
    ``additional_headers``, ``compression``; the others are the Client's."""
    conn = {k: options.pop(k) for k in CONNECTION_OPTIONS if k in options}
    client = Client(handler, **options)
    try:
        client.connect(url, **conn)
    except BaseException:
        client.close()
        raise
    return client
