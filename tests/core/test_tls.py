"""csrc/tls: the TLS layer without sockets.

A client and a server connection pump bytes to each other in memory (through
cffi): handshakes, ALPN and SNI, data both ways in any split, gathered writes,
close_notify, every verification failure the client names (expired, unknown
issuer, hostname mismatch), client certificates, start-up errors as one
sentence, and a server fed bytes that are not TLS.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import tlskit as kit_mod
from hypothesis import given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib


def make_ctx(role: int, **opts: Any) -> Any:
    """A ws_tls_ctx (freed by the garbage collector) or ValueError(sentence)."""
    cfg = ffi.new("ws_tls_config *")
    lib.ws_tls_config_default(cfg)
    cfg.role = role
    keep = []
    for name in ("certfile", "keyfile", "password", "ca_file", "ciphers"):
        value = opts.pop(name, None)
        if value is not None:
            buf = ffi.new("char[]", str(value).encode())
            keep.append(buf)
            setattr(cfg, name, buf)
    cfg.cert_reqs = opts.pop("cert_reqs", 0)
    cfg.insecure_no_verify = opts.pop("insecure", 0)
    assert not opts, opts
    err = ffi.new("char[]", lib.WS_TLS_ERRBUF)
    ctx = lib.ws_tls_ctx_new(cfg, err, lib.WS_TLS_ERRBUF)
    if ctx == ffi.NULL:
        raise ValueError(ffi.string(err).decode())
    assert ffi.string(err) == b""
    return ffi.gc(ctx, lib.ws_tls_ctx_free)


def server_ctx(kit: Any, **opts: Any) -> Any:
    opts.setdefault("certfile", kit.server.cert)
    opts.setdefault("keyfile", kit.server.key)
    return make_ctx(lib.WS_TLS_SERVER, **opts)


def client_ctx(kit: Any, **opts: Any) -> Any:
    opts.setdefault("ca_file", kit.ca.cert)
    return make_ctx(lib.WS_TLS_CLIENT, **opts)


class End:
    """One side of a connection: plaintext received, ciphertext to send."""

    def __init__(self, ctx: Any, host: str | None = None) -> None:
        self.ctx = ctx  # kept alive for as long as the connection
        c_host = ffi.new("char[]", host.encode()) if host is not None else ffi.NULL
        t = lib.ws_tls_new(ctx, c_host)
        assert t != ffi.NULL
        self.t = ffi.gc(t, lib.ws_tls_free)
        self.received = bytearray()
        self.status = 0

    def take(self) -> bytes:
        n = ffi.new("size_t *")
        p = lib.ws_tls_out(self.t, n)
        data = bytes(ffi.buffer(p, n[0])) if n[0] else b""
        lib.ws_tls_out_done(self.t, n[0])
        return data

    def feed(self, data: bytes, cap: int = 65536) -> None:
        buf = ffi.new("char[]", data)  # valid until ws_tls_read returns <= 0 (below)
        assert lib.ws_tls_feed(self.t, buf, len(data)) == 0
        out = ffi.new("char[]", cap)
        for _ in range(100000):
            r = lib.ws_tls_read(self.t, out, cap)
            if r <= 0:
                if r < 0:
                    self.status = r
                return
            self.received += ffi.buffer(out, r)
        raise AssertionError("ws_tls_read did not run dry")

    def write(self, data: bytes) -> int:
        return int(lib.ws_tls_write(self.t, data, len(data)))

    @property
    def done(self) -> bool:
        return bool(lib.ws_tls_handshake_done(self.t))

    @property
    def error(self) -> str:
        return ffi.string(lib.ws_tls_error(self.t)).decode()


def pump(a: End, b: End, *, split: int = 0, rounds: int = 200) -> None:
    """Moves ciphertext both ways until neither side has any (bounded)."""
    rng = random.Random(split)
    for _ in range(rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = src.take()
            if not data:
                continue
            moved = True
            if split:
                i = 0
                while i < len(data):
                    n = rng.randint(1, split)
                    dst.feed(data[i:i + n])
                    i += n
            else:
                dst.feed(data)
        if not moved:
            return
    raise AssertionError("the pump did not settle")


def connect(kit: Any, sctx: Any = None, cctx: Any = None, host: str = "localhost",
            split: int = 0) -> tuple[End, End]:
    server = End(sctx if sctx is not None else server_ctx(kit))
    client = End(cctx if cctx is not None else client_ctx(kit), host)
    assert lib.ws_tls_start(client.t) == 0
    pump(client, server, split=split)
    return client, server


def test_handshake_alpn_sni_version(tlskit: Any) -> None:
    client, server = connect(tlskit)
    assert client.done and server.done, (client.error, server.error)
    assert ffi.string(lib.ws_tls_sni(server.t)) == b"localhost"
    assert lib.ws_tls_sni(client.t) == ffi.NULL
    n = ffi.new("size_t *")
    for end in (client, server):
        p = lib.ws_tls_alpn(end.t, n)
        assert ffi.string(p, n[0]) == b"http/1.1"
        assert ffi.string(lib.ws_tls_version(end.t)) == b"TLSv1.3"
        assert lib.ws_tls_verify_error(end.t) == lib.WS_TLS_VERIFY_OK
    assert lib.ws_tls_peer_verified(client.t) == 1
    assert lib.ws_tls_peer_verified(server.t) == 0  # no client certificate asked for


def test_tls12_only_cipher_list(tlskit: Any) -> None:
    # A TLS 1.2 cipher list still lets TLS 1.3 run (its suites are separate).
    sctx = server_ctx(tlskit, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    client, server = connect(tlskit, sctx)
    assert client.done and server.done


@pytest.mark.parametrize("split", [1, 7, 300])
def test_data_both_ways_any_split(tlskit: Any, split: int) -> None:
    client, server = connect(tlskit, split=split)
    assert client.done and server.done
    big = bytes(random.Random(1).getrandbits(8) for _ in range(70000))
    assert client.write(big) == 0
    assert server.write(b"hello") == 0
    pump(client, server, split=split * 50)
    assert bytes(server.received) == big
    assert bytes(client.received) == b"hello"


@pytest.mark.parametrize("split", [0, 1, 50])
@pytest.mark.parametrize("insecure", [0, 1])
def test_writes_before_handshake_are_kept(tlskit: Any, split: int, insecure: int) -> None:
    server = End(server_ctx(tlskit))
    cctx = make_ctx(lib.WS_TLS_CLIENT, insecure=1) if insecure else client_ctx(tlskit)
    client = End(cctx, None if insecure else "localhost")
    assert client.write(b"GET / HTTP/1.1\r\n\r\n") == 0  # before the ClientHello
    assert lib.ws_tls_start(client.t) == 0
    pump(client, server, split=split)
    assert client.status == 0 and server.status == 0, (client.error, server.error)
    assert bytes(server.received) == b"GET / HTTP/1.1\r\n\r\n"


def test_small_read_buffer_and_stash(tlskit: Any) -> None:
    client, server = connect(tlskit)
    msg = b"0123456789" * 1000
    assert client.write(msg) == 0
    data = client.take()
    buf = ffi.new("char[]", data)
    assert lib.ws_tls_feed(server.t, buf, len(data)) == 0
    out = ffi.new("char[]", 10)
    got = bytearray()
    r = lib.ws_tls_read(server.t, out, 10)  # stops early: the rest is stashed
    got += ffi.buffer(out, r)
    assert lib.ws_tls_stash(server.t) == 0
    ffi.memmove(buf, b"\xff" * len(data), len(data))  # the caller reuses its buffer
    big = ffi.new("char[]", 65536)
    for _ in range(1000):
        r = lib.ws_tls_read(server.t, big, 65536)
        if r <= 0:
            break
        got += ffi.buffer(big, r)
    assert r == 0 and bytes(got) == msg


def test_gathered_writes_share_records(tlskit: Any) -> None:
    client, server = connect(tlskit)
    pieces = [bytes([65 + i % 26]) * 64 for i in range(200)]
    keep = [ffi.new("char[]", p) for p in pieces]
    iov = ffi.new("ws_tls_iov[]", len(pieces))
    for i, p in enumerate(pieces):
        iov[i].base = keep[i]
        iov[i].len = len(p)
    assert lib.ws_tls_writev(server.t, iov, len(pieces)) == 0
    gathered = server.take()
    for p in pieces:
        assert server.write(p) == 0
    one_by_one = server.take()
    total = 64 * 200
    # 12,800 bytes fit one record: one record's overhead (22 bytes in TLS 1.3).
    assert len(gathered) <= total + 30
    assert len(one_by_one) >= total + 200 * 17
    client.feed(gathered)
    assert bytes(client.received) == b"".join(pieces)


def test_close_notify_is_eof(tlskit: Any) -> None:
    client, server = connect(tlskit)
    assert server.write(b"last") == 0
    assert lib.ws_tls_close(server.t) == 0
    assert server.write(b"more") == lib.WS_TLS_ERR  # nothing after close_notify
    client.feed(server.take())
    assert bytes(client.received) == b"last"
    assert client.status == lib.WS_TLS_EOF
    assert lib.ws_tls_failed(client.t) == 1


@pytest.mark.parametrize(("pair", "host", "why", "words"), [
    ("expired", "localhost", "WS_TLS_VERIFY_EXPIRED", "expired"),
    ("untrusted", "localhost", "WS_TLS_VERIFY_UNKNOWN_ISSUER", "issuer"),
    ("wrong_host", "localhost", "WS_TLS_VERIFY_HOSTNAME_MISMATCH", "mismatch"),
    ("server", "other.localhost", "WS_TLS_VERIFY_HOSTNAME_MISMATCH", "mismatch"),
    ("server", "10.1.2.3", "WS_TLS_VERIFY_HOSTNAME_MISMATCH", "mismatch"),
])
def test_client_refuses(tlskit: Any, pair: str, host: str, why: str, words: str) -> None:
    p = getattr(tlskit, pair)
    sctx = server_ctx(tlskit, certfile=p.cert, keyfile=p.key)
    client, server = connect(tlskit, sctx, host=host)
    assert not client.done
    assert client.status == lib.WS_TLS_ERR
    assert lib.ws_tls_verify_error(client.t) == getattr(lib, why)
    assert words in client.error
    assert server.status == lib.WS_TLS_ERR  # the client's alert ended it
    assert server.received == b"" and client.received == b""


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost"])
def test_client_accepts_names_and_addresses(tlskit: Any, host: str) -> None:
    client, server = connect(tlskit, host=host)
    assert client.done and lib.ws_tls_peer_verified(client.t) == 1
    sni = lib.ws_tls_sni(server.t)
    if host == "localhost":
        assert ffi.string(sni) == b"localhost"
    else:
        assert sni == ffi.NULL  # no SNI for an IP address


def test_system_trust_store_refuses_private_ca(tlskit: Any) -> None:
    client, _ = connect(tlskit, cctx=make_ctx(lib.WS_TLS_CLIENT))
    assert lib.ws_tls_verify_error(client.t) == lib.WS_TLS_VERIFY_UNKNOWN_ISSUER


def test_insecure_mode_accepts_anything(tlskit: Any) -> None:
    p = tlskit.untrusted
    sctx = server_ctx(tlskit, certfile=p.cert, keyfile=p.key)
    cctx = make_ctx(lib.WS_TLS_CLIENT, insecure=1)
    client, server = connect(tlskit, sctx, cctx, host="anything.example")
    assert client.done and server.done
    assert lib.ws_tls_new(make_ctx(lib.WS_TLS_CLIENT, ca_file=tlskit.ca.cert),
                          ffi.NULL) == ffi.NULL  # verifying needs a host


def test_client_certificates(tlskit: Any) -> None:
    sctx = server_ctx(tlskit, ca_file=tlskit.ca.cert, cert_reqs=2)
    # None sent: refused.
    client, server = connect(tlskit, sctx)
    assert server.status == lib.WS_TLS_ERR and not server.done
    assert "certificate" in server.error
    # One from an unknown CA: refused, and the server says why.
    other = client_ctx(tlskit, certfile=tlskit.other_client.cert,
                       keyfile=tlskit.other_client.key)
    client, server = connect(tlskit, sctx, other)
    assert server.status == lib.WS_TLS_ERR
    assert lib.ws_tls_verify_error(server.t) == lib.WS_TLS_VERIFY_UNKNOWN_ISSUER
    # The right one: accepted and verified.
    good = client_ctx(tlskit, certfile=tlskit.client.cert, keyfile=tlskit.client.key)
    client, server = connect(tlskit, sctx, good)
    assert client.done and server.done and lib.ws_tls_peer_verified(server.t) == 1
    # Optional: none is fine, a bad one is not.
    opt = server_ctx(tlskit, ca_file=tlskit.ca.cert, cert_reqs=1)
    client, server = connect(tlskit, opt)
    assert server.done and lib.ws_tls_peer_verified(server.t) == 0
    client, server = connect(tlskit, opt, other)
    assert server.status == lib.WS_TLS_ERR


def test_encrypted_key(tlskit: Any) -> None:
    sctx = server_ctx(tlskit, keyfile=tlskit.server_key_encrypted,
                      password=kit_mod.PASSWORD)
    client, server = connect(tlskit, sctx)
    assert client.done and server.done


def start_error(tlskit: Any, role: int = 0, **opts: Any) -> str:
    with pytest.raises(ValueError) as info:
        if role == 0:
            server_ctx(tlskit, **opts)
        else:
            client_ctx(tlskit, **opts)
    msg = str(info.value)
    assert "\n" not in msg and msg
    return msg


def test_start_up_errors_are_one_sentence(tlskit: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    assert start_error(tlskit, certfile=missing) == (
        f"ssl_certfile '{missing}' cannot be read: No such file or directory")
    assert "ssl_keyfile" in start_error(tlskit, keyfile=missing)
    assert "ssl_ca_certs" in start_error(tlskit, ca_file=missing)
    not_pem = tmp_path / "junk.pem"
    not_pem.write_text("junk\n")
    assert "holds no usable PEM certificate" in start_error(tlskit, certfile=not_pem)
    assert "holds no usable PEM private key" in start_error(tlskit, keyfile=not_pem)
    assert start_error(tlskit, keyfile=tlskit.client.key) == (
        f"ssl_keyfile '{tlskit.client.key}' does not match ssl_certfile '{tlskit.server.cert}'")
    assert start_error(tlskit, keyfile=tlskit.server_key_encrypted) == (
        f"ssl_keyfile '{tlskit.server_key_encrypted}' is encrypted: give ssl_keyfile_password")
    assert start_error(tlskit, keyfile=tlskit.server_key_encrypted, password="wrong") == (
        f"ssl_keyfile_password does not decrypt ssl_keyfile '{tlskit.server_key_encrypted}'")
    assert start_error(tlskit, ciphers="NOT-A-CIPHER") == (
        "ssl_ciphers 'NOT-A-CIPHER' selects no cipher OpenSSL knows")
    assert "ssl_ca_certs" in start_error(tlskit, cert_reqs=2)
    assert "ssl_cert_reqs must be" in start_error(tlskit, ca_file=tlskit.ca.cert, cert_reqs=3)
    assert start_error(tlskit, certfile="") == "TLS on the server needs ssl_certfile"
    assert "ssl_certfile" in start_error(tlskit, 1, certfile=missing)
    if Path("/proc/self").exists() and not _is_root():
        unreadable = tmp_path / "secret.key"
        unreadable.write_bytes(tlskit.server.key.read_bytes())
        unreadable.chmod(0)
        assert "Permission denied" in start_error(tlskit, keyfile=unreadable)


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


@pytest.mark.parametrize("junk", [
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
    b"\x81\x85\x00\x00\x00\x00hello",
    b"\x16\x03\x01\xff\xff" + b"\x00" * 100,
    b"\x17\x03\x03\x00\x10" + b"\x00" * 16,
])
def test_server_refuses_bytes_that_are_not_tls(tlskit: Any, junk: bytes) -> None:
    server = End(server_ctx(tlskit))
    server.feed(junk)
    assert server.status == lib.WS_TLS_ERR and server.error
    assert server.received == b""
    assert lib.ws_tls_failed(server.t) == 1


def test_truncated_handshake_waits(tlskit: Any) -> None:
    server = End(server_ctx(tlskit))
    client = End(client_ctx(tlskit), "localhost")
    assert lib.ws_tls_start(client.t) == 0
    hello = client.take()
    server.feed(hello[: len(hello) // 2])
    assert server.status == 0 and not server.done and server.take() == b""


def test_garbage_after_handshake_fails(tlskit: Any) -> None:
    client, server = connect(tlskit)
    server.feed(b"\x17\x03\x03\x00\x20" + b"\xaa" * 32)
    assert server.status == lib.WS_TLS_ERR
    assert server.take() != b""  # an alert for the peer


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=600))
def test_server_survives_random_records(tlskit: Any, junk: bytes) -> None:
    server = End(server_ctx(tlskit))
    server.feed(junk)
    assert server.status in (0, lib.WS_TLS_ERR)
    assert server.received == b""



def test_python_client_context(tlskit: Any, tmp_path: Path) -> None:
    """wsuv.tls.client_context: what a wss:// client builds on (one sentence on error)."""
    from wsuv import tls

    ctx = ffi.gc(tls.client_context(ca_certs=str(tlskit.ca.cert),
                                    certfile=str(tlskit.client.cert),
                                    keyfile=str(tlskit.client.key)), lib.ws_tls_ctx_free)
    sctx = server_ctx(tlskit, ca_file=tlskit.ca.cert, cert_reqs=2)
    client, server = connect(tlskit, sctx, ctx)
    assert client.done and server.done and lib.ws_tls_peer_verified(server.t) == 1
    with pytest.raises(ValueError, match="^ssl_ca_certs '.*' cannot be read: "):
        tls.client_context(ca_certs=str(tmp_path / "none.pem"))
    with pytest.raises(TypeError, match="^ssl_certfile must be a str"):
        tls.client_context(certfile=1)  # type: ignore[arg-type]
    lib.ws_tls_ctx_free(tls.client_context(insecure_no_verify=True))
