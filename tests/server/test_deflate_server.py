"""permessage-deflate over real sockets: negotiation as the application sees
it, broadcasts that stay decodable under context takeover, idle release, and
the bad input of RFC 7692 (1002 / 1007 / 1009, the server keeps serving).

Receivers here decode with their own zlib inflater (Python's ``zlib``, not
wsuv's code), so a stream that went out of step shows as wrong bytes or a
zlib error at that receiver.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from advkit import mib, peak_rss, reset_peak_rss, rss
from srvkit import (
    TIMEOUT,
    EchoHandler,
    FrameReader,
    assert_serves,
    client_frame,
    on_loop,
    raw_connect,
    read_response,
    running_server,
    upgrade_request,
    url,
    wait_for,
)
from websockets.sync.client import connect as ws_connect

from wsuv import Accept, Handler, Server, WebSocket
from wsuv.frames import FrameParser

TAIL = b"\x00\x00\xff\xff"
TEXT, BINARY, CONT, PING = 1, 2, 0, 9
KiB = 1024
MiB = 1024 * KiB
CHROME = "permessage-deflate; client_max_window_bits"


def answer_params(answer: str | None) -> dict[str, Any]:
    """The negotiated parameters, read back from the response header."""
    params: dict[str, Any] = {"server_bits": 15, "client_bits": 15, "server_nct": False,
                              "client_nct": False, "on": answer is not None}
    for part in (answer or "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name == "server_max_window_bits":
            params["server_bits"] = int(value)
        elif name == "client_max_window_bits":
            params["client_bits"] = int(value)
        elif name == "server_no_context_takeover":
            params["server_nct"] = True
        elif name == "client_no_context_takeover":
            params["client_nct"] = True
    return params


class Peer:
    """A raw client that offers `offer` and decodes with Python's zlib."""

    def __init__(self, server: Server, offer: str | None, extra: list[tuple[str, str]] | None
                 = None) -> None:
        self.sock = raw_connect(server)
        headers = list(extra or [])
        if offer is not None:
            headers.append(("Sec-WebSocket-Extensions", offer))
        self.sock.sendall(upgrade_request(extra=headers))
        resp = read_response(self.sock)
        assert resp.status == 101, resp.status
        self.answer = resp.headers.get("sec-websocket-extensions")
        self.p = answer_params(self.answer)
        self.reader = FrameReader(self.sock)
        self.reader.parser = FrameParser(role="client", rsv_allowed=1 if self.p["on"] else 0)
        self.reader.frames = list(self.reader.parser.feed(resp.rest)) if resp.rest else []
        self._new_inflater()
        self._new_deflater()

    def _new_inflater(self) -> None:
        self.inflater = zlib.decompressobj(-max(self.p["server_bits"], 9))

    def _new_deflater(self) -> None:
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -max(self.p["client_bits"], 9))

    def recv(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """The next data message, inflated if it was compressed (RSV1 first frame)."""
        f = self.reader.next(timeout)
        while f.opcode in (9, 10):
            f = self.reader.next(timeout)
        assert f.opcode in (TEXT, BINARY), f
        frames = [f]
        while not frames[-1].fin:
            frames.append(self.reader.next(timeout))
        assert all(not x.rsv1 for x in frames[1:]), "RSV1 on a continuation"
        data = b"".join(x.payload for x in frames)
        if f.rsv1:
            assert self.p["on"], "compressed frame without negotiation"
            data = self.inflater.decompress(data + TAIL)
            if self.p["server_nct"]:
                self._new_inflater()
        return f.opcode, data

    def send(self, opcode: int, data: bytes, nfrag: int = 1, compress: bool = True) -> None:
        if not (compress and self.p["on"]):
            self.sock.sendall(client_frame(opcode, data))
            return
        wire = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        wire = wire[:-4]
        if self.p["client_nct"]:
            self._new_deflater()
        step = max(1, -(-len(wire) // nfrag))
        parts = [wire[i:i + step] for i in range(0, len(wire), step)] or [b""]
        out = b"".join(client_frame(opcode if i == 0 else CONT, part, fin=i == len(parts) - 1,
                                    rsv1=i == 0) for i, part in enumerate(parts))
        self.sock.sendall(out)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["c-echo", "py-echo"])
def echo(request: pytest.FixtureRequest) -> Iterator[Server]:
    handler = None if request.param == "c-echo" else EchoHandler()
    with running_server(handler) as server:
        yield server


def json_text(n: int, seed: int = 0) -> bytes:
    """JSON-like text of exactly n bytes."""
    items = [{"id": seed * 1000 + i, "name": f"item-{i % 17}", "price": (i * 37 % 1000) / 10,
              "tags": ["a", "b", "c"][: i % 3 + 1]} for i in range(n // 40 + 2)]
    return json.dumps({"seq": seed, "items": items}).encode()[:n]


# -- negotiation as the application sees it -------------------------------------

class Recorder(EchoHandler):
    def __init__(self, accept: Accept | None = None) -> None:
        super().__init__()
        self.accept = accept
        self.extensions: list[list[str]] = []

    def on_connect(self, request: Any) -> Accept | None:
        return self.accept

    def on_open(self, ws: Any) -> None:
        self.extensions.append(list(ws.extensions))
        super().on_open(ws)


def test_websockets_client_negotiates_and_the_handler_sees_it() -> None:
    handler = Recorder()
    with running_server(handler) as server:
        with ws_connect(url(server), max_size=None) as ws:
            assert ws.response.headers["Sec-WebSocket-Extensions"] == (
                "permessage-deflate; client_max_window_bits=14")
            msg = json_text(4000).decode()
            ws.send(msg)
            assert ws.recv(timeout=TIMEOUT) == msg
        wait_for(lambda: handler.extensions)
        assert handler.extensions == [["permessage-deflate; client_max_window_bits=14"]]


def test_on_connect_can_refuse_compression() -> None:
    handler = Recorder(Accept(compression=False))
    with running_server(handler) as server:
        peer = Peer(server, CHROME)
        assert peer.answer is None
        peer.send(TEXT, b"x" * 200)
        assert peer.recv() == (TEXT, b"x" * 200)
        wait_for(lambda: handler.extensions)
        assert handler.extensions == [[]]
        peer.close()


def test_compression_option_none_declines() -> None:
    with running_server(Recorder(), compression=None) as server:
        peer = Peer(server, CHROME)
        assert peer.answer is None
        peer.close()


def test_compression_level_reaches_the_compressor() -> None:
    """compression_level is zlib's level: 9 packs a message tighter than 1, and
    both decode with an independent inflater."""
    data = json.dumps([{"id": i, "name": f"user-{i % 13}", "score": i * 7 % 101,
                        "tags": ["a", "bb", "ccc"][: i % 4]} for i in range(400)]).encode()
    sizes = {}
    for level in (1, 9):
        with running_server(None, compression_level=level) as srv:
            p = Peer(srv, "permessage-deflate")
            p.send(TEXT, data)
            f = p.reader.next(TIMEOUT)
            assert f.rsv1 and f.fin
            assert zlib.decompressobj(-15).decompress(f.payload + TAIL) == data
            sizes[level] = len(f.payload)
            p.sock.close()
    assert sizes[9] < sizes[1], sizes
    for bad in (0, 10, "6"):
        with pytest.raises((ValueError, TypeError), match="compression_level"):
            Server(None, compression_level=bad)


def test_extension_lines_are_joined_and_the_first_acceptable_offer_wins() -> None:
    with running_server(None) as server:
        peer = Peer(server, None, extra=[
            ("Sec-WebSocket-Extensions", "x-webkit-deflate-frame"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=99"),
            ("sec-websocket-extensions", "permessage-deflate; server_max_window_bits=10")])
        assert peer.answer == "permessage-deflate; server_max_window_bits=10"
        msg = json_text(3000)
        peer.send(TEXT, msg)
        assert peer.recv() == (TEXT, msg)
        peer.close()


def test_application_header_of_its_own_replaces_ours() -> None:
    handler = Recorder(Accept(headers=[("X-Note", "1")]))
    with running_server(handler) as server:
        peer = Peer(server, "permessage-deflate")
        assert peer.answer == "permessage-deflate"
        peer.close()


# -- traffic ---------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 65536, MiB, 16 * MiB - KiB])
def test_websockets_client_round_trips_compressed(echo: Server, size: int) -> None:
    text = json_text(size).decode()
    binary = os.urandom(size // 4) * 4
    with ws_connect(url(echo), max_size=None, open_timeout=TIMEOUT) as ws:
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        ws.send(text)
        assert ws.recv(timeout=30) == text
        ws.send(binary)
        assert ws.recv(timeout=30) == binary
        # Fragmented and compressed from the client (websockets compresses each frame).
        if size:
            chunks = [text[i:i + size // 3 + 1] for i in range(0, size, size // 3 + 1)]
            ws.send(chunks)
            assert ws.recv(timeout=30) == text


@pytest.mark.parametrize("offer", [CHROME, "permessage-deflate",
                                   "permessage-deflate; server_max_window_bits=8; "
                                   "client_max_window_bits=8",
                                   "permessage-deflate; server_no_context_takeover; "
                                   "client_no_context_takeover"])
def test_raw_peer_with_independent_decoder(echo: Server, offer: str) -> None:
    peer = Peer(echo, offer)
    assert peer.p["on"]
    for i in range(8):
        msg = json_text(200 + 900 * i, seed=i % 3)
        peer.send(TEXT, msg, nfrag=1 + i % 4)
        assert peer.recv() == (TEXT, msg)
    peer.sock.sendall(client_frame(PING, b"between"))
    peer.send(BINARY, b"\x00" * 70000, nfrag=3)
    assert peer.recv() == (BINARY, b"\x00" * 70000)
    peer.close()


class Fanout(Handler):
    """On "go:K" K rounds of: a broadcast, a direct send to each connection, and a
    send_many to every second one -- all JSON-like, overlapping in content so that
    each connection's compressor refers back across them. Anything else is echoed."""

    def __init__(self) -> None:
        self.server: Server | None = None

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        assert self.server is not None
        if not (isinstance(message, str) and message.startswith("go:")):
            ws.send(message)
            return
        rounds = int(message[3:])
        conns = sorted(self.server.connections, key=lambda w: w.id)
        for i in range(rounds):
            self.server.broadcast(json_text(300 + 50 * i, seed=i).decode())
            for w in conns:
                w.send(json_text(250 + 10 * i, seed=i).decode() + f"#{w.id}")
            self.server.send_many(conns[::2], json_text(120, seed=i + 7))
            self.server.broadcast(b"tiny")  # below the threshold: uncompressed


OFFERS = [CHROME, "permessage-deflate", "permessage-deflate; server_no_context_takeover",
          "permessage-deflate; server_max_window_bits=9", None,
          "permessage-deflate; server_max_window_bits=10; server_no_context_takeover"]


def test_broadcast_interleaved_with_direct_sends_decodes_at_every_receiver() -> None:
    handler = Fanout()
    with running_server(handler) as server:
        handler.server = server
        peers = [Peer(server, offer) for offer in OFFERS]
        ids = wait_for(lambda: sorted(w.id for w in server.connections)
                       if len(server.connections) == len(peers) else None)
        rounds = 12
        peers[0].send(TEXT, b"go:%d" % rounds, compress=False)
        for rank, peer in enumerate(peers):
            got = []
            for _ in range(rounds):
                got.append(peer.recv())
                got.append(peer.recv())
                if rank % 2 == 0:
                    got.append(peer.recv())
                got.append(peer.recv())
            want = []
            for i in range(rounds):
                want.append((TEXT, json_text(300 + 50 * i, seed=i)))
                want.append((TEXT, json_text(250 + 10 * i, seed=i) + f"#{ids[rank]}".encode()))
                if rank % 2 == 0:
                    want.append((BINARY, json_text(120, seed=i + 7)))
                want.append((BINARY, b"tiny"))
            assert got == want, f"receiver {rank} ({OFFERS[rank]})"
        # And the streams stay in step afterwards, both ways.
        for peer in peers:
            msg = json_text(2000, seed=99)
            peer.send(TEXT, msg)
        for peer in peers:
            assert peer.recv() == (TEXT, json_text(2000, seed=99))
            peer.close()


def test_idle_connections_give_their_memory_back() -> None:
    with running_server(EchoHandler(), compression_idle_timeout=0.2) as server, \
            contextlib.ExitStack() as stack:
        clients = [stack.enter_context(ws_connect(url(server), max_size=None))
                   for _ in range(4)]
        msg = json_text(1024).decode()
        for ws in clients:
            ws.send(msg)
            assert ws.recv(timeout=TIMEOUT) == msg
        live, _peak = on_loop(server, server.compression_memory)
        assert live > 4 * 30 * KiB, live  # compressor + inflater each

        def idle_memory() -> int | None:
            now = int(on_loop(server, server.compression_memory)[0])
            return now if now < 4 * 2 * KiB else None

        idle = wait_for(idle_memory, timeout=3.0)
        # Per connection: the ws_pmd struct and the inflater's window (the
        # client's 1 KiB message, under its 4 KiB window).
        print(f"\n[deflate idle] {live / 4 / KiB:.1f} KiB per active connection, "
              f"{idle / 4 / KiB:.2f} KiB per idle one")
        for ws in clients:  # the window is restored: the clients' context still holds
            ws.send(msg)
            assert ws.recv(timeout=TIMEOUT) == msg


# -- bad input ---------------------------------------------------------------------

def compressed(data: bytes, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.mark.parametrize(("name", "offer", "frames", "code"), [
    ("rsv1-not-negotiated", None, [client_frame(TEXT, compressed(b"hello"), rsv1=True)], 1002),
    ("rsv1-on-continuation", CHROME,
     [client_frame(TEXT, b"ab", fin=False),
      bytes([0x40 | 0x80]) + client_frame(CONT, b"cd")[1:]], 1002),
    ("rsv1-on-ping", CHROME, [bytes([0x40 | 0x89]) + client_frame(PING, b"p")[1:]], 1002),
    ("corrupt", CHROME, [client_frame(BINARY, b"\xff\xfe\xfd\xfc\xfb", rsv1=True)], 1007),
    ("bad-utf8-inflated", CHROME, [client_frame(TEXT, compressed(b"abc\xff"), rsv1=True)], 1007),
])
def test_bad_compressed_input_closes_and_the_server_keeps_serving(
        echo: Server, name: str, offer: str | None, frames: list[bytes], code: int) -> None:
    peer = Peer(echo, offer)
    for f in frames:
        peer.sock.sendall(f)
    peer.reader.expect_close(code)
    peer.close()
    assert_serves(echo)


@pytest.fixture(scope="module")
def gib_bomb() -> bytes:
    """1 GiB of zeros, compressed: about 1 MiB on the wire."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    out = [c.compress(zeros) for _ in range(1024)]
    out.append(c.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(out)[:-4]


def test_bomb_is_1009_before_the_memory_is_spent(echo: Server, gib_bomb: bytes) -> None:
    assert len(gib_bomb) < 1100 * KiB
    limit = echo.options["max_message_size"]
    peer = Peer(echo, CHROME)
    neighbour = Peer(echo, CHROME)
    before = rss()
    have_peak = reset_peak_rss()
    start = time.monotonic()
    frame = client_frame(BINARY, gib_bomb, rsv1=True)
    sender = threading.Thread(target=lambda: _send_quietly(peer.sock, frame), daemon=True)
    sender.start()
    peer.reader.expect_close(1009, timeout=30)
    took = time.monotonic() - start
    sender.join(10)
    peak = peak_rss() if have_peak else rss()
    growth = peak - before
    print(f"\n[bomb 1 GiB in {len(gib_bomb) // KiB} KiB] closed 1009 after {took:.2f} s; RSS "
          f"{mib(before)} -> peak {mib(peak)} (+{mib(growth)}), limit {mib(limit)}")
    if not os.environ.get("WSUV_SANITIZE"):  # ASan's quarantine holds freed memory
        assert growth < limit + 8 * MiB, f"RSS grew by {mib(growth)}"
    msg = json_text(5000)
    neighbour.send(TEXT, msg)
    assert neighbour.recv() == (TEXT, msg)
    neighbour.close()
    peer.close()
    assert_serves(echo)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server closed while we were still sending: expected
