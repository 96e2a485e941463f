"""wsuv.sync against Node.js's `ws` server (tests/client/node_server.js)."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientkit import TIMEOUT

import wsuv
import wsuv.sync

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(params=["deflate", "plain"])
def node(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A Node `ws` server (permessage-deflate on or off); its absence is a failure,
    as in tests/interop (CI installs nodejs and `npm install`s ws)."""
    exe = shutil.which("node") or shutil.which("nodejs")
    if exe is None or not (ROOT / "node_modules" / "ws" / "package.json").is_file():
        pytest.fail("Node.js and its `ws` package are needed: apt-get install nodejs npm, "
                    "then `npm install` at the repo root (`make test` does it)")
    proc = subprocess.Popen([exe, str(HERE / "node_server.js"), request.param], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"ws://127.0.0.1:{port}", request.param
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_echo_sizes(node: tuple[str, str]) -> None:
    node_url, mode = node
    with wsuv.sync.connect(node_url, max_message_size=None) as ws:
        if mode == "deflate":
            assert ws.extensions and ws.extensions[0].startswith("permessage-deflate")
        else:
            assert ws.extensions == []
        for size in (0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20):
            message = random.Random(size).randbytes(size)
            ws.send(message)
            assert ws.recv(timeout=60) == message, size
            text = "é" * (size // 2)
            ws.send(text)
            assert ws.recv(timeout=60) == text, size
        ws.send("extensions")
        report = ws.recv(timeout=TIMEOUT)
        assert isinstance(report, str)
        assert report.startswith("ext permessage-deflate; client_max_window_bits ")


def test_fragments_subprotocol_ping(node: tuple[str, str]) -> None:
    node_url, _ = node
    with wsuv.sync.connect(node_url, subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        ws.send("fragments")
        assert ws.recv(timeout=TIMEOUT) == "one two three"
        ws.send("ping")  # Node pings us; our engine answers
        assert ws.recv(timeout=TIMEOUT) == "pong from-node"
        assert ws.ping(b"from-wsuv") >= 0


@pytest.mark.parametrize("code", [1000, 4001])
def test_server_close(node: tuple[str, str], code: int) -> None:
    node_url, _ = node
    with wsuv.sync.connect(node_url) as ws:
        ws.send(f"close {code} node says bye")
        with pytest.raises(wsuv.ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert (info.value.code, info.value.reason) == (code, "node says bye")


def test_client_close(node: tuple[str, str]) -> None:
    node_url, _ = node
    ws = wsuv.sync.connect(node_url)
    ws.send("x")
    assert ws.recv(timeout=TIMEOUT) == "x"
    ws.close(4321, "wsuv says bye")
    assert ws.close_code == 4321 and ws.close_reason == "wsuv says bye"
