"""write_rate: a per-connection send budget, enforced in C without sleeping."""

from __future__ import annotations

import threading
import time

from websockets.sync.client import connect

from tests.conftest import running_server
from wsuv import Handler, WebSocket

CHUNK = 20_000
CHUNKS = 15  # 300 kB in all


class Sender(Handler):
    """On "go", sends CHUNKS binary messages at once; echoes anything else."""

    def __init__(self) -> None:
        self.buffered: list[int] = []

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        if message == "go":
            for i in range(CHUNKS):
                ws.send(bytes([i]) * CHUNK)
            self.buffered.append(ws.buffered_amount)
        else:
            ws.send(message)


def _receive_all(url: str) -> float:
    with connect(url, open_timeout=5, max_size=None) as ws:
        start = time.monotonic()
        ws.send("go")
        for i in range(CHUNKS):
            msg = ws.recv(timeout=10)
            assert msg == bytes([i]) * CHUNK
        return time.monotonic() - start


def test_write_rate_spreads_sends_over_time() -> None:
    handler = Sender()
    # Byte budgets: compression would shrink these repeated bytes to nothing.
    with running_server(handler, write_rate=100_000, compression=None) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        elapsed = _receive_all(url)
        # 300 kB at 100 kB/s: the first second's budget goes at once, the
        # rest in the next two windows -> about 2 s, never much less.
        assert 1.8 <= elapsed <= 6.0, elapsed
        assert handler.buffered and handler.buffered[0] >= 150_000  # held, counted
        # Another connection is not slowed by the first one's budget.
        with connect(url, open_timeout=5) as other:
            t0 = time.monotonic()
            other.send("quick")
            assert other.recv(timeout=5) == "quick"
            assert time.monotonic() - t0 < 0.5


def test_without_write_rate_sends_go_at_once() -> None:
    with running_server(Sender()) as server:
        assert _receive_all(f"ws://127.0.0.1:{server.port}/") < 1.5


def test_held_writes_over_write_limit_drop_the_peer() -> None:
    closed: list[tuple[int, str]] = []
    done = threading.Event()

    class Flood(Sender):
        def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
            closed.append((code, reason))
            done.set()

    with running_server(Flood(), write_rate=10_000, write_limit=100_000,
                        compression=None) as server:
        with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=5) as ws:
            ws.send("go")
            assert done.wait(5)
    assert closed[0] == (1006, "write buffer limit exceeded")
