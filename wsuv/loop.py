"""A C event loop that several servers share (csrc/loop.h).

Each :class:`wsuv.Server` has a loop of its own unless it is given one:
``Server(handler, loop=shared, ...)``. Servers on one :class:`Loop` share
its epoll fd, its read buffer, its cork (the replies of one wake-up leave in
one writev per connection) and its message batch, and are served together by
:meth:`Loop.run` (or by :meth:`wsuv.Server.run` of any of them).
"""

from __future__ import annotations

import signal
import threading

from wsuv._core import ffi, lib

TYPE_CHECKING = False  # typing is not imported at run time (wsuv-serve's RSS)
if TYPE_CHECKING:
    from typing import Any

    from wsuv.server import Server


class Loop:
    """One C event loop for several servers; :meth:`run` serves them all."""

    def __init__(self) -> None:
        ptr = lib.ws_loop_new()
        if ptr == ffi.NULL:
            raise MemoryError("ws_loop_new failed")
        self._l: Any = ptr
        self._servers: list[Server] = []
        self._ran = False

    def _ptr(self) -> Any:
        """The C loop for a new server (Server.__init__)."""
        if self._l == ffi.NULL:
            raise RuntimeError("this wsuv.Loop is closed: make a new one")
        if self._ran:
            raise RuntimeError("this wsuv.Loop has run: make a new one")
        return self._l

    @property
    def servers(self) -> list[Server]:
        """The servers attached and not yet freed."""
        return list(self._servers)

    def run(self) -> None:
        """Serve every attached server until each has stopped (its
        :meth:`~wsuv.Server.stop`, or SIGINT/SIGTERM for those with
        ``handle_signals``); then free them and the loop."""
        if self._ran or self._l == ffi.NULL:
            raise RuntimeError("a wsuv.Loop runs once (and not after close); make a new one")
        servers = list(self._servers)
        if not servers:
            raise RuntimeError("no server on this wsuv.Loop: create them with loop=...")
        self._ran = True
        main = threading.current_thread() is threading.main_thread()
        want = any(s.options["handle_signals"] for s in servers)
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if (
            main and want) else {}
        for s in servers:
            s._start_running()
        try:
            lib.ws_loop_run(self._l)
        finally:
            for sig, old in saved.items():
                if old is not None:
                    signal.signal(sig, old)
            for s in servers:
                s._release()
            self.close()

    def close(self) -> None:
        """Free the loop; every server on it must be freed first (``run`` did,
        or :meth:`wsuv.Server.close`)."""
        if self._l == ffi.NULL:
            return
        if lib.ws_loop_free(self._l) != 0:
            raise RuntimeError("a server on this wsuv.Loop is still alive: close or run it first")
        self._l = ffi.NULL
        self._servers.clear()
