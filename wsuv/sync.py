"""The blocking client: ``with wsuv.sync.connect(url) as ws: ws.send(...); ws.recv()``.

Each connection is a C client connection (csrc/client.h) hosted by its own
``ws_server`` (no listener): the same engine, timers, limits and close
handshake as the server side, in the client role. There is no thread per
connection: the connection's loop runs only while the caller waits (in
:meth:`ClientConnection.recv`, :meth:`~ClientConnection.ping`,
:meth:`~ClientConnection.close`, a send the kernel did not take at once, and
:func:`connect`), in one C call, ``ws_server_run_until``, that blocks in the
loop's poll with the GIL released until a callback has something for the
caller (a message, a pong, the close, the written bytes), or the timeout.

A connection belongs to one thread at a time; several connections in
several threads are independent (each has its own loop).
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

from wsuv import client_tls
from wsuv._core import ffi, lib
from wsuv.exceptions import (
    InvalidCertificate,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    TLSError,
)
from wsuv.request import Headers
from wsuv.websocket import ConnectionClosed, ping_payload

__all__ = ["ClientConnection", "HandshakeResponse", "InvalidCertificate", "InvalidHandshake",
           "InvalidStatus", "InvalidURI", "TLSError", "connect"]

_OP_TEXT = 1
_OP_BINARY = 2
_OP_PONG = 10
_send_hw = lib.ws_server_conn_send_hw
_run_until = lib.ws_server_run_until
_get_ident = threading.get_ident
_UV_EAI_FIRST, _UV_EAI_LAST = -3014, -3000  # libuv's getaddrinfo errors
_UV_ETIMEDOUT = -errno.ETIMEDOUT
_MAIN_THREAD = threading.main_thread().ident
_SIGNAL_SLICE_MS = 200  # longest wait in C on the main thread before signals are seen
# Characters left as they are in a request target (RFC 3986 pchar, '/', '?').
_TARGET_SAFE = "/%:@!$&'()*+,;=-._~"
# The connection of each hosting C server, for the callbacks: a dict lookup
# costs less than a C call (ws_server_user) and ffi.from_handle per event.
_BY_SERVER: dict[Any, weakref.ref[ClientConnection]] = {}


def _ms(seconds: float | None) -> int:
    """Seconds (None = off) as the C side's milliseconds (0 = off)."""
    if seconds is None:
        return 0
    if seconds < 0:
        raise ValueError("timeouts must be >= 0 or None")
    return max(1, round(seconds * 1000)) if seconds else 0


class HandshakeResponse:
    """The server's answer to the opening handshake: status, reason, headers, body."""

    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<HandshakeResponse {self.status} {self.reason!r}>"


def _read_response(hs: Any) -> HandshakeResponse:
    n = ffi.new("size_t *")
    base = lib.ws_client_hs_buffer(hs, n)
    raw = ffi.unpack(base, n[0]) if base != ffi.NULL else b""
    items = []
    spans = lib.ws_client_hs_headers(hs)
    for i in range(lib.ws_client_hs_header_count(hs)):
        sp = spans[i]
        items.append((raw[sp.name_off:sp.name_off + sp.name_len].decode("latin-1"),
                      raw[sp.value_off:sp.value_off + sp.value_len].decode("latin-1")))
    p = lib.ws_client_hs_reason(hs, n)
    reason = ffi.unpack(p, n[0]).decode("latin-1") if p != ffi.NULL else ""
    p = lib.ws_client_hs_body(hs, n)
    body = ffi.unpack(p, n[0]) if p != ffi.NULL else b""
    return HandshakeResponse(lib.ws_client_hs_status_code(hs), reason, Headers(items), body)


def _os_error(err: int, where: str) -> OSError:
    """A libuv error as the matching OSError subclass (gaierror for DNS)."""
    msg = ffi.string(lib.ws_client_strerror(err)).decode()
    if _UV_EAI_FIRST <= err <= _UV_EAI_LAST:
        return socket.gaierror(err, f"cannot resolve {where}: {msg}")
    if err == _UV_ETIMEDOUT:
        return TimeoutError(errno.ETIMEDOUT, f"opening handshake with {where} timed out")
    return OSError(-err, f"cannot connect to {where}: {msg}")


class ClientConnection:
    """An open client connection (made by :func:`connect`).

    :attr:`response` is the server's 101 (status, reason, headers),
    :attr:`subprotocol` the subprotocol it chose (or None), :attr:`extensions`
    the extensions it accepted (``["permessage-deflate; ..."]`` or ``[]``).
    """

    #: False in wsuv.aio's subclass: the loop is driven by asyncio, not waited on here.
    _blocking = True

    def __init__(self, url: str, *, open_timeout: float | None = 10.0,
                 subprotocols: Sequence[str] | None = None, origin: str | None = None,
                 additional_headers: Iterable[tuple[str, str]] | dict[str, str] | None = None,
                 compression: str | None = "deflate", max_message_size: int | None = 16 << 20,
                 ping_interval: float | None = 20.0, ping_timeout: float | None = 20.0,
                 close_timeout: float | None = 10.0, write_limit: int = 16 << 20,
                 ssl_ca_certs: str | os.PathLike[str] | None = None,
                 ssl_certfile: str | os.PathLike[str] | None = None,
                 ssl_keyfile: str | os.PathLike[str] | None = None,
                 ssl_keyfile_password: str | None = None,
                 ssl_insecure_skip_verify: bool = False) -> None:
        self._tls: client_tls.Context | None = None
        if self._blocking:
            _refuse_in_asyncio()
        if compression not in ("deflate", None):
            raise ValueError('compression must be "deflate" or None')
        host, port, unix_path, target, secure = _split_url(url)
        self._url_host = host
        self._where = unix_path or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        tls_opts = {"ssl_ca_certs": ssl_ca_certs, "ssl_certfile": ssl_certfile,
                    "ssl_keyfile": ssl_keyfile, "ssl_keyfile_password": ssl_keyfile_password,
                    "ssl_insecure_skip_verify": ssl_insecure_skip_verify}
        if not secure and client_tls.given(tls_opts):
            raise ValueError(f"{client_tls.given(tls_opts)[0]} is a TLS option: it needs a "
                             f"wss:// URL, not {url}")
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._pongs: set[bytes] = set()
        self._close: tuple[int, str] | None = None
        self._error: BaseException | None = None
        self._opened = False
        self._ping_ids = 0
        self._close_timeout = close_timeout
        self._ping_timeout = ping_timeout
        self.response: HandshakeResponse | None = None
        self.subprotocol: str | None = None
        self.extensions: list[str] = []

        cfg = ffi.new("ws_server_config *")
        lib.ws_server_config_default(cfg)
        cfg.handle_signals = 0
        cfg.handshake_timeout_ms = _ms(open_timeout)
        cfg.limits.max_message_size = max_message_size or 0
        cfg.ping_interval_ms = _ms(ping_interval)
        cfg.ping_timeout_ms = _ms(ping_timeout)
        cfg.close_timeout_ms = _ms(close_timeout)
        cfg.write_limit = write_limit
        # Anything queued makes the connection "full", so on_drain says when the
        # kernel has taken the last byte (a blocking send waits for it).
        cfg.write_high_water = 1
        cfg.write_low_water = 0
        cfg.want_control = 1
        cfg.compression = int(compression == "deflate")
        # The offer is a browser's: "permessage-deflate; client_max_window_bits"
        # (no server_max_window_bits asked: the server picks its window).
        cfg.pmd.peer_window_bits = 15
        cb = ffi.new("ws_server_callbacks *")
        cb.on_open = lib.wsuv_cl_on_open
        cb.on_message = lib.wsuv_cl_on_message
        cb.on_control = lib.wsuv_cl_on_control
        cb.on_close = lib.wsuv_cl_on_close
        cb.on_drain = lib.wsuv_cl_on_drain
        cb.on_connect_failed = lib.wsuv_cl_on_connect_failed
        self._handle = ffi.new_handle(self)
        self._flag = ffi.new("int[1]")
        s = self._new_server(cfg, cb)
        if s == ffi.NULL:
            raise MemoryError("ws_server_new failed")
        self._s: Any = s
        self._c: Any = ffi.NULL
        _BY_SERVER[s] = weakref.ref(self)
        try:
            if secure:
                self._tls = client_tls.client_context(tls_opts, self._where)
            self._connect(host, port, unix_path, target, subprotocols, origin,
                          additional_headers, compression == "deflate")
        except BaseException:
            self._free()
            raise

    def _new_server(self, cfg: Any, cb: Any) -> Any:
        """The hosting C server (its own loop: this thread blocks in it)."""
        return lib.ws_server_new(cfg, cb, self._handle)

    def _connect(self, host: str, port: int, unix_path: str | None, target: str,
                 subprotocols: Sequence[str] | None, origin: str | None,
                 additional_headers: Iterable[tuple[str, str]] | dict[str, str] | None,
                 deflate: bool) -> None:
        o, keep = client_options(host, port, unix_path, target, subprotocols, origin,
                                 additional_headers, deflate)
        if self._tls is not None:
            o.tls = self._tls.ptr
        out = ffi.new("ws_server_conn **")
        req_err = ffi.new("long *")
        r = lib.ws_client_connect(self._s, o, out, req_err)
        del keep  # borrowed by o until here
        if r == lib.WS_CLIENT_E_REQUEST:
            why = ffi.string(lib.ws_client_hs_strerror(req_err[0])).decode()
            raise ValueError(f"cannot build the upgrade request: {why}")
        if r < 0:
            raise _os_error(r, self._where)
        self._c = out[0]
        if not self._blocking:
            return
        while not self._opened and self._error is None:
            if self._run(None) < 0:
                raise InvalidHandshake(f"the connection to {self._where} ended before it opened")
        if self._error is not None:
            raise self._error

    # -- the loop ----------------------------------------------------------------
    def _run(self, deadline: float | None) -> int:
        """Waits in C: 1 when a callback had news, 0 at the deadline, -1 if stopped.

        On the main thread the wait is cut in _SIGNAL_SLICE_MS slices: Python
        runs its signal handlers (Ctrl-C) only between C calls, and libuv's
        poll retries after EINTR."""
        main = _get_ident() == _MAIN_THREAD
        flag = self._flag
        while True:
            s = self._s
            if not s:
                return -1
            ms = -1
            if deadline is not None:
                ms = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
            if main and (ms < 0 or ms > _SIGNAL_SLICE_MS):
                ms = _SIGNAL_SLICE_MS
            flag[0] = 0
            r: int = _run_until(s, flag, ms)
            if r != 0 or (deadline is not None and time.monotonic() >= deadline):
                return r

    def _free(self) -> None:
        if self._s != ffi.NULL:
            s, self._s, self._c = self._s, ffi.NULL, ffi.NULL
            lib.ws_server_free(s)
            _BY_SERVER.pop(s, None)
        self._tls = None  # after the server: its connection used the context

    def _closed_error(self) -> ConnectionClosed:
        code, reason = self._close if self._close is not None else (1006, "")
        return ConnectionClosed(code, reason)

    # -- the API -----------------------------------------------------------------
    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one message: str as text, bytes-like as binary. Returns once the
        kernel has taken all of it (a peer that does not read blocks it; the
        keepalive ping bounds that). Raises :class:`ConnectionClosed` if the
        connection is closed, or was dropped meanwhile: when more than
        write_limit bytes of it were left after the kernel took what it could."""
        data, opcode = _encode(message)
        c = self._c
        # One C call: the send, and whether the kernel left bytes queued
        # (write_high_water is 1 byte here).
        queued = _send_hw(c, opcode, data, len(data)) if c else -1
        if queued < 0:
            raise self._closed_error()
        while queued and self._c and lib.ws_server_conn_buffered(self._c) > 0:
            if self._run(None) < 0:
                break
        if not self._c and self._close is not None and self._close[0] == 1006:
            raise self._closed_error()  # dropped while sending (write_limit, a reset)

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message (str for text, bytes for binary). Raises
        :class:`ConnectionClosed` once the connection is closed and every message
        received before the close was returned, :class:`TimeoutError` after
        ``timeout`` seconds without one."""
        messages = self._messages
        deadline = None if timeout is None else time.monotonic() + timeout
        while not messages:
            if self._close is not None or not self._c:
                raise self._closed_error()
            if self._run(deadline) == 0:
                raise TimeoutError(f"no message within {timeout} s")
        return messages.popleft()

    def __iter__(self) -> Iterator[str | bytes]:
        """Messages until the connection closes: a normal close (1000, 1001, or a
        close frame without a code: 1005) ends the loop; any other close
        raises :class:`ConnectionClosed`."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed as exc:
                if exc.code in (1000, 1001, 1005):
                    return
                raise

    def ping(self, data: bytes | str = b"", timeout: float | None = None) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds.
        ``data`` (<= 125 bytes) defaults to a fresh payload; ``timeout``
        defaults to ping_timeout. Messages that arrive meanwhile are kept."""
        data = self._send_ping(data)
        t0 = time.monotonic()
        limit = self._ping_timeout if timeout is None else timeout
        deadline = None if limit is None else t0 + limit
        while data not in self._pongs:
            if self._close is not None:
                raise self._closed_error()
            if self._run(deadline) == 0:
                raise TimeoutError(f"no pong within {limit} s")
        self._pongs.discard(data)
        return time.monotonic() - t0

    def _send_ping(self, data: bytes | str) -> bytes:
        """Writes a ping (a fresh payload if data is empty); returns its payload."""
        data = ping_payload(data)  # a key of the wait, so bytes
        if not data:
            self._ping_ids += 1
            data = b"wsuv-%d" % self._ping_ids
        if self._c == ffi.NULL or lib.ws_server_conn_ping(self._c, data, len(data)) != 0:
            raise self._closed_error()
        return data

    def _start_close(self, code: int, reason: str) -> None:
        """Writes our close frame unless closed already; a bad code is a ValueError."""
        if self._c != ffi.NULL and self._close is None:
            r = reason.encode()
            if lib.ws_server_conn_close(self._c, code, r, len(r)) != 0:
                if lib.ws_server_conn_can_send(self._c):
                    raise ValueError(f"invalid close code {code} or reason {reason!r}")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the close handshake (bounded by close_timeout), wait for the
        server to close TCP, and free the connection. Idempotent."""
        if self._s == ffi.NULL:
            return
        self._start_close(code, reason)
        # The C close timeout aborts a close that gets no answer (on_close 1006),
        # and bounds the wait for the server's FIN; this deadline is a backstop.
        bound = 2 * (self._close_timeout or 10.0) + 1.0
        deadline = time.monotonic() + bound
        while self._close is None and self._opened:
            if self._run(deadline) <= 0:
                break
        if self._s != ffi.NULL:
            self._flag[0] = 0
            lib.ws_server_run_until(self._s, ffi.NULL,
                                    max(0, int((deadline - time.monotonic()) * 1000)))
        self._free()

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1006 if the connection dropped), else None."""
        return self._close[0] if self._close is not None else None

    @property
    def close_reason(self) -> str | None:
        return self._close[1] if self._close is not None else None

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        s = getattr(self, "_s", ffi.NULL)
        if s != ffi.NULL:
            self._s = ffi.NULL
            lib.ws_server_free(s)
            _BY_SERVER.pop(s, None)
        self._tls = None

    # -- from the C callbacks ----------------------------------------------------
    def _on_open(self, c: Any) -> None:
        self.response, self.subprotocol, self.extensions = opened(c)
        self._opened = True
        if self._blocking and self._tls is None:
            # This thread alone waits for the connection: its waits may read
            # the socket themselves (client_direct.h), without epoll.
            lib.ws_client_conn_set_direct(c, 1)

    def _on_failed(self, c: Any, err: int, hs: Any) -> None:
        self._error = failure(err, hs, self._where, c, self._url_host)
        self._c = ffi.NULL


def opened(c: Any) -> tuple[HandshakeResponse, str | None, list[str]]:
    """An open client connection's 101, subprotocol and extensions."""
    hs = lib.ws_client_conn_response(c)
    response = _read_response(hs)
    n = ffi.new("size_t *")
    subprotocol = None
    p = lib.ws_client_hs_subprotocol(hs, n)
    if p != ffi.NULL:
        subprotocol = ffi.unpack(p, n[0]).decode("latin-1")
    extensions: list[str] = []
    p = lib.ws_client_hs_extensions(hs, n)
    if p != ffi.NULL:
        value = ffi.unpack(p, n[0]).decode("latin-1")
        extensions = [e.strip() for e in value.split(",") if e.strip()]
    return response, subprotocol, extensions


def failure(err: int, hs: Any, where: str, c: Any = None, url_host: str = "") -> BaseException:
    """The typed error of a client connection that failed before it opened
    (on_connect_failed's err and response; c and the URL's host name a TLS
    failure)."""
    if err < 0:
        return _os_error(err, where)
    if err == lib.WS_CLIENT_TLS:
        return client_tls.handshake_error(c, where, url_host)
    if err == lib.WS_CLIENT_REFUSED:
        resp = _read_response(hs)
        return InvalidStatus(resp.status, resp.headers, resp.body,
                             f"server {where} refused the WebSocket handshake: "
                             f"HTTP {resp.status} {resp.reason}".rstrip())
    if err == lib.WS_CLIENT_INVALID:
        why = ffi.string(lib.ws_client_hs_fail_reason(hs)).decode()
        return InvalidHandshake(f"invalid handshake response from {where}: {why}")
    n = ffi.new("size_t *")
    p = lib.ws_client_hs_extensions(hs, n)
    value = ffi.unpack(p, n[0]).decode("latin-1") if p != ffi.NULL else ""
    return InvalidHandshake(f"server {where} answered an extension we cannot accept: {value!r}")


def client_options(host: str, port: int, unix_path: str | None, target: str,
                   subprotocols: Sequence[str] | None, origin: str | None,
                   additional_headers: Iterable[tuple[str, str]] | dict[str, str] | None,
                   deflate: bool) -> tuple[Any, list[Any]]:
    """The C ``ws_client_options`` of a connection, and the C strings it borrows
    (keep them alive until ws_client_connect returns)."""
    keep: list[Any] = []  # C strings borrowed by the options for the call

    def cstr(value: str | bytes) -> tuple[Any, int]:
        b = value.encode() if isinstance(value, str) else value
        p = ffi.new("char[]", b)
        keep.append(p)
        return p, len(b)

    o = ffi.new("ws_client_options *")
    lib.ws_client_options_default(o)
    o.host, o.host_len = cstr(host)
    o.port = port
    if unix_path is not None:
        o.unix_path = cstr(os.fsencode(unix_path))[0]
    o.target, o.target_len = cstr(target)
    if origin is not None:
        o.origin, o.origin_len = cstr(origin)
    protos = list(subprotocols or ())
    if protos:
        arr = ffi.new("ws_client_hs_str[]", len(protos))
        for i, name in enumerate(protos):
            arr[i].ptr, arr[i].len = cstr(name)
        keep.append(arr)
        o.subprotocols, o.subprotocol_count = arr, len(protos)
    fields = list(additional_headers.items() if isinstance(additional_headers, dict)
                  else additional_headers or ())
    if fields:
        harr = ffi.new("ws_client_hs_field[]", len(fields))
        for i, (name, value) in enumerate(fields):
            harr[i].name, harr[i].name_len = cstr(name.encode("latin-1"))
            harr[i].value, harr[i].value_len = cstr(value.encode("latin-1"))
        keep.append(harr)
        o.headers, o.header_count = harr, len(fields)
    o.compression = int(deflate)
    return o, keep


def _encode(message: Any) -> tuple[Any, int]:
    """(data for C, opcode): str as text, bytes-like as binary."""
    if type(message) is bytes:  # cffi passes bytes as char * without a copy
        return message, _OP_BINARY
    if isinstance(message, str):
        return message.encode(), _OP_TEXT
    if isinstance(message, (bytes, bytearray, memoryview)):
        return ffi.from_buffer(message), _OP_BINARY
    raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")


def _refuse_in_asyncio() -> None:
    import sys

    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("wsuv.sync.connect() blocks: it cannot run inside a running asyncio "
                       "event loop (call it from a thread, e.g. asyncio.to_thread)")


def _parse_url(url: str) -> tuple[str, int, str | None, str]:
    """(host, port, unix socket path or None, request target) of a ws:// URL,
    for clients that do not speak TLS (wss:// is one sentence)."""
    host, port, unix_path, target, secure = _split_url(url)
    if secure:
        raise InvalidURI(f"{url}: wss:// (TLS) is not supported by this client yet; "
                         "wsuv.sync.connect and wsuv.aio.connect speak it")
    return host, port, unix_path, target


def _split_url(url: str) -> tuple[str, int, str | None, str, bool]:
    """(host, port, unix socket path or None, request target, TLS) of a
    ws:// or wss:// URL."""
    if not isinstance(url, str):
        raise TypeError(f"the URL is a str (ws://host:port/path), not {type(url).__name__}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "ws+unix":
        if not parts.path:
            raise InvalidURI(f"{url}: ws+unix:// needs a socket path (ws+unix:///path/to.sock)")
        return "localhost", 0, parts.path, "/", False
    if scheme not in ("ws", "wss"):
        raise InvalidURI(f"{url}: not a WebSocket URL (ws://host[:port]/path or wss://...)")
    if parts.fragment:
        raise InvalidURI(f"{url}: a WebSocket URL has no fragment (RFC 6455 3)")
    host = parts.hostname
    if not host:
        raise InvalidURI(f"{url}: no host")
    try:
        port = parts.port or (443 if scheme == "wss" else 80)
    except ValueError as exc:
        raise InvalidURI(f"{url}: {exc}") from None
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode("ascii")
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE + "?")
    return host, port, None, target, scheme == "wss"


def connect(url: str, **options: Any) -> ClientConnection:
    """Open a WebSocket connection (blocking); use it as a context manager.

    ``url``: ``ws://host[:port]/path?query``, ``wss://`` (TLS, port 443 by
    default) or ``ws+unix:///path/to.sock``.
    Options: ``open_timeout`` (10 s: DNS, connect and handshake),
    ``subprotocols``, ``origin``, ``additional_headers`` (dict or pairs),
    ``compression`` ("deflate", the default, offers permessage-deflate; None),
    ``max_message_size`` (16 MiB; None = no limit), ``ping_interval`` /
    ``ping_timeout`` (20 s each; None = off), ``close_timeout`` (10 s),
    ``write_limit`` (16 MiB: a send that leaves more than this unwritten after
    the kernel took what it could drops the connection; otherwise a send waits
    until the kernel has taken everything).
    TLS (``wss://`` only): the server's certificate is verified against the
    system trust store and the URL's host; ``ssl_ca_certs`` (a PEM file)
    trusts a private CA instead, ``ssl_certfile`` / ``ssl_keyfile`` /
    ``ssl_keyfile_password`` send a client certificate, and
    ``ssl_insecure_skip_verify=True`` turns verification off (logged as a
    warning; for tests only).

    Raises :class:`wsuv.InvalidURI`, :class:`wsuv.InvalidStatus` (the server
    answered another status: ``status``, ``headers``, ``body``),
    :class:`wsuv.InvalidHandshake` (an invalid answer), ``socket.gaierror``
    (DNS), ``ConnectionRefusedError`` and other ``OSError``,
    ``TimeoutError`` (open_timeout), :class:`wsuv.InvalidCertificate` (the
    server's certificate did not verify: ``reason`` is ``"expired"``,
    ``"unknown_issuer"``, ``"hostname_mismatch"`` or ``"other"``) or
    :class:`wsuv.TLSError` (another TLS handshake failure).
    """
    check_client_options("wsuv.sync.connect", options)
    return ClientConnection(url, **options)


# websockets' client options, and what they are here.
_CLIENT_PORTED = {
    "max_size": "max_message_size",
    "ssl": "ssl_ca_certs, ssl_certfile and ssl_keyfile; TLS is OpenSSL inside the C "
           "transport, so an ssl.SSLContext cannot be used",
    "user_agent_header": "additional_headers={'User-Agent': ...}",
    "server_hostname": "the URL's host",
}


_init_code = ClientConnection.__init__.__code__
# The keyword options of a client connection (its __init__'s, after self and url).
_CLIENT_OPTIONS = frozenset(
    _init_code.co_varnames[2:_init_code.co_argcount + _init_code.co_kwonlyargcount])
del _init_code


def check_client_options(where: str, options: dict[str, Any]) -> None:
    """One sentence for option names a client connection does not take."""
    unknown = set(options) - _CLIENT_OPTIONS
    if unknown:
        from wsuv.options import unknown_names

        raise TypeError(f"{where} has no option(s) "
                        f"{unknown_names(unknown, _CLIENT_OPTIONS, _CLIENT_PORTED)}")


# -- the C callbacks ---------------------------------------------------------------

def _extern(fn: Callable[..., None]) -> Callable[..., None]:
    """Registers fn as the C callback of its name (cffi's def_extern is untyped)."""
    ffi.def_extern(name=fn.__name__)(fn)
    return fn


def _conn(s: Any) -> ClientConnection:
    ref = _BY_SERVER.get(s)
    obj = ref() if ref is not None else None
    if obj is None:  # only while it is being collected: the handle still holds it
        obj = ffi.from_handle(lib.ws_server_user(s))
    return obj


@_extern
def wsuv_cl_on_open(s: Any, c: Any) -> None:
    ws = _conn(s)
    ws._on_open(c)
    ws._flag[0] = 1


@_extern
def wsuv_cl_on_message(s: Any, c: Any, opcode: int, data: Any, length: int) -> None:
    ref = _BY_SERVER.get(s)
    ws = ref() if ref is not None else None
    if ws is None:
        ws = _conn(s)
    if opcode == _OP_TEXT:
        ws._messages.append(str(ffi.buffer(data, length), "utf-8"))
    else:
        ws._messages.append(ffi.unpack(data, length))
    ws._flag[0] = 1


@_extern
def wsuv_cl_on_control(s: Any, c: Any, opcode: int, data: Any, length: int) -> None:
    if opcode == _OP_PONG:
        ws = _conn(s)
        ws._pongs.add(ffi.unpack(ffi.cast("char *", data), length))
        ws._flag[0] = 1


@_extern
def wsuv_cl_on_drain(s: Any, c: Any) -> None:
    _conn(s)._flag[0] = 1


@_extern
def wsuv_cl_on_close(s: Any, c: Any, code: int, reason: Any, length: int) -> None:
    ws = _conn(s)
    ws._close = (code, ffi.unpack(reason, length).decode("utf-8", "replace") if length else "")
    ws._c = ffi.NULL
    ws._flag[0] = 1


@_extern
def wsuv_cl_on_connect_failed(s: Any, c: Any, err: int, hs: Any) -> None:
    ws = _conn(s)
    ws._on_failed(c, err, hs)
    ws._flag[0] = 1
