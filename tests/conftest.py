"""Shared fixtures: a real wsuv server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from wsuv.server import Server

# No per-example deadline: this machine is shared and the asan build is slow,
# so a wall-clock limit per example fails for load, not for a bug (properties
# are checked by their assertions; speed is measured by `make bench`).
settings.register_profile("wsuv", deadline=None)
settings.load_profile("wsuv")


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


# WSUV_TEST_LOOP=asyncio (or uvloop) runs every server_thread embedded in an
# asyncio loop (wsuv.aio) instead of on the server's own loop.
EMBEDDED = os.environ.get("WSUV_TEST_LOOP", "")


@contextlib.contextmanager
def _embedded_server(handler: Any,
                     options: dict[str, Any]) -> Iterator[tuple[Server, threading.Thread]]:
    """server_thread's twin: the Server is driven by an asyncio loop in the thread."""
    import asyncio

    import wsuv.aio

    ready = threading.Event()
    box: list[Any] = []
    errors: list[BaseException] = []

    async def main() -> None:
        aio = await wsuv.aio.serve(handler, **options)
        box.append(aio.server)
        ready.set()
        await aio.wait_closed()

    def run() -> None:
        try:
            if EMBEDDED == "uvloop":
                import uvloop
                uvloop.run(main())
            else:
                asyncio.run(main())
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="wsuv-test-aio-loop", daemon=True)
    thread.start()
    assert ready.wait(10), "embedded server did not start within 10 s"
    if errors:
        raise errors[0]
    server = box[0]
    try:
        yield server, thread
    finally:
        server.stop(graceful=False)
        thread.join(10)
        assert not thread.is_alive(), "embedded server did not stop within 10 s"
        assert not errors, errors


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
    if EMBEDDED and not options.get("busy_poll_us"):
        with _embedded_server(handler, options) as pair:
            yield pair
        return
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


LOOP_KINDS = ["asyncio"]
try:
    import uvloop  # noqa: F401

    LOOP_KINDS.append("uvloop")
except ImportError:
    pass


@pytest.fixture(params=LOOP_KINDS)
def run(request: pytest.FixtureRequest) -> Iterator[Callable[[Awaitable[Any]], Any]]:
    """Run a coroutine to completion (at most 60 s) on a fresh loop of each kind."""
    import asyncio

    def runner(coro: Awaitable[Any]) -> Any:
        async def bounded() -> Any:
            return await asyncio.wait_for(coro, 60)
        if request.param == "uvloop":
            import uvloop
            return uvloop.run(bounded())
        return asyncio.run(bounded())
    yield runner


@pytest.fixture(scope="session")
def tlskit(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Test certificates made with `openssl` for this run (see tests/tlskit.py)."""
    import tlskit as kit

    return kit.make_kit(tmp_path_factory.mktemp("tlskit"))
