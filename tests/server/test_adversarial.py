"""Adversarial peers over real sockets on 127.0.0.1.

Each test sends what a hostile or broken peer would, asserts the answer (an
HTTP status, a close code, a dropped connection), and then that nothing else
was disturbed: a normal client is echoed promptly afterwards (and during, where
the attack is ongoing), and the server thread neither crashed nor wedged
(running_server asserts it stops in time and raised nothing).

Every loop is bounded in iterations and every wait in time. Measured numbers
(slowloris close time, latency with 10,000 idle connections, RSS around the
churn) are printed for the notes; run with -s to see them.
"""

from __future__ import annotations

import collections
import gc
import os
import random
import selectors
import socket
import struct
import threading
import time
from typing import Any

import pytest
from advkit import (
    EchoProbe,
    mib,
    nofile_limits,
    peak_rss,
    raise_nofile_to,
    reset_peak_rss,
    rss,
    spawn_holder,
)
from srvkit import (
    TIMEOUT,
    EchoHandler,
    FrameReader,
    assert_eof,
    assert_serves,
    client_frame,
    close_payload,
    on_loop,
    open_raw,
    raw_connect,
    raw_frame,
    read_response,
    running_server,
    upgrade_request,
    wait_for,
)

from wsuv._core import lib
from wsuv.server import Server

APPS = ["c-echo", "python"]


def make_handler(app: str) -> EchoHandler | None:
    return EchoHandler() if app == "python" else None


class CountingEcho:
    """A Python echo that keeps counts only (EchoHandler keeps every WebSocket
    it saw, which would be the test's own memory growth in the churn)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened = 0
        self.codes: collections.Counter[int] = collections.Counter()

    def on_open(self, ws: Any) -> None:
        with self.lock:
            self.opened += 1

    def on_message(self, ws: Any, message: str | bytes) -> None:
        ws.send(message)

    def on_close(self, ws: Any, code: int, reason: str) -> None:
        with self.lock:
            self.codes[code] += 1

    def closed(self) -> int:
        with self.lock:
            return sum(self.codes.values())


def port_of(server: Server) -> int:
    assert server.port is not None
    return server.port


def conn_count(server: Server) -> int:
    """Connections the C server holds (handshaking, open or flushing)."""
    return int(on_loop(server, lambda: lib.ws_server_connection_count(server._s)))


def wait_no_connections(server: Server, timeout: float = 10.0) -> None:
    wait_for(lambda: conn_count(server) == 0, timeout=timeout, step=0.05)


def served_promptly(server: Server, limit: float = 1.0) -> float:
    """A fresh client gets an echo round trip within ``limit`` seconds (handshake
    included); also the two library clients of assert_serves. Returns the time."""
    start = time.monotonic()
    probe = EchoProbe(port_of(server))
    try:
        probe.echo()
    finally:
        probe.close()
    took = time.monotonic() - start
    assert took < limit, f"a normal client took {took:.3f} s"
    assert_serves(server)
    return took


def recv_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, str]:
    """Read until the peer closes; returns (bytes read, "fin" or "rst")."""
    data = b""
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        left = deadline - time.monotonic()
        assert left > 0, f"server did not close in {timeout} s ({len(data)} bytes read)"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, "rst"
        except TimeoutError:
            raise AssertionError(f"server did not close in {timeout} s") from None
        if not chunk:
            return data, "fin"
        data += chunk
    raise AssertionError("endless data")


# -- 1. slowloris ----------------------------------------------------------------------


@pytest.mark.parametrize("app", APPS)
def test_slowloris_trickle_closed_at_handshake_timeout(app: str) -> None:
    """One byte every 0.2 s: the handshake deadline counts from accept, not from
    the last byte, so the trickler is cut at ~1.0 s; a normal client meanwhile
    echoes at full speed."""
    handler = make_handler(app)
    with running_server(handler, handshake_timeout=1.0) as server:
        probe = EchoProbe(port_of(server))
        request = upgrade_request()
        sock = raw_connect(server)
        start = time.monotonic()
        result: dict[str, Any] = {}

        def trickle() -> None:
            sent = 0
            try:
                for i in range(40):  # 40 x 0.2 s = 8 s at most
                    if time.monotonic() - start > 6.0:
                        break
                    sock.sendall(request[i:i + 1])  # never the whole request
                    sent += 1
                    sock.settimeout(0.2)
                    try:
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        continue
                    result["how"] = "fin" if not chunk else f"data {chunk[:60]!r}"
                    break
            except (ConnectionResetError, BrokenPipeError) as exc:
                result["how"] = type(exc).__name__
            result["at"] = time.monotonic() - start
            result["sent"] = sent

        thread = threading.Thread(target=trickle)
        thread.start()
        try:
            # The other client while the trickler is connected: 20 prompt echoes.
            for _ in range(20):
                if not thread.is_alive():
                    break
                assert probe.echo() < 0.5
                time.sleep(0.04)
        finally:
            thread.join(10)
            sock.close()
        assert not thread.is_alive()
        print(f"\n[slowloris/{app}] closed after {result.get('at', -1):.3f} s "
              f"({result.get('sent')} bytes trickled, {result.get('how')}); "
              f"probe echo {probe.stats()}")
        assert result.get("how") in ("fin", "ConnectionResetError", "BrokenPipeError"), result
        assert 0.8 <= result["at"] <= 3.0, result
        assert probe.stats()["n"] >= 10
        assert probe.echo() < 0.5
        probe.close()
        served_promptly(server)
        wait_no_connections(server)


@pytest.mark.parametrize("app", APPS)
def test_200_slowloris_sockets_do_not_starve_a_normal_client(app: str) -> None:
    handler = make_handler(app)
    n = 200
    raise_nofile_to(2 * n + 256)
    with running_server(handler, handshake_timeout=2.0) as server:
        socks: list[socket.socket] = []
        request = upgrade_request()
        try:
            start = time.monotonic()
            for i in range(n):
                sock = raw_connect(server)
                socks.append(sock)
                sock.sendall(request[:10 + i % 50])  # a partial head, never finished
            assert time.monotonic() - start < 1.0, "connecting 200 sockets was slow"
            wait_for(lambda: conn_count(server) == n, timeout=2.0)
            # While all 200 hang in the handshake: a normal client, promptly.
            took = served_promptly(server, limit=1.0)
            for i, sock in enumerate(socks):  # one more byte each: still no complete head
                sock.sendall(request[10 + i % 50:11 + i % 50])
            probe = EchoProbe(port_of(server))
            for _ in range(10):
                assert probe.echo() < 0.5
            probe.close()
            # Then the server cuts them all at the deadline (2 s after accept).
            sel = selectors.DefaultSelector()
            for sock in socks:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
            closed = 0
            deadline = start + 6.0
            for _ in range(10 * n):
                left = deadline - time.monotonic()
                if closed == n or left <= 0:
                    break
                for key, _ in sel.select(left):
                    s: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        chunk = s.recv(4096)
                    except ConnectionResetError:
                        chunk = b""
                    assert not chunk, f"slowloris socket got data: {chunk[:80]!r}"
                    sel.unregister(s)
                    closed += 1
            sel.close()
            elapsed = time.monotonic() - start
            print(f"\n[slowloris x{n}/{app}] normal client served in {took * 1000:.1f} ms; "
                  f"all {closed} cut after {elapsed:.2f} s")
            assert closed == n, f"only {closed}/{n} slowloris sockets closed"
            assert elapsed >= 1.8
        finally:
            for sock in socks:
                sock.close()
        wait_no_connections(server)
        served_promptly(server)


# -- 2. header floods -------------------------------------------------------------------


def flood_exchange(server: Server, request: bytes) -> int:
    """Send a huge request while reading: the server answers (and closes) before
    it has read everything, so the sender may meet a reset; the answer is still
    read. Returns the status."""
    with raw_connect(server) as sock:
        errors: list[BaseException] = []

        def send() -> None:
            try:
                sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            resp = read_response(sock)
            assert_eof(sock)
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # unblocks the sender, if it still is
            except OSError:
                pass  # already reset by the server
            sender.join(TIMEOUT)
        assert not sender.is_alive() and not errors, errors
        return resp.status


@pytest.mark.parametrize("app", APPS)
def test_header_floods_get_431_and_414(app: str) -> None:
    handler = make_handler(app)
    with running_server(handler) as server:
        many = upgrade_request(extra=[(f"X-Flood-{i}", "v") for i in range(10_000)])
        big = upgrade_request(extra=[("X-Big", "b" * (1 << 20))])
        long_url = upgrade_request("/" + "u" * (1 << 20))
        start = time.monotonic()
        assert flood_exchange(server, many) == 431
        assert flood_exchange(server, big) == 431
        assert flood_exchange(server, long_url) == 414
        took = time.monotonic() - start
        assert took < 5.0, took
        served_promptly(server)
        wait_no_connections(server)
        if handler is not None:
            assert len(handler.opened) == 3  # only served_promptly's three clients


# -- 3. length fields ---------------------------------------------------------------------


@pytest.mark.parametrize("app", APPS)
def test_length_msb_set_is_1002_and_over_max_message_size_is_1009(app: str) -> None:
    handler = make_handler(app)
    limit = 64 * 1024
    with running_server(handler, max_message_size=limit) as server:
        # 2^63 and 2^64-1 (MSB set): refused at the header.
        for length in (1 << 63, (1 << 64) - 1):
            sock, reader = open_raw(server)
            with sock:
                sock.sendall(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", length) + b"abcd")
                reader.expect_close(1002)
        # A header claiming max_message_size + 1, and no payload at all: 1009 at
        # once, without waiting for bytes that will never come.
        for opcode, length in ((0x2, limit + 1), (0x1, limit + 1), (0x2, (1 << 63) - 1)):
            sock, reader = open_raw(server)
            with sock:
                start = time.monotonic()
                sock.sendall(raw_frame(0x80 | opcode, length=length))  # header + mask only
                reader.expect_close(1009, timeout=2.0)
                assert time.monotonic() - start < 2.0
        # Exactly the limit is still fine.
        sock, reader = open_raw(server)
        with sock:
            payload = bytes(range(256)) * (limit // 256)
            sock.sendall(client_frame(0x2, payload))
            frame = reader.next()
            assert (frame.opcode, frame.payload) == (0x2, payload)
        served_promptly(server)
        if handler is not None:
            wait_for(lambda: len(handler.closed) >= 8)
            codes = handler.close_codes()
            assert codes[:5] == [1002, 1002, 1009, 1009, 1009], codes


# -- 4. garbage after the handshake ------------------------------------------------------

_RESERVED_OPCODES = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}


def _surely_1002(head: bytes) -> bool:
    """Random bytes whose first frame header is invalid whatever follows: a RSV
    bit without an extension, a reserved opcode, a continuation with no message,
    or an unmasked client frame. (Other random bytes may be a valid frame, or
    over the size limit: 1009, or a bad close/UTF-8: 1007.)"""
    b0, b1 = head[0], head[1]
    return bool(b0 & 0x70) or (b0 & 0x0F) in _RESERVED_OPCODES or (b0 & 0x0F) == 0 or not b1 & 0x80


def _garbage(count: int, size: int = 4096) -> list[bytes]:
    """``count`` blobs of random bytes from fixed seeds, each surely a 1002."""
    out = []
    for seed in range(1000):
        blob = random.Random(seed).randbytes(size)
        if _surely_1002(blob):
            out.append(blob)
            if len(out) == count:
                return out
    raise AssertionError("not enough seeds")


@pytest.mark.parametrize("app", APPS)
def test_random_garbage_after_handshake_is_1002_then_tcp_close(app: str) -> None:
    handler = make_handler(app)
    blobs = _garbage(8)
    with running_server(handler) as server:
        probe = EchoProbe(port_of(server))
        for i, blob in enumerate(blobs):
            if i % 2 == 0:  # after the 101
                sock, reader = open_raw(server)
                sock.sendall(blob)
            else:  # in the same write as the upgrade request
                sock = raw_connect(server)
                sock.sendall(upgrade_request() + blob)
                resp = read_response(sock)
                assert resp.status == 101
                reader = FrameReader(sock, resp.rest)
            with sock:
                frame = reader.next()
                assert frame.opcode == 0x8, f"seed blob {i}: first frame {frame}"
                assert struct.unpack("!H", frame.payload[:2])[0] == 1002, frame
                assert not reader.frames
                assert_eof(sock)
            assert probe.echo() < 0.5  # the neighbour is undisturbed
        probe.close()
        served_promptly(server)
        wait_no_connections(server)
        if handler is not None:
            wait_for(lambda: len(handler.closed) >= len(blobs) + 3)
            assert handler.close_codes()[:len(blobs)] == [1002] * len(blobs)


# -- 5. ping flood --------------------------------------------------------------------------

PINGS = 20_000
WRITE_LIMIT = 256 * 1024
HIGH_WATER = 64 * 1024


def _tcp_wmem_max() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


class PingFlood:
    """A client that sends ``count`` pings as fast as the socket takes them and
    does not read for ``stall`` seconds, then reads everything while sending the
    rest. Records the pongs (in order?) and how the connection ended."""

    def __init__(self, port: int, count: int, payload_len: int) -> None:
        self.count = count
        pad = b"p" * (payload_len - 4)
        self.data = b"".join(client_frame(0x9, struct.pack("!I", i) + pad) for i in range(count))
        self.frame_len = len(self.data) // count
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # a slow reader
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(upgrade_request("/flood"))
        resp = read_response(self.sock)
        assert resp.status == 101
        self.reader = FrameReader(self.sock, resp.rest)
        self.sock.setblocking(False)
        self.sent = 0
        self.pongs = 0
        self.in_order = True
        self.other: list[Any] = []
        self.end: str | None = None  # None: still open; "fin", "rst", "send-reset", "timeout"
        self.sent_unread = 0
        self._take(self.reader.frames)

    def _take(self, frames: list[Any]) -> None:
        for f in frames:
            if f.opcode != 0xA:
                self.other.append(f)
                continue
            if f.payload[:4] != struct.pack("!I", self.pongs):
                self.in_order = False
            self.pongs += 1

    def _send(self) -> None:
        try:
            self.sent += self.sock.send(self.data[self.sent:self.sent + 65536])
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            self.end = "send-reset"

    def stall(self, seconds: float, meanwhile: Any) -> None:
        """Phase 1: send without reading; ``meanwhile()`` every ~50 ms."""
        start = time.monotonic()
        last = 0.0
        for _ in range(1_000_000):
            now = time.monotonic()
            if self.end or now - start > seconds:
                break
            if now - last > 0.05:
                meanwhile()
                last = time.monotonic()
            if self.sent < len(self.data):
                self._send()
            time.sleep(0.002)
        self.sent_unread = self.sent // self.frame_len

    def drain(self, timeout: float) -> None:
        """Phase 2: read until all pongs are in or the server closes."""
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        writing = True
        for _ in range(10_000_000):
            if self.end or self.pongs == self.count:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                self.end = "timeout"
                break
            for _key, mask in sel.select(min(left, 1.0)):
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = self.sock.recv(1 << 16)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        self.end = "rst"
                        break
                    if not chunk:
                        self.end = "fin"
                        break
                    self._take(self.reader.parser.feed(chunk))
                if mask & selectors.EVENT_WRITE and not self.end:
                    self._send()
                    if self.sent == len(self.data) and writing:
                        sel.modify(self.sock, selectors.EVENT_READ)
                        writing = False
        sel.close()
        self.sock.close()

    def summary(self) -> str:
        return (f"{self.sent_unread}/{self.count} pings sent while not reading, "
                f"{self.sent // self.frame_len} in all, {self.pongs} pongs back "
                f"(in order: {self.in_order}), end={self.end}")


def _flood_case(app: str, count: int, payload_len: int) -> tuple[PingFlood, Any]:
    handler = make_handler(app)
    with running_server(handler, write_high_water=HIGH_WATER, write_limit=WRITE_LIMIT) as server:
        probe = EchoProbe(port_of(server))
        flood = PingFlood(port_of(server), count, payload_len)
        gc.collect()
        before = rss()
        have_peak = reset_peak_rss()
        buffered: list[int] = []

        def meanwhile() -> None:
            # A neighbour is answered promptly while the flooder does not read.
            assert probe.echo() < 0.5
            if handler is not None and handler.opened[1:]:
                ws = handler.opened[1]
                buffered.append(int(on_loop(server, lambda: 0 if ws.closed
                                            else ws.buffered_amount)))

        start = time.monotonic()
        flood.stall(1.5, meanwhile)
        flood.drain(30.0)
        took = time.monotonic() - start
        peak = peak_rss() if have_peak else rss()
        growth = peak - before
        print(f"\n[ping flood/{app}, {count} x {payload_len} B] {flood.summary()}, "
              f"{took:.2f} s; RSS {mib(before)} -> peak {mib(peak)} (+{mib(growth)}); "
              f"neighbour echo max {probe.stats()['max_ms']:.1f} ms"
              + (f"; server queue max {max(buffered, default=0)} B" if handler else ""))
        # Under ASan (make asan) freed memory sits in its quarantine, so RSS there
        # says nothing about what the server holds; make memcheck covers leaks.
        if not os.environ.get("WSUV_SANITIZE"):
            assert growth < 64 << 20, f"RSS grew by {mib(growth)}"
        assert not flood.other, flood.other[:3]
        assert flood.in_order
        assert max(buffered, default=0) <= WRITE_LIMIT
        assert probe.echo() < 0.5
        probe.close()
        served_promptly(server)
        wait_no_connections(server)
    return flood, handler


@pytest.mark.parametrize("app", APPS)
def test_ping_flood_20000_small_pings_all_answered_in_order(app: str) -> None:
    """20,000 pings of 4 bytes make 120,000 bytes of pongs, under write_limit
    (256 KiB) even if the kernel buffered none of them: with these settings
    every pong arrives, in order, for both apps, though the client read nothing
    until all its pings were sent."""
    assert PINGS * (2 + 4) < WRITE_LIMIT
    flood, handler = _flood_case(app, PINGS, 4)
    assert flood.sent_unread == PINGS  # all were sent before the client read anything
    assert (flood.end, flood.pongs) == (None, PINGS), flood.summary()
    if handler is not None:
        assert handler.close_codes()[0] == 1006  # the flooder's abrupt close


@pytest.mark.parametrize("app", APPS)
def test_ping_flood_beyond_kernel_buffers_hits_write_limit(app: str) -> None:
    """Enough 125-byte pings that their pongs exceed the kernel's largest send
    buffer (tcp_wmem max) plus write_limit. The C echo stops reading a peer past
    write_high_water, so the rest of the flood waits in the kernel (the server's
    receive buffer, the client's send buffer) and every pong still arrives, in
    order: its queue never crossed write_limit, or it would have been dropped.
    A Python handler keeps reading (pausing is the application's call), the
    pongs pile up, and the peer is dropped at write_limit: on_close 1006, TCP
    closed."""
    count = int(1.5 * (_tcp_wmem_max() + WRITE_LIMIT + (1 << 20)) / 127)
    if count > 300_000:
        pytest.skip(f"tcp_wmem max {_tcp_wmem_max()} makes the flood too big for this file")
    flood, handler = _flood_case(app, count, 125)
    if app == "c-echo":
        assert (flood.end, flood.pongs) == (None, count), flood.summary()
    else:
        assert flood.end in ("fin", "rst", "send-reset"), flood.summary()
        assert flood.pongs < count
        wait_for(lambda: len(handler.closed) >= 1)
        assert handler.closed[0][:2] == ("/flood", 1006), handler.closed


def test_write_limit_drop_reports_its_reason() -> None:
    count = int(1.5 * (_tcp_wmem_max() + WRITE_LIMIT + (1 << 20)) / 127)
    flood, handler = _flood_case("python", min(count, 300_000), 125)
    assert flood.end in ("fin", "rst", "send-reset"), flood.summary()
    wait_for(lambda: len(handler.closed) >= 1)
    assert handler.closed[0] == ("/flood", 1006, "write buffer limit exceeded"), handler.closed

# -- 6. half-close -----------------------------------------------------------------------------


@pytest.mark.parametrize("app", APPS)
def test_half_close_without_close_frame_is_1006(app: str) -> None:
    handler = make_handler(app)
    with running_server(handler) as server:
        sock, reader = open_raw(server)
        with sock:
            sock.sendall(client_frame(0x1, b"last words"))
            sock.shutdown(socket.SHUT_WR)
            frame = reader.next()
            assert (frame.opcode, frame.payload) == (0x1, b"last words")
            data, how = recv_until_closed(sock, TIMEOUT)
            assert data == b"" and not reader.frames, (data, reader.frames)  # no close frame
            assert how == "fin", how
        if handler is not None:
            wait_for(lambda: len(handler.closed) == 1)
            assert handler.closed[0][1] == 1006, handler.closed
        wait_no_connections(server)
        served_promptly(server)


@pytest.mark.parametrize("app", APPS)
def test_close_frame_then_half_close_gets_echo_and_clean_fin(app: str) -> None:
    handler = make_handler(app)
    with running_server(handler) as server:
        sock, reader = open_raw(server)
        with sock:
            sock.sendall(client_frame(0x8, close_payload(1000, b"bye")))
            sock.shutdown(socket.SHUT_WR)
            frame = reader.next()
            assert frame.opcode == 0x8 and struct.unpack("!H", frame.payload[:2])[0] == 1000
            data, how = recv_until_closed(sock, TIMEOUT)
            assert data == b"" and not reader.frames
            assert how == "fin", "expected a clean TCP close, got a reset"
        if handler is not None:
            wait_for(lambda: len(handler.closed) == 1)
            assert handler.closed[0][1:] == (1000, "bye"), handler.closed
        wait_no_connections(server)
        served_promptly(server)


# -- 7. 10,000 idle connections --------------------------------------------------------------

IDLE = 10_000


@pytest.mark.parametrize("app", APPS)
def test_ten_thousand_idle_connections_one_active_client(app: str) -> None:
    """The idle clients live in a child process (advkit.hold), so each process
    needs ~10,000 descriptors, not ~20,000 in one."""
    need = IDLE + 512
    _soft, hard = nofile_limits()
    if hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need} needed per process "
                    f"(server ends here, client ends in a child)")
    raise_nofile_to(25_000)
    handler = make_handler(app)
    with running_server(handler, ping_interval=0, handshake_timeout=30.0) as server:
        probe = EchoProbe(port_of(server))
        child = spawn_holder(port_of(server), IDLE)
        try:
            # While the 10,000 connect: the active client keeps being answered.
            ready: list[str] = []
            reader = threading.Thread(target=lambda: ready.append(child.stdout.readline()))
            reader.start()
            opening = []
            for _ in range(3000):  # ~60 s at most
                if not reader.is_alive():
                    break
                opening.append(probe.echo())
                time.sleep(0.02)
            reader.join(60)
            assert ready and ready[0].startswith("READY"), (ready, child.poll())
            open_took = float(ready[0].split()[2])
            assert conn_count(server) == IDLE + 1
            if handler is not None:
                assert len(handler.opened) == IDLE + 1
            # All 10,000 open and idle: the active client's round trips.
            probe.times.clear()
            for _ in range(300):
                probe.echo()
            stats = probe.stats()
            served_promptly(server, limit=1.0)
            opening.sort()
            print(f"\n[idle {IDLE}/{app}] opened in {open_took:.2f} s (echo p50 during "
                  f"{1000 * opening[len(opening) // 2]:.2f} ms, max "
                  f"{1000 * opening[-1]:.1f} ms, n={len(opening)}); with all open: "
                  f"p50 {stats['p50_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms, "
                  f"max {stats['max_ms']:.1f} ms")
            assert stats["p50_ms"] < 50, stats
            assert 1000 * opening[len(opening) // 2] < 100
            out, _ = child.communicate("close\n", timeout=60)
            assert "CLOSED" in out and "quiet=True" in out, out
            start = time.monotonic()
            wait_for(lambda: conn_count(server) == 1, timeout=30.0, step=0.1)
            print(f"[idle {IDLE}/{app}] all released {time.monotonic() - start:.2f} s "
                  "after the child closed them")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        assert probe.echo() < 0.5
        probe.close()
        served_promptly(server)
        if handler is not None:
            wait_for(lambda: len(handler.closed) >= IDLE)
            assert handler.close_codes().count(1006) == IDLE


# -- 8. churn -------------------------------------------------------------------------------

CHURN = 20_000
WARMUP = 1_000
BATCH = 250
KINDS = ("clean", "rst", "mid-handshake", "mid-frame")


def _churn_batch(port: int, n: int, first: int) -> None:
    """n connections, the four kinds in turn, all open at once, then all gone."""
    socks: list[tuple[str, socket.socket]] = []
    request = upgrade_request("/churn")
    try:
        for i in range(first, first + n):
            kind = KINDS[i % 4]
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(TIMEOUT)
            socks.append((kind, sock))
            sock.connect(("127.0.0.1", port))
            if kind == "mid-handshake":
                sock.sendall(request[:i % (len(request) - 1) + 1])
            else:
                sock.sendall(request)
        readers: list[FrameReader | None] = []
        for kind, sock in socks:
            if kind == "mid-handshake":
                readers.append(None)
                continue
            resp = read_response(sock)
            assert resp.status == 101, resp.status
            readers.append(FrameReader(sock, resp.rest))
        for kind, sock in socks:
            if kind == "clean":
                sock.sendall(client_frame(0x8, close_payload(1000)))
            elif kind == "rst":
                sock.sendall(client_frame(0x2, b"x" * 100))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif kind == "mid-frame":
                sock.sendall(client_frame(0x2, b"y" * 1000)[:500])
        for (kind, _sock), reader in zip(socks, readers, strict=True):
            if kind == "clean":
                assert reader is not None
                reader.expect_close(1000)
    finally:
        for _kind, sock in socks:
            sock.close()


def _settle(server: Server) -> None:
    wait_no_connections(server, timeout=20.0)
    gc.collect()
    time.sleep(0.3)
    gc.collect()


@pytest.mark.parametrize("app", APPS)
def test_churn_twenty_thousand_connections_memory_back_to_baseline(app: str) -> None:
    raise_nofile_to(2 * BATCH + 512)
    handler = CountingEcho() if app == "python" else None
    with running_server(handler) as server:
        port = server.port
        assert port is not None
        for lo in range(0, WARMUP, BATCH):
            _churn_batch(port, BATCH, lo)
        _settle(server)
        before = rss()
        start = time.monotonic()
        lagging = 0  # connections the server still held at a batch's end
        for lo in range(0, CHURN, BATCH):
            _churn_batch(port, BATCH, lo)
            if lo % (8 * BATCH) == 0:
                lagging = max(lagging, conn_count(server))
                assert lagging < 8 * BATCH, lagging  # the server keeps up
        took = time.monotonic() - start
        _settle(server)
        after = rss()
        growth = after - before
        allowed = max(before // 10, 4 << 20)
        print(f"\n[churn/{app}] {CHURN} connections ({'/'.join(KINDS)}) in {took:.2f} s "
              f"({CHURN / took:.0f}/s, <= {BATCH} at once, <= {lagging} left at a batch's end); "
              f"RSS after "
              f"{WARMUP} warm-up {mib(before)}, after churn {mib(after)} "
              f"({growth / (1 << 20):+.2f} MiB, allowed +{mib(allowed)})")
        if handler is not None:  # mid-handshake drops never open
            total = WARMUP + CHURN
            assert handler.opened == total * 3 // 4
            wait_for(lambda: handler.closed() == total * 3 // 4)
            assert handler.codes == {1000: total // 4, 1006: total // 2}, handler.codes
        served_promptly(server)
        assert growth <= allowed, f"RSS {mib(before)} -> {mib(after)}"
