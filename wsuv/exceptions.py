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


class InvalidURI(WsuvError, ValueError):
    """The URL is not one a client can connect to."""


class InvalidHandshake(WsuvError):
    """The opening handshake failed: the server's answer is not a valid 101."""


class InvalidStatus(InvalidHandshake):
    """The server answered the upgrade with another HTTP status.

    ``status`` is the status code, ``headers`` the response's headers
    (:class:`wsuv.Headers`) and ``body`` its body (bounded: at most 64 KiB
    are kept).
    """

    def __init__(self, status: int, headers: object, body: bytes, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.body = body


class TLSError(InvalidHandshake):
    """The TLS handshake of a ``wss://`` connection failed (the server speaks
    no TLS, sent an alert, refused our client certificate, or closed)."""


class InvalidCertificate(TLSError):
    """The server's certificate did not verify.

    ``reason`` says why, as one of ``"expired"`` (expired or not yet valid),
    ``"unknown_issuer"`` (self-signed, or no chain to a trusted CA),
    ``"hostname_mismatch"`` (valid, but not for the URL's host or IP) or
    ``"other"``; ``verify_message`` is OpenSSL's own sentence.
    """

    def __init__(self, reason: str, verify_message: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.verify_message = verify_message
