"""examples/cluster, run as its README says: `wsuv-serve chat:app --workers 3`
alone, then two servers of two workers each on one redis-server behind nginx.
Every member of a room gets each message exactly once, whichever process
holds it; other rooms get nothing."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import free_port, wait_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@contextlib.contextmanager
def process(args: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(port: int, tmp: Path, *extra: str) -> contextlib.AbstractContextManager[
        subprocess.Popen[bytes]]:
    return process([sys.executable, "-m", "wsuv.cli", "chat:app", "--port", str(port), *extra],
                   EXAMPLE, tmp / f"serve-{port}.log")


def drain(clients: list[ClientConnection]) -> None:
    for ws in clients:
        with contextlib.suppress(TimeoutError):
            while True:
                ws.recv(timeout=0.3)


def join(port: int, room: str, name: str, stack: contextlib.ExitStack) -> tuple[
        ClientConnection, str]:
    ws = stack.enter_context(connect(f"ws://127.0.0.1:{port}/{room}?name={name}"))
    hello = str(ws.recv(timeout=5))
    assert hello.startswith(f"* you are {name} in {room} (worker ")
    return ws, hello.rsplit(" ", 1)[1].rstrip(")")


def check_room(port: int, n: int, want_workers: int) -> None:
    with contextlib.ExitStack() as stack:
        members = [join(port, "lobby", f"u{i}", stack) for i in range(n)]
        other, _ = join(port, "other", "x", stack)
        assert len({pid for _ws, pid in members}) >= want_workers, members
        # Until every worker's subscription has reached the hub or Redis: probes
        # from the first member, until each member has seen one (bounded).
        pending = set(range(n))
        deadline = time.monotonic() + 15
        while pending and time.monotonic() < deadline:
            members[0][0].send("probe")
            time.sleep(0.1)
            for i in list(pending):
                with contextlib.suppress(TimeoutError):
                    while True:
                        if members[i][0].recv(timeout=0) == "u0: probe":
                            pending.discard(i)
        assert not pending, f"{len(pending)} members never got a probe"
        drain([ws for ws, _ in members])
        drain([other])
        members[0][0].send("hello room")
        for ws, _pid in members:
            assert ws.recv(timeout=5) == "u0: hello room"
        for ws in [*(m for m, _ in members), other]:  # exactly once, and not elsewhere
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.3)


def test_one_machine_many_workers(tmp_path: Path) -> None:
    port = free_port()
    with serve(port, tmp_path, "--workers", "3"):
        wait_port(port, timeout=30)
        check_room(port, 12, 2)


def test_two_servers_one_redis_behind_nginx(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: make test installs it")
    assert Path(NGINX).exists(), "nginx is missing: make test installs nginx-light"
    rport, n1, n2, front = free_port(), free_port(), free_port(), free_port()
    conf = (EXAMPLE / "nginx.conf").read_text()
    for name, value in {"RUNDIR": str(tmp_path), "PORT": str(front), "NODE1_PORT": str(n1),
                        "NODE2_PORT": str(n2)}.items():
        conf = conf.replace(f"@{name}@", value)
    (tmp_path / "nginx.conf").write_text(conf)
    redis = ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)]
    url = f"redis://127.0.0.1:{rport}"
    with process(redis, tmp_path, tmp_path / "redis.log"):
        wait_port(rport)
        with serve(n1, tmp_path, "--workers", "2", "--pubsub-url", url), \
                serve(n2, tmp_path, "--workers", "2", "--pubsub-url", url), \
                process([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                         "-g", "daemon off;"], tmp_path, tmp_path / "nginx.out"):
            for p in (n1, n2, front):
                wait_port(p, timeout=30)
            check_room(front, 10, 2)  # round robin: both servers (which worker: the kernel)
