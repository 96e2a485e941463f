"""Shared fixtures: a real wsuv server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from wsuv.server import Server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Poll until something accepts on 127.0.0.1:port (bounded by timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port} after {timeout} s")


@contextlib.contextmanager
def server_thread(handler: Any = None,
                  **options: Any) -> Iterator[tuple[Server, threading.Thread]]:
    """Start a Server on a free loopback port in a daemon thread; yield both.

    Signals stay with pytest (handle_signals is off unless a test asks for
    it). On exit the server is stopped and the thread joined, bounded; an
    exception from the loop fails the test.
    """
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", 0)
    options.setdefault("handle_signals", False)
    server = Server(handler, **options)
    server.listen()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="wsuv-test-loop", daemon=True)
    thread.start()
    try:
        yield server, thread
    finally:
        server.stop(graceful=False)
        thread.join(10)
        assert not thread.is_alive(), "server loop did not stop within 10 s"
        assert not errors, errors


@contextlib.contextmanager
def running_server(handler: Any = None, **options: Any) -> Iterator[Server]:
    """server_thread for tests that need only the server."""
    with server_thread(handler, **options) as (server, _thread):
        yield server


@pytest.fixture
def echo_server() -> Iterator[Server]:
    """The built-in C echo server."""
    with running_server() as server:
        yield server
