"""Fixtures for the interop tests: echo servers in C and in Python."""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator

import pytest
from interop_support import EchoTarget, echo_target

WATCHDOG_SECONDS = 120


@pytest.fixture(autouse=True)
def _watchdog() -> Iterator[None]:
    """Every client call here has its own timeout; this is the backstop for a
    blocking call that has none (a send to a peer that stopped reading): dump
    every thread's stack and exit rather than hang CI."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=["c", "python"])
def echo(request: pytest.FixtureRequest) -> Iterator[EchoTarget]:
    """Each test runs against the built-in C echo (the ``echo_server`` fixture)
    and against :class:`EchoHandler`."""
    if request.param == "c":
        yield EchoTarget("c", request.getfixturevalue("echo_server"), None)
    else:
        with echo_target("python") as target:
            yield target


@pytest.fixture
def py_echo() -> Iterator[EchoTarget]:
    """Only the Python handler: for what needs on_connect/on_close."""
    with echo_target("python") as target:
        yield target
