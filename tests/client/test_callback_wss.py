"""wss:// in the callback-style client (wsuv.connect / wsuv.Client /
Server.connect / wsuv.aio.client) against `websockets` and wsuv TLS servers
with the certificates of tests/tlskit.py; failures reach on_connect_failed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tlskit as kit_mod
from clientkit import LIMIT, echo, run_bounded, running_server, server_ctx
from clientkit import wss_server as clientkit_wss_server

import wsuv
import wsuv.aio

MESSAGES = ["", "a", "é" * 1000, b"\x00\xff" * 40000, "x" * (1 << 20), b"y" * (3 << 20)]


class Script(wsuv.Handler):
    """Sends ``messages`` one at a time, records the echoes, closes when done."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages = list(messages)
        self.received: list[Any] = []
        self.closed: tuple[int, str] | None = None
        self.failure: BaseException | None = None
        self.opened = False

    def on_open(self, ws: wsuv.WebSocket) -> None:
        self.opened = True
        self._next(ws)

    def _next(self, ws: wsuv.WebSocket) -> None:
        if len(self.received) < len(self.messages):
            ws.send(self.messages[len(self.received)])
        else:
            ws.close(1000, "done")

    def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
        self.received.append(message)
        self._next(ws)

    def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def on_connect_failed(self, ws: wsuv.WebSocket, error: BaseException) -> None:
        self.failure = error


@contextlib.contextmanager
def wss_server(pair: Any, handler: Any = echo, host: str = "localhost",
               **kwargs: Any) -> Iterator[str]:
    """A `websockets` TLS server; yields wss://host:port/."""
    with clientkit_wss_server(pair, handler, host, path="/", **kwargs) as url:
        yield url


def _echoed(h: Script) -> None:
    assert h.failure is None, h.failure
    assert h.received == h.messages and h.closed is not None and h.closed[0] == 1000


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_echo_against_websockets_over_tls(tlskit: Any, host: str) -> None:
    with wss_server(tlskit.server, host=host) as url:
        h = Script(MESSAGES)
        run_bounded(wsuv.connect(url, h, ssl_ca_certs=tlskit.ca.cert))
    _echoed(h)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_against_wsuv_tls_server(tlskit: Any, compression: str | None) -> None:
    with running_server(ssl_certfile=str(tlskit.server.cert),
                        ssl_keyfile=str(tlskit.server.key)) as srv:
        h = Script(MESSAGES + [f"m{i}" for i in range(100)])
        client = wsuv.Client(h)
        ws = client.connect(f"wss://localhost:{srv.port}/", compression=compression,
                            ssl_ca_certs=str(tlskit.ca.cert))
        run_bounded(client)
    _echoed(h)
    assert bool(ws.extensions) == (compression == "deflate")


@pytest.mark.parametrize("name, reason, words", [
    ("expired", "expired", "expired"),
    ("untrusted", "unknown_issuer", "not signed by a trusted CA"),
    ("wrong_host", "hostname_mismatch", "not valid for 'localhost'"),
])
def test_certificate_refused_through_on_connect_failed(tlskit: Any, name: str, reason: str,
                                                       words: str) -> None:
    with wss_server(getattr(tlskit, name)) as url:
        h = Script(["never sent"])
        elapsed = run_bounded(wsuv.connect(url, h, ssl_ca_certs=tlskit.ca.cert))
    assert elapsed < LIMIT / 2  # refused at once, not by a timeout
    err = h.failure
    assert isinstance(err, wsuv.InvalidCertificate) and not h.opened
    assert err.reason == reason and err.verify_message
    assert words in str(err) and url.split("//")[1].rstrip("/") in str(err)
    assert isinstance(err, wsuv.TLSError)


def test_hostname_mismatch_on_an_ip_literal(tlskit: Any) -> None:
    with wss_server(tlskit.wrong_host, host="127.0.0.1") as url:
        h = Script([])
        run_bounded(wsuv.connect(url, h, ssl_ca_certs=tlskit.ca.cert))
    assert isinstance(h.failure, wsuv.InvalidCertificate)
    assert h.failure.reason == "hostname_mismatch" and "'127.0.0.1'" in str(h.failure)


def test_verification_on_by_default_and_unhandled_failure_raised_by_run(tlskit: Any) -> None:
    class NoFail(wsuv.Handler):
        pass

    with wss_server(tlskit.server) as url:
        h = Script([])
        run_bounded(wsuv.connect(url, h))  # the kit's CA is not a system root
        assert isinstance(h.failure, wsuv.InvalidCertificate)
        assert h.failure.reason == "unknown_issuer"
        with pytest.raises(wsuv.InvalidCertificate, match="not signed by a trusted CA"):
            run_bounded(wsuv.connect(url, NoFail()))


def test_private_ca_trusted_on_a_tls_server(tlskit: Any) -> None:
    with running_server(ssl_certfile=str(tlskit.server.cert),
                        ssl_keyfile=str(tlskit.server.key)) as srv:
        url = f"wss://localhost:{srv.port}/"
        refused, trusted = Script(["x"]), Script(["trusted"])
        run_bounded(wsuv.connect(url, refused))
        run_bounded(wsuv.connect(url, trusted, ssl_ca_certs=tlskit.ca.cert))
    assert isinstance(refused.failure, wsuv.InvalidCertificate)
    _echoed(trusted)


def test_client_certificate(tlskit: Any) -> None:
    seen: dict[str, Any] = {}

    async def handler(ws: Any) -> None:
        peer = ws.transport.get_extra_info("ssl_object").getpeercert()
        seen["peer"] = dict(x[0] for x in peer["subject"])
        await echo(ws)

    ctx = server_ctx(tlskit.server, client_ca=tlskit.ca.cert)
    with wss_server(tlskit.server, handler, ssl=ctx) as url:
        h = Script(["with a certificate"])
        run_bounded(wsuv.connect(url, h, ssl_ca_certs=tlskit.ca.cert,
                                 ssl_certfile=tlskit.client.cert, ssl_keyfile=tlskit.client.key))
        without = Script(["x"])
        run_bounded(wsuv.connect(url, without, ssl_ca_certs=tlskit.ca.cert))
    _echoed(h)
    assert seen["peer"] == {"commonName": kit_mod.CLIENT_CN}
    # Without a certificate the server ends the handshake: a TLS failure, never an open.
    assert not without.opened and without.closed is None
    assert type(without.failure) is wsuv.TLSError
    assert "client certificate" in str(without.failure)


def test_insecure_skip_verify_connects_and_warns(tlskit: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with wss_server(tlskit.untrusted) as url, caplog.at_level(logging.WARNING, "wsuv.client"):
        h = Script(["unverified"])
        run_bounded(wsuv.connect(url, h, ssl_insecure_skip_verify=True))
    _echoed(h)
    warnings = [r for r in caplog.records if r.name == "wsuv.client"]
    assert warnings and "NOT verified" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING


def test_tls_server_dials_itself(tlskit: Any) -> None:
    class Echo(wsuv.Handler):
        def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
            ws.send(message)

    class Dialler(Script):
        def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
            super().on_close(ws, code, reason)
            ws.server.stop()

        def on_connect_failed(self, ws: wsuv.WebSocket, error: BaseException) -> None:
            super().on_connect_failed(ws, error)
            ws.server.stop()

    srv = wsuv.Server(Echo(), port=0, handle_signals=False,
                      ssl_certfile=str(tlskit.server.cert), ssl_keyfile=str(tlskit.server.key))
    srv.listen()
    h = Dialler(["to myself", b"\x01" * 70000])
    ws = srv.connect(f"wss://localhost:{srv.port}/", h, ssl_ca_certs=tlskit.ca.cert)
    timer = threading.Timer(LIMIT, srv.stop, (False,))
    timer.start()
    try:
        srv.run()
    finally:
        timer.cancel()
    _echoed(h)
    assert ws.response is not None and ws.response.status == 101


def test_aio_client_wss(tlskit: Any) -> None:
    async def main() -> Script:
        with wss_server(tlskit.server) as url:
            h = Script(["aio"])
            async with wsuv.aio.client(h) as c:
                c.connect(url, ssl_ca_certs=tlskit.ca.cert)
                for _ in range(int(LIMIT * 100)):
                    if h.closed or h.failure:
                        break
                    await asyncio.sleep(0.01)
            return h

    _echoed(asyncio.run(main()))


def _misuse(call: Any) -> str:
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_tls_misuse_is_one_sentence(tlskit: Any, tmp_path: Path) -> None:
    h = Script([])
    assert "needs a wss:// URL" in _misuse(lambda: wsuv.connect(
        "ws://localhost:1/", h, ssl_ca_certs=tlskit.ca.cert))
    assert "needs ssl_certfile" in _misuse(lambda: wsuv.connect(
        "wss://localhost:1/", h, ssl_keyfile=tlskit.client.key))
    assert "choose one" in _misuse(lambda: wsuv.connect(
        "wss://localhost:1/", h, ssl_ca_certs=tlskit.ca.cert, ssl_insecure_skip_verify=True))
    assert "True or False" in _misuse(lambda: wsuv.connect(
        "wss://localhost:1/", h, ssl_insecure_skip_verify=1))
    assert "must be a path" in _misuse(lambda: wsuv.connect(
        "wss://localhost:1/", h, ssl_ca_certs=42))
    missing = tmp_path / "missing.pem"
    msg = _misuse(lambda: wsuv.connect("wss://localhost:1/", h, ssl_ca_certs=missing))
    assert "missing.pem" in msg


def test_server_connect_from_another_thread_over_tls(tlskit: Any) -> None:
    class Host(wsuv.Handler):
        def on_message(self, ws: wsuv.WebSocket, message: Any) -> None:
            pass

    with wss_server(tlskit.server) as url, running_server(Host()) as host:
        running = threading.Event()
        host.call_soon_threadsafe(running.set)  # run() has started in its thread
        assert running.wait(LIMIT)
        good, bad = Script(["from a thread"]), Script(["x"])
        host.connect(url, good, ssl_ca_certs=tlskit.ca.cert)
        host.connect(url, bad)  # the system store does not know the kit's CA
        deadline = time.monotonic() + LIMIT
        while (good.closed is None or bad.failure is None) and time.monotonic() < deadline:
            time.sleep(0.01)
    _echoed(good)
    assert isinstance(bad.failure, wsuv.InvalidCertificate)
    assert bad.failure.reason == "unknown_issuer"
