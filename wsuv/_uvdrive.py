"""One C loop (ws_loop) per asyncio loop, driven by it.

The ws_loop's epoll fd goes to ``loop.add_reader``; one asyncio timer
follows its backend timeout; each wake-up runs ``uv_run(UV_RUN_NOWAIT)``
once (``ws_loop_run_nowait``). Every server (wsuv.aio) and client
connection (wsuv.aio_client) of one asyncio loop is attached to that one
ws_loop: one fd, one timer and one turn however many there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from wsuv._core import ffi, lib
from wsuv.loop import Loop

_run_nowait = lib.ws_loop_run_nowait
_HOSTS: dict[asyncio.AbstractEventLoop, LoopHost] = {}


def host_for(loop: asyncio.AbstractEventLoop) -> LoopHost:
    """The ws_loop host of this asyncio loop (made on first use)."""
    host = _HOSTS.get(loop)
    if host is None:
        host = _HOSTS[loop] = LoopHost(loop)
    return host


class LoopHost:
    """A :class:`wsuv.Loop` turned by an asyncio loop; its members are the
    :class:`UvDriver` of each server and client connection on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wloop = Loop()
        self.ptr = self.wloop._l
        self._members: list[UvDriver] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # loop.time() the timer fires at
        self._timeout = ffi.new("int *")
        self._soon = False
        self._flushing = False  # a ws_loop_flush is scheduled
        self._in_turn = False
        # True while a turn that the event loop itself started (reader, timer,
        # call_soon: no task running) is in uv_run: a connection's task woken
        # then steps in place (wsuv/_aiowait.py).
        self.in_place = False
        # Servers not yet done at the last look: the members' done-checks run
        # only when it changes (or a member joined); members with a follow-up
        # of their own (clients) run it every turn.
        self._alive = -1
        self._every: list[UvDriver] = []
        self._time = loop.time
        self._fd = int(lib.ws_loop_backend_fd(self.ptr))
        loop.add_reader(self._fd, self.turn, True)

    def turn(self, from_loop: bool = False) -> None:
        """One non-blocking libuv turn, the members' follow-ups, the next deadline.
        ``from_loop``: the event loop called it (no task is running)."""
        self._soon = False
        if self.ptr == ffi.NULL or self._in_turn:  # never re-enter uv_run
            return
        self._in_turn = True
        self.in_place = from_loop
        try:
            alive = _run_nowait(self.ptr, self._timeout)
        finally:
            self._in_turn = self.in_place = False
        timeout = self._timeout[0]
        # The common turn (nothing to follow up, the armed timer still right)
        # in few bytecodes: at one connection it runs once per message.
        timer = self._timer
        if timer is not None and timeout > 0 and alive == self._alive and not self._every:
            at = self._time() + timeout / 1000
            if at - 0.001 <= self._timer_at <= at:
                return
        self._follow(alive, timeout)

    def _follow(self, alive: int, timeout: int) -> None:
        """After a turn: the members' follow-ups, then the asyncio timer."""
        followed = alive != self._alive or self._every
        if alive != self._alive:
            self._alive = alive
            for m in list(self._members):
                m._after_turn()
        elif self._every:
            for m in list(self._every):
                m._after_turn()
        if self.ptr == ffi.NULL:
            return
        if followed:
            # Asked after the follow-ups: a server freed by one has handles to close.
            timeout = int(lib.ws_loop_backend_timeout(self.ptr))
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
        self.turn(True)

    def soon(self) -> None:
        """A turn at the next loop iteration (a call made between turns)."""
        if not self._soon and self.ptr != ffi.NULL:
            self._soon = True
            self.loop.call_soon(self.turn, True)

    def flush_soon(self) -> None:
        """Sends from tasks are about to be made: they leave together at the
        next loop iteration (ws_loop_flush), with no wake-up of the backend fd.
        Sends made inside a turn (a task stepped in place) need none: the C
        loop writes them as a plain handler's."""
        if not self._flushing and not self._in_turn and self.ptr != ffi.NULL:
            self._flushing = True
            lib.ws_loop_flush_soon(self.ptr)
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if self.ptr != ffi.NULL:
            lib.ws_loop_flush(self.ptr)

    def join(self, member: UvDriver) -> None:
        self._members.append(member)
        if member._after is not None:
            self._every.append(member)
        self._alive = -1  # the next turn looks at every member

    def leave(self, member: UvDriver) -> None:
        if member in self._members:
            self._members.remove(member)
        if member in self._every:
            self._every.remove(member)
        self.maybe_close()

    def maybe_close(self) -> None:
        """With no member left (and their servers freed), the ws_loop goes:
        the reader is removed first, then the C loop is freed."""
        if self._members or self.ptr == ffi.NULL:
            return
        if self._in_turn:
            self.loop.call_soon(self.maybe_close)
            return
        if lib.ws_loop_server_count(self.ptr) != 0:
            self.soon()  # a server not freed yet: it leaves through its own member
            return
        if _HOSTS.get(self.loop) is self:
            del _HOSTS[self.loop]
        if not self.loop.is_closed():
            self.loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ptr = ffi.NULL
        self.wloop.close()  # runs the C loop until the freed servers' handles closed


class UvDriver:
    """One server's (or client connection's) place on its asyncio loop's host.
    ``get_s`` gives the server pointer (NULL once freed), ``after`` runs
    after each turn, ``on_dead`` once the server has stopped and closed every
    handle (it frees the server, then calls :meth:`stop`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, get_s: Callable[[], Any],
                 after: Callable[[], None] | None = None,
                 on_dead: Callable[[], None] | None = None) -> None:
        self.loop = loop
        self.host = host_for(loop)
        self._get_s = get_s
        self._after = after
        self._on_dead = on_dead
        self._dead = False
        self.host.join(self)

    def _after_turn(self) -> None:
        if self._after is not None:
            self._after()
        if self._on_dead is not None and not self._dead:
            s = self._get_s()
            if s != ffi.NULL and lib.ws_server_done(s):
                self._dead = True
                self._on_dead()

    def turn(self) -> None:
        """One turn of the shared loop now."""
        self.host.turn()

    def soon(self) -> None:
        """A turn at the next loop iteration (a call made between turns)."""
        self.host.soon()

    def stop(self) -> None:
        """Leave the host (after the server was freed): the last one out
        removes the reader and frees the C loop."""
        self.host.leave(self)
