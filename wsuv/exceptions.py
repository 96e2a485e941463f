"""wsuv's exceptions: a short, flat hierarchy to catch by meaning."""

from __future__ import annotations


class WsuvError(Exception):
    """Base class of every error wsuv raises on purpose."""


class ProtocolError(WsuvError):
    """The peer broke RFC 6455; ``code`` is the close code that answers it.

    ``frames`` holds the frames parsed before the error, so nothing the peer
    sent correctly is lost.
    """

    def __init__(self, code: int, reason: str, frames: list[object] | None = None) -> None:
        super().__init__(f"{reason} (close code {code})")
        self.code = code
        self.reason = reason
        self.frames: list[object] = frames if frames is not None else []
