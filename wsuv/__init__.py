"""wsuv: a fast RFC 6455 WebSocket server for Python with a C core on libuv.

High level: :class:`Server` / :func:`serve` with a :class:`Handler`;
several servers on one event loop: :class:`Loop`.
Client (blocking): ``wsuv.sync.connect(url)`` (:mod:`wsuv.sync`).
C applications: :func:`load_c_app` (``wsuv_app.h``, in :func:`get_include`).
Low level: :class:`FrameParser`, :func:`encode_frame`, :class:`Utf8Validator`,
:func:`accept_key` for people who want frames rather than messages.
"""

from __future__ import annotations

__version__ = "0.1.0"

from wsuv.exceptions import (
    InvalidCertificate,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    ProtocolError,
    TLSError,
    WsuvError,
)
from wsuv.handler import Accept, Handler
from wsuv.loop import Loop
from wsuv.request import Headers, Request, Response
from wsuv.server import Server, TimerHandle, serve
from wsuv.websocket import ConnectionClosed, WebSocket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from wsuv.accept import accept_key
    from wsuv.aio import broadcast
    from wsuv.capp import CApp, CAppError, get_include, load_c_app
    from wsuv.client import Client, connect
    from wsuv.frames import (
        Frame,
        FrameChunk,
        FrameEnd,
        FrameHeader,
        FrameParser,
        Opcode,
        StreamingFrameParser,
        encode_frame,
    )
    from wsuv.utf8 import Utf8Validator, is_valid_utf8

# The low-level API is imported on first use: a server does not need it, and
# frames.py pulls in typing (about 0.6 MiB of a wsuv-serve's idle RSS).
_LAZY = {
    "accept_key": "wsuv.accept",
    **dict.fromkeys(("CApp", "CAppError", "get_include", "load_c_app"), "wsuv.capp"),
    **dict.fromkeys(("Frame", "FrameChunk", "FrameEnd", "FrameHeader", "FrameParser",
                     "Opcode", "StreamingFrameParser", "encode_frame"), "wsuv.frames"),
    "Utf8Validator": "wsuv.utf8",
    "broadcast": "wsuv.aio",
    "Client": "wsuv.client",
    "connect": "wsuv.client",
    "is_valid_utf8": "wsuv.utf8",
}
_SUBMODULES = ("sync",)


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        mod = importlib.import_module(f"wsuv.{name}")
        globals()[name] = mod
        return mod
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsuv' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Accept",
    "CApp",
    "CAppError",
    "Client",
    "ConnectionClosed",
    "Frame",
    "FrameChunk",
    "FrameEnd",
    "FrameHeader",
    "FrameParser",
    "Handler",
    "Headers",
    "InvalidCertificate",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "Loop",
    "Opcode",
    "ProtocolError",
    "Request",
    "Response",
    "Server",
    "StreamingFrameParser",
    "TLSError",
    "TimerHandle",
    "Utf8Validator",
    "WebSocket",
    "WsuvError",
    "__version__",
    "accept_key",
    "broadcast",
    "connect",
    "encode_frame",
    "get_include",
    "is_valid_utf8",
    "load_c_app",
    "serve",
    "sync",
]


def __dir__() -> list[str]:
    """The public API (the low-level names included, though they load lazily)."""
    return sorted(__all__)
