"""Two wsuv-serve nodes on one redis-server, for bench_pubsub.py's ``redis``
scenario: subscribers split across both nodes, publishes from node A.

The load generator is Python (selectors, raw sockets): a server frame of 64 B
is 66 bytes on the wire (2-byte header, unmasked), so most receivers only
count bytes; a few receivers on node B parse frames and read the send
timestamp (``time.monotonic_ns``) at the head of each payload; the receive
time is when ``select`` returned, so the client's own pass over 1,000 sockets
is not counted.
Phase 1 (throughput): K publishes in flight, paced by the slowest timed
subscriber on node B (so the Redis path cannot build a backlog).
Phase 2 (latency): a fixed, moderate rate.
"""

from __future__ import annotations

import base64
import os
import selectors
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

SIZE = 64
FRAME = SIZE + 2  # server to client: 2-byte header, no mask


def _handshake(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"port {port} closed during the handshake")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"port {port} refused the upgrade: {buf.splitlines()[0]!r}")
    if buf.index(b"\r\n\r\n") + 4 != len(buf):
        raise RuntimeError("data after the handshake")
    s.setblocking(False)
    return s


def _frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x82, 0x80 | len(payload)]) + mask + body


def redis_publishes(port: int) -> int:
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"],
                         capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        if line.startswith("cmdstat_publish:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


class Load:
    """1 publisher on node A, ``conns`` subscribers alternating A and B."""

    def __init__(self, port_a: int, port_b: int, conns: int, timed: int):
        self.sel = selectors.DefaultSelector()
        self.pub = _handshake(port_a)
        self.subs = [_handshake(port_a if k % 2 else port_b) for k in range(conns)]
        # The first `timed` node-B subscribers parse frames; the rest count bytes.
        self.timed = {id(s): bytearray() for s in self.subs[0:2 * timed:2]}
        self.frames = dict.fromkeys(self.timed, 0)  # frames seen per timed subscriber
        for s in self.subs:
            self.sel.register(s, selectors.EVENT_READ)
        self.sel.register(self.pub, selectors.EVENT_READ)
        self.received = 0  # bytes, all subscribers
        self.own = 0  # bytes, the publisher's own copies
        self.lat_ns: list[int] = []
        self.sent = 0

    def publish(self) -> None:
        payload = struct.pack("!Q", time.monotonic_ns()).ljust(SIZE, b"x")
        self.pub.setblocking(True)
        self.pub.sendall(_frame(payload))
        self.pub.setblocking(False)
        self.sent += 1

    def poll(self, timeout: float) -> None:
        events = self.sel.select(timeout)
        now = time.monotonic_ns()  # arrival: when select saw the data, not our turn at it
        for key, _ in events:
            s: Any = key.fileobj
            try:
                data = s.recv(1 << 16)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("a node closed a connection")
            if s is self.pub:
                self.own += len(data)
                continue
            self.received += len(data)
            buf = self.timed.get(id(s))
            if buf is not None:
                buf += data
                while len(buf) >= FRAME:
                    self.lat_ns.append(now - struct.unpack("!Q", buf[2:10])[0])
                    del buf[:FRAME]
                    self.frames[id(s)] += 1

    def behind(self) -> int:
        """Publishes the slowest timed node-B subscriber has not had yet."""
        return self.sent - min(self.frames.values())

    def drain(self, seconds: float, until_done: bool = True) -> None:
        """Until every subscriber has every publish (or, without until_done,
        the whole time), for `seconds` at most."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and (
                not until_done or self.received < self.sent * len(self.subs) * FRAME):
            self.poll(0.05)

    def close(self) -> None:
        for s in [self.pub, *self.subs]:
            s.close()
        self.sel.close()


def cpu_of(pids: list[int], clk: int) -> float:
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12])
    return total / clk
