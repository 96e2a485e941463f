"""TLS on the server (ssl_* options) against Python's ssl module and raw sockets.

Certificates come from tests/tlskit.py (made with `openssl` for this run).
Every bad input (plain HTTP or WebSocket on the TLS port, garbage records, a
silent peer, a trickled or truncated ClientHello, a close without
close_notify, a refused client certificate) must end that connection alone:
a TLS connection opened before it keeps echoing afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidMessage
from websockets.sync.client import ClientConnection, connect

import wsuv
from tests.conftest import running_server
from wsuv._core import lib

TIMEOUT = 10.0
# How a TLS client learns that the server refused its certificate: an alert
# during the handshake (TLS 1.2) or on its first read (TLS 1.3), or the close.
REFUSED = (ssl.SSLError, OSError, InvalidMessage, EOFError, ConnectionClosed)


def tls_options(kit: Any, **extra: Any) -> dict[str, Any]:
    return {"ssl_certfile": str(kit.server.cert), "ssl_keyfile": str(kit.server.key), **extra}


@contextlib.contextmanager
def tls_server(kit: Any, handler: Any = None, **extra: Any) -> Iterator[wsuv.Server]:
    with running_server(handler, **tls_options(kit, **extra)) as server:
        yield server


def wss(server: wsuv.Server, ctx: ssl.SSLContext, host: str = "localhost",
        **kw: Any) -> ClientConnection:
    return connect(f"wss://{host}:{server.port}/", ssl=ctx, open_timeout=TIMEOUT,
                   close_timeout=2, max_size=None, **kw)


def wait_for(cond: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def conn_count(server: wsuv.Server) -> int:
    """Connections the C server holds (TLS handshake, HTTP handshake, open, closing)."""
    box: list[int] = []
    done = threading.Event()

    def call() -> None:
        box.append(int(lib.ws_server_connection_count(server._s)))
        done.set()

    server.call_soon_threadsafe(call)
    assert done.wait(TIMEOUT)
    return box[0]


def test_echo_over_tls(tlskit: Any) -> None:
    with tls_server(tlskit) as server, wss(server, tlskit.client_context()) as ws:
        assert server.addresses[0].startswith("wss://127.0.0.1:")
        ws.send("hello")
        assert ws.recv(TIMEOUT) == "hello"
        big = bytes(range(256)) * 4096  # 1 MiB: many records, many reads
        ws.send(big)
        assert ws.recv(TIMEOUT) == big
        for i in range(200):  # pipelined small messages gather into few records
            ws.send(f"m{i}")
        assert [ws.recv(TIMEOUT) for _ in range(200)] == [f"m{i}" for i in range(200)]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_versions_and_alpn(tlskit: Any, version: ssl.TLSVersion) -> None:
    ctx = tlskit.client_context()
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with tls_server(tlskit) as server:
        with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                     ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            assert tls.selected_alpn_protocol() == "http/1.1"


def test_tls_1_1_is_refused(tlskit: Any) -> None:
    ctx = tlskit.client_context()
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with pytest.warns(DeprecationWarning):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with tls_server(tlskit) as server:
        with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as raw, \
                pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost")


def test_handler_sees_plain_websocket(tlskit: Any) -> None:
    class Upper(wsuv.Handler):
        def on_message(self, ws: Any, message: Any) -> None:
            ws.send(message.upper())

    with tls_server(tlskit, Upper()) as server, wss(server, tlskit.client_context()) as ws:
        ws.send("abc")
        assert ws.recv(TIMEOUT) == "ABC"


def test_broadcast_encrypts_per_connection(tlskit: Any) -> None:
    class Fan(wsuv.Handler):
        def on_message(self, ws: Any, message: Any) -> None:
            ws.server.broadcast(message)

    with tls_server(tlskit, Fan()) as server:
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(wss(server, tlskit.client_context()))
                       for _ in range(5)]
            wait_for(lambda: len(server.connections) == 5)
            clients[0].send("to all")
            assert [c.recv(TIMEOUT) for c in clients] == ["to all"] * 5


# -- client certificates -------------------------------------------------------------

def test_client_certificate_required(tlskit: Any) -> None:
    with tls_server(tlskit, ssl_ca_certs=str(tlskit.ca.cert), ssl_cert_reqs=2) as server:
        with wss(server, tlskit.client_context(cert=tlskit.client)) as ws:
            ws.send("with cert")
            assert ws.recv(TIMEOUT) == "with cert"
        for ctx in (tlskit.client_context(), tlskit.client_context(cert=tlskit.other_client)):
            # TLS 1.3: the client learns of the refusal on its first read.
            with pytest.raises(REFUSED):
                with wss(server, ctx) as ws:
                    ws.send("x")
                    ws.recv(TIMEOUT)
        wait_for(lambda: conn_count(server) == 0)


def test_client_certificate_optional(tlskit: Any) -> None:
    with tls_server(tlskit, ssl_ca_certs=str(tlskit.ca.cert), ssl_cert_reqs=1) as server:
        for ctx in (tlskit.client_context(), tlskit.client_context(cert=tlskit.client)):
            with wss(server, ctx) as ws:
                ws.send("ok")
                assert ws.recv(TIMEOUT) == "ok"
        with pytest.raises(REFUSED):
            with wss(server, tlskit.client_context(cert=tlskit.other_client)) as ws:
                ws.send("x")
                ws.recv(TIMEOUT)


# -- bad input on the TLS port -------------------------------------------------------

def read_until_closed(sock: socket.socket, timeout: float) -> float:
    """Seconds until the server closed (EOF or reset); fails after timeout."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {timeout} s") from None
    return time.monotonic() - start


UPGRADE = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def client_hello(kit: Any) -> bytes:
    """A real ClientHello, from Python's ssl with memory BIOs."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = kit.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("junk", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    UPGRADE,
    b"\x16\x03\x01\x00\x04\xff\xff\xff\xff",           # a handshake record that is no hello
    b"\x17\x03\x03\x00\x10" + b"\x00" * 16,            # application data before any handshake
    bytes(range(256)) * 8,
], ids=["plain-http", "plain-websocket", "bad-handshake-record", "early-appdata", "garbage"])
def test_bad_bytes_end_that_connection_alone(tlskit: Any, junk: bytes,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wsuv.tls")
    with tls_server(tlskit) as server, wss(server, tlskit.client_context()) as good:
        with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as bad:
            bad.sendall(junk)
            assert read_until_closed(bad, 5) < 5
        good.send("still here")
        assert good.recv(TIMEOUT) == "still here"
        wait_for(lambda: any("TLS connection from 127.0.0.1:" in r.getMessage()
                             for r in caplog.records))
        assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "wsuv.tls")


def test_silent_peer_is_closed_by_the_handshake_timeout(tlskit: Any) -> None:
    with tls_server(tlskit, handshake_timeout=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as silent:
            took = read_until_closed(silent, 5)
        assert 0.3 < took < 3


def test_trickled_client_hello_is_closed_in_time(tlskit: Any) -> None:
    """Bytes keep coming, one every 50 ms: the timeout counts from the accept."""
    hello = client_hello(tlskit)
    with tls_server(tlskit, handshake_timeout=0.6) as server:
        with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as slow:
            start = time.monotonic()
            closed = False
            for b in hello[:60]:
                try:
                    slow.sendall(bytes([b]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.05)
                if time.monotonic() - start > 3:
                    break
            if not closed:
                read_until_closed(slow, 5)
            assert time.monotonic() - start < 3.5


def test_truncated_handshake_then_eof(tlskit: Any) -> None:
    hello = client_hello(tlskit)
    with tls_server(tlskit) as server, wss(server, tlskit.client_context()) as good:
        with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as cut:
            cut.sendall(hello[: len(hello) // 2])
            cut.shutdown(socket.SHUT_WR)
            assert read_until_closed(cut, 5) < 5
        good.send("fine")
        assert good.recv(TIMEOUT) == "fine"
        wait_for(lambda: conn_count(server) == 1)


def test_close_without_close_notify(tlskit: Any) -> None:
    """An open WebSocket whose peer drops TCP without close_notify or a close frame."""
    closes: list[int] = []

    class Track(wsuv.Handler):
        def on_message(self, ws: Any, message: Any) -> None:
            ws.send(message)

        def on_close(self, ws: Any, code: int, reason: str) -> None:
            closes.append(code)

    with tls_server(tlskit, Track()) as server, wss(server, tlskit.client_context()) as good:
        raw = socket.create_connection(("127.0.0.1", server.port), TIMEOUT)
        tls = tlskit.client_context().wrap_socket(raw, server_hostname="localhost")
        tls.sendall(UPGRADE)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = tls.recv(4096)
            assert chunk
            head += chunk
        assert head.startswith(b"HTTP/1.1 101")
        wait_for(lambda: len(server.connections) == 2)
        tls.shutdown(socket.SHUT_RDWR)  # TCP's FIN: no close_notify (nor a close frame)
        tls.close()
        wait_for(lambda: len(server.connections) == 1)
        wait_for(lambda: closes == [1006])
        good.send("unaffected")
        assert good.recv(TIMEOUT) == "unaffected"


def test_plain_client_on_a_tls_port_gets_no_plaintext(tlskit: Any) -> None:
    with tls_server(tlskit) as server:
        with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as plain:
            plain.sendall(UPGRADE)
            plain.settimeout(5)
            data = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := plain.recv(4096):
                    data += chunk
            assert b"HTTP/1.1" not in data  # at most a TLS alert record
            assert data == b"" or data[0] == 0x15


# -- many connections -----------------------------------------------------------------

def test_thousand_concurrent_tls_connections(tlskit: Any) -> None:
    """1,000 TLS WebSockets open at once, each echoing; then all close cleanly."""
    import websockets

    n = 1000
    ctx = tlskit.client_context()

    async def main(port: int) -> int:
        sem = asyncio.Semaphore(100)  # handshakes in flight, not connections

        async def open_one(i: int) -> Any:
            async with sem:
                return await websockets.connect(f"wss://localhost:{port}/", ssl=ctx,
                                                open_timeout=60, ping_interval=None)

        conns = await asyncio.gather(*(open_one(i) for i in range(n)))
        try:
            assert conn_count(server) == n
            await asyncio.gather(*(c.send(f"c{i}") for i, c in enumerate(conns)))
            got = await asyncio.gather(*(asyncio.wait_for(c.recv(), 60) for c in conns))
            assert got == [f"c{i}" for i in range(n)]
        finally:
            await asyncio.gather(*(c.close() for c in conns))
        return len(conns)

    with tls_server(tlskit) as server:
        assert asyncio.run(asyncio.wait_for(main(server.port), 240)) == n
        wait_for(lambda: conn_count(server) == 0, 30)


# -- start-up errors ------------------------------------------------------------------

def test_server_start_errors_are_one_sentence(tlskit: Any, tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"^ssl_certfile '.*nope.pem' cannot be read: "):
        wsuv.Server(None, ssl_certfile=str(tmp_path / "nope.pem"))
    with pytest.raises(ValueError, match=r"^ssl_keyfile needs ssl_certfile"):
        wsuv.Server(None, ssl_keyfile=str(tlskit.server.key))
    with pytest.raises(ValueError, match=r"does not match ssl_certfile"):
        wsuv.Server(None, ssl_certfile=str(tlskit.server.cert),
                    ssl_keyfile=str(tlskit.client.key))
    with pytest.raises(ValueError, match=r"^ssl_keyfile_password does not decrypt"):
        wsuv.Server(None, ssl_certfile=str(tlskit.server.cert),
                    ssl_keyfile=str(tlskit.server_key_encrypted), ssl_keyfile_password="no")
    with pytest.raises(TypeError, match=r"^ssl_certfile must be a str"):
        wsuv.Server(None, ssl_certfile=123)
    with pytest.raises(ValueError, match=r"^ssl_cert_reqs must be between 0 and 2"):
        wsuv.Server(None, ssl_cert_reqs=5)


def test_encrypted_key_with_password(tlskit: Any) -> None:
    import tlskit as kit_mod

    with tls_server(tlskit, ssl_keyfile=str(tlskit.server_key_encrypted),
                    ssl_keyfile_password=kit_mod.PASSWORD) as server, \
            wss(server, tlskit.client_context()) as ws:
        ws.send("unlocked")
        assert ws.recv(TIMEOUT) == "unlocked"


def test_cli_tls_mistakes_are_one_line(tlskit: Any, tmp_path: Any) -> None:
    """wsuv-serve: each unusable TLS option is one line and exit 1, also with --workers
    (checked before any fork)."""
    import tlskit as kit_mod

    from tests.conftest import free_port
    from tests.server.test_cli_start import refused

    cert, key = str(tlskit.server.cert), str(tlskit.server.key)
    cases = [
        (["--ssl-certfile", str(tmp_path / "nope.pem")], "cannot be read: No such file"),
        (["--ssl-certfile", cert, "--ssl-keyfile", str(tlskit.client.key)], "does not match"),
        (["--ssl-certfile", cert, "--ssl-keyfile", str(tlskit.server_key_encrypted)],
         "is encrypted: give ssl_keyfile_password"),
        (["--ssl-certfile", cert, "--ssl-keyfile", str(tlskit.server_key_encrypted),
          "--ssl-keyfile-password", kit_mod.PASSWORD + "x"], "does not decrypt"),
        (["--ssl-keyfile", key], "ssl_keyfile needs ssl_certfile"),
        (["--ssl-certfile", cert, "--ssl-keyfile", key, "--ssl-ciphers", "NOPE"],
         "selects no cipher"),
        (["--ssl-certfile", cert, "--ssl-keyfile", key, "--ssl-cert-reqs", "2"],
         "give ssl_ca_certs"),
    ]
    for args, words in cases:
        for workers in ("1", "2"):
            line = refused(*args, "--port", str(free_port()), "--workers", workers)
            assert words in line, (args, line)
    assert "--ssl-cert-reqs must be between 0 and 2" in refused(
        "--ssl-certfile", cert, "--ssl-cert-reqs", "7", status=2)
