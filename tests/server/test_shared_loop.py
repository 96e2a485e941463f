"""Several servers on one C loop (wsuv.Loop, csrc/loop.h): each server's
callbacks see only its own connections, the batch and the cork span them,
and a server stops and is freed while the loop serves the others."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import wsuv
from wsuv._core import ffi, lib


class Tagged(wsuv.Handler):
    """Echoes with its own tag, so a reply says which server's handler ran."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.opened = 0

    def on_open(self, ws: wsuv.WebSocket) -> None:
        self.opened += 1

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        ws.send(f"{self.tag}:{message!s}")


def _run_in_thread(target: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def _wait_listening(*servers: wsuv.Server) -> None:
    deadline = time.monotonic() + 10
    while any(s.port is None for s in servers) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(s.port for s in servers)


def test_two_servers_one_loop_route_to_their_handlers() -> None:
    loop = wsuv.Loop()
    ha, hb = Tagged("A"), Tagged("B")
    a = wsuv.Server(ha, loop=loop, port=0, handle_signals=False)
    b = wsuv.Server(hb, loop=loop, port=0, handle_signals=False)
    assert loop.servers == [a, b]
    assert lib.ws_server_loop(a._s) == lib.ws_server_loop(b._s)
    a.listen()
    b.listen()
    thread, errors = _run_in_thread(loop.run)
    _wait_listening(a, b)
    # Many clients on both servers send at once: one poll phase reads both
    # servers' messages into the one batch, and each must reach its handler.
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(f"ws://127.0.0.1:{(a if i % 2 else b).port}/"))
                   for i in range(16)]
        for round_ in range(20):
            for i, ws in enumerate(clients):
                ws.send(f"{i}-{round_}")
            for i, ws in enumerate(clients):
                assert ws.recv(timeout=5) == f"{'A' if i % 2 else 'B'}:{i}-{round_}"
    assert (ha.opened, hb.opened) == (8, 8)
    a.stop()
    b.stop()
    thread.join(10)
    assert not thread.is_alive() and not errors
    assert a._s == ffi.NULL and b._s == ffi.NULL  # run() freed them, and the loop
    assert loop._l == ffi.NULL


def test_server_run_serves_the_loop_and_a_stopped_server_leaves_the_other_running() -> None:
    loop = wsuv.Loop()
    a = wsuv.Server(Tagged("A"), loop=loop, port=0, handle_signals=False)
    b = wsuv.Server(Tagged("B"), loop=loop, port=0, handle_signals=False)
    b.listen()
    thread, errors = _run_in_thread(a.run)  # serves b too, until a stops
    _wait_listening(a)
    with connect(f"ws://127.0.0.1:{b.port}/") as wb, connect(f"ws://127.0.0.1:{a.port}/") as wa:
        wb.send("x")
        assert wb.recv(timeout=5) == "B:x"
        wa.send("y")
        assert wa.recv(timeout=5) == "A:y"
        a.stop()
        thread.join(10)
        assert not thread.is_alive() and not errors
        assert a._s == ffi.NULL and loop.servers == [b]
        with pytest.raises(RuntimeError, match="still alive"):
            loop.close()
        # b was never run on its own: its loop serves it again now.
        thread, errors = _run_in_thread(b.run)
        wb.send("z")
        assert wb.recv(timeout=5) == "B:z"
        b.stop()
        thread.join(10)
        assert not thread.is_alive() and not errors
    loop.close()
    assert loop._l == ffi.NULL


def test_a_server_freed_while_the_loop_serves_another() -> None:
    """Server.close() of a server that never ran, on a loop that is running."""
    loop = wsuv.Loop()
    a = wsuv.Server(Tagged("A"), loop=loop, port=0, handle_signals=False)
    doomed = wsuv.Server(Tagged("D"), loop=loop, port=0, handle_signals=False)
    doomed.listen()
    dport = doomed.port
    thread, errors = _run_in_thread(a.run)
    _wait_listening(a)
    with connect(f"ws://127.0.0.1:{dport}/") as wd:
        wd.send("1")
        assert wd.recv(timeout=5) == "D:1"
        # Freed from the loop thread (its own calls must come from there).
        a.call_soon_threadsafe(doomed._release)
        deadline = time.monotonic() + 5
        while doomed._s != ffi.NULL and time.monotonic() < deadline:
            time.sleep(0.01)
        assert doomed._s == ffi.NULL and loop.servers == [a]
        with pytest.raises(ConnectionClosed):  # its connection is gone (dropped, no callback)
            wd.send("2")
            wd.recv(timeout=5)
    with connect(f"ws://127.0.0.1:{a.port}/") as wa:
        wa.send("still")
        assert wa.recv(timeout=5) == "A:still"
    a.stop()
    thread.join(10)
    assert not thread.is_alive() and not errors
    loop.close()


def test_loop_misuse_is_one_sentence() -> None:
    with pytest.raises(TypeError, match="loop must be a wsuv.Loop"):
        wsuv.Server(None, loop="shared")  # type: ignore[arg-type]
    loop = wsuv.Loop()
    with pytest.raises(RuntimeError, match="no server on this wsuv.Loop"):
        loop.run()
    s = wsuv.Server(None, loop=loop, port=0)
    s.close()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        wsuv.Server(None, loop=loop)
    with pytest.raises(RuntimeError, match="runs once"):
        loop.run()
