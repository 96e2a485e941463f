"""The handler protocol: what an application implements, and the check of it.

:func:`resolve_handler` is the one place that decides what counts as a
handler, so ``wsuv.Server(...)`` and ``wsuv-serve module:attr`` accept and
refuse exactly the same things, at start, with one sentence.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs wsuv-serve RSS
if TYPE_CHECKING:
    from typing import Any

    from wsuv.request import Request, Response
    from wsuv.websocket import WebSocket


class Accept:
    """``on_connect`` may return this to choose a subprotocol, add headers, or
    refuse compression for this connection (``compression=False``: the
    client's permessage-deflate offer is declined, whatever the server's
    ``compression`` option says)."""

    __slots__ = ("subprotocol", "headers", "compression")

    def __init__(self, subprotocol: str | None = None,
                 headers: list[tuple[str, str]] | None = None,
                 compression: bool = True) -> None:
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise TypeError(f"Accept(subprotocol=...) must be a str or None, not "
                            f"{type(subprotocol).__name__}")
        self.subprotocol = subprotocol
        self.headers = list(headers) if headers else []
        self.compression = bool(compression)


class Handler:
    """Base class for applications; override what you need.

    ``on_connect`` returns ``None`` (accept), an :class:`Accept`, or a
    :class:`~wsuv.request.Response` (reject with that status); any other value
    is an application error answered with 500. An exception in any method is
    logged with its traceback and closes only that connection (1011; a failing
    ``on_connect`` answers 500).
    """

    def on_connect(self, request: Request) -> Accept | Response | None:
        """Decide on an upgrade request."""
        return None

    def on_open(self, ws: WebSocket) -> None:
        """A connection is open."""

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        """A whole message: ``str`` for text, ``bytes`` for binary."""

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        """The connection is closed; ``code`` 1006 means it dropped without a close frame."""


#: Methods wsuv calls; a handler defines at least one of the first four.
REQUIRED_ANY = ("on_connect", "on_open", "on_message", "on_close")
OPTIONAL = ("on_ping", "on_pong", "on_drain", "on_http")
METHODS = REQUIRED_ANY + OPTIONAL


def _describe(obj: Any) -> str:
    import inspect

    if inspect.ismodule(obj):
        return f"the module {obj.__name__!r}"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return f"the function {getattr(obj, '__qualname__', obj)!r}"
    return f"{type(obj).__name__} {obj!r:.60}"


def is_connection_handler(obj: Any) -> bool:
    """True for ``async def handler(ws)``, the websockets-style form (wsuv.aio)."""
    import inspect

    return inspect.iscoroutinefunction(obj)


def has_async_methods(handler: Any) -> bool:
    """True if any handler method is a coroutine function."""
    import inspect

    return any(inspect.iscoroutinefunction(getattr(handler, m, None)) for m in METHODS)


def resolve_handler(obj: Any, where: str = "handler", *, allow_async: bool = False) -> Any:
    """The handler instance for ``obj``: ``None`` (the built-in C echo), a C
    application, a handler instance, or a handler class instantiated with no
    arguments; with
    ``allow_async`` (wsuv.aio) also ``async def`` methods and a connection
    handler ``async def handler(ws)``, returned as it is.

    Anything else raises :class:`TypeError` with one sentence naming what was
    given, so a mistake fails at start rather than on the first connection.
    """
    import inspect

    if obj is None or getattr(type(obj), "_wsuv_c_app", False):
        return obj  # the built-in C echo, or a C application (wsuv.load_c_app)
    if is_connection_handler(obj):
        if allow_async:
            return obj
        raise TypeError(f"{where} is an async connection handler (async def handler(ws)): "
                        f"run it with wsuv.aio.serve(...) inside asyncio")
    if isinstance(obj, type):
        if not any(callable(getattr(obj, m, None)) for m in REQUIRED_ANY):
            raise TypeError(f"{where} class {obj.__qualname__} defines none of "
                            f"{', '.join(REQUIRED_ANY)}: it is not a wsuv handler")
        try:
            sig = inspect.signature(obj)
            sig.bind()
        except TypeError as exc:
            raise TypeError(f"{where} class {obj.__qualname__} cannot be instantiated "
                            f"with no arguments ({exc}); pass an instance instead") from None
        except ValueError:
            pass  # no signature to inspect (a C type): let the call decide
        obj = obj()
    elif not any(callable(getattr(obj, m, None)) for m in REQUIRED_ANY) or (
            inspect.ismodule(obj) or inspect.isroutine(obj)):
        if allow_async:
            raise TypeError(f"{where} must be a coroutine function (async def handler(ws)) "
                            f"or a wsuv.Handler instance or class, not {_describe(obj)}")
        raise TypeError(f"{where} must be a wsuv.Handler instance or class (with on_message, "
                        f"on_open, ...), not {_describe(obj)}")
    for name in METHODS:
        method = getattr(obj, name, None)
        if method is not None and not callable(method):
            raise TypeError(f"{where}.{name} must be a method, not "
                            f"{type(method).__name__}")
        if method is not None and inspect.isasyncgenfunction(method):
            raise TypeError(f"{where}.{name} is an async generator, not a method")
        if method is not None and inspect.iscoroutinefunction(method) and not allow_async:
            raise TypeError(f"{where}.{name} is an async function: async handlers run under "
                            f"asyncio, with wsuv.aio.serve(...); here define it with plain def")
    return obj
