"""wss:// in the client (wsuv.sync and wsuv.aio) against TLS servers with
certificates made for this run (tests/tlskit.py): `websockets` over Python's
ssl, wsuv's own TLS server, Node `ws` over https, and raw Python ssl sockets
for the TLS-level details (SNI, ALPN, close_notify)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tlskit as kit_mod
from clientkit import (
    TIMEOUT,
    echo,
    raw_server,
    read_head,
    running_server,
    server_ctx,
    switching,
    wss_server,
)

import wsuv
import wsuv.aio
import wsuv.sync

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIG = 4 << 20


def tls_info_handler(seen: dict[str, Any]) -> Any:
    """An echo that records what the TLS handshake carried."""
    async def handler(ws: Any) -> None:
        obj = ws.transport.get_extra_info("ssl_object")
        seen["alpn"] = obj.selected_alpn_protocol()
        seen["version"] = obj.version()
        peer = obj.getpeercert()
        seen["peer"] = dict(x[0] for x in peer["subject"]) if peer else None
        await echo(ws)
    return handler


def sni_ctx(pair: Any, seen: dict[str, Any]) -> ssl.SSLContext:
    ctx = server_ctx(pair)

    def on_sni(sock: Any, name: str | None, c: Any) -> None:
        seen["sni"] = name

    ctx.sni_callback = on_sni
    return ctx


# -- against `websockets` (Python's ssl) -------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_echo_sni_alpn(tlskit: Any, host: str) -> None:
    seen: dict[str, Any] = {"sni": "not called"}
    with wss_server(tlskit.server, tls_info_handler(seen), host=host,
                    ssl=sni_ctx(tlskit.server, seen)) as url, \
            wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert, open_timeout=TIMEOUT) as ws:
        for size in (0, 1, 125, 126, 65535, 65536, 1 << 20):
            message = random.Random(size).randbytes(size)
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message, size
        ws.send("text é")
        assert ws.recv(timeout=TIMEOUT) == "text é"
    assert seen["alpn"] == "http/1.1"
    assert seen["version"] in ("TLSv1.2", "TLSv1.3")
    # SNI carries a name, never an IP literal (RFC 6066 3).
    assert seen["sni"] == ("localhost" if host == "localhost" else None)


def test_4_mib_both_ways_with_deflate(tlskit: Any) -> None:
    big = random.Random(4).randbytes(BIG)
    text = "wsuv " * (BIG // 5)
    with wss_server(tlskit.server, compression="deflate") as url, \
            wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert, max_message_size=None) as ws:
        assert ws.extensions and ws.extensions[0].startswith("permessage-deflate")
        ws.send(big)
        assert ws.recv(timeout=60) == big
        ws.send(text)
        assert ws.recv(timeout=60) == text


def test_4_mib_without_deflate(tlskit: Any) -> None:
    big = random.Random(5).randbytes(BIG)
    with wss_server(tlskit.server, compression=None) as url, \
            wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert, compression=None,
                              max_message_size=None) as ws:
        assert ws.extensions == []
        for _ in range(2):
            ws.send(big)
            assert ws.recv(timeout=60) == big


def test_ping_and_server_close_over_tls(tlskit: Any) -> None:
    async def handler(ws: Any) -> None:
        await ws.recv()
        await ws.close(4001, "bye")

    with wss_server(tlskit.server, handler) as url, \
            wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert) as ws:
        assert ws.ping(timeout=TIMEOUT) >= 0
        ws.send("go")
        with pytest.raises(wsuv.ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert (info.value.code, info.value.reason) == (4001, "bye")


@pytest.mark.parametrize("name, reason, words", [
    ("expired", "expired", "expired"),
    ("untrusted", "unknown_issuer", "not signed by a trusted CA"),
    ("wrong_host", "hostname_mismatch", "not valid for 'localhost'"),
])
def test_certificate_refused_with_its_reason(tlskit: Any, name: str, reason: str,
                                             words: str) -> None:
    with wss_server(getattr(tlskit, name)) as url:
        t0 = time.monotonic()
        with pytest.raises(wsuv.InvalidCertificate) as info:
            wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert, open_timeout=TIMEOUT)
        assert time.monotonic() - t0 < TIMEOUT / 2  # refused at once, not by the timeout
    err = info.value
    assert err.reason == reason
    assert words in str(err) and url.split("//")[1].rstrip("/") in str(err)
    assert err.verify_message  # OpenSSL's own words
    assert isinstance(err, wsuv.TLSError) and isinstance(err, wsuv.InvalidHandshake)
    assert wsuv.sync.InvalidCertificate is wsuv.InvalidCertificate


def test_ip_literal_checked_against_the_certificate(tlskit: Any) -> None:
    # wrong.example's certificate has no IP address: 127.0.0.1 does not match.
    with wss_server(tlskit.wrong_host, host="127.0.0.1") as url, \
            pytest.raises(wsuv.InvalidCertificate) as info:
        wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert)
    assert info.value.reason == "hostname_mismatch" and "'127.0.0.1'" in str(info.value)


def test_verification_is_on_by_default(tlskit: Any) -> None:
    # The kit's CA is not in the system trust store: without ssl_ca_certs the
    # server's certificate has an unknown issuer.
    with wss_server(tlskit.server) as url, pytest.raises(wsuv.InvalidCertificate) as info:
        wsuv.sync.connect(url)
    assert info.value.reason == "unknown_issuer"


def test_insecure_skip_verify_connects_and_warns(tlskit: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with wss_server(tlskit.untrusted) as url, caplog.at_level(logging.WARNING, "wsuv.client"), \
            wsuv.sync.connect(url, ssl_insecure_skip_verify=True) as ws:
        ws.send("unverified")
        assert ws.recv(timeout=TIMEOUT) == "unverified"
    warnings = [r for r in caplog.records if r.name == "wsuv.client"]
    assert warnings and "NOT verified" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING


def test_client_certificate_sent_when_required(tlskit: Any) -> None:
    seen: dict[str, Any] = {}
    ctx = server_ctx(tlskit.server, client_ca=tlskit.ca.cert)
    with wss_server(tlskit.server, tls_info_handler(seen), ssl=ctx) as url:
        with wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert,
                               ssl_certfile=tlskit.client.cert,
                               ssl_keyfile=tlskit.client.key) as ws:
            ws.send("with a certificate")
            assert ws.recv(timeout=TIMEOUT) == "with a certificate"
        assert seen["peer"] == {"commonName": kit_mod.CLIENT_CN}
        # No certificate, or one from a CA the server does not trust: refused.
        for extra in ({}, {"ssl_certfile": tlskit.other_client.cert,
                           "ssl_keyfile": tlskit.other_client.key}):
            with pytest.raises(wsuv.TLSError) as info:
                with wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert, open_timeout=TIMEOUT,
                                       **extra) as ws:
                    ws.recv(timeout=TIMEOUT)
            assert not isinstance(info.value, wsuv.InvalidCertificate)
            assert "TLS handshake with" in str(info.value)


def test_client_key_with_password(tlskit: Any, tmp_path: Path) -> None:
    key = tmp_path / "client-encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(tlskit.client.key), "-out", str(key),
                    "-aes256", "-passout", f"pass:{kit_mod.PASSWORD}"], check=True, timeout=30)
    seen: dict[str, Any] = {}
    ctx = server_ctx(tlskit.server, client_ca=tlskit.ca.cert)
    with wss_server(tlskit.server, tls_info_handler(seen), ssl=ctx) as url:
        with wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert, ssl_certfile=tlskit.client.cert,
                               ssl_keyfile=key, ssl_keyfile_password=kit_mod.PASSWORD) as ws:
            ws.send("pw")
            assert ws.recv(timeout=TIMEOUT) == "pw"
    assert seen["peer"] == {"commonName": kit_mod.CLIENT_CN}
    with pytest.raises(ValueError, match="ssl_keyfile_password does not decrypt"):
        wsuv.sync.connect(url, ssl_certfile=tlskit.client.cert, ssl_keyfile=key,
                          ssl_keyfile_password="no")
    with pytest.raises(ValueError, match="encrypted: give ssl_keyfile_password"):
        wsuv.sync.connect(url, ssl_certfile=tlskit.client.cert, ssl_keyfile=key)


def test_contexts_are_shared_and_follow_file_changes(tlskit: Any, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tlskit.ca.cert.read_bytes())
    with wss_server(tlskit.server) as url:
        with wsuv.sync.connect(url, ssl_ca_certs=ca) as a, \
                wsuv.sync.connect(url, ssl_ca_certs=str(ca)) as b:
            assert a._tls is not None and a._tls is b._tls  # the trust store is read once
            first = a._tls
        ca.write_bytes(tlskit.ca.cert.read_bytes() + b"\n")  # a changed file: read again
        with wsuv.sync.connect(url, ssl_ca_certs=ca) as c:
            assert c._tls is not first
            c.send("renewed")
            assert c.recv(timeout=TIMEOUT) == "renewed"


# -- misuse: one sentence each -------------------------------------------------------

def test_ssl_options_need_wss(tlskit: Any) -> None:
    with pytest.raises(ValueError, match=r"^ssl_ca_certs is a TLS option: it needs a wss:// URL"):
        wsuv.sync.connect("ws://127.0.0.1:9/", ssl_ca_certs=tlskit.ca.cert)
    with pytest.raises(ValueError, match="ssl_insecure_skip_verify is a TLS option"):
        wsuv.sync.connect("ws://127.0.0.1:9/", ssl_insecure_skip_verify=True)


def test_url_parsing() -> None:
    from wsuv.sync import _parse_url, _split_url

    assert _split_url("wss://example.com/a?b=1") == ("example.com", 443, None, "/a?b=1", True)
    assert _split_url("wss://[::1]:8443/") == ("::1", 8443, None, "/", True)
    assert _split_url("ws://example.com/") == ("example.com", 80, None, "/", False)
    # Clients without TLS (the parser they share) refuse wss:// in one sentence.
    with pytest.raises(wsuv.InvalidURI, match=r"wss:// \(TLS\) is not supported by this client"):
        _parse_url("wss://example.com/")


def test_bad_tls_options_are_one_sentence(tlskit: Any, tmp_path: Path) -> None:
    url = "wss://127.0.0.1:9/"
    with pytest.raises(ValueError, match="ssl_ca_certs '.*missing.pem' cannot be read"):
        wsuv.sync.connect(url, ssl_ca_certs=tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="ssl_ca_certs '.*' holds no usable PEM"):
        wsuv.sync.connect(url, ssl_ca_certs=junk)
    with pytest.raises(ValueError, match="does not match ssl_certfile"):
        wsuv.sync.connect(url, ssl_certfile=tlskit.client.cert, ssl_keyfile=tlskit.server.key)
    with pytest.raises(ValueError, match="ssl_keyfile needs ssl_certfile"):
        wsuv.sync.connect(url, ssl_keyfile=tlskit.client.key)
    with pytest.raises(ValueError, match="choose one"):
        wsuv.sync.connect(url, ssl_insecure_skip_verify=True, ssl_ca_certs=tlskit.ca.cert)
    with pytest.raises(TypeError, match="ssl_insecure_skip_verify must be True or False"):
        wsuv.sync.connect(url, ssl_insecure_skip_verify="yes")
    with pytest.raises(TypeError, match="ssl_ca_certs must be a path"):
        wsuv.sync.connect(url, ssl_ca_certs=42)


# -- TLS-level behaviour, against raw Python ssl sockets -------------------------------

def test_open_timeout_covers_the_tls_handshake() -> None:
    def silent(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the ClientHello, never answered
            while conn.recv(4096):
                pass  # until the client gives up

    with raw_server(silent) as url:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            wsuv.sync.connect(url.replace("ws://", "wss://"), open_timeout=0.5)
        assert 0.4 < time.monotonic() - t0 < 5


def test_plain_server_on_wss_is_a_tls_error() -> None:
    def plain(conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with raw_server(plain) as url, pytest.raises(wsuv.TLSError) as info:
        wsuv.sync.connect(url.replace("ws://", "wss://"), open_timeout=TIMEOUT)
    assert not isinstance(info.value, wsuv.InvalidCertificate)


def test_server_closing_during_tls_handshake() -> None:
    def hangup(conn: socket.socket) -> None:
        conn.recv(4096)

    with raw_server(hangup) as url, pytest.raises(wsuv.TLSError,
                                                  match="closed the connection during"):
        wsuv.sync.connect(url.replace("ws://", "wss://"), open_timeout=TIMEOUT)


def _tls_ws_server(tlskit: Any, after_close: str, box: dict[str, Any]) -> Any:
    """A raw TLS server script: handshake, one echo, then the client's close;
    after_close: "close_notify" (unwrap, then FIN) or "fin" (FIN only)."""
    from clientkit import FrameReader, frame

    def script(conn: socket.socket) -> None:
        tconn = server_ctx(tlskit.server).wrap_socket(conn, server_side=True)
        head, headers = read_head(tconn)
        tconn.sendall(switching(headers["sec-websocket-key"]))
        reader = FrameReader(tconn)
        op, fin, key, data = reader.read()
        assert key is not None
        tconn.sendall(frame(op, data))
        op, fin, key, data = reader.read()
        assert op == 8
        box["close"] = data
        tconn.sendall(frame(8, data[:2]))
        # The client sends close_notify after its close frame, then waits for
        # our FIN (RFC 6455 7.1.1).
        if after_close == "close_notify":
            raw = tconn.unwrap()  # reads the client's close_notify, sends ours
            box["close_notify"] = True
            raw.shutdown(socket.SHUT_WR)
            box["eof"] = raw.recv(1) == b""
        else:
            # Read the client's close_notify and hang up without answering it.
            with contextlib.suppress(ssl.SSLError, OSError):
                box["after"] = tconn.recv(1)
            tconn.shutdown(socket.SHUT_RDWR)  # TCP only: SSLSocket sends no close_notify
            tconn.close()

    return script


@pytest.mark.parametrize("after_close", ["close_notify", "fin"])
def test_close_notify_then_fin(tlskit: Any, after_close: str) -> None:
    box: dict[str, Any] = {}
    with raw_server(_tls_ws_server(tlskit, after_close, box)) as url:
        url = url.replace("ws://127.0.0.1", "wss://localhost")
        ws = wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert, compression=None,
                               open_timeout=TIMEOUT)
        ws.send("once")
        assert ws.recv(timeout=TIMEOUT) == "once"
        t0 = time.monotonic()
        ws.close(1000, "done")
        assert time.monotonic() - t0 < TIMEOUT / 2  # ended by the server's FIN, not a timeout
        assert ws.close_code == 1000
    assert box["close"][:2] == b"\x03\xe8" and box["close"][2:] == b"done"
    if after_close == "close_notify":
        assert box["close_notify"] and box["eof"]
    else:
        assert box["after"] == b""  # the client's close_notify: a clean TLS EOF


def test_server_hangs_up_without_close_frame_or_close_notify(tlskit: Any) -> None:
    def script(conn: socket.socket) -> None:
        tconn = server_ctx(tlskit.server).wrap_socket(conn, server_side=True)
        head, headers = read_head(tconn)
        tconn.sendall(switching(headers["sec-websocket-key"]))
        tconn.shutdown(socket.SHUT_RDWR)  # TCP only: no close frame, no close_notify
        tconn.close()

    with raw_server(script) as url:
        url = url.replace("ws://127.0.0.1", "wss://localhost")
        with wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert, compression=None) as ws:
            with pytest.raises(wsuv.ConnectionClosed) as info:
                ws.recv(timeout=TIMEOUT)
            assert info.value.code == 1006


# -- against wsuv's own TLS server -------------------------------------------------------

@pytest.mark.parametrize("compression", ["deflate", None])
def test_against_wsuv_tls_server(tlskit: Any, compression: str | None) -> None:
    big = random.Random(6).randbytes(BIG)
    with running_server(ssl_certfile=str(tlskit.server.cert),
                        ssl_keyfile=str(tlskit.server.key),
                        max_message_size=8 << 20) as server:
        url = f"wss://localhost:{server.port}/"
        with wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert, compression=compression,
                               max_message_size=None) as ws:
            assert bool(ws.extensions) == (compression == "deflate")
            for message in (b"", b"x", "é" * 1000, big, "t" * BIG):
                ws.send(message)
                assert ws.recv(timeout=60) == message
            for i in range(200):  # many small ones: the cork and the records
                ws.send(f"m{i}")
            assert [ws.recv(timeout=TIMEOUT) for _ in range(200)] == [f"m{i}" for i in range(200)]


def test_wsuv_tls_server_wrong_host(tlskit: Any) -> None:
    with running_server(ssl_certfile=str(tlskit.wrong_host.cert),
                        ssl_keyfile=str(tlskit.wrong_host.key)) as server, \
            pytest.raises(wsuv.InvalidCertificate) as info:
        wsuv.sync.connect(f"wss://localhost:{server.port}/", ssl_ca_certs=tlskit.ca.cert)
    assert info.value.reason == "hostname_mismatch"


# -- against Node `ws` over https ----------------------------------------------------------

@pytest.fixture
def node_wss(tlskit: Any) -> Iterator[str]:
    exe = shutil.which("node") or shutil.which("nodejs")
    if exe is None or not (ROOT / "node_modules" / "ws" / "package.json").is_file():
        pytest.fail("Node.js and its `ws` package are needed: apt-get install nodejs npm, "
                    "then `npm install` at the repo root (`make test` does it)")
    proc = subprocess.Popen([exe, str(HERE / "node_wss_server.js"), str(tlskit.server.cert),
                             str(tlskit.server.key)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"wss://localhost:{port}/"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_against_node_ws_over_https(tlskit: Any, node_wss: str) -> None:
    big = random.Random(7).randbytes(BIG)
    with wsuv.sync.connect(node_wss, ssl_ca_certs=tlskit.ca.cert, max_message_size=None) as ws:
        assert ws.extensions and ws.extensions[0].startswith("permessage-deflate")
        ws.send("sni")
        assert ws.recv(timeout=TIMEOUT) == "sni localhost"
        ws.send("alpn")
        assert ws.recv(timeout=TIMEOUT) == "alpn http/1.1"
        ws.send(big)
        assert ws.recv(timeout=60) == big


# -- wsuv.aio.connect ----------------------------------------------------------------------

def test_aio_wss(tlskit: Any, run: Any) -> None:
    big = random.Random(8).randbytes(BIG)
    with wss_server(tlskit.server) as url:
        async def main() -> None:
            async with wsuv.aio.connect(url, ssl_ca_certs=tlskit.ca.cert,
                                        max_message_size=None) as ws:
                await ws.send("hello")
                assert await ws.recv(timeout=TIMEOUT) == "hello"
                await ws.send(big)
                assert await ws.recv(timeout=60) == big
            with pytest.raises(wsuv.InvalidCertificate) as info:
                await wsuv.aio.connect(url)  # the kit's CA is not trusted by default
            assert info.value.reason == "unknown_issuer"

        run(main())


def test_aio_hostname_mismatch(tlskit: Any, run: Any) -> None:
    with wss_server(tlskit.wrong_host) as url:
        async def main() -> None:
            with pytest.raises(wsuv.InvalidCertificate) as info:
                await wsuv.aio.connect(url, ssl_ca_certs=tlskit.ca.cert)
            assert info.value.reason == "hostname_mismatch"
            assert "not valid for 'localhost'" in str(info.value)

        run(main())


def test_aio_reconnecting_iterator_raises_certificate_errors(tlskit: Any, run: Any) -> None:
    with wss_server(tlskit.expired) as url:
        async def main() -> None:
            with pytest.raises(wsuv.InvalidCertificate, match="expired"):
                async for _ws in wsuv.aio.connect(url, ssl_ca_certs=tlskit.ca.cert):
                    raise AssertionError("an expired certificate must not connect")

        run(asyncio.wait_for(main(), TIMEOUT))


def test_sync_wss_from_threads(tlskit: Any) -> None:
    errors: list[BaseException] = []

    with wss_server(tlskit.server) as url:
        def worker(n: int) -> None:
            try:
                with wsuv.sync.connect(url, ssl_ca_certs=tlskit.ca.cert) as ws:
                    for i in range(20):
                        ws.send(f"{n}-{i}")
                        assert ws.recv(timeout=TIMEOUT) == f"{n}-{i}"
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors, errors
