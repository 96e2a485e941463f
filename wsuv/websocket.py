"""The application's handle on one open WebSocket connection."""

from __future__ import annotations

import threading

from wsuv._core import ffi, lib
from wsuv.exceptions import WsuvError
from wsuv.request import Headers, Request

TYPE_CHECKING = False  # typing is not imported at run time: it costs RSS
if TYPE_CHECKING:
    from typing import Any

    from wsuv.server import Server

Message = str | bytes | bytearray | memoryview
_get_ident = threading.get_ident
_send = lib.ws_server_conn_send


def _extensions(c: Any) -> list[str]:
    """What the C accept path answered in Sec-WebSocket-Extensions, as a list."""
    buf = ffi.new("char[]", lib.WS_PMD_HEADER_MAX)
    n = lib.ws_server_conn_extensions(c, buf, lib.WS_PMD_HEADER_MAX)
    return [ffi.unpack(buf, n).decode("ascii")] if n else []


class ConnectionClosed(WsuvError):
    """The connection is closed (or closing): nothing more can be sent."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed (code {code}): {reason}" if reason else
                         f"connection closed (code {code})")
        self.code = code
        self.reason = reason


class WebSocket:
    """One open connection.

    Threads: :meth:`send`, :meth:`ping`, :meth:`close`, :meth:`pause_reading`
    and :meth:`resume_reading` may be called from any thread; off the loop
    thread they hand themselves to the loop (``Server.call_soon_threadsafe``)
    and return at once, so a failure there (the connection closed meanwhile)
    cannot be reported and the call is dropped. :attr:`buffered_amount` reads
    C state and raises :class:`RuntimeError` off the loop thread.

    ``state`` is free for the application (per-connection state).
    """

    __slots__ = ("_c", "_server", "_id", "request", "subprotocol", "extensions", "close_code",
                 "close_reason", "state", "_handler", "_on_message", "_dialing", "response",
                 "__weakref__")

    def __init__(self, c: Any, server: Server, request: Request, subprotocol: str | None) -> None:
        self._c = c
        self._server = server
        self._id = int(lib.ws_server_conn_id(c))
        self.request = request
        self.subprotocol = subprotocol
        #: The extensions negotiated, as answered in Sec-WebSocket-Extensions (one str
        #: each, e.g. ``"permessage-deflate; client_max_window_bits=12"``); [] for none.
        # Negotiated in the accept, which may follow: filled in when it opens.
        self.extensions: list[str] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.state: Any = None
        # Whose methods run for this connection: the server's handler, or the
        # one given to Server.connect for a client connection (wsuv.client).
        self._handler: Any = server.handler
        self._on_message: Any = server._on_message
        #: A client connection's C pointer until it opens (then ``_c``); else None.
        self._dialing: Any = None
        #: A client connection's handshake response (status, headers); None when accepted.
        self.response: Any = None

    @property
    def server(self) -> Server:
        """The :class:`~wsuv.Server` this connection belongs to (for broadcast, timers)."""
        return self._server

    # -- what the request said ------------------------------------------------
    @property
    def path(self) -> str:
        """Request path, percent-decoded."""
        return self.request.path

    @property
    def query(self) -> str:
        """Raw query string (without '?')."""
        return self.request.query

    @property
    def headers(self) -> Headers:
        """The upgrade request's headers."""
        return self.request.headers

    @property
    def remote_address(self) -> str:
        """Peer as "ip:port" ("[ip6]:port", or "unix")."""
        return self.request.remote_address

    @property
    def closed(self) -> bool:
        """True once the connection can no longer send (closing counts). Off the
        loop thread it turns true only when ``on_close`` has run."""
        c = self._c
        if c is None:
            return True
        return _get_ident() == self._server._thread_id and not lib.ws_server_conn_can_send(c)

    @property
    def id(self) -> int:
        """A number unique among this server's connections (kept after the close)."""
        return self._id

    # -- sending ---------------------------------------------------------------
    def _off_loop(self) -> bool:
        return _get_ident() != self._server._thread_id

    def send(self, message: Message) -> None:
        """Send a text (``str``) or binary (bytes-like) message."""
        c = self._c
        if c is None or _get_ident() != self._server._thread_id:
            self._send_elsewhere(message)
            return
        # One C call: the header is built in C and header + payload leave in
        # one writev; the payload is not copied unless the kernel refuses it.
        if type(message) is bytes:
            rc = _send(c, 2, message, len(message))
        elif type(message) is str:
            data = message.encode()
            rc = _send(c, 1, data, len(data))
        elif isinstance(message, str):
            data = message.encode()
            rc = _send(c, 1, data, len(data))
        else:
            buf = _buffer(message)
            rc = _send(c, 2, buf, len(buf))
        if rc < 0:
            raise ConnectionClosed(self.close_code, self.close_reason or "closing")

    def _send_elsewhere(self, message: Message) -> None:
        """send() off the loop thread (handed over), or after the close."""
        if _get_ident() != self._server._thread_id:
            if not isinstance(message, (bytes, str)):
                message = _as_bytes(message)  # the caller may change it meanwhile
            self._server._handoff(self._send_quiet, message)
            return
        if not isinstance(message, (bytes, str)):
            _buffer(message)  # a wrong type says so before "closed" does
        raise ConnectionClosed(self.close_code, self.close_reason)

    def _send_quiet(self, message: Message) -> None:
        if self._c is not None:
            try:
                self.send(message)
            except ConnectionClosed:
                pass

    def _quietly(self, fn: Any, *args: Any) -> None:
        """Run a call handed over from another thread; a close meanwhile drops it."""
        try:
            fn(*args)
        except ConnectionClosed:
            pass

    def ping(self, data: bytes | str = b"") -> None:
        """Send a ping (at most 125 bytes of payload); the pong goes to ``on_pong``."""
        data = ping_payload(data)
        if self._off_loop():
            self._server._handoff(self._quietly, self.ping, data)
            return
        if self._c is None or lib.ws_server_conn_ping(self._c, data, len(data)) < 0:
            raise ConnectionClosed(self.close_code, self.close_reason or "closing")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake; ``on_close`` follows when it completes."""
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"close code must be an int, not {type(code).__name__}")
        if not isinstance(reason, str):
            raise TypeError(f"close reason must be a str, not {type(reason).__name__}")
        raw = reason.encode()
        if len(raw) > 123:
            raise ValueError("close reason is limited to 123 bytes of UTF-8")
        if not (code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            raise ValueError(f"close code {code} may not be sent (RFC 6455 7.4)")
        if self._off_loop():
            self._server._handoff(self.close, code, reason)
            return
        if self._c is not None:
            lib.ws_server_conn_close(self._c, code, raw, len(raw))
        elif self._dialing is not None:  # a client connection not open yet: give up
            lib.ws_client_cancel(self._dialing)

    # -- topics ----------------------------------------------------------------------
    def subscribe(self, topic: str) -> bool:
        """Receive what ``server.publish(topic, ...)`` sends; True if newly
        subscribed. Dropped when the connection closes. Off the loop thread it
        is handed over (and returns True)."""
        raw = _topic(topic)
        if self._off_loop():
            self._server._handoff(self._quietly, self.subscribe, topic)
            return True
        if self._c is None:
            raise ConnectionClosed(self.close_code, self.close_reason)
        rc = int(lib.ws_server_conn_subscribe(self._c, raw, len(raw)))
        if rc == -2:
            raise MemoryError("out of memory subscribing to a topic")
        if rc < 0:
            raise ConnectionClosed(self.close_code, self.close_reason or "closing")
        return rc == 1

    def unsubscribe(self, topic: str) -> bool:
        """Stop receiving a topic; True if it was subscribed."""
        raw = _topic(topic)
        if self._off_loop():
            self._server._handoff(self.unsubscribe, topic)
            return True
        return self._c is not None and lib.ws_server_conn_unsubscribe(self._c, raw, len(raw)) == 1

    @property
    def topics(self) -> list[str]:
        """The topics this connection is subscribed to (loop thread only)."""
        if self._off_loop():
            raise RuntimeError("WebSocket.topics must be read on the server's loop thread")
        c = self._c
        if c is None:
            return []
        name = ffi.new("const char **")
        size = ffi.new("size_t *")
        out = []
        for i in range(lib.ws_server_conn_topic_count(c)):
            if lib.ws_server_conn_topic(c, i, name, size) == 0:
                out.append(ffi.unpack(name[0], size[0]).decode("utf-8", "replace"))
        return out

    # -- flow control ------------------------------------------------------------
    @property
    def buffered_amount(self) -> int:
        """Bytes queued in wsuv's user-space write buffer: sent by the application,
        not yet taken by the kernel (bytes in the kernel's socket buffer are not
        counted). Loop thread only."""
        if self._off_loop():
            raise RuntimeError("WebSocket.buffered_amount must be read on the server's loop "
                               "thread (use server.call_soon_threadsafe)")
        return int(lib.ws_server_conn_buffered(self._c)) if self._c is not None else 0

    def pause_reading(self) -> None:
        """Stop reading from this peer (TCP backpressure reaches it)."""
        if self._off_loop():
            self._server._handoff(self.pause_reading)
        elif self._c is not None:
            lib.ws_server_conn_pause_reading(self._c)

    def resume_reading(self) -> None:
        """Undo :meth:`pause_reading`."""
        if self._off_loop():
            self._server._handoff(self.resume_reading)
        elif self._c is not None:
            lib.ws_server_conn_resume_reading(self._c)

    def __repr__(self) -> str:
        state = "closed" if self._c is None else "open"
        return f"<WebSocket {self.remote_address} {self.path!r} {state}>"


_MAX_TOPIC = int(lib.WS_PUBSUB_MAX_TOPIC)


def _topic(topic: Any) -> bytes:
    """A topic's bytes: a non-empty str of at most 256 bytes of UTF-8."""
    if not isinstance(topic, str):
        raise TypeError(f"a topic is a str, not {type(topic).__name__}")
    raw = topic.encode()
    if not 0 < len(raw) <= _MAX_TOPIC:
        raise ValueError(f"a topic is 1 to {_MAX_TOPIC} bytes of UTF-8, not {len(raw)}")
    return raw


def _as_bytes(message: Any) -> bytes:
    """A bytes copy of a bytes-like message; any other type is a TypeError."""
    if type(message) is bytes:
        return message
    _buffer(message)
    return bytes(memoryview(message))


def ping_payload(data: Any) -> bytes:
    """A ping's payload as bytes: bytes-like, or str (sent as UTF-8, as
    websockets does); at most 125 bytes (RFC 6455 5.5)."""
    if isinstance(data, str):
        data = data.encode()
    elif type(data) is not bytes:
        try:
            data = bytes(memoryview(data))
        except TypeError:
            raise TypeError(f"a ping payload is str or bytes-like, not "
                            f"{type(data).__name__}") from None
    if len(data) > 125:
        raise ValueError("a ping carries at most 125 bytes")
    return data  # type: ignore[no-any-return]


def _buffer(message: Any) -> Any:
    """A cffi view of a bytes-like message; any other type is a TypeError."""
    try:
        return ffi.from_buffer(message)
    except TypeError:
        raise TypeError(f"a message is str or bytes-like (bytes, bytearray, memoryview), "
                        f"not {type(message).__name__}") from None
