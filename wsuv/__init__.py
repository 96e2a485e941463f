"""wsuv: a fast RFC 6455 WebSocket server for Python with a C core on libuv.

High level: :class:`Server` / :func:`serve` with a :class:`Handler`.
Low level: :class:`FrameParser`, :func:`encode_frame`, :class:`Utf8Validator`,
:func:`accept_key` for people who want frames rather than messages.
"""

from __future__ import annotations

__version__ = "0.1.0"

from wsuv.accept import accept_key
from wsuv.exceptions import ProtocolError, WsuvError
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
from wsuv.request import Headers, Request, Response
from wsuv.server import Accept, Handler, Server, TimerHandle, serve
from wsuv.utf8 import Utf8Validator, is_valid_utf8
from wsuv.websocket import ConnectionClosed, WebSocket

__all__ = [
    "Accept",
    "ConnectionClosed",
    "Frame",
    "FrameChunk",
    "FrameEnd",
    "FrameHeader",
    "FrameParser",
    "Handler",
    "Headers",
    "Opcode",
    "ProtocolError",
    "Request",
    "Response",
    "Server",
    "StreamingFrameParser",
    "TimerHandle",
    "Utf8Validator",
    "WebSocket",
    "WsuvError",
    "__version__",
    "accept_key",
    "encode_frame",
    "is_valid_utf8",
    "serve",
]
