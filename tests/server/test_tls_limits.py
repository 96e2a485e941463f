"""TLS where the plain transport has limits and other listeners: the 503 at
max_connections reaches a TLS client encrypted, and Unix-socket listeners
speak TLS too.

Certificates come from tests/tlskit.py (made with `openssl` for this run).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect, unix_connect

from tests.conftest import running_server

TIMEOUT = 10.0


def tls_options(kit: Any, **extra: Any) -> dict[str, Any]:
    return {"ssl_certfile": str(kit.server.cert), "ssl_keyfile": str(kit.server.key), **extra}


def test_503_at_max_connections_is_sent_over_tls(tlskit: Any) -> None:
    ctx = tlskit.client_context()
    with running_server(None, max_connections=1, **tls_options(tlskit)) as server:
        url = f"wss://localhost:{server.port}/"
        with connect(url, ssl=ctx, open_timeout=TIMEOUT) as first:
            with pytest.raises(InvalidStatus) as refused:
                connect(url, ssl=ctx, open_timeout=TIMEOUT)
            assert refused.value.response.status_code == 503
            assert b"too many connections" in refused.value.response.body
            first.send("still here")
            assert first.recv(TIMEOUT) == "still here"
        # The slot is free again once the first has gone.
        for _ in range(50):
            try:
                with connect(url, ssl=ctx, open_timeout=TIMEOUT) as again:
                    again.send("again")
                    assert again.recv(TIMEOUT) == "again"
                break
            except InvalidStatus:
                continue
        else:
            raise AssertionError("the freed slot was never given to a new connection")


def test_503_reaches_a_raw_tls_client_as_an_http_response(tlskit: Any) -> None:
    ctx = tlskit.client_context()
    with running_server(None, max_connections=1, **tls_options(tlskit)) as server:
        url = f"wss://localhost:{server.port}/"
        with connect(url, ssl=ctx, open_timeout=TIMEOUT):
            with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.settimeout(TIMEOUT)
                # Nothing is answered before the request head is complete.
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
                tls.settimeout(0.3)
                with pytest.raises(socket.timeout):
                    tls.recv(4096)
                tls.settimeout(TIMEOUT)
                tls.sendall(b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                assert head.startswith(b"HTTP/1.1 503 "), head


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets here")
def test_tls_on_a_unix_socket_listener(tlskit: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "wss.sock")
    with running_server(None, unix_path=path, **tls_options(tlskit)):
        assert os.path.exists(path)
        with unix_connect(path, "wss://localhost/", ssl=tlskit.client_context(),
                          open_timeout=TIMEOUT) as ws:
            ws.send("over a unix socket")
            assert ws.recv(TIMEOUT) == "over a unix socket"
        # A plaintext client on the same socket gets no plaintext answer.
        with socket.socket(socket.AF_UNIX) as plain:
            plain.settimeout(TIMEOUT)
            plain.connect(path)
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            try:
                while True:
                    chunk = plain.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except (ConnectionResetError, TimeoutError):
                pass
            assert b"HTTP/1.1" not in data


def test_tls_connections_past_the_limit_are_bounded(tlskit: Any) -> None:
    """Each TLS connection past max_connections holds TLS state until it can be
    told 503; 64 at a time are carried, more are closed at once."""
    ctx = tlskit.client_context()
    with running_server(None, max_connections=1, handshake_timeout=20.0,
                        **tls_options(tlskit)) as server:
        with connect(f"wss://localhost:{server.port}/", ssl=ctx, open_timeout=TIMEOUT):
            held = [socket.create_connection(("127.0.0.1", server.port), TIMEOUT)
                    for _ in range(64)]
            try:
                for sock in held:  # silent: no ClientHello, so they wait
                    sock.settimeout(0.05)
                    with pytest.raises(TimeoutError):
                        sock.recv(1)
                with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as extra:
                    extra.settimeout(TIMEOUT)
                    assert extra.recv(1) == b""  # closed at once, not at the timeout
            finally:
                for sock in held:
                    sock.close()
