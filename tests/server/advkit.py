"""Helpers for the adversarial tests: memory readings, connection counts, timed
echoes, and a child process that holds many idle WebSocket clients.

The child (``python advkit.py hold PORT N``) keeps the client ends of N idle
connections in another process, so the test process only holds the server
ends: 10,000 idle connections need ~10,000 descriptors per process instead of
~20,000 in one. It uses the standard library only.
"""

from __future__ import annotations

import base64
import os
import resource
import select
import socket
import statistics
import struct
import sys
import time
from typing import Any

KEY = base64.b64encode(b"0123456789abcdef").decode()
MASK = b"abcd"
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- process memory ------------------------------------------------------------------

def rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """VmHWM: the highest RSS since the last reset_peak_rss(), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


# -- descriptors ---------------------------------------------------------------------

def nofile_limits() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    return (1 << 30 if soft == inf else soft), (1 << 30 if hard == inf else hard)


def raise_nofile_to(want: int) -> int:
    """Raise the soft RLIMIT_NOFILE to min(want, hard); returns the new soft limit."""
    soft, hard = nofile_limits()
    target = min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))
        return target
    return soft


# -- frames and requests (stdlib only, for the child) --------------------------------

def request(path: str = "/") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (any payload length)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", n)
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + body


def read_101(sock: socket.socket, deadline: float) -> bytes:
    """Read an upgrade response head; assert 101; return the bytes after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no 101 in time: {buf[:100]!r}")
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"closed before a 101: {buf[:100]!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101 "):
        raise AssertionError(f"expected 101, got {head[:100]!r}")
    return rest


# -- timed echoes --------------------------------------------------------------------

class EchoProbe:
    """One raw WebSocket client whose echo round trips are timed."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(request("/probe"))
        self.buf = read_101(self.sock, time.monotonic() + timeout)
        self.times: list[float] = []
        self.n = 0

    def echo(self) -> float:
        """One binary message out and its echo back; returns the seconds it took."""
        self.n += 1
        payload = b"probe %d" % self.n
        want = bytes([0x82, len(payload)]) + payload  # the server's unmasked echo
        start = time.monotonic()
        self.sock.sendall(masked(0x2, payload))
        deadline = start + self.timeout
        while len(self.buf) < len(want):
            left = deadline - time.monotonic()
            assert left > 0, "probe echo not answered in time"
            self.sock.settimeout(left)
            chunk = self.sock.recv(4096)
            assert chunk, "probe connection closed by the server"
            self.buf += chunk
        took = time.monotonic() - start
        got, self.buf = self.buf[:len(want)], self.buf[len(want):]
        assert got == want, (got, want)
        self.times.append(took)
        return took

    def stats(self) -> dict[str, float]:
        t = sorted(self.times)
        return {"n": len(t), "p50_ms": 1000 * statistics.median(t),
                "p99_ms": 1000 * t[min(len(t) - 1, int(0.99 * len(t)))],
                "max_ms": 1000 * t[-1]}

    def close(self) -> None:
        try:
            self.sock.sendall(masked(0x8, struct.pack("!H", 1000)))
        except OSError:
            pass
        self.sock.close()


# -- the idle-connection holder (child process) ---------------------------------------

def hold(port: int, n: int, batch: int = 500) -> None:
    """Open n upgraded connections in batches, report, wait for a line, close them."""
    raise_nofile_to(n + 512)
    socks: list[socket.socket] = []
    start = time.monotonic()
    for lo in range(0, n, batch):
        group = []
        for _ in range(min(batch, n - lo)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10.0)
            s.connect(("127.0.0.1", port))
            s.sendall(request("/idle"))
            group.append(s)
        deadline = time.monotonic() + 20.0
        for s in group:
            rest = read_101(s, deadline)
            assert not rest, rest
        socks.extend(group)
    print(f"READY {len(socks)} {time.monotonic() - start:.2f}", flush=True)
    line = sys.stdin.readline()  # EOF (the parent died) also ends the hold
    # After the wait the connections must still be open: nothing arrived on any.
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    quiet = not poller.poll(0)
    start = time.monotonic()
    for s in socks:
        s.close()
    print(f"CLOSED {len(socks)} {time.monotonic() - start:.2f} quiet={quiet} {line.strip()}",
          flush=True)


def spawn_holder(port: int, n: int) -> Any:
    import subprocess

    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "hold", str(port), str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "hold":
        import signal

        signal.alarm(180)  # never outlive a test run
        hold(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: advkit.py hold PORT N")
