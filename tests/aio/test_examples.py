"""examples/asyncio: ports of `websockets` servers, run as a user would
(`python echo.py`, on a free port) and checked with the websockets client."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "asyncio"
T = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(name: str, tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    source = (EXAMPLES / name).read_text()
    assert source.count("8765") == 1, "the example names its port once"
    script = tmp_path / name
    script.write_text(source.replace("8765", str(port)))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{name} did not listen on {port}")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(T)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return proc.stderr.read() if proc.stderr else ""


@pytest.mark.parametrize("name", ["echo.py", "chat.py"])
def test_the_port_changes_only_imports(name: str) -> None:
    imports = [line for line in (EXAMPLES / name).read_text().splitlines()
               if line.startswith(("from ", "import "))]
    assert imports[0] == "import asyncio"
    assert all(line.startswith("from wsuv.aio import ") for line in imports[1:]), imports


def test_echo_example(tmp_path: Path) -> None:
    proc, port = _start("echo.py", tmp_path)
    try:
        async def client() -> None:
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("hello")
                assert await asyncio.wait_for(ws.recv(), T) == "hello"
                await ws.send(b"\x00\x01")
                assert await asyncio.wait_for(ws.recv(), T) == b"\x00\x01"
        asyncio.run(client())
    finally:
        err = _stop(proc)
    assert "wsuv listening on" in err


def test_chat_example(tmp_path: Path) -> None:
    proc, port = _start("chat.py", tmp_path)
    try:
        async def clients() -> None:
            url = f"ws://127.0.0.1:{port}/"
            async with connect(url) as a, connect(url) as b, connect(url) as c:
                await asyncio.sleep(0.1)  # all three registered
                await a.send("hi all")
                for ws in (a, b, c):
                    assert await asyncio.wait_for(ws.recv(), T) == "hi all"
        asyncio.run(clients())
    finally:
        _stop(proc)
