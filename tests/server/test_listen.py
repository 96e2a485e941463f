"""Listener options: IPv6, SO_REUSEPORT, names that resolve to several addresses."""

from __future__ import annotations

import socket

import pytest
from websockets.sync.client import connect

from tests.conftest import running_server


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _echo(url: str) -> None:
    with connect(url, open_timeout=5) as ws:
        ws.send("ping?")
        assert ws.recv(timeout=5) == "ping?"


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no ::1")
def test_ipv6_loopback() -> None:
    with running_server(host="::1") as server:
        assert server.addresses == [f"ws://[::1]:{server.port}/"]
        _echo(f"ws://[::1]:{server.port}/")


def test_reuseport_lets_two_servers_share_a_port() -> None:
    with running_server(reuseport=True) as first:
        with running_server(reuseport=True, port=first.port) as second:
            assert second.port == first.port
            for _ in range(4):
                _echo(f"ws://127.0.0.1:{first.port}/")


def test_port_in_use_is_a_clear_oserror() -> None:
    with running_server() as first:
        with pytest.raises(OSError, match="cannot listen on 127.0.0.1"):
            with running_server(port=first.port):
                pass


def test_unknown_option_is_a_type_error() -> None:
    from wsuv import Server

    with pytest.raises(TypeError, match="unknown server option"):
        Server(None, no_such_option=1)


def test_connection_context_size_is_what_the_docs_say() -> None:
    """docs/ARCHITECTURE.md states the per-connection C context; keep it true."""
    from pathlib import Path

    from wsuv._core import lib

    size = int(lib.ws_server_conn_size())
    doc = (Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md").read_text()
    assert f"`ws_server_conn` ({size} bytes" in doc
    assert size <= 1024
