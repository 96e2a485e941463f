"""wsuv inside asyncio: the same C server, driven by a running asyncio loop.

The server's libuv loop is not run by a thread of its own: its backend fd
(epoll) is registered with ``loop.add_reader``, one asyncio timer follows
``uv_backend_timeout()``, and every wake-up runs ``uv_run(UV_RUN_NOWAIT)``
once. Reads, the batch, the cork and fan-out stay in C. Calls made between
turns (a ``send`` from a task that queues bytes, a timer started) wake the
backend fd themselves (csrc/server.h), so nothing waits for unrelated traffic.

Handlers: a :class:`wsuv.Handler` whose methods are plain functions runs as on
the server's own loop (the batch path); one whose methods are ``async def``
has ``on_connect`` awaited before the 101, and ``on_open``/``on_message``/
``on_close`` run one at a time per connection, in arrival order; a
connection handler ``async def handler(ws)`` gets a :class:`Connection` in
the style of the ``websockets`` library.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import itertools
import logging
import threading
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterable
from typing import Any

from wsuv._core import ffi, lib
from wsuv._uvdrive import UvDriver, host_for
from wsuv.handler import Handler, has_async_methods, is_connection_handler, resolve_handler
from wsuv.request import Request, Response
from wsuv.server import Server, _default_logging, decide_later, is_pending
from wsuv.websocket import ConnectionClosed, Message, WebSocket, ping_payload

__all__ = ["AioClientConnection", "AioServer", "Connection", "broadcast", "client", "connect",
           "serve"]

log = logging.getLogger("wsuv")
_buffered = lib.ws_server_conn_buffered
_consumed = lib.ws_server_conn_consumed
_send_hw = lib.ws_server_conn_send_hw
_get_ident = threading.get_ident

#: Messages waiting for an async handler, per connection: at the first,
#: reading from that peer pauses (in C, at once); at or below the second it
#: resumes.
DEFAULT_MAX_QUEUE = 16


def serve(handler: Any, host: str = "127.0.0.1", port: int = 8080,
          *, max_queue: int | tuple[int, int] | None = DEFAULT_MAX_QUEUE,
          process_request: Callable[[Request], Any] | None = None,
          **options: Any) -> _Serve:
    """Serve ``handler`` on the running asyncio loop.

    Use it as ``async with wsuv.aio.serve(h, port=...) as server:`` or
    ``server = await wsuv.aio.serve(...)``. Every option of
    :class:`wsuv.Server` is accepted; ``max_queue`` bounds the messages
    waiting for an async handler per connection (``(high, low)``, or ``high``
    with low = high // 4; ``None`` = unbounded). ``process_request(request)``
    (plain or ``async def``) decides before the 101 for a connection handler,
    as a Handler's ``on_connect`` does: ``None`` or an ``Accept`` opens, a
    ``Response`` refuses.
    """
    return _Serve(handler, dict(options, host=host, port=port), max_queue,
                  process_request=process_request)


def client(handler: Any, **options: Any) -> _Serve:
    """Host callback-style client connections on the running asyncio loop,
    without listening (:class:`wsuv.Client`'s options): ``async with
    wsuv.aio.client(MyHandler()) as c: ws = c.connect(url); ...``. The
    handler's methods are plain ``def`` (for async code: :func:`connect`)."""
    return _Serve(handler, options, None, dial_only=True)


class _Serve:
    """What :func:`serve` returns: awaitable, and an async context manager."""

    def __init__(self, handler: Any, options: dict[str, Any],
                 max_queue: int | tuple[int, int] | None, dial_only: bool = False,
                 process_request: Callable[[Request], Any] | None = None) -> None:
        self._args = (handler, options, max_queue)
        self._dial_only = dial_only
        self._process_request = process_request
        self._server: AioServer | None = None

    def _start(self) -> AioServer:
        if self._server is None:
            self._server = AioServer(*self._args, dial_only=self._dial_only,
                                     process_request=self._process_request)
        return self._server

    def __await__(self) -> Generator[Any, None, AioServer]:
        return self._ready().__await__()

    async def _ready(self) -> AioServer:
        return self._start()

    async def __aenter__(self) -> AioServer:
        return self._start()

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _queue_marks(max_queue: int | tuple[int, int] | None) -> tuple[int | None, int]:
    if max_queue is None:
        return None, 0
    if isinstance(max_queue, tuple) and len(max_queue) == 2:
        high, low = max_queue
    elif isinstance(max_queue, int):
        high, low = max_queue, max_queue // 4
    else:
        high = low = -1  # refused below
    if isinstance(high, bool) or not isinstance(high, int) or not isinstance(low, int) or not (
            0 <= low < high):
        raise ValueError(f"max_queue must be a positive int or (high, low) with "
                         f"0 <= low < high, not {max_queue!r}")
    return high, low


class AioServer:
    """A :class:`wsuv.Server` attached to the running asyncio loop."""

    def __init__(self, handler: Any, options: dict[str, Any],
                 max_queue: int | tuple[int, int] | None, *, dial_only: bool = False,
                 process_request: Callable[[Request], Any] | None = None) -> None:
        what = "wsuv.aio.client" if dial_only else "wsuv.aio.serve"
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(f"{what} needs a running asyncio loop: call it from "
                               "async code (asyncio.run(main()))") from None
        if options.get("handle_signals"):
            raise ValueError("handle_signals belongs to the asyncio loop here: use "
                             "loop.add_signal_handler, or wsuv.Server(...).run()")
        if options.get("busy_poll_us"):
            raise ValueError("busy_poll_us needs the server's own loop (wsuv.Server.run)")
        self._high, self._low = _queue_marks(max_queue)
        user = resolve_handler(handler, allow_async=True)
        adapter: Any = user  # plain methods: the fast path, unchanged
        if dial_only:
            if is_connection_handler(user):
                raise TypeError("wsuv.aio.client takes a wsuv.Handler (plain or async def "
                                "methods), not a coroutine function; for one coroutine per "
                                "connection use wsuv.aio.connect(url)")
            if has_async_methods(user) or inspect.iscoroutinefunction(
                    getattr(user, "on_connect_failed", None)):
                adapter = _AsyncClientAdapter(self, user)
        else:
            options["handle_signals"] = False
            if user is None:
                adapter = None  # the built-in C echo
            elif is_connection_handler(user):
                adapter = _ConnectionAdapter(self, user, _checked_process_request(process_request))
            elif has_async_methods(user):
                adapter = _AsyncMethodsAdapter(self, user)
        if process_request is not None and not isinstance(adapter, _ConnectionAdapter):
            raise TypeError("process_request goes with a connection handler (async def "
                            "handler(ws)); a wsuv.Handler decides in its on_connect")
        self.handler = user
        # Every server and client of this asyncio loop shares one C loop (one fd).
        host = host_for(self._loop)
        try:
            if dial_only:
                from wsuv.client import Client

                server: Server = Client(adapter, loop=host.wloop, **options)
            else:
                server = Server(adapter, loop=host.wloop, **options)
        except BaseException:
            host.maybe_close()
            raise
        self.server = server
        if isinstance(adapter, _Adapter):
            adapter.attach(server)
        server._thread_id = threading.get_ident()
        server._ran = True  # run() would start a second loop on this one's handles
        try:
            if not dial_only:
                server.listen()
        except OSError:
            server._ran = False
            server.close()
            host.maybe_close()
            raise
        self.addresses = server.addresses
        self.port = server.port
        self._ping_ids = itertools.count(1)  # payloads of Connection.ping()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        # A finished future: what a connection's task is woken with in place.
        self._ready: asyncio.Future[None] = _Finished(loop=self._loop)
        self._ready.set_result(None)
        with server._waiters_lock:
            server._running = True
        self._driver = UvDriver(self._loop, lambda: server._s, on_dead=self._finish)
        _default_logging()
        for url in self.addresses:
            log.info("wsuv listening on %s", url)
        # asyncio.run() cancels what is left when main returns: this task's
        # cancellation closes the server gracefully (1001 to every client).
        self._keeper = self._loop.create_task(self._keep_until_closed())
        self._driver.turn()

    def _finish(self) -> None:
        self.server._release()  # freed first: the last member out frees the C loop
        self._driver.stop()
        if not self._closed.done():
            self._closed.set_result(None)

    async def _keep_until_closed(self) -> None:
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    # -- public ------------------------------------------------------------------------
    @property
    def sockets(self) -> list[Any]:
        """Not kept: the listening sockets belong to the C server."""
        raise AttributeError("AioServer has no sockets (they are libuv's, in C): the bound "
                             "port is server.port, every URL served is in server.addresses")

    def close(self, graceful: bool = True) -> None:
        """Stop accepting and close every connection (1001), or drop them at once."""
        s = self.server._s
        if s != ffi.NULL and not self._closed.done():
            lib.ws_server_stop(s, int(graceful))
            self._driver.soon()

    async def wait_closed(self) -> None:
        """Wait until every connection is closed and the C server is freed."""
        await asyncio.shield(self._closed)

    async def serve_forever(self) -> None:
        """Serve until cancelled (then close gracefully) or closed."""
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    @property
    def connections(self) -> list[WebSocket]:
        """Open connections (the handler-level :class:`WebSocket` objects)."""
        return self.server.connections

    def connect(self, url: str, handler: Any = None, **options: Any) -> WebSocket:
        """Dial ``url`` on this server's loop in the callback style (see
        :meth:`wsuv.Server.connect`); ``handler`` defaults to the server's (its
        async methods too). A handler given here has plain ``def`` methods."""
        if handler is not None and (is_connection_handler(handler)
                                    or has_async_methods(handler)):
            raise TypeError("AioServer.connect takes a handler with plain def methods; for "
                            "async code use wsuv.aio.connect(url) or the server's own "
                            "handler (handler=None)")
        return self.server.connect(url, handler, **options)

    def broadcast(self, message: str | bytes, exclude: WebSocket | None = None) -> int:
        """:meth:`wsuv.Server.broadcast`: one frame, written to every connection in C."""
        return self.server.broadcast(message, exclude)

    async def __aenter__(self) -> AioServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


# -- adapters: async handlers seen by the C callbacks as a plain Handler -----------------

class _Adapter(Handler):
    """Base of the adapters: per-connection inboxes with max_queue backpressure."""

    def __init__(self, aio: AioServer, user: Any,
                 decide: Callable[[Request], Any] | None = None) -> None:
        self.aio = aio
        self.user = user
        # What decides on a request before the 101: the handler's on_connect,
        # or a connection handler's process_request.
        self.decide = decide if decide is not None else getattr(user, "on_connect", None)
        self.conns: dict[WebSocket, Connection] = {}
        # Opt-in callbacks exist here only if the application has them, so C
        # reports pings, pongs and plain HTTP requests only when asked to.
        for name in ("on_ping", "on_pong", "on_http"):
            if not callable(getattr(user, name, None)):
                setattr(self, name, None)
        if callable(getattr(user, "on_http", None)):
            self.on_http = user.on_http

    def on_connect(self, request: Request) -> Any:
        """A plain on_connect decides at once (an async one is awaited instead)."""
        hook = self.decide
        return hook(request) if callable(hook) else None

    def attach(self, server: Server) -> None:
        """Hook the awaited on_connect in, if there is one."""
        if inspect.iscoroutinefunction(self.decide):
            server._async_connect = self._connect_later

    def _connect_later(self, c: Any, request: Request) -> None:
        self.aio._loop.create_task(self._connect(c, request))

    async def _connect(self, c: Any, request: Request) -> None:
        try:
            decision: Any = await self.decide(request)  # type: ignore[misc]
        except Exception as exc:
            decision = exc
        if is_pending(c):
            decide_later(c, decision)

    def on_open(self, ws: WebSocket) -> None:
        conn = Connection(ws, self.aio)
        self.conns[ws] = conn
        ws._on_message = conn._deliver  # the batch hands messages straight to it
        high = self.aio._high
        if high is not None and ws._c is not None:
            # C counts what it hands over and stops reading at `high`.
            lib.ws_server_conn_set_queue(ws._c, high, self.aio._low)
        self.start(conn)

    def start(self, conn: Connection) -> None:
        raise NotImplementedError

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        conn = self.conns.get(ws)
        if conn is not None:
            conn._deliver(ws, message)

    def on_drain(self, ws: WebSocket) -> None:
        conn = self.conns.get(ws)
        if conn is not None:
            conn._drained()

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        conn = self.conns.pop(ws, None)
        if conn is not None:
            conn._closed_by_peer(code, reason)


class _ConnectionAdapter(_Adapter):
    """``async def handler(ws)``: one task per connection; its end closes (1000)."""

    def __init__(self, aio: AioServer, user: Any,
                 process_request: Callable[[Request], Any] | None = None) -> None:
        super().__init__(aio, user, process_request)
        self.on_pong = self._pong  # for Connection.ping's wait
        if process_request is not None:
            self.decider = "process_request"  # for the log lines of a 500
            if not inspect.iscoroutinefunction(process_request):
                self.on_http = self._http_decided  # a health check, as in websockets

    def _http_decided(self, request: Request) -> Response | None:
        """A plain HTTP request, shown to a plain process_request: its
        Response answers; anything else leaves the 426."""
        decision = self.decide(request)  # type: ignore[misc]
        return decision if isinstance(decision, Response) else None

    def _pong(self, ws: WebSocket, data: bytes) -> None:
        conn = self.conns.get(ws)
        if conn is not None:
            conn._ponged(data)

    def start(self, conn: Connection) -> None:
        # The handler's own coroutine is the task (no wrapper for every message
        # to pass through); its end is seen by a done callback.
        task = conn._task = self.aio._loop.create_task(self.user(conn))
        task.add_done_callback(functools.partial(_handler_done, conn))


def _checked_process_request(hook: Any) -> Callable[[Request], Any] | None:
    """process_request as given, once it is known to take (request)."""
    if hook is None:
        return None
    if not callable(hook):
        raise TypeError(f"process_request must be a function of (request), not "
                        f"{type(hook).__name__}")
    try:
        inspect.signature(hook).bind(None)
    except TypeError:
        raise TypeError("process_request takes one argument, the request (websockets' "
                        "(connection, request) form: drop the connection; refuse with "
                        "wsuv.Response(status, body))") from None
    except ValueError:
        pass  # no signature to inspect: the call decides
    return hook  # type: ignore[no-any-return]


def _handler_done(conn: Connection, task: asyncio.Task[None]) -> None:
    """A connection handler's end: returned (or ConnectionClosed) closes with
    1000, an exception with 1011 (logged); a cancelled one leaves it."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None or isinstance(exc, ConnectionClosed):
        conn._close_now(1000, "")
    else:
        log.error("connection handler raised; closing %r with 1011", conn.ws, exc_info=exc)
        conn._close_now(1011, "internal error")


class _AsyncMethodsAdapter(_Adapter):
    """A Handler with ``async def`` methods: on_open, each on_message and
    on_close run one at a time per connection, in order, in one task."""

    def start(self, conn: Connection) -> None:
        conn._task = self.aio._loop.create_task(self._run(conn))

    async def _call(self, name: str, *args: Any) -> None:
        method = getattr(self.user, name, None)
        if method is None:
            return
        result = method(*args)
        if inspect.isawaitable(result):
            await result

    async def _run(self, conn: Connection) -> None:
        ws = conn.ws
        try:
            await self._call("on_open", ws)
            async for message in conn:
                await self._call("on_message", ws, message)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("handler raised; closing %r with 1011", ws)
            conn._close_now(1011, "internal error")
            await conn.wait_closed()
        try:
            await self._call("on_close", ws, conn.close_code, conn.close_reason)
        except Exception:
            log.exception("on_close raised for %r", ws)

    def on_drain(self, ws: WebSocket) -> None:
        super().on_drain(ws)
        hook = getattr(self.user, "on_drain", None)
        if hook is not None:
            self._fire(hook, ws)

    def on_ping(self, ws: WebSocket, data: bytes) -> None:
        hook = getattr(self.user, "on_ping", None)
        if hook is not None:
            self._fire(hook, ws, data)

    def on_pong(self, ws: WebSocket, data: bytes) -> None:
        hook = getattr(self.user, "on_pong", None)
        if hook is not None:
            self._fire(hook, ws, data)

    def _fire(self, hook: Callable[..., Any], *args: Any) -> None:
        result = hook(*args)
        if inspect.isawaitable(result):
            self.aio._loop.create_task(_logged(result, hook))


class _AsyncClientAdapter(_AsyncMethodsAdapter):
    """wsuv.aio.client with async methods: the server's adapter, and
    on_connect_failed (plain or async) if the handler has it."""

    def __init__(self, aio: AioServer, user: Any) -> None:
        super().__init__(aio, user)
        for name in ("on_connect_failed",):  # absent: the failure is logged, as without
            if not callable(getattr(user, name, None)):
                setattr(self, name, None)

    def on_connect_failed(self, ws: WebSocket, error: BaseException) -> None:
        self._fire(self.user.on_connect_failed, ws, error)


async def _logged(awaitable: Awaitable[Any], hook: Any) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("%r raised", hook)


class Connection:
    """One connection as an async handler sees it (the ``websockets`` style):
    ``await recv()``, ``async for message in ws``, ``await send(m)``,
    ``await close()``, ``await wait_closed()``, ``request``,
    ``remote_address``. Messages are ``str``/``bytes`` the handler owns."""

    def __init__(self, ws: WebSocket, aio: AioServer) -> None:
        self.ws = ws
        self._aio = aio
        self._loop = aio._loop
        self._inbox: collections.deque[str | bytes] = collections.deque()
        # The future the task waits on for a message (None: not waiting). A
        # wake in place leaves it pending, so the next wait reuses it.
        self._waiter: asyncio.Future[None] | None = None
        self._ready = aio._ready
        self._after = aio.server._after_batch
        self._wake_later = self._wake
        self._wake_queued = False
        self._wait_fut: asyncio.Future[None] = aio._ready
        self._drain: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] = self._loop.create_future()
        # max_queue is kept by C (ws_server_conn_set_queue): it counts each
        # message it hands over and stops reading at the high mark. Messages
        # taken are told to it every `_every` (and whenever it may be paused
        # and the inbox is down to low), so it pauses at most that many early.
        self._high = aio._high
        self._low = aio._low
        self._every = max(1, self._high // 4) if self._high is not None else 0
        self._taken = 0  # taken since C was last told
        self._full = False  # C may have paused reading for the queue
        self._task: asyncio.Task[None] | None = None
        self._high_water = aio.server.options["write_high_water"]
        self._thread = aio.server._thread_id
        self._host = aio._driver.host
        self.close_code: int | None = None
        self.close_reason = ""
        self._pings: dict[bytes, asyncio.Future[None]] | None = None  # made at the first ping

    # -- what the request said --------------------------------------------------------
    @property
    def request(self) -> Request:
        """The upgrade request (path, headers, query_params, ...)."""
        return self.ws.request

    @property
    def path(self) -> str:
        """Request path, percent-decoded."""
        return self.ws.path

    @property
    def remote_address(self) -> str:
        """Peer as "ip:port" ("[ip6]:port", or "unix")."""
        return self.ws.remote_address

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol chosen in on_connect, if any."""
        return self.ws.subprotocol

    @property
    def id(self) -> int:
        """A number unique among this server's connections."""
        return self.ws.id

    @property
    def closed(self) -> bool:
        """True once nothing more can be sent."""
        return self.ws.closed

    # -- receiving -------------------------------------------------------------------
    async def recv(self) -> str | bytes:
        """The next message; :class:`ConnectionClosed` once closed and drained."""
        inbox = self._inbox
        while not inbox:
            if self._done.done():
                raise ConnectionClosed(self.close_code, self.close_reason)
            waiter = self._wait_fut
            if waiter.done():
                waiter = self._wait_fut = self._loop.create_future()
            self._waiter = waiter
            try:
                await _wait(waiter)
            finally:
                self._waiter = None
        message = inbox.popleft()
        if self._every:
            self._taken += 1
            self._took()
        return message

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    @types.coroutine
    def __anext__(self) -> Generator[Any, None, str | bytes]:
        """``async for``: the next message, until the connection is closed.
        A generator-based awaitable (recv() inlined): one object per
        message, where a coroutine awaiting a wait would make two."""
        inbox = self._inbox
        while not inbox:
            if self._done.done():
                raise StopAsyncIteration
            waiter = self._wait_fut
            if waiter.done():
                waiter = self._wait_fut = self._loop.create_future()
            self._waiter = waiter
            # Returns when the task is woken, whatever the waiter's state: a
            # wake in place (_wake) leaves it pending for the next wait.
            waiter._asyncio_future_blocking = True
            try:
                yield waiter
            except BaseException:  # cancelled: _wake did not clear it
                self._waiter = None
                raise
        message = inbox.popleft()
        if self._every:
            taken = self._taken = self._taken + 1
            if taken >= self._every or self._full:
                self._took()
        return message

    def _took(self) -> None:
        """Messages taken: tell C every few, or at the low mark when paused."""
        if self._taken >= self._every or len(self._inbox) <= self._low:
            c = self.ws._c
            taken, self._taken = self._taken, 0
            if c is not None:
                self._full = bool(_consumed(c, taken))

    # -- sending ---------------------------------------------------------------------
    def send(self, message: Message) -> Awaitable[None]:
        """Send a message: ``await ws.send(m)``. It leaves at once (the call
        itself sends); the await waits only while the write buffer is above
        write_high_water. Called from another thread, nothing happens until
        the result is awaited on the loop (``run_coroutine_threadsafe``)."""
        ws = self.ws
        c = ws._c
        if c is None or _get_ident() != self._thread:
            return self._send_later(message)
        # What the tasks of this loop iteration send leaves together at the
        # next one (one writev per connection), with no wake-up of the C loop;
        # a task stepped in place (inside a turn) needs no flush at all.
        host = self._host
        if not host._in_turn and not host._flushing:
            host.flush_soon()
        # One C call sends and tells whether write_high_water is passed.
        kind = type(message)
        if kind is bytes:
            full = _send_hw(c, 2, message, len(message))
        elif kind is str:
            data = message.encode()  # type: ignore[union-attr]
            full = _send_hw(c, 1, data, len(data))
        else:
            return self._send_later(message)
        if full == 0:
            return self._ready  # a finished future: the await costs no frame
        if full < 0:
            return self._raise_closed()
        return self._wait_drain()

    async def _send_later(self, message: Message) -> None:
        """send() off the loop thread, of a closed connection, or of a type
        the fast path does not take: WebSocket.send does it (and refuses)."""
        ws = self.ws
        if ws._c is not None and _get_ident() == self._thread:
            self._host.flush_soon()
        ws.send(message)
        c = ws._c
        if c is not None and _buffered(c) >= self._high_water:
            await self._wait_drain()

    async def _raise_closed(self) -> None:
        ws = self.ws
        raise ConnectionClosed(ws.close_code, ws.close_reason or "closing")

    async def _wait_drain(self) -> None:
        """Until the write buffer is drained below the mark, or the close."""
        self._drain = self._loop.create_future()
        try:
            await asyncio.wait([self._drain, self._done], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._drain = None

    async def ping(self, data: bytes | str = b"", timeout: float | None = None) -> float:
        """Send a ping and wait for its pong: the round trip in seconds, as
        wsuv's clients do. ``timeout`` defaults to the ping_timeout option
        (TimeoutError); ConnectionClosed if the connection ends first. An
        empty ``data`` gets a payload of its own; at most 125 bytes."""
        data = ping_payload(data)  # a key of the wait, so bytes
        if not data:
            data = b"wsuv-%d" % next(self._aio._ping_ids)
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        if data in pings:
            raise RuntimeError(f"a ping with the payload {data!r} already waits for its pong")
        self.ws.ping(data)  # ConnectionClosed once closing
        pong = pings[data] = self._loop.create_future()
        limit = timeout if timeout is not None else (self._aio.server.options["ping_timeout"]
                                                     or None)
        t0 = self._loop.time()
        try:
            await asyncio.wait([pong, self._done], timeout=limit,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            pings.pop(data, None)
        if pong.done():
            return self._loop.time() - t0
        if self._done.done():
            raise ConnectionClosed(self.close_code, self.close_reason)
        raise TimeoutError(f"no pong within {limit} s")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close (the handshake runs in C) and wait until the connection is gone."""
        if not self._done.done():
            self._close_now(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await asyncio.shield(self._done)

    def __repr__(self) -> str:
        return f"<wsuv.aio.Connection {self.ws!r}>"

    # -- from the C callbacks (on the loop) ---------------------------------------------
    def _deliver(self, ws: WebSocket, message: str | bytes) -> None:
        inbox = self._inbox
        inbox.append(message)
        # C stopped reading when its count (what is here plus what was taken
        # and not told yet) reached high.
        if self._every and not self._full and len(inbox) + self._taken >= self._high:  # type: ignore[operator]
            self._full = True
        # The task is woken once the callback has delivered every message of
        # this read: it then takes them all in one step.
        if self._waiter is not None and not self._wake_queued:
            self._wake_queued = True
            self._after.append(self._wake_later)

    def _wake(self) -> None:
        """Wake the task waiting for a message. In a turn that the event loop
        started (no task running), its step runs here and now, inside the C
        callback: no call_soon, no Handle, no loop iteration, and what it
        sends joins the poll phase's cork as a plain handler's replies do.
        Otherwise (or if the future has other callbacks) as a Future would."""
        self._wake_queued = False
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        host = self._host
        if host.in_place:
            # (a private attribute of asyncio futures: without it, the plain way)
            callbacks = getattr(waiter, "_callbacks", None)
            if callbacks is not None and len(callbacks) == 1:
                # The task's own wake-up, run with a finished future (all it
                # reads is the result): the waiter stays pending, for reuse.
                wakeup, context = callbacks[0]
                waiter.remove_done_callback(wakeup)
                host.in_place = False  # nothing nests in place inside this step
                try:
                    context.run(wakeup, self._ready)
                except BaseException as exc:  # noqa: BLE001 -- SystemExit & co: the loop's to raise
                    self._loop.call_soon(_reraise, exc)
                host.in_place = True
                return
        if not waiter.done():  # (a cancelled wait is done already)
            waiter.set_result(None)

    def _drained(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _closed_by_peer(self, code: int, reason: str) -> None:
        self.close_code = code
        self.close_reason = reason
        if not self._done.done():
            self._done.set_result(None)
        self._wake()

    def _ponged(self, data: bytes) -> None:
        """A pong: it answers its ping and every one sent before it (RFC 6455
        5.5.3 lets a peer answer only the latest)."""
        pings = self._pings
        if not pings or data not in pings:
            return  # a keepalive's, or unasked for
        for key in list(pings):
            pong = pings.pop(key)
            if not pong.done():
                pong.set_result(None)
            if key == data:
                break

    def _close_now(self, code: int, reason: str) -> None:
        if self.ws._c is not None and not self._done.done():
            try:
                self.ws.close(code, reason)
            except ValueError:
                self.ws.close(1011, "")


class _Finished(asyncio.Future):  # type: ignore[type-arg]
    """A finished future that is also a coroutine: what Connection.send
    returns when nothing is left to wait for. ``await`` on it runs in C with
    no frame; ``create_task``/``run_coroutine_threadsafe`` take it too (as
    a coroutine whose first step returns)."""

    def send(self, value: object) -> None:
        raise StopIteration(None)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> None:
        raise typ if val is None else val

    def close(self) -> None:
        return None


Coroutine.register(_Finished)


@types.coroutine
def _wait(fut: asyncio.Future[None]) -> Generator[Any, None, None]:
    """``await fut`` that returns when the task is woken, whatever fut's
    state then: a wake in place (Connection._wake) leaves fut pending for
    the next wait. A cancellation still arrives (the task is woken with it)."""
    fut._asyncio_future_blocking = True
    yield fut


def _reraise(exc: BaseException) -> None:
    raise exc


def broadcast(connections: Iterable[Connection | WebSocket], message: str | bytes) -> int:
    """Send one message to many connections: the frame is encoded once, the
    fan-out done in C (one call per server). Closed connections are skipped;
    returns how many were written to."""
    by_server: dict[int, tuple[Server, list[WebSocket]]] = {}
    for conn in connections:
        ws = conn.ws if isinstance(conn, Connection) else conn
        if not isinstance(ws, WebSocket):
            raise TypeError(f"broadcast takes connections, not {type(conn).__name__}")
        entry = by_server.setdefault(id(ws._server), (ws._server, []))
        entry[1].append(ws)
    return sum(server.send_many(socks, message) for server, socks in by_server.values())


# The client side (wsuv/aio_client.py), at the end: it needs nothing from here.
from wsuv.aio_client import AioClientConnection, connect  # noqa: E402
