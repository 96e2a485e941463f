"""wsuv: a fast RFC 6455 WebSocket server for Python with a C core on libuv."""

from __future__ import annotations

__version__ = "0.1.0"
