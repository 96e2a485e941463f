"""busy_poll_us: the loop polls without sleeping while reads keep coming, and
sleeps in epoll again once they stop. Same answers (and the same graceful
shutdown: test_cli's SIGTERM test runs with it too)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from websockets.sync.client import connect

from tests.conftest import free_port, running_server, wait_port
from tests.server.srvkit import EchoHandler, url
from tests.server.test_cli import serve

BUSY_US = 2000


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("app", ["c-echo", "python"])
def test_busy_poll_echoes_every_message_in_order(app: str) -> None:
    handler = EchoHandler() if app == "python" else None
    with running_server(handler, busy_poll_us=BUSY_US) as server:
        with connect(url(server), open_timeout=5, max_size=None) as ws:
            for i in range(300):
                payload = f"message {i}" if i % 2 else bytes([i % 256]) * (i * 37)
                ws.send(payload)
                assert ws.recv(timeout=5) == payload
            big = os.urandom(3 << 20)
            ws.send(big)
            assert ws.recv(timeout=10) == big


def test_busy_poll_goes_back_to_sleep_when_idle() -> None:
    """After the traffic stops the process spins for busy_poll_us, then blocks:
    one idle second costs it a small fraction of a CPU-second."""
    port = free_port()
    with serve("--port", str(port), "--busy-poll-us", str(BUSY_US)) as proc:
        wait_port(port)
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
            for i in range(200):
                ws.send(str(i))
                assert ws.recv(timeout=5) == str(i)
            time.sleep(0.2)  # well past the 2 ms window
            before = _cpu_seconds(proc.pid)
            time.sleep(1.0)
            idle = _cpu_seconds(proc.pid) - before
            # The open connection still works after the loop went to sleep.
            ws.send("after")
            assert ws.recv(timeout=5) == "after"
        assert idle < 0.3, f"{idle:.2f} CPU-s in one idle second: the loop kept spinning"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
