"""publish across `wsuv-serve --workers N` without Redis: the worker bus (a hub
process the supervisor runs, csrc/bushub.c; a link per worker,
csrc/workerbus.c), tested over real processes: clients on every worker, each
subscriber gets every message exactly once and in the publisher's order."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import free_port, wait_port
from tests.server.srvkit import TIMEOUT

APP = '''\
import json, os, threading, time
import wsuv


class Room(wsuv.Handler):
    """Every connection joins 'room'; what it sends is published there."""

    def on_open(self, ws):
        ws.subscribe("room")
        ws.send(f"joined {os.getpid()}")

    def on_message(self, ws, message):
        if message.startswith("burst "):  # burst N SIZE: N publishes at once
            _, n, size = message.split()
            body = "x" * int(size)
            t0 = time.monotonic()
            for i in range(int(n)):
                ws.server.publish("room", f"{i} {body}")
            ws.send(f"burst took {time.monotonic() - t0:.3f}")
        elif message == "stats":
            ws.send("stats " + json.dumps(ws.server.pubsub_stats()))
        elif message == "hubstats":
            ws.send("hubstats " + json.dumps(ws.server.hub_stats()))
        elif message == "hubstats from a thread":
            out = []

            def ask():
                try:
                    ws.server.hub_stats()
                except RuntimeError as exc:
                    out.append(str(exc))

            t = threading.Thread(target=ask)
            t.start()
            t.join()
            ws.send("refused " + out[0])
        elif message == "big":  # over the bus's 64 MiB: stays in this worker
            ws.send(f"big {ws.server.publish('big', bytes((64 << 20) + 1))}")
        elif message.startswith("thread "):  # published from another thread
            server, text = ws.server, message[7:]
            threading.Thread(target=server.publish, args=("room", text)).start()
        else:
            ws.server.publish("room", message)


class AsyncRoom:
    """The same room with async methods (run inside asyncio by wsuv.aio)."""

    async def on_open(self, ws):
        ws.subscribe("room")
        ws.send(f"joined {os.getpid()}")

    async def on_message(self, ws, message):
        if message == "stats":
            ws.send("stats " + json.dumps(ws.server.pubsub_stats()))
        else:
            ws.server.publish("room", message)
'''


class Cluster:
    """A running `wsuv-serve --workers N` and its clients."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, stack: contextlib.ExitStack):
        self.proc = proc
        self.port = port
        self.stack = stack
        self.clients: list[tuple[ClientConnection, int]] = []  # (client, its worker's pid)

    def join(self) -> tuple[ClientConnection, int]:
        ws = self.stack.enter_context(connect(f"ws://127.0.0.1:{self.port}/"))
        hello = str(ws.recv(timeout=TIMEOUT))
        assert hello.startswith("joined ")
        entry = (ws, int(hello.split()[1]))
        self.clients.append(entry)
        return entry

    def spread(self, workers: int, per_worker: int = 1, tries: int = 150) -> None:
        """Connect until every worker has per_worker clients (the kernel picks)."""
        for _ in range(tries):
            pids = [pid for _ws, pid in self.clients]
            if len(set(pids)) >= workers and all(
                    pids.count(p) >= per_worker for p in set(pids)):
                return
            self.join()
            time.sleep(0.02)  # every worker back in epoll_wait: each may win the next accept
        raise AssertionError(f"clients did not reach {workers} workers in {tries} connects")

    def by_worker(self) -> dict[int, list[ClientConnection]]:
        out: dict[int, list[ClientConnection]] = {}
        for ws, pid in self.clients:
            out.setdefault(pid, []).append(ws)
        return out

    def children(self) -> list[int]:
        """The supervisor's children now: the workers and the hub."""
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = Path(f"/proc/{d}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    out.append(int(d))
        return out

    def settle(self, clients: list[ClientConnection] | None = None) -> None:
        """Until every worker's SUB has reached the hub: a probe published from
        one client reaches all of them (bounded); then drain the probes."""
        wss = clients if clients is not None else [ws for ws, _pid in self.clients]
        pending = set(range(len(wss)))
        deadline = time.monotonic() + 15
        while pending and time.monotonic() < deadline:
            wss[0].send("probe")
            time.sleep(0.1)
            for i in list(pending):
                with contextlib.suppress(TimeoutError):
                    while True:
                        if wss[i].recv(timeout=0) == "probe":
                            pending.discard(i)
        assert not pending, f"{len(pending)} clients never got a probe"
        for ws in wss:
            with contextlib.suppress(TimeoutError):
                while True:
                    ws.recv(timeout=0.3)


@contextlib.contextmanager
def cluster(tmp: Path, workers: int, app: str = "roomapp:Room",
            *extra: str) -> Iterator[Cluster]:
    (tmp / "roomapp.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsuv.cli", app, "--port", str(port), "--workers", str(workers),
         *extra], cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(tmp / "serve.log", "wb"))
    try:
        wait_port(port, timeout=30)
        with contextlib.ExitStack() as stack:
            yield Cluster(proc, port, stack)
    finally:
        for pid in Cluster(proc, port, contextlib.ExitStack()).children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # a stopped worker must see the SIGTERM
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def recv_n(ws: ClientConnection, n: int, timeout: float = TIMEOUT) -> list[str]:
    return [str(ws.recv(timeout=timeout)) for _ in range(n)]


def assert_silent(clients: list[ClientConnection]) -> None:
    for ws in clients:  # exactly once: nothing more comes
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)


def stats_of(ws: ClientConnection) -> dict[str, Any]:
    ws.send("stats")
    reply = str(ws.recv(timeout=TIMEOUT))
    assert reply.startswith("stats ")
    out: dict[str, Any] = json.loads(reply[6:])
    return out


def hub_stats_of(ws: ClientConnection) -> dict[str, Any]:
    ws.send("hubstats")
    reply = str(ws.recv(timeout=TIMEOUT))
    assert reply.startswith("hubstats ")
    out: dict[str, Any] = json.loads(reply[9:])
    return out


def test_the_hubs_counters_are_readable_while_it_runs(tmp_path: Path) -> None:
    """Server.hub_stats() in every worker: the hub's counters as of its latest
    report (once a second), exact for publishes made since."""
    with cluster(tmp_path, 2) as c:
        c.spread(2)
        c.settle()
        time.sleep(1.5)  # a report after the probes (one a second)
        a, b = (wss[0] for wss in c.by_worker().values())
        before = hub_stats_of(a)
        assert set(before) == {"links", "accepted", "received", "forwarded", "dropped_full",
                               "malformed", "topics", "age_ms"}
        assert before["links"] == 2 and before["accepted"] >= 2 and before["topics"] == 1
        assert before["malformed"] == 0 and before["dropped_full"] == 0
        assert 0 <= before["age_ms"] < 3000
        for i in range(20):
            a.send(f"n{i}")
        for ws in (a, b):  # a's own copies too
            assert recv_n(ws, 20) == [f"n{i}" for i in range(20)]
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the next report, in each worker
            seen = {"a": hub_stats_of(a), "b": hub_stats_of(b)}
            if all(s["received"] >= before["received"] + 20 for s in seen.values()):
                break
            time.sleep(0.2)
        for s in seen.values():  # one hub's counters, whichever worker asks
            assert s["received"] - before["received"] == 20
            assert s["forwarded"] - before["forwarded"] == 20  # to the one other worker
            assert s["links"] == 2 and s["dropped_full"] == 0 and s["age_ms"] < 3000
        a.send("hubstats from a thread")
        assert str(a.recv(timeout=TIMEOUT)) == (
            "refused Server.hub_stats must be called on the loop thread")


@pytest.mark.parametrize("workers", [2, 3])
def test_every_subscriber_once_in_order(tmp_path: Path, workers: int) -> None:
    with cluster(tmp_path, workers) as c:
        c.spread(workers, per_worker=2)
        c.settle()
        everyone = [ws for ws, _pid in c.clients]
        before = {pid: stats_of(ws[0]) for pid, ws in c.by_worker().items()}
        for sender in {pid: ws for ws, pid in c.clients}.values():  # from each worker in turn
            for i in range(30):
                sender.send(f"m{i}")
            for ws in everyone:
                assert recv_n(ws, 30) == [f"m{i}" for i in range(30)]
        assert_silent(everyone)
        for pid, ws in c.by_worker().items():
            st = stats_of(ws[0])
            assert st["up"] == 1 and st["lost"] == 0 and st["dropped_full"] == 0
            assert st["published"] - before[pid]["published"] == 30
            assert st["delivered"] - before[pid]["delivered"] == 30 * (workers - 1)


def test_publish_from_another_thread_reaches_every_worker(tmp_path: Path) -> None:
    with cluster(tmp_path, 2) as c:
        c.spread(2)
        c.settle()
        c.clients[0][0].send("thread hello")
        for ws, _pid in c.clients:
            assert recv_n(ws, 1) == ["hello"]
        assert_silent([ws for ws, _ in c.clients])


def test_async_handlers_publish_across_workers(tmp_path: Path) -> None:
    with cluster(tmp_path, 2, "roomapp:AsyncRoom") as c:
        c.spread(2, per_worker=2)
        c.settle()
        for i in range(20):
            c.clients[0][0].send(f"a{i}")
        for ws, _pid in c.clients:
            assert recv_n(ws, 20) == [f"a{i}" for i in range(20)]
        assert_silent([ws for ws, _ in c.clients])
        assert stats_of(c.clients[0][0])["up"] == 1


def test_a_killed_worker_is_restarted_and_resubscribes(tmp_path: Path) -> None:
    with cluster(tmp_path, 2) as c:
        c.spread(2)
        before = {pid for _ws, pid in c.clients}
        victim = c.clients[0][1]
        survivor = next(ws for ws, pid in c.clients if pid != victim)
        os.kill(victim, signal.SIGKILL)
        fresh = None
        deadline = time.monotonic() + 20
        while fresh is None and time.monotonic() < deadline:  # the restarted one takes a client
            try:
                ws, pid = c.join()
            except OSError:
                time.sleep(0.2)
                continue
            if pid not in before:
                fresh = ws
        assert fresh is not None, "no client reached the restarted worker"
        c.settle([survivor, fresh])
        survivor.send("after the restart")
        assert recv_n(fresh, 1) == ["after the restart"]
        fresh.send("from the new worker")
        assert "from the new worker" in recv_n(survivor, 2)


def test_a_killed_hub_is_restarted_and_the_workers_resubscribe(tmp_path: Path) -> None:
    with cluster(tmp_path, 2) as c:
        c.spread(2)
        workers = {pid for _ws, pid in c.clients}
        hubs = [p for p in c.children() if p not in workers]
        assert len(hubs) == 1
        os.kill(hubs[0], signal.SIGKILL)
        a = next(ws for ws, pid in c.clients if pid == min(workers))
        b = next(ws for ws, pid in c.clients if pid == max(workers))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the supervisor restarts it; the links come back
            if stats_of(a)["up"] and stats_of(b)["up"] and any(
                    p not in workers and p != hubs[0] for p in c.children()):
                break
            time.sleep(0.2)
        c.settle()
        a.send("through the new hub")
        assert recv_n(b, 1) == ["through the new hub"]
        assert stats_of(b)["reconnects"] >= 1


def test_a_stopped_worker_does_not_block_the_others(tmp_path: Path) -> None:
    """SIGSTOP one of three workers, publish ~11 MB from another: the third
    gets everything at once; the hub's queue for the stopped one is bounded, and
    what it dropped is counted there as lost, exactly what its client misses."""
    n, size = 60000, 150
    with cluster(tmp_path, 3) as c:
        c.spread(3)
        first = {}
        for ws, pid in c.clients:
            if pid in first:
                ws.close()  # one client per worker: the others would hold 11 MB each
            else:
                first[pid] = ws
        a, frozen, other = list(first.items())
        c.settle(list(first.values()))
        before = stats_of(frozen[1])
        os.kill(frozen[0], signal.SIGSTOP)
        try:
            a[1].send(f"burst {n} {size}")
            got = recv_n(a[1], n + 1)
            assert got[0].startswith("0 ") and got[-1].startswith("burst took ")
            assert float(got[-1].split()[-1]) < 5.0  # the publishes never waited
            seen = recv_n(other[1], n, timeout=10)
            assert [int(m.split()[0]) for m in seen] == list(range(n))
        finally:
            os.kill(frozen[0], signal.SIGCONT)
        received = []  # what the hub had queued for it, until it has all been read
        for _ in range(n):
            try:
                received.append(int(str(frozen[1].recv(timeout=2)).split()[0]))
            except TimeoutError:
                break
        a[1].send("after")  # the next message shows the gap (sent once the queue drained,
        assert frozen[1].recv(timeout=TIMEOUT) == "after"  # or it would be dropped too)
        assert received == sorted(received) and len(received) < n  # in order, some dropped
        st = stats_of(frozen[1])
        assert st["lost"] - before["lost"] == n - len(received)
        assert st["delivered"] - before["delivered"] == len(received) + 1


def test_the_c_chat_example_spans_workers_without_redis(tmp_path: Path) -> None:
    """examples/c/chat.c keeps rooms as topics (the C host table's publish):
    with --workers 2 a room's message reaches its members in both workers."""
    chat = Path(__file__).resolve().parents[2] / "examples" / "c" / "chat.c"
    port = free_port()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsuv.cli", str(chat), "--port", str(port), "--workers", "2"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=60)  # the first start compiles
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
            assert_silent([*lobby, other])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_frozen_hub_blocks_no_worker(tmp_path: Path) -> None:
    """SIGSTOP the hub: a worker's publishes still reach its own subscribers at
    once; what does not fit its bounded queue to the hub is dropped and counted
    (dropped_full), and once the hub runs again the other worker gets exactly
    what was queued, in order."""
    n, size = 60000, 150
    with cluster(tmp_path, 2) as c:
        c.spread(2)
        first: dict[int, ClientConnection] = {}
        for ws, pid in c.clients:
            if pid in first:
                ws.close()
            else:
                first[pid] = ws
        (_apid, a), (_bpid, b) = list(first.items())
        hub = next(p for p in c.children() if p not in first)
        c.settle(list(first.values()))
        before = stats_of(a)
        os.kill(hub, signal.SIGSTOP)
        try:
            a.send(f"burst {n} {size}")
            got = recv_n(a, n + 1)
            assert float(got[-1].split()[-1]) < 5.0  # never waited for the hub
            after = stats_of(a)
        finally:
            os.kill(hub, signal.SIGCONT)
        sent = after["published"] - before["published"]
        dropped = after["dropped_full"] - before["dropped_full"]
        assert dropped > 0 and sent + dropped == n
        seen = [int(m.split()[0]) for m in recv_n(b, sent, timeout=10)]
        assert seen == list(range(sent))  # the first ones, in order: the queue drops the newest
        assert_silent([b])


def test_an_oversized_publish_is_counted_and_logged_once(tmp_path: Path) -> None:
    """Over 64 MiB a publish reaches this worker's subscribers only: counted in
    pubsub_stats()["dropped_oversize"], one warning; the hub logs its counters
    when it stops."""
    with cluster(tmp_path, 2) as c:
        c.spread(2)
        c.settle()
        ws = c.clients[0][0]
        before = stats_of(ws)
        for _ in range(2):
            ws.send("big")
            assert str(ws.recv(timeout=TIMEOUT)) == "big 0"
        after = stats_of(ws)
        assert before["dropped_oversize"] == 0 and after["dropped_oversize"] == 2
        assert after["published"] == before["published"] and after["up"] == 1
    log = (tmp_path / "serve.log").read_text()
    assert log.count("reached only this worker's subscribers") == 1, log
    hub = [line for line in log.splitlines() if "worker bus hub stopped:" in line]
    assert len(hub) == 1, log
    fields = dict(kv.split("=") for kv in hub[0].split("stopped: ")[1].split())
    assert set(fields) == {"accepted", "received", "forwarded", "dropped_full", "malformed"}
    assert int(fields["accepted"]) >= 2 and int(fields["forwarded"]) >= 1
    assert int(fields["malformed"]) == 0
