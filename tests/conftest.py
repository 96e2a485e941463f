"""Shared fixtures: a real wsuv server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from wsuv.server import Server


@contextlib.contextmanager
def running_server(handler: Any = None, **options: Any) -> Iterator[Server]:
    """Start a Server on a free loopback port; stop it (bounded) on exit.

    The loop runs in a daemon thread, so signals stay with pytest
    (handle_signals is off unless a test asks for it).
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
        yield server
    finally:
        server.stop(graceful=False)
        thread.join(10)
        assert not thread.is_alive(), "server loop did not stop within 10 s"
        assert not errors, errors


@pytest.fixture
def echo_server() -> Iterator[Server]:
    """The built-in C echo server."""
    with running_server() as server:
        yield server
