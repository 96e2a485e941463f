"""Drives a ws_server's libuv loop from a running asyncio loop.

The loop's epoll fd goes to ``loop.add_reader``; one asyncio timer follows
``uv_backend_timeout``; each wake-up runs ``uv_run(UV_RUN_NOWAIT)`` once
(``ws_server_run_nowait``, which also returns the next timeout). Shared by
the server (wsuv.aio) and the client (wsuv.aio_client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from wsuv._core import ffi, lib


class UvDriver:
    """One C server's loop, turned by asyncio. ``get_s`` gives the server
    pointer (NULL once freed), ``after`` runs after each turn, ``on_dead``
    once ``ws_server_run_nowait`` says the loop has nothing left."""

    def __init__(self, loop: asyncio.AbstractEventLoop, get_s: Callable[[], Any],
                 after: Callable[[], None] | None = None,
                 on_dead: Callable[[], None] | None = None) -> None:
        self.loop = loop
        self._get_s = get_s
        self._after = after
        self._on_dead = on_dead
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # loop.time() the timer fires at
        self._timeout = ffi.new("int *")
        self._soon = False
        self._in_turn = False
        self._fd = int(lib.ws_server_backend_fd(get_s()))
        loop.add_reader(self._fd, self.turn)

    def turn(self) -> None:
        """One non-blocking libuv turn, then the next deadline."""
        self._soon = False
        s = self._get_s()
        if s == ffi.NULL or self._in_turn:  # never re-enter uv_run
            return
        out = self._timeout
        self._in_turn = True
        try:
            alive = lib.ws_server_run_nowait(s, out)
        finally:
            self._in_turn = False
        if self._after is not None:
            self._after()
        if not alive:
            if self._on_dead is not None:
                self._on_dead()
            return
        timeout = out[0]
        if timeout == 0:
            self.soon()
            return
        timer = self._timer
        if timeout < 0:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        # Keep the armed timer when it fires at the same millisecond or up
        # to 1 ms early (an early turn just finds nothing due and re-arms):
        # a call_later per wake-up costs more than the turn itself.
        at = self.loop.time() + timeout / 1000
        if timer is not None:
            if at - 0.001 <= self._timer_at <= at:
                return
            timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        # The handle has fired: it must not count as armed (a loop may fire a
        # timer a little early, and the turn may then ask for the same time).
        self._timer = None
        self.turn()

    def soon(self) -> None:
        """A turn at the next loop iteration (a call made between turns)."""
        if not self._soon:
            self._soon = True
            self.loop.call_soon(self.turn)

    def stop(self) -> None:
        """Before the C loop (and so its fd) goes away."""
        if not self.loop.is_closed():
            self.loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
