"""The server: options, the handler protocol, and the C callbacks behind them.

C calls Python once per event the application must see (a request, an open
connection, a message, a close); pings, pongs and drain only if the handler
defines them. Each callback finds its Python objects by the C pointer in a
dict, without a round trip into C.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable

from wsuv._core import ffi, lib
from wsuv.handler import OPTIONAL as _OPTIONAL
from wsuv.handler import Accept, resolve_handler
from wsuv.handler import Handler as Handler  # re-exported: wsuv.server.Handler
from wsuv.loop import Loop
from wsuv.options import resolve
from wsuv.page import ECHO_PAGE
from wsuv.request import Request, Response
from wsuv.tls import server_context, wants_tls
from wsuv.websocket import _MAX_TOPIC, WebSocket, _extensions, _topic

TYPE_CHECKING = False  # typing is not imported at run time: it costs wsuv-serve RSS
if TYPE_CHECKING:
    from typing import Any, TypeVar

    _F = TypeVar("_F", bound=Callable[..., None])

log = logging.getLogger("wsuv")
# the worker bus's message limit (csrc/workerbus.c max_payload): bigger stay local
_BUS_MAX_PAYLOAD = 64 << 20

_SERVERS: dict[Any, Server] = {}
# Open connections by the address of their C object: batches name them by
# address, so an int key is what every callback can look up cheaply.
_CONNS: dict[int, WebSocket] = {}
# Connections whose on_connect is being awaited (wsuv.aio): C pointer -> (server, request).
_PENDING: dict[int, tuple[Server, Request]] = {}
# Client connections not open yet (Server.connect): C pointer -> WebSocket.
DIALING: dict[int, WebSocket] = {}
_uintptr = ffi.typeof("uintptr_t")
_unpack = ffi.unpack


def _addr(c: Any) -> int:
    return int(ffi.cast(_uintptr, c))




class TimerHandle:
    """Returned by :meth:`Server.call_later`; :meth:`cancel` stops it."""

    __slots__ = ("_server", "_id")

    def __init__(self, server: Server, timer_id: int) -> None:
        self._server = server
        self._id = timer_id

    def cancel(self) -> None:
        """Cancel the call if it has not run yet."""
        self._server._cancel_timer(self._id)


class Server:
    """A WebSocket server on its own libuv loop, or on a shared :class:`wsuv.Loop`.

    ``handler`` is an object with the :class:`Handler` methods; ``None`` runs
    the built-in echo entirely in C, and a :func:`wsuv.load_c_app` result runs
    that C application (no Python per event). Options are listed in
    :mod:`wsuv.options` (README has the table). :meth:`run` blocks the calling
    thread (the loop thread). From any other thread: :meth:`stop`,
    :meth:`call_soon_threadsafe` and :meth:`call_later` hand themselves over;
    :meth:`broadcast` and :meth:`send_many` hand themselves over and wait
    until the loop has sent the message; :attr:`connections` is a snapshot.
    """

    def __init__(self, handler: Any = None, *, loop: Loop | None = None,
                 **options: Any) -> None:
        if loop is not None and not isinstance(loop, Loop):
            raise TypeError(f"loop must be a wsuv.Loop, not {type(loop).__name__}")
        self.options = opts = resolve(options)
        self.handler = handler = resolve_handler(handler)
        self._thread_id = threading.get_ident()
        self._oversize_warned = False
        self._pending: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque())
        self._timers: dict[int, tuple[Any, Callable[..., Any], tuple[Any, ...]]] = {}
        self._timer_ids = itertools.count(1)
        self._listening = False
        self._running = False
        self._waiters_lock = threading.Lock()
        # Run once a callback's messages are all delivered (wsuv.aio wakes the
        # tasks of the connections that got some there: one step per read).
        self._after_batch: list[Callable[[], None]] = []
        self._waiters: set[Any] = set()
        # Set by wsuv.aio for an awaited on_connect: called with (c, request) after
        # the decision was deferred in C; it answers later through _carry_out.
        self._async_connect: Callable[[Any, Request], None] | None = None
        self._opening: WebSocket | None = None
        # wsuv.Client's wake-up flag (ws_server_run_until): set when a connection
        # ends, a timer fires or a call runs, so run() sees it may be idle.
        self._idle_flag: Any = None
        self._ran = False
        self.addresses: list[str] = []
        self.port: int | None = None
        static = opts["static_dir"]
        if static is not None and not os.path.isdir(static):
            what = "is not a directory" if os.path.exists(static) else "does not exist"
            raise ValueError(f"static_dir {static} {what}")
        self._static = os.path.realpath(static) if static else None
        want = {name: callable(getattr(handler, name, None)) for name in _OPTIONAL}
        self._want = want

        cfg = ffi.new("ws_server_config *")
        lib.ws_server_config_default(cfg)
        cfg.backlog = opts["backlog"]
        cfg.tcp_nodelay = int(bool(opts["tcp_nodelay"]))
        cfg.tcp_keepalive = opts["tcp_keepalive"]
        cfg.reuseport = int(bool(opts["reuseport"]))
        cfg.max_connections = opts["max_connections"]
        cfg.handshake.max_url = opts["max_url"]
        cfg.handshake.max_headers = opts["max_headers"]
        cfg.handshake.max_header_bytes = opts["max_header_bytes"]
        cfg.limits.max_message_size = opts["max_message_size"]
        cfg.limits.max_fragments = opts["max_fragments"]
        cfg.handshake_timeout_ms = _ms(opts["handshake_timeout"])
        cfg.idle_timeout_ms = _ms(opts["idle_timeout"])
        cfg.ping_interval_ms = _ms(opts["ping_interval"])
        cfg.ping_timeout_ms = _ms(opts["ping_timeout"])
        cfg.close_timeout_ms = _ms(opts["close_timeout"])
        cfg.shutdown_timeout_ms = _ms(opts["shutdown_timeout"])
        cfg.write_high_water = opts["write_high_water"]
        cfg.write_low_water = opts["write_low_water"] or 0
        cfg.write_limit = opts["write_limit"]
        cfg.read_rate = opts["read_rate"]
        cfg.write_rate = opts["write_rate"]
        cfg.echo = int(handler is None)
        cfg.handle_signals = int(bool(opts["handle_signals"]))
        cfg.want_control = int(want["on_ping"] or want["on_pong"])
        cfg.busy_poll_us = opts["busy_poll_us"]
        cfg.compression = int(opts["compression"] == "deflate")
        cfg.pmd.window_bits = opts["compression_window_bits"]
        cfg.pmd.mem_level = opts["compression_mem_level"]
        cfg.pmd.level = opts["compression_level"]
        cfg.pmd.filtered = int(bool(opts["compression_filtered"]))
        cfg.pmd.peer_window_bits = opts["compression_client_window_bits"]
        cfg.pmd.peer_no_context_takeover = int(bool(opts["compression_client_no_context_takeover"]))
        cfg.pmd.no_context_takeover = int(bool(opts["compression_no_context_takeover"]))
        cfg.pmd.threshold = opts["compression_threshold"]
        cfg.compression_idle_ms = _ms(opts["compression_idle_timeout"])

        cb = ffi.new("ws_server_callbacks *")
        cb.on_http = lib.wsuv_on_http
        cb.on_wakeup = lib.wsuv_on_wakeup
        cb.on_timer = lib.wsuv_on_timer
        cb.on_shutdown = lib.wsuv_on_shutdown
        cb.on_cancel = lib.wsuv_on_cancel
        # A C application (wsuv.load_c_app): its callbacks replace the Python
        # trampolines, so no Python runs per event (capp.h).
        self._c_app = handler if getattr(type(handler), "_wsuv_c_app", False) else None
        if self._c_app is not None and loop is not None:
            raise ValueError("a C application runs on a loop of its own: drop loop=")
        if self._c_app is not None:
            self._s = self._c_app._server_new(cfg, cb)
        elif handler is not None:
            cb.on_request = lib.wsuv_on_request
            cb.on_open = lib.wsuv_on_open
            cb.on_message = lib.wsuv_on_message
            cb.on_batch = lib.wsuv_on_batch
            cb.on_close = lib.wsuv_on_close
            # C reports pings/pongs only for connections that want them (the
            # server's handler, cfg.want_control, or a client connection's
            # handler); drains only happen past write_high_water.
            cb.on_control = lib.wsuv_on_control
            cb.on_drain = lib.wsuv_on_drain
            cb.on_connect_failed = lib.wsuv_on_connect_failed
        self.loop = loop
        if self._c_app is None:
            c_loop = loop._ptr() if loop is not None else ffi.NULL
            self._s = lib.ws_server_new_on(c_loop, cfg, cb, ffi.NULL)
        if self._s == ffi.NULL:
            raise MemoryError("ws_server_new failed")
        _SERVERS[self._s] = self
        if loop is not None:
            loop._servers.append(self)
        self._tls = wants_tls(opts)
        if self._tls:
            self._use_tls(opts)
        self._on_message: Callable[[WebSocket, str | bytes], Any] = getattr(
            handler, "on_message", _ignore)
        if opts["pubsub_url"]:
            url = opts["pubsub_url"].encode()
            err = ffi.new("const char **")
            if lib.ws_server_pubsub_connect(self._s, url, len(url),
                                            opts["pubsub_namespace"].encode(), err) != 0:
                why = ffi.string(err[0]).decode()
                self.close()
                raise ValueError(f"pubsub_url {opts['pubsub_url']!r}: {why}")

    def _use_tls(self, opts: dict[str, Any]) -> None:
        try:
            ctx = server_context(opts)
        except (TypeError, ValueError):
            self.close()
            raise
        if lib.ws_server_set_tls(self._s, ctx, lib.wsuv_tls_log) != 0:
            lib.ws_tls_ctx_free(ctx)
            self.close()
            raise MemoryError("ws_server_set_tls failed")

    # -- listening ---------------------------------------------------------------
    def listen(self) -> list[str]:
        """Bind the listeners now (``run`` does it if you don't). Returns URLs."""
        if self._listening:
            return self.addresses
        try:
            self._bind()
        except OSError:
            self.close()
            raise
        self._listening = True
        return self.addresses

    def close(self) -> None:
        """Free a server that will not run (``run`` frees its own at the end)."""
        if self._s != ffi.NULL and not self._ran:
            with self._waiters_lock:
                s, self._s = self._s, ffi.NULL
            _SERVERS.pop(s, None)
            for key in [k for k, ws in list(DIALING.items()) if ws._server is self]:
                DIALING.pop(key, None)
            if self._c_app is not None:
                self._c_app._detach()
            self._leave_loop()
            lib.ws_server_free(s)

    def _leave_loop(self) -> None:
        """A server on a shared wsuv.Loop is forgotten by it once freed."""
        if self.loop is not None and self in self.loop._servers:
            self.loop._servers.remove(self)

    def _bind(self) -> None:
        opts = self.options
        if opts["fd"] is not None:
            _check(lib.ws_server_listen_fd(self._s, opts["fd"]), f"fd {opts['fd']}")
            self.addresses.append(f"fd://{opts['fd']}")
        elif opts["unix_path"]:
            path = opts["unix_path"]
            _check(lib.ws_server_listen_unix(self._s, path.encode()), path)
            self.addresses.append(f"unix:{path}")
        else:
            port = opts["port"]
            hosts = _numeric_hosts(opts["host"], port)
            bound = ffi.new("int *")
            for host in hosts:
                _check(lib.ws_server_listen_tcp(self._s, host.encode(), port, bound),
                       f"{host}:{port}")
                port = port or bound[0]
                shown = f"[{host}]" if ":" in host else host
                scheme = "wss" if self._tls else "ws"
                self.addresses.append(f"{scheme}://{shown}:{bound[0]}/")
            self.port = port

    # -- dialling out -------------------------------------------------------------
    def connect(self, url: str, handler: Any = None, **options: Any) -> WebSocket:
        """Open a client connection to ``url`` on this server's loop and return its
        :class:`WebSocket` at once; ``handler`` (default: the server's) gets
        ``on_open`` when it opens, or ``on_connect_failed(ws, error)``.
        Options: ``subprotocols``, ``origin``, ``additional_headers``,
        ``compression`` and, for ``wss://``, the ``ssl_*`` options of
        :func:`wsuv.sync.connect`; timeouts and limits are the server's
        (``handshake_timeout`` is the open timeout). From another thread it is
        handed to the loop and waits for it."""
        from wsuv.client import dial

        return dial(self, url, handler, **options)

    # -- running ------------------------------------------------------------------
    def run(self) -> None:
        """Serve until stopped (a signal, :meth:`stop`); then free the loop."""
        if self._ran or self._s == ffi.NULL:
            raise RuntimeError("a Server runs once (and not after close); make a new one")
        self._start_running()
        main = threading.current_thread() is threading.main_thread()
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if (
            main and self.options["handle_signals"]) else {}
        # The other servers of a shared loop are served by this run as well.
        siblings = [s for s in self.loop._servers if s is not self] if self.loop else []
        for sib in siblings:
            sib._set_serving(True)
        try:
            if lib.ws_server_run(self._s) != 0:
                raise RuntimeError("this server's wsuv.Loop is already running")
        finally:
            for sib in siblings:
                sib._set_serving(False)
            for sig, old in saved.items():
                if old is not None:
                    signal.signal(sig, old)
            self._release()

    def _start_running(self) -> None:
        """run() (or Loop.run()) begins: listen, announce, mark the loop thread."""
        self._ran = True
        # Before the listeners exist: a thread that sees the port open must see
        # that it is not the loop thread (its calls are handed over).
        self._thread_id = threading.get_ident()
        self.listen()
        _default_logging()
        # Said from inside the loop: once it is printed, SIGINT/SIGTERM are handled.
        self.call_soon_threadsafe(_announce, list(self.addresses))
        self._running = True

    def _set_serving(self, on: bool) -> None:
        """Another server's run() serves this one (same wsuv.Loop), or stopped."""
        with self._waiters_lock:
            if on:
                self._thread_id = threading.get_ident()
            self._running = on and self._s != ffi.NULL

    def _release(self) -> None:
        """After the loop ended: wake waiting threads, forget connections, free C."""
        # The pointer is taken under the lock that stop() and the wake-ups
        # hold around their C call: none of them can reach a freed server
        # (a late stop from another thread used to write to a closed loop).
        with self._waiters_lock:
            self._running = False
            for fut in self._waiters:
                fut.cancel()  # their calls will not run: the loop is gone
            self._waiters.clear()
            s, self._s = self._s, ffi.NULL
        for key in [k for k, ws in _CONNS.items() if ws._server is self]:
            _CONNS.pop(key, None)
        for key in [k for k, (srv, _r) in _PENDING.items() if srv is self]:
            _PENDING.pop(key, None)
        for key in [k for k, ws in list(DIALING.items()) if ws._server is self]:
            DIALING.pop(key, None)
        _SERVERS.pop(s, None)
        if self._c_app is not None:
            self._c_app._detach()
        self._leave_loop()
        lib.ws_server_free(s)

    def stop(self, graceful: bool = True) -> None:
        """Stop from any thread: gracefully (close 1001 to all) or at once."""
        with self._waiters_lock:  # see _release
            if self._s != ffi.NULL:
                lib.ws_server_request_stop(self._s, int(graceful))

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread, soon; callable from any thread
        (before :meth:`run` too: it runs once the loop starts)."""
        if not callable(fn):
            raise TypeError(f"call_soon_threadsafe needs a callable, not {type(fn).__name__}")
        with self._waiters_lock:  # see _release
            if self._s == ffi.NULL:
                raise RuntimeError("the server has stopped: nothing runs on its loop any more")
            self._pending.append((fn, args))
            lib.ws_server_wakeup(self._s)

    def _handoff(self, fn: Callable[..., Any], *args: Any) -> None:
        """call_soon_threadsafe for a connection's own calls: dropped once stopped."""
        with self._waiters_lock:  # see _release
            if self._s != ffi.NULL:
                self._pending.append((fn, args))
                lib.ws_server_wakeup(self._s)

    def _on_loop(self, fn: Callable[..., int], *args: Any) -> int:
        """``fn(*args)`` on the loop thread; from another thread, wait for it.

        If the loop stops before the call runs, the result is 0 (it reached no
        connection)."""
        if threading.get_ident() == self._thread_id:
            return fn(*args)
        import concurrent.futures

        fut: concurrent.futures.Future[int] = concurrent.futures.Future()

        def call() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as exc:
                    fut.set_exception(exc)

        with self._waiters_lock:
            if not self._running:
                raise RuntimeError("the server is not running: call this from its loop "
                                   "thread, or while run() serves")
            self._waiters.add(fut)
            self._pending.append((call, ()))
            lib.ws_server_wakeup(self._s)
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            return 0
        finally:
            with self._waiters_lock:
                self._waiters.discard(fut)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``fn(*args)`` on the loop thread after ``delay`` seconds."""
        import math

        if not callable(fn):
            raise TypeError(f"call_later needs a callable, not {type(fn).__name__}")
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise TypeError(f"call_later's delay is a number of seconds, not "
                            f"{type(delay).__name__}")
        if not (math.isfinite(delay) and delay >= 0):
            raise ValueError(f"call_later's delay must be a finite number >= 0, not {delay!r}")
        tid = next(self._timer_ids)  # one step under the GIL: safe from any thread
        if threading.get_ident() != self._thread_id:
            self.call_soon_threadsafe(self._start_timer, tid, delay, fn, args)
        else:
            self._start_timer(tid, delay, fn, args)
        return TimerHandle(self, tid)

    def _start_timer(self, tid: int, delay: float, fn: Callable[..., Any],
                     args: tuple[Any, ...]) -> None:
        t = lib.ws_server_timer_start(self._s, _ms(delay), tid)
        if t != ffi.NULL:
            self._timers[tid] = (t, fn, args)

    def _cancel_timer(self, tid: int) -> None:
        if threading.get_ident() != self._thread_id:
            self._handoff(self._cancel_timer, tid)
            return
        entry = self._timers.pop(tid, None)
        if entry is not None:
            lib.ws_server_timer_cancel(entry[0])

    # -- many connections ---------------------------------------------------------
    @property
    def connections(self) -> list[WebSocket]:
        """Open connections of this server."""
        # list() of a dict view is one step under the GIL: safe from any thread.
        return [ws for ws in list(_CONNS.values()) if ws._server is self]

    def broadcast(self, message: str | bytes, exclude: WebSocket | None = None) -> int:
        """Send one message to every open connection; the frame is built once, in C.

        Returns how many connections it was written to. From another thread it
        is handed to the loop and waits until it was sent.
        """
        data, op = _payload(message)
        if exclude is not None and not isinstance(exclude, WebSocket):
            raise TypeError(f"exclude must be a WebSocket or None, not {type(exclude).__name__}")
        return self._on_loop(self._broadcast, op, data, exclude)

    def _broadcast(self, op: int, data: bytes, exclude: WebSocket | None) -> int:
        if self._s == ffi.NULL:
            return 0
        skip = exclude._c if exclude is not None and exclude._c is not None else ffi.NULL
        return int(lib.ws_server_broadcast(self._s, op, data, len(data), skip))

    def publish(self, topic: str, message: str | bytes,
                exclude: WebSocket | None = None) -> int:
        """Send one message to every subscriber of ``topic`` in this process
        (``ws.subscribe``): encoded once, fanned out in C. Returns how many
        connections it was written to. From another thread it is handed to
        the loop and waits until it was sent."""
        # Called per publish, often a hundred times per message: the common
        # case (str topic, str or bytes message, no exclude, loop thread) is one
        # frame and one C call. No function-level import here: each costs an
        # import-system lookup with two AttributeErrors raised and cleared
        # inside CPython, half a 100-topic fan-out's user-space instructions.
        if type(topic) is str and exclude is None and threading.get_ident() == self._thread_id:
            raw = topic.encode()
            if 0 < len(raw) <= _MAX_TOPIC:
                if type(message) is bytes:
                    data, op = message, 2
                elif type(message) is str:
                    data, op = message.encode(), 1
                else:
                    data, op = _payload(message)
                return self._publish(raw, op, data, None)
        raw = _topic(topic)
        data, op = _payload(message)
        if exclude is not None and not isinstance(exclude, WebSocket):
            raise TypeError(f"exclude must be a WebSocket or None, not {type(exclude).__name__}")
        if threading.get_ident() == self._thread_id:
            return self._publish(raw, op, data, exclude)
        return self._on_loop(self._publish, raw, op, data, exclude)

    def _publish(self, raw: bytes, op: int, data: bytes, exclude: WebSocket | None) -> int:
        if self._s == ffi.NULL:
            return 0
        skip = exclude._c if exclude is not None and exclude._c is not None else ffi.NULL
        n: int = lib.ws_server_publish(self._s, raw, len(raw), op, data, len(data), skip)
        if len(data) > _BUS_MAX_PAYLOAD and not self._oversize_warned:
            self._warn_oversize()
        return n

    def _warn_oversize(self) -> None:
        """Logs, once, that a publish was too big for the worker bus."""
        st: Any = ffi.new("ws_bus_stats *")
        up = ffi.new("int *")
        if lib.ws_server_bus_stats(self._s, st, up) and st.dropped_oversize:
            self._oversize_warned = True
            log.warning("a publish of over %d MiB reached only this worker's subscribers "
                        "(the worker bus carries up to that; counted in pubsub_stats()"
                        "['dropped_oversize'])", _BUS_MAX_PAYLOAD >> 20)

    def pubsub_stats(self) -> dict[str, int] | None:
        """The counters of what carries publishes out of this process: the Redis
        bridge's (``pubsub_url``), or the worker bus link's (a worker of
        ``wsuv-serve --workers N``): published, delivered, lost, dropped_down,
        dropped_full, ..., and up: 1 while connected. None with neither.
        Loop thread only."""
        if threading.get_ident() != self._thread_id:
            raise RuntimeError("Server.pubsub_stats must be called on the loop thread")
        if self._s == ffi.NULL:
            return None
        up = ffi.new("int *")
        st: Any = ffi.new("ws_redis_stats *")
        if not lib.ws_server_pubsub_stats(self._s, st, up):
            st = ffi.new("ws_bus_stats *")
            if not lib.ws_server_bus_stats(self._s, st, up):
                return None
        out = {name: int(getattr(st, name)) for name in dir(st)}
        out["up"] = int(up[0])
        return out

    def hub_stats(self) -> dict[str, int] | None:
        """The worker bus hub's counters, for a worker of ``wsuv-serve --workers
        N``, as of the hub's latest report (it sends one to every worker once a
        second, and when a worker connects): links, accepted, received,
        forwarded, dropped_full, malformed, topics, and age_ms (how old that
        report is). None when not on a bus, or before the first report. Loop
        thread only."""
        if threading.get_ident() != self._thread_id:
            raise RuntimeError("Server.hub_stats must be called on the loop thread")
        if self._s == ffi.NULL:
            return None
        st: Any = ffi.new("ws_bushub_stats *")
        age = ffi.new("uint64_t *")
        if not lib.ws_server_bus_hub_stats(self._s, st, age):
            return None
        out = {name: int(getattr(st, name)) for name in dir(st)}
        out["age_ms"] = int(age[0])
        return out

    def _join_bus(self, path: str) -> None:
        """Become a worker on the bus hub at ``path`` (wsuv-serve --workers does
        this): publishes reach the other workers' subscribers. Before run()."""
        err = ffi.new("const char **")
        if lib.ws_server_bus_connect(self._s, path.encode(), err) != 0:
            raise ValueError(f"worker bus {path!r}: {ffi.string(err[0]).decode()}")

    def subscribers(self, topic: str) -> int:
        """How many connections of this process are subscribed to ``topic``."""
        raw = _topic(topic)
        return self._on_loop(lambda: int(lib.ws_server_subscribers(self._s, raw, len(raw)))
                             if self._s != ffi.NULL else 0)

    def send_many(self, sockets: Iterable[WebSocket], message: str | bytes) -> int:
        """Send one message to the given connections in one C call (closed ones are
        skipped); returns how many it was written to. From another thread it is
        handed to the loop and waits until it was sent."""
        data, op = _payload(message)
        targets = list(sockets)
        for ws in targets:
            if not isinstance(ws, WebSocket):
                raise TypeError(f"send_many takes WebSocket objects, not {type(ws).__name__}")
        return self._on_loop(self._send_many, targets, op, data)

    def _send_many(self, targets: list[WebSocket], op: int, data: bytes) -> int:
        conns = [ws._c for ws in targets if ws._c is not None and ws._server is self]
        if not conns or self._s == ffi.NULL:
            return 0
        arr = ffi.new("ws_server_conn *[]", conns)
        return int(lib.ws_server_send_many(self._s, arr, len(conns), op, data, len(data)))

    def compression_memory(self) -> tuple[int, int]:
        """(bytes, peak): zlib and deflate-buffer memory all connections hold now, and the
        most they held at once (counted in C by zlib's allocation hooks)."""
        peak = ffi.new("size_t *")
        now = lib.ws_server_deflate_memory(self._s, peak) if self._s != ffi.NULL else 0
        return int(now), int(peak[0])

    # -- HTTP ---------------------------------------------------------------------
    def _http_response(self, request: Request) -> Response | None:
        if self._want["on_http"]:
            resp: Response | None = self.handler.on_http(request)
            if resp is not None:
                return resp
        if request.method not in ("GET", "HEAD"):
            return None
        if self._static is not None:
            return _static_file(self._static, request.path)
        if self.handler is None and request.path in ("/", "/index.html"):
            return Response(200, ECHO_PAGE, [("Content-Type", "text/html; charset=utf-8")])
        return None


def serve(handler: Any = None, **options: Any) -> None:
    """Run a server until it is stopped (Ctrl-C / SIGTERM drain it gracefully)."""
    Server(handler, **options).run()


def _announce(addresses: list[str]) -> None:
    for url in addresses:
        log.info("wsuv listening on %s", url)


def _default_logging() -> None:
    """Show wsuv's INFO lines (such as "listening on") on stderr when the
    application configured no logging, as uvicorn does: only if neither the
    root logger nor "wsuv" has a handler, so an application's setup wins."""
    if logging.getLogger().handlers or log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    log.propagate = False  # a root handler added later would print every line twice


# -- helpers -----------------------------------------------------------------------

def _payload(message: Any) -> tuple[bytes, int]:
    """(bytes, opcode) of a message: text for str, binary for bytes-like."""
    if isinstance(message, str):
        return message.encode(), 1
    if type(message) is bytes:
        return message, 2  # immutable already: no copy
    try:
        return bytes(memoryview(message)), 2
    except TypeError:
        raise TypeError(f"a message is str or bytes-like (bytes, bytearray, memoryview), "
                        f"not {type(message).__name__}") from None


def _ignore(*_args: Any) -> None:
    """Stands in for a handler method the application did not define."""


def _ms(seconds: float) -> int:
    return max(0, round(float(seconds) * 1000))


def _check(rc: int, what: str) -> None:
    if rc != 0:
        msg = ffi.string(lib.ws_server_strerror(rc)).decode()
        raise OSError(-rc, f"cannot listen on {what}: {msg}")


def _numeric_hosts(host: str, port: int) -> list[str]:
    """Numeric addresses for host (a name may give IPv4 and IPv6)."""
    import socket

    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    seen: list[str] = []
    for _family, _type, _proto, _canon, addr in infos:
        ip = str(addr[0])
        if ip not in seen:
            seen.append(ip)
    return seen


def _static_file(root: str, path: str) -> Response:
    """A file under root, never outside it (no traversal, no symlink escape)."""
    import mimetypes

    rel = path.lstrip("/") or "index.html"
    if "\0" in rel:
        return Response(400, "bad path\n")
    target = os.path.realpath(os.path.join(root, rel))
    if os.path.isdir(target):
        target = os.path.realpath(os.path.join(target, "index.html"))
    if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
        return Response(404, "not found\n")
    try:
        with open(target, "rb") as f:
            body = f.read()
    except OSError:
        return Response(404, "not found\n")
    ctype = mimetypes.guess_type(target)[0] or "application/octet-stream"
    return Response(200, body, [("Content-Type", ctype)])


def _request(c: Any, hs: Any) -> Request:
    n = ffi.new("size_t *")
    method = ffi.unpack(lib.ws_handshake_method(hs, n), n[0]).decode("latin-1")
    target = ffi.unpack(lib.ws_handshake_target(hs, n), n[0]).decode("latin-1")
    raw = ffi.unpack(lib.ws_handshake_buffer(hs, n), n[0])
    count = lib.ws_handshake_header_count(hs)
    spans = bytes(ffi.buffer(lib.ws_handshake_headers(hs), 16 * count)) if count else b""
    peer = ffi.new("char[80]")
    plen = lib.ws_server_conn_peer(c, peer, 80)
    return Request(method, target, None, ffi.unpack(peer, plen).decode(), raw=raw, spans=spans)


def _respond(c: Any, resp: Response) -> None:
    try:
        headers = resp.header_block()
    except ValueError:
        log.exception("invalid response headers")
        resp, headers = Response(500, "internal server error\n"), b""
    if 200 <= resp.status < 300 or resp.status in (301, 302, 304):
        lib.ws_server_conn_http_response(c, resp.status, headers, len(headers), resp.body,
                                         len(resp.body))
    else:
        reason = resp.body.rstrip(b"\n") or b""
        lib.ws_server_conn_reject(c, resp.status, reason, len(reason), headers, len(headers))


# -- C callbacks ---------------------------------------------------------------------

def _extern(fn: _F) -> _F:
    """Register fn as the C-callable ``extern "Python"`` function of its name."""
    ffi.def_extern(name=fn.__name__)(fn)
    return fn


def _reject_500(c: Any) -> None:
    msg = b"internal server error"
    lib.ws_server_conn_reject(c, 500, msg, len(msg), b"", 0)


@_extern
def wsuv_on_request(s: Any, c: Any, hs: Any) -> None:
    srv = _SERVERS[s]
    try:
        _decide(srv, c, hs)
    except Exception:
        # Whatever failed, the answer is a refusal: never an accidental 101.
        log.exception("%s failed; answering 500", _decider(srv))
        _reject_500(c)


def _decider(srv: Server) -> str:
    """What decided, for the log: on_connect, or wsuv.aio's process_request."""
    return getattr(srv.handler, "decider", "on_connect")


def _decide(srv: Server, c: Any, hs: Any) -> None:
    """Run on_connect and carry out its decision: 101, a Response, or 500."""
    request = _request(c, hs)
    if srv._async_connect is not None:
        lib.ws_server_conn_defer(c)
        _PENDING[_addr(c)] = (srv, request)
        srv._async_connect(c, request)
        return
    decision = srv.handler.on_connect(request) if hasattr(srv.handler, "on_connect") else None
    _carry_out(srv, c, request, decision)


def _carry_out(srv: Server, c: Any, request: Request, decision: Any) -> None:
    """Answer an upgrade request with what on_connect decided."""
    if isinstance(decision, Response):
        if decision.status < 200:
            log.error("%s returned Response(%d): a refusal needs a status of 200 or "
                      "more; answering 500", _decider(srv), decision.status)
            _reject_500(c)
        else:
            _respond(c, decision)
        return
    subprotocol = None
    headers = b""
    if isinstance(decision, Accept):
        subprotocol = decision.subprotocol
        headers = Response(101, b"", decision.headers).header_block()
        if subprotocol is not None and subprotocol not in request.subprotocols:
            log.error("%s chose subprotocol %r the client did not offer; answering 500",
                      _decider(srv), subprotocol)
            _reject_500(c)
            return
        if not decision.compression:
            lib.ws_server_conn_set_compression(c, 0)
    elif decision is not None:
        # False, 403 or a string must never open the connection: an auth
        # check that returns the wrong type would otherwise let everyone in.
        if hasattr(decision, "close") and hasattr(decision, "send"):
            decision.close()  # a coroutine: never awaited, so close it quietly
        log.error("%s returned %s, not None, Accept or Response; answering 500",
                  _decider(srv), type(decision).__name__)
        _reject_500(c)
        return
    ws = WebSocket(c, srv, request, subprotocol)
    sp = subprotocol.encode() if subprotocol else b""
    # Registered only in on_open: C calls it right after the accept returns
    # (or from inside it, for a deferred decision), or never (the peer
    # vanished while we answered), and then nothing may keep the pointer.
    srv._opening = ws
    lib.ws_server_conn_accept(c, sp, len(sp), headers, len(headers))


def decide_later(c: Any, decision: Any) -> None:
    """Carry out an awaited on_connect's decision (wsuv.aio), if the connection
    is still waiting; an exception object answers 500."""
    entry = _PENDING.pop(_addr(c), None)
    if entry is None:
        return  # cancelled meanwhile (handshake timeout, shutdown)
    srv, request = entry
    if isinstance(decision, BaseException):
        log.error("%s failed; answering 500", _decider(srv), exc_info=decision)
        _reject_500(c)
        return
    try:
        _carry_out(srv, c, request, decision)
    except Exception:
        log.exception("%s's decision failed; answering 500", _decider(srv))
        _reject_500(c)


def is_pending(c: Any) -> bool:
    """True while an awaited on_connect may still answer connection c."""
    return _addr(c) in _PENDING


@_extern
def wsuv_on_http(s: Any, c: Any, hs: Any) -> None:
    srv = _SERVERS[s]
    try:
        resp = srv._http_response(_request(c, hs))
    except Exception:
        log.exception("HTTP handler failed")
        resp = Response(500, "internal server error\n")
    if resp is not None:
        _respond(c, resp)


def _failed(ws: WebSocket, what: str) -> None:
    log.exception("%s raised; closing %r with 1011", what, ws)
    if ws._c is not None:
        msg = b"internal error"
        lib.ws_server_conn_close(ws._c, 1011, msg, len(msg))


@_extern
def wsuv_on_open(s: Any, c: Any) -> None:
    ws = DIALING.pop(_addr(c), None) if DIALING else None
    if ws is not None:  # a client connection (Server.connect)
        from wsuv.client import opened

        opened(ws, c)
    else:
        srv = _SERVERS[s]
        ws, srv._opening = srv._opening, None
        if ws is None or ws._c != c:
            return
        if srv.options["compression"]:
            ws.extensions = _extensions(c)
    _CONNS[_addr(c)] = ws
    try:
        ws._handler.on_open(ws)
    except Exception:
        _failed(ws, "on_open")


@_extern
def wsuv_on_connect_failed(s: Any, c: Any, err: int, hs: Any) -> None:
    ws = DIALING.pop(_addr(c), None)
    if ws is not None:
        from wsuv.client import failed

        failed(ws, c, err, hs)


@_extern
def wsuv_on_message(s: Any, c: Any, opcode: int, data: Any, length: int) -> None:
    ws = _CONNS[_addr(c)]
    try:
        # One copy either way: decoded from C memory, or unpacked into bytes.
        if opcode == 1:
            ws._on_message(ws, str(ffi.buffer(data, length), "utf-8"))
        else:
            ws._on_message(ws, ffi.unpack(data, length))
    except Exception:
        _failed(ws, "on_message")
    if ws._server._after_batch:
        _run_after(ws._server._after_batch)


@_extern
def wsuv_on_batch(s: Any, entries: Any, n: int, arena: Any) -> None:
    """Small messages of one poll phase, in order: one C->Python crossing for all."""
    words = _unpack(entries, 4 * n)
    # Request/response: a batch of one skips the loop below, whose zip/iter set-up
    # and slice cost ~5,000 instructions per call (callgrind, 1 conn, K=1).
    if n == 1:
        ws = _CONNS.get(words[0])
        if ws is not None:
            data = _unpack(arena, words[3])
            try:
                ws._on_message(ws, data.decode() if words[1] == 1 else data)
            except Exception:
                _failed(ws, "on_message")
            if ws._server._after_batch:
                _run_after(ws._server._after_batch)
        return
    # One copy of the arena, then a slice per message: cheaper than a
    # memoryview slice per message for the small messages batched here.
    snap = _unpack(arena, words[-2] + words[-1])
    get = _CONNS.get
    it = iter(words)
    for key, opcode, off, length in zip(it, it, it, it, strict=True):
        ws = get(key)
        if ws is None:
            continue
        data = snap[off:off + length]
        try:
            ws._on_message(ws, data.decode() if opcode == 1 else data)
        except Exception:
            _failed(ws, "on_message")
    srv = _SERVERS.get(s)
    if srv is not None and srv._after_batch:
        _run_after(srv._after_batch)


def _run_after(after: list[Callable[[], None]]) -> None:
    while after:
        calls = after[:]
        after.clear()
        for fn in calls:
            try:
                fn()
            except Exception:
                log.exception("callback %r raised", fn)


@_extern
def wsuv_on_control(s: Any, c: Any, opcode: int, data: Any, length: int) -> None:
    ws = _CONNS.get(_addr(c))
    if ws is None:
        return
    name = "on_ping" if opcode == 9 else "on_pong"
    method = getattr(ws._handler, name, None)
    if method is None:
        return
    try:
        method(ws, ffi.buffer(data, length)[:])
    except Exception:
        _failed(ws, name)


@_extern
def wsuv_on_drain(s: Any, c: Any) -> None:
    ws = _CONNS.get(_addr(c))
    if ws is None:
        return
    method = getattr(ws._handler, "on_drain", None)
    if method is None:
        return
    try:
        method(ws)
    except Exception:
        _failed(ws, "on_drain")


@_extern
def wsuv_on_close(s: Any, c: Any, code: int, reason: Any, length: int) -> None:
    ws = _CONNS.pop(_addr(c), None)
    if ws is None:
        return
    ws._c = None
    ws.close_code = code
    ws.close_reason = ffi.unpack(reason, length).decode("utf-8", "replace")
    flag = ws._server._idle_flag
    if flag is not None:
        flag[0] = 1
    try:
        ws._handler.on_close(ws, code, ws.close_reason)
    except Exception:
        log.exception("on_close raised for %r", ws)


@_extern
def wsuv_on_cancel(s: Any, c: Any) -> None:
    _PENDING.pop(_addr(c), None)


@_extern
def wsuv_on_wakeup(s: Any) -> None:
    srv = _SERVERS.get(s)
    if srv is None:
        return
    pending = srv._pending
    if srv._idle_flag is not None:
        srv._idle_flag[0] = 1
    for _ in range(len(pending)):
        fn, args = pending.popleft()
        try:
            fn(*args)
        except Exception:
            log.exception("callback %r raised", fn)


@_extern
def wsuv_on_timer(s: Any, timer_id: int) -> None:
    srv = _SERVERS.get(s)
    entry = srv._timers.pop(timer_id, None) if srv is not None else None
    if entry is None or srv is None:
        return
    _t, fn, args = entry
    if srv._idle_flag is not None:
        srv._idle_flag[0] = 1
    try:
        fn(*args)
    except Exception:
        log.exception("timer callback %r raised", fn)


@_extern
def wsuv_on_shutdown(s: Any) -> None:
    srv = _SERVERS.get(s)
    if srv is not None:
        log.info("wsuv shutting down")
        srv._timers.clear()

