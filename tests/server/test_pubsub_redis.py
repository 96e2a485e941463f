"""publish across servers and across --workers processes through a real
redis-server (started here on a free 127.0.0.1 port, stopped at the end)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

import wsuv
from tests.conftest import free_port, wait_port
from tests.server.srvkit import TIMEOUT, on_loop, running_server, url, wait_for

if shutil.which("redis-server") is None and not os.environ.get("CI"):
    pytest.skip("redis-server not installed (make deps installs it)", allow_module_level=True)


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


class Room(wsuv.Handler):
    """Every connection joins 'room'; a message is published to it."""

    def on_open(self, ws: wsuv.WebSocket) -> None:
        ws.subscribe("room")
        ws.send("joined")

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        ws.server.publish("room", message)


def test_publish_reaches_subscribers_on_another_server_exactly_once(tmp_path: Path) -> None:
    with redis_server(tmp_path) as rport:
        opts = {"pubsub_url": f"redis://127.0.0.1:{rport}/0", "pubsub_namespace": "t1"}
        with running_server(Room(), **opts) as one, running_server(Room(), **opts) as two:
            wait_for(lambda: on_loop(one, lambda: (one.pubsub_stats() or {}).get("up")))
            wait_for(lambda: on_loop(two, lambda: (two.pubsub_stats() or {}).get("up")))
            with connect(url(one)) as a, connect(url(two)) as b, connect(url(two)) as c:
                for ws in (a, b, c):
                    assert ws.recv(timeout=TIMEOUT) == "joined"
                time.sleep(0.3)  # the nodes' SUBSCRIBEs reach Redis
                for i in range(20):
                    a.send(f"m{i}")
                for ws in (a, b, c):  # local and remote subscribers, in the publisher's order
                    assert [ws.recv(timeout=TIMEOUT) for _ in range(20)] == [
                        f"m{i}" for i in range(20)]
                b.send("from two")
                for ws in (a, b, c):
                    assert ws.recv(timeout=TIMEOUT) == "from two"
                with pytest.raises(TimeoutError):  # exactly one copy each
                    a.recv(timeout=0.3)
            stats = on_loop(two, two.pubsub_stats)
            assert stats["delivered"] == 20 and stats["dropped_own"] == 1 and stats["lost"] == 0


def test_local_delivery_goes_on_while_redis_is_down(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with running_server(Room(), pubsub_url=f"redis://127.0.0.1:{port}") as server:
        with connect(url(server)) as a, connect(url(server)) as b:
            assert a.recv(timeout=TIMEOUT) == "joined" and b.recv(timeout=TIMEOUT) == "joined"
            a.send("still here")
            assert a.recv(timeout=TIMEOUT) == "still here"
            assert b.recv(timeout=TIMEOUT) == "still here"
        stats = on_loop(server, server.pubsub_stats)
        assert stats["up"] == 0 and stats["dropped_down"] >= 1


def test_a_malformed_pubsub_url_is_one_sentence() -> None:
    with pytest.raises(ValueError, match="pubsub_url 'http://x'"):
        wsuv.Server(None, pubsub_url="http://x")


APP = '''\
import wsuv

class Room(wsuv.Handler):
    def on_open(self, ws):
        ws.subscribe("room")
        ws.send("joined")

    def on_message(self, ws, message):
        ws.server.publish("room", message)
'''


def test_workers_share_publishes_through_redis(tmp_path: Path) -> None:
    """--workers 2 splits connections; with --pubsub-url a publish in one worker
    reaches the subscribers in both."""
    (tmp_path / "roomapp.py").write_text(APP)
    with redis_server(tmp_path) as rport:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "wsuv.cli", "roomapp:Room", "--port", str(port),
             "--workers", "2", "--pubsub-url", f"redis://127.0.0.1:{rport}"],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            time.sleep(1.0)  # both workers connected to Redis
            with contextlib.ExitStack() as stack:
                clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/"))
                           for _ in range(8)]
                for ws in clients:
                    assert ws.recv(timeout=TIMEOUT) == "joined"
                time.sleep(0.3)
                clients[0].send("to everyone")
                for ws in clients:
                    assert ws.recv(timeout=TIMEOUT) == "to everyone"
                for ws in clients:  # and only once
                    with pytest.raises(TimeoutError):
                        ws.recv(timeout=0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_c_chat_rooms_span_workers_through_redis(tmp_path: Path) -> None:
    """examples/c/chat.c keeps rooms as topics: with --workers 2 and
    --pubsub-url a message reaches the room's members in both workers."""
    chat = Path(__file__).resolve().parents[2] / "examples" / "c" / "chat.c"
    with redis_server(tmp_path) as rport:
        port = free_port()
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "wsuv.cli", str(chat), "--port", str(port), "--workers", "2",
             "--pubsub-url", f"redis://127.0.0.1:{rport}"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            wait_port(port, timeout=60)  # the first start compiles
            time.sleep(1.0)
            with contextlib.ExitStack() as stack:
                lobby = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/lobby"))
                         for _ in range(6)]
                other = stack.enter_context(connect(f"ws://127.0.0.1:{port}/other"))
                for ws in [*lobby, other]:
                    assert str(ws.recv(timeout=TIMEOUT)).startswith("joined ")
                time.sleep(0.3)
                lobby[0].send("hello lobby")
                for ws in lobby:
                    assert ws.recv(timeout=TIMEOUT) == "hello lobby"
                with pytest.raises(TimeoutError):
                    other.recv(timeout=0.3)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
