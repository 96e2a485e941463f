"""The asyncio client: wsuv.sync's connection, its loop driven by asyncio.

The connection's hosting C server (csrc/client.h) sits on the C loop that
every wsuv server and client of the asyncio loop shares (wsuv._uvdrive):
its epoll fd in ``loop.add_reader``, one timer from the backend timeout,
one ``uv_run(UV_RUN_NOWAIT)`` per wake-up.
The callbacks fill the same state as the blocking client; after each turn
that had news, the coroutines waiting on it are woken.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Generator
from types import TracebackType
from typing import Any

from wsuv._core import ffi, lib
from wsuv._uvdrive import UvDriver, host_for
from wsuv.exceptions import InvalidCertificate, InvalidHandshake
from wsuv.sync import ClientConnection, _encode, check_client_options
from wsuv.websocket import ConnectionClosed

_send_hw = lib.ws_server_conn_send_hw
_send_now = lib.ws_server_conn_send_now


class AioClientConnection(ClientConnection):
    """A client connection inside asyncio: ``await recv()``, ``async for``,
    ``await send(m)``, ``await ping()``, ``await close()``,
    ``await wait_closed()``, and ``response``, ``subprotocol``,
    ``extensions``, ``close_code``, ``close_reason`` as in :mod:`wsuv.sync`."""

    _blocking = False

    def _new_server(self, cfg: Any, cb: Any) -> Any:
        """The hosting C server goes on the asyncio loop's shared C loop."""
        self._host = host_for(asyncio.get_running_loop())
        return lib.ws_server_new_on(self._host.ptr, cfg, cb, self._handle)

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._news: asyncio.Future[None] | None = None
        self._flag[0] = 0
        self._driver: UvDriver | None = UvDriver(self._loop, lambda: self._s, after=self._wake)
        self._driver.turn()

    def _wake(self) -> None:
        """After a turn: a callback had news (the flag) -> wake the waiter."""
        if self._flag[0]:
            self._flag[0] = 0
            if self._news is not None and not self._news.done():
                self._news.set_result(None)

    async def _wait(self, timeout: float | None = None) -> bool:
        """Until a callback had news (True) or the timeout (False)."""
        news = self._news = self._loop.create_future()
        try:
            if timeout is None:  # no wait_for and shield: two futures fewer a wait
                await news
            else:
                await asyncio.wait_for(asyncio.shield(news), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._news = None

    def _kick(self) -> None:
        """A call made between turns: run one soon (writes reach epoll then)."""
        if self._driver is not None:
            self._driver.soon()

    def _free(self) -> None:
        super()._free()
        self._leave()

    def _leave(self) -> None:
        """After the C server was freed: leave the shared loop (the last one
        out removes the reader and frees the C loop)."""
        driver = getattr(self, "_driver", None)  # not set if the connect call itself failed
        self._driver = None
        if driver is not None:
            driver.stop()
        elif getattr(self, "_host", None) is not None:
            self._host.maybe_close()

    def __del__(self) -> None:
        super().__del__()
        if getattr(self, "_driver", None) is not None:
            self._leave()

    async def _opened_or_raise(self) -> None:
        while not self._opened and self._error is None:
            if self._s == ffi.NULL:
                raise InvalidHandshake(f"the connection to {self._where} ended before it opened")
            await self._wait()
        if self._error is not None:
            self._free()
            raise self._error

    # -- the API -------------------------------------------------------------------
    async def recv(self, timeout: float | None = None) -> str | bytes:  # type: ignore[override]
        """The next message; :class:`ConnectionClosed` once closed and drained."""
        loop_deadline = None if timeout is None else self._loop.time() + timeout
        while not self._messages:
            if self._close is not None or not self._c:
                raise self._closed_error()
            left = None if loop_deadline is None else loop_deadline - self._loop.time()
            if left is not None and left <= 0 or not await self._wait(left):
                raise TimeoutError(f"no message within {timeout} s")
        return self._messages.popleft()

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        """``async for``: messages until a normal close (1000, 1001, 1005)."""
        try:
            return await self.recv()
        except ConnectionClosed as exc:
            if exc.code in (1000, 1001, 1005):
                raise StopAsyncIteration from None
            raise

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        """Send a message; waits while the kernel has not taken all of it."""
        data, opcode = _encode(message)
        c = self._c
        if not c or self._driver is None:
            raise self._closed_error()
        if self._messages:
            # More received messages to answer: this send leaves with the
            # next ones at the next loop iteration (one writev), with no
            # wake-up of the C loop (wsuv.aio's connections do the same).
            self._driver.host.flush_soon()
            queued = _send_hw(c, opcode, data, len(data))
        else:
            # Nothing more to answer now: out at once (and what was gathered
            # before it), without a loop iteration for the flush.
            queued = _send_now(c, opcode, data, len(data))
        if queued < 0:
            raise self._closed_error()
        while queued and self._c and lib.ws_server_conn_buffered(self._c) > 0:
            await self._wait()
        if not self._c and self._close is not None and self._close[0] == 1006:
            raise self._closed_error()

    async def ping(self, data: bytes | str = b"", timeout: float | None = None) -> float:  # type: ignore[override]
        """Send a ping and wait for its pong; the round trip in seconds."""
        data = self._send_ping(data)
        self._kick()
        t0 = self._loop.time()
        limit = self._ping_timeout if timeout is None else timeout
        while data not in self._pongs:
            if self._close is not None:
                raise self._closed_error()
            left = None if limit is None else t0 + limit - self._loop.time()
            if left is not None and left <= 0 or not await self._wait(left):
                raise TimeoutError(f"no pong within {limit} s")
        self._pongs.discard(data)
        return self._loop.time() - t0

    async def close(self, code: int = 1000, reason: str = "") -> None:  # type: ignore[override]
        """Run the close handshake (bounded by close_timeout) and free the connection."""
        if self._s == ffi.NULL:
            return
        self._start_close(code, reason)
        self._kick()
        deadline = self._loop.time() + 2 * (self._close_timeout or 10.0) + 1.0
        while self._close is None and self._opened and self._s != ffi.NULL:
            left = deadline - self._loop.time()
            if left <= 0 or not await self._wait(left):
                break
        # After the close frames, the client waits for the server's FIN (in C).
        while self._s != ffi.NULL and lib.ws_server_connection_count(self._s) > 0:
            left = deadline - self._loop.time()
            if left <= 0:
                break
            await asyncio.sleep(min(0.01, left))
        self._free()

    async def wait_closed(self) -> None:
        """Until the connection is closed (by either side)."""
        while self._close is None and self._c != ffi.NULL:
            await self._wait()

    async def __aenter__(self) -> AioClientConnection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def __enter__(self) -> AioClientConnection:
        raise TypeError("use 'async with wsuv.aio.connect(...)', not 'with'")

    def __exit__(self, *exc: object) -> None:
        raise TypeError("use 'async with wsuv.aio.connect(...)', not 'with'")


async def _open(url: str, options: dict[str, Any]) -> AioClientConnection:
    ws = AioClientConnection(url, **options)
    ws._start()
    await ws._opened_or_raise()
    return ws


class Connect:
    """What :func:`connect` returns: awaitable, an async context manager, and
    (``async for ws in connect(url)``) a reconnecting iterator."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._ws: AioClientConnection | None = None

    def __await__(self) -> Generator[Any, None, AioClientConnection]:
        return _open(self._url, self._options).__await__()

    async def __aenter__(self) -> AioClientConnection:
        self._ws = await _open(self._url, self._options)
        return self._ws

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    def __aiter__(self) -> AsyncIterator[AioClientConnection]:
        return self._reconnecting()

    def __enter__(self) -> None:
        raise TypeError("wsuv.aio.connect is asynchronous: use 'async with', 'await' or "
                        "'async for' (wsuv.sync.connect is the blocking client)")

    def __exit__(self, *exc: object) -> None:
        """Never reached: __enter__ refuses."""

    async def _reconnecting(self) -> AsyncIterator[AioClientConnection]:
        """A new connection each time the previous one ended; failures to
        connect are retried with exponential backoff (0.1 s doubling to 10 s)
        and full jitter. A refusal with an HTTP status is retried too; a
        certificate that does not verify (InvalidCertificate) is raised."""
        delay = 0.1
        while True:
            try:
                ws = await _open(self._url, self._options)
            except InvalidCertificate:
                raise  # a configuration problem: retrying cannot fix it
            except (OSError, InvalidHandshake, TimeoutError):
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(10.0, delay * 2)
                continue
            delay = 0.1
            try:
                yield ws
            finally:
                await ws.close()


def connect(url: str, **options: Any) -> Connect:
    """Open a client connection inside asyncio: ``async with
    wsuv.aio.connect(url) as ws``, ``ws = await wsuv.aio.connect(url)``, or
    ``async for ws in wsuv.aio.connect(url)`` (reconnects). Options and
    errors are those of :func:`wsuv.sync.connect`."""
    check_client_options("wsuv.aio.connect", options)
    return Connect(url, options)
