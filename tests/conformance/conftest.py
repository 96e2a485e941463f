"""Fixtures for the RFC 6455 conformance tests.

Every test that takes ``server`` runs twice, over real sockets on 127.0.0.1:
against the built-in C echo (the ``echo_server`` fixture, no Python in the
message path) and against a Python ``wsuv.Handler`` echo. A fresh server per
test (they start in well under a millisecond) keeps failures independent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client import EchoHandler, Target, running_server


@pytest.fixture(params=["c-echo", "py-echo"])
def server(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "c-echo":
        yield Target(request.getfixturevalue("echo_server"), "c-echo", None)
    else:
        handler = EchoHandler()
        with running_server(handler) as srv:
            yield Target(srv, "py-echo", handler)
