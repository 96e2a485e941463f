"""csrc/redisbridge against real redis-server instances on loopback.

Each test starts its own redis-server on a free 127.0.0.1 port (no
persistence) and stops it at the end; the bridges run inside
build/tests/redis_bridge_test (tests/c/redis_bridge_test.c), driven by line
commands. Every wait is bounded in time, every loop in count.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "build" / "tests" / "redis_bridge_test"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server not installed (make deps installs it)")


# ---- a tiny RESP client, to look at and poke Redis from the outside --------

def resp(port: int, *args: bytes | str, timeout: float = 2.0) -> object:
    """Sends one command and returns the parsed reply."""
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    out = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        f = s.makefile("rb")
        return _read_reply(f)


def _read_reply(f: object) -> object:
    line = f.readline()  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]  # type: ignore[attr-defined]
    if kind == b"*":
        return [_read_reply(f) for _ in range(int(rest))]
    raise AssertionError(f"bad reply {line!r}")


class Redis:
    """One redis-server on 127.0.0.1:port that a test can kill, freeze, restart."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(self.tmp), *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                r = resp(self.port, "PING", timeout=0.5)
                if r == "PONG" or (isinstance(r, RuntimeError) and "NOAUTH" in str(r)):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start within 10 s")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    r = Redis(tmp_path)
    yield r
    r.stop()


# ---- the driver ------------------------------------------------------------

@pytest.fixture(scope="session")
def driver_bin() -> Path:
    """The driver binary; WSUV_REDIS_DRIVER names another build (e.g. one with
    -fsanitize=address,undefined) to run the same scenarios against."""
    other = os.environ.get("WSUV_REDIS_DRIVER")
    if other:
        return Path(other)
    subprocess.run(["make", "-s", "build/tests/redis_bridge_test"], cwd=ROOT, check=True,
                   timeout=300)
    return DRIVER


class Driver:
    def __init__(self, binary: Path, prefix: list[str] | None = None) -> None:
        self.proc = subprocess.Popen([*(prefix or []), str(binary)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"driver silent for {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError("driver exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, line: str, timeout: float = 15.0) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self._line(timeout)

    def ok(self, line: str, timeout: float = 15.0) -> str:
        out = self.cmd(line, timeout)
        assert out.startswith("ok"), f"{line!r} -> {out!r}"
        return out

    def msgs(self, name: str) -> list[tuple[str, int, bytes]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"msgs {name}\n".encode())
        self.proc.stdin.flush()
        out = []
        for _ in range(1_000_000):
            line = self._line(10)
            if line == "end":
                return out
            _, topic, opcode, hexpayload = (line.split(" ") + [""])[:4]
            out.append((topic, int(opcode), bytes.fromhex(hexpayload)))
        raise AssertionError("no end of msgs")

    def stats(self, name: str) -> dict[str, int]:
        line = self.cmd(f"stats {name}")
        assert line.startswith("stats "), line
        return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}

    def quit(self, timeout: float = 30.0) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"quit\n")
        self.proc.stdin.close()
        assert self._line(timeout) == "bye"
        rc = self.proc.wait(timeout)
        assert self.proc.stderr is not None
        return rc, self.proc.stderr.read().decode()


@pytest.fixture
def drv(driver_bin: Path) -> Iterator[Driver]:
    d = Driver(driver_bin)
    yield d
    if d.proc.poll() is None:
        rc, err = d.quit()
        assert rc == 0, err


def url(r: Redis, password: str | None = None) -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{r.port}/0"


FAST = "cto=500 cmd=500 hb=200 bmin=50 bmax=300"


def texts(msgs: list[tuple[str, int, bytes]]) -> list[str]:
    return [m[2].decode() for m in msgs]


# ---- scenarios ---------------------------------------------------------------

def test_two_bridges_exchange_exactly_once_in_order(redis: Redis, drv: Driver) -> None:
    for name in ("a", "b", "c"):
        drv.ok(f"new {name} {url(redis)} {FAST}")
        drv.ok(f"wait {name} up 5000")
    drv.ok("sub a room")
    drv.ok("sub b room")
    drv.ok("sub c other")
    drv.ok("sleep 200")  # the SUBSCRIBEs are answered
    assert drv.ok("pubn a room 300") == "ok sent=300 dropped=0"
    assert drv.ok("pubn b room 300") == "ok sent=300 dropped=0"
    assert drv.ok("pub a room 2 \x01bin") == "ok 0"
    assert drv.ok("waitmsgs a 300 5000") == "ok 300"
    assert drv.ok("waitmsgs b 301 5000") == "ok 301"
    drv.ok("sleep 200")  # nothing more arrives
    got_a, got_b = drv.msgs("a"), drv.msgs("b")
    # Each gets the other's messages, exactly once, in publish order; never its own.
    assert texts(got_a) == [f"b:{i}" for i in range(1, 301)]
    assert texts(got_b)[:300] == [f"a:{i}" for i in range(1, 301)]
    assert got_b[300] == ("room", 2, b"\x01bin")
    assert all(m[:2] == ("room", 1) for m in got_a + got_b[:300])
    assert drv.msgs("c") == []
    sa, sb, sc = drv.stats("a"), drv.stats("b"), drv.stats("c")
    assert sa["published"] == 301 and sa["dropped_own"] == 301 and sa["delivered"] == 300
    assert sb["published"] == 300 and sb["dropped_own"] == 300 and sb["delivered"] == 301
    assert sa["lost"] == sb["lost"] == 0 and sa["out_of_order"] == 0
    assert sc["delivered"] == 0 and sc["dropped_own"] == 0
    assert sa["pending_bytes"] == 0 and sa["reconnects"] == 0


def numsub(r: Redis, channel: str) -> int:
    reply = resp(r.port, "PUBSUB", "NUMSUB", channel)
    assert isinstance(reply, list)
    return int(reply[1])  # type: ignore[arg-type]


def test_subscribed_only_while_wanted(redis: Redis, drv: Driver) -> None:
    drv.ok(f"new a {url(redis)} {FAST} ns=app1")
    drv.ok(f"new b {url(redis)} {FAST} ns=app1")
    drv.ok("wait a up 5000")
    drv.ok("wait b up 5000")
    assert numsub(redis, "wsuv:app1:t") == 0
    assert drv.ok("sub a t") == "ok 1"
    assert drv.ok("sub a t") == "ok 0"  # idempotent
    drv.ok("sleep 200")
    assert numsub(redis, "wsuv:app1:t") == 1
    drv.ok("pubn b t 3")
    assert drv.ok("waitmsgs a 3 3000") == "ok 3"
    assert drv.ok("unsub a t") == "ok 1"
    assert drv.ok("unsub a t") == "ok 0"
    drv.ok("sleep 200")
    assert numsub(redis, "wsuv:app1:t") == 0
    drv.ok("pubn b t 3")
    assert drv.cmd("waitmsgs a 4 500") == "timeout 3"
    assert drv.stats("a")["channels"] == 0
    # Another namespace is another set of channels.
    drv.ok(f"new c {url(redis)} {FAST} ns=app2")
    drv.ok("wait c up 5000")
    drv.ok("sub c t")
    drv.ok("sub a t")
    drv.ok("sleep 200")
    assert numsub(redis, "wsuv:app2:t") == 1 and numsub(redis, "wsuv:app1:t") == 1
    drv.ok("pubn b t 2")
    assert drv.ok("waitmsgs a 5 3000") == "ok 5"
    assert drv.cmd("waitmsgs c 1 300") == "timeout 0"


def test_redis_killed_then_restarted(redis: Redis, drv: Driver) -> None:
    drv.ok(f"new a {url(redis)} {FAST}")
    drv.ok(f"new b {url(redis)} {FAST}")
    drv.ok("wait a up 5000")
    drv.ok("wait b up 5000")
    drv.ok("sub a t")
    drv.ok("sub b t")
    drv.ok("sub b joined-before")
    drv.ok("sleep 200")
    drv.ok("pubn a t 10")
    assert drv.ok("waitmsgs b 10 3000") == "ok 10"
    before = drv.stats("a")

    redis.kill()
    t0 = time.monotonic()
    drv.ok("wait a down 1000")  # EOF is seen at once, not after a timeout
    drv.ok("wait b down 1000")
    detected = time.monotonic() - t0
    assert detected < 1.0, detected
    # While down: publishes are dropped and counted, nothing is kept.
    assert drv.ok("pubn a t 20000", timeout=30) == "ok sent=0 dropped=20000"
    down = drv.stats("a")
    assert down["dropped_down"] == 20000
    assert down["pending_bytes"] == 0
    assert down["rss_kb"] - before["rss_kb"] < 2048, (before["rss_kb"], down["rss_kb"])
    # Topics joined and left during the outage.
    drv.ok("unsub b joined-before")
    drv.ok("sub b joined-during")
    drv.ok("sleep 300")  # a few failed reconnects (refused)

    redis.start()  # same port, empty
    drv.ok("wait a up 5000")
    drv.ok("wait b up 5000")
    drv.ok("sleep 200")
    assert numsub(redis, "wsuv:default:t") == 2
    assert numsub(redis, "wsuv:default:joined-during") == 1
    assert numsub(redis, "wsuv:default:joined-before") == 0
    drv.ok("pubn a t 5")
    assert drv.ok("waitmsgs b 15 3000") == "ok 15"
    got = texts(drv.msgs("b"))
    assert got == [f"a:{i}" for i in range(1, 11)] + [f"a:{i}" for i in range(1, 6)]
    sb, sa = drv.stats("b"), drv.stats("a")
    assert sb["lost"] == sa["dropped_down"] == 20000  # the receivers' gap = the drops
    assert sa["reconnects"] == 1 and sb["reconnects"] == 1


def test_resubscribes_many_topics_in_batches(redis: Redis, drv: Driver) -> None:
    """600 topics (more than two SUBSCRIBE batches of 256) come back after a
    restart; so does delivery on the last of them."""
    drv.ok(f"new a {url(redis)} {FAST}")
    drv.ok(f"new b {url(redis)} {FAST}")
    drv.ok("wait a up 5000")
    drv.ok("wait b up 5000")
    for i in range(600):
        drv.ok(f"sub a topic-{i}")
    drv.ok("sleep 300")

    def channels() -> int:
        reply = resp(redis.port, "PUBSUB", "CHANNELS", "wsuv:default:topic-*")
        assert isinstance(reply, list)
        return len(reply)

    assert channels() == 600
    redis.kill()
    drv.ok("wait a down 1000")
    redis.start()
    drv.ok("wait a up 5000")
    drv.ok("wait b up 5000")
    drv.ok("sleep 300")
    assert channels() == 600
    assert drv.stats("a")["channels"] == 600
    drv.ok("pub b topic-599 1 last")
    assert drv.ok("waitmsgs a 1 3000") == "ok 1"
    assert drv.msgs("a") == [("topic-599", 1, b"last")]


def test_redis_down_at_start(tmp_path: Path, drv: Driver) -> None:
    port = free_port()
    drv.ok(f"new a redis://127.0.0.1:{port}/0 {FAST}")
    drv.ok("sub a t")
    drv.ok("sleep 400")
    assert drv.stats("a")["up"] == 0
    assert "refused" in drv.cmd("err a").lower()
    assert drv.ok("pub a t 1 x") == "ok -1"  # WS_REDIS_EDOWN
    r = Redis.__new__(Redis)
    r.port, r.tmp, r.extra, r.proc = port, tmp_path, [], None
    r.start()
    try:
        drv.ok("wait a up 3000")
        drv.ok("sleep 200")
        assert numsub(r, "wsuv:default:t") == 1
    finally:
        r.stop()


def test_redis_frozen_then_resumed(redis: Redis, drv: Driver) -> None:
    drv.ok(f"new a {url(redis)} {FAST} maxpend=4000")
    drv.ok(f"new b {url(redis)} {FAST}")
    drv.ok("wait a up 5000")
    drv.ok("wait b up 5000")
    drv.ok("sub b t")
    drv.ok("sleep 200")
    redis.signal(signal.SIGSTOP)
    try:
        out = drv.ok("pubn a t 1000")
        sent = int(re.search(r"sent=(\d+)", out).group(1))  # type: ignore[union-attr]
        s = drv.stats("a")
        assert s["pending_bytes"] <= 4000
        assert s["dropped_full"] == 1000 - sent > 0  # bounded, then dropped
        t0 = time.monotonic()
        drv.ok("wait a down 3000")
        assert time.monotonic() - t0 < 1.5  # command timeout 500 ms
        s = drv.stats("a")
        assert s["timeouts"] >= 1 and s["pending_bytes"] == 0
        assert s["unconfirmed"] == sent  # sent into a frozen Redis: fate unknown
        assert "timeout" in drv.cmd("err a")
        drv.ok("sleep 600")  # reconnects to a frozen server time out too
        assert drv.stats("a")["up"] == 0
    finally:
        redis.signal(signal.SIGCONT)
    drv.ok("wait a up 5000")
    drv.ok("wait b up 5000")
    drv.ok("sleep 200")
    n0 = drv.stats("b")["delivered"]
    drv.ok("pubn a t 5")
    assert drv.ok(f"waitmsgs b {n0 + 5} 3000") == f"ok {n0 + 5}"


def test_client_kill_pubsub_reconnects_and_resubscribes(redis: Redis, drv: Driver) -> None:
    drv.ok(f"new a {url(redis)} {FAST}")
    drv.ok(f"new b {url(redis)} {FAST}")
    drv.ok("wait a up 5000")
    drv.ok("wait b up 5000")
    drv.ok("sub b t")
    drv.ok("sleep 200")
    assert resp(redis.port, "CLIENT", "KILL", "TYPE", "pubsub") == 2
    drv.ok("wait b down 1000")
    drv.ok("wait b up 3000")
    drv.ok("sleep 200")
    assert numsub(redis, "wsuv:default:t") == 1
    drv.ok("pubn a t 3")
    assert drv.ok("waitmsgs b 3 3000") == "ok 3"
    assert drv.stats("b")["reconnects"] == 1


def test_password(tmp_path: Path, drv: Driver) -> None:
    r = Redis(tmp_path, "--requirepass", "s3cret")
    try:
        drv.ok(f"new good {url(r, 's3cret')} {FAST}")
        drv.ok(f"new bad {url(r, 'wrong')} {FAST}")
        drv.ok(f"new none {url(r)} {FAST}")
        drv.ok("wait good up 5000")
        drv.ok("sleep 500")
        assert drv.stats("bad")["up"] == 0 and drv.stats("none")["up"] == 0
        bad, none = drv.cmd("err bad"), drv.cmd("err none")
        assert "Redis refused AUTH" in bad and "WRONGPASS" in bad, bad
        assert "NOAUTH" in none, none
        assert drv.ok("pub bad t 1 x") == "ok -1"
    finally:
        r.stop()


def envelope(origin: bytes, seq: int, payload: bytes, opcode: int = 1, epoch: int = 1,
             version: int = 2) -> bytes:
    if version == 1:  # the old format: one sequence across all channels, no epoch
        return b"wU\x01" + bytes([opcode]) + origin + seq.to_bytes(8, "big") + payload
    return (b"wU" + bytes([version, opcode]) + origin + epoch.to_bytes(4, "big")
            + seq.to_bytes(8, "big") + payload)


def test_sequence_gap_is_counted_as_loss(redis: Redis, drv: Driver) -> None:
    drv.ok(f"new a {url(redis)} {FAST}")
    drv.ok("wait a up 5000")
    drv.ok("sub a t")
    drv.ok("sleep 200")
    ch = "wsuv:default:t"
    x = bytes(range(100, 116))
    for seq in (1, 2, 6, 7):  # 3, 4, 5 never sent
        assert resp(redis.port, "PUBLISH", ch, envelope(x, seq, b"m%d" % seq)) == 1
    resp(redis.port, "PUBLISH", ch, envelope(x, 7, b"again"))  # not above the last
    resp(redis.port, "PUBLISH", ch, b"not an envelope")
    resp(redis.port, "PUBLISH", ch, envelope(x, 8, b"bad opcode", opcode=9))
    resp(redis.port, "PUBLISH", ch, envelope(x, 8, b"version 1", version=1))
    resp(redis.port, "PUBLISH", ch, envelope(x, 8, b"version 3", version=3))
    origin = bytes.fromhex(drv.cmd("origin a").split()[1])
    resp(redis.port, "PUBLISH", ch, envelope(origin, 99, b"mine"))
    # the publisher's counter table was full: epoch 2 restarts at 1; 2 of it were missed
    resp(redis.port, "PUBLISH", ch, envelope(x, 3, b"e2", epoch=2))
    resp(redis.port, "PUBLISH", ch, envelope(x, 50, b"e1 late", epoch=1))  # older epoch
    assert drv.ok("waitmsgs a 7 3000") == "ok 7"
    drv.ok("sleep 200")
    assert texts(drv.msgs("a")) == ["m1", "m2", "m6", "m7", "again", "e2", "e1 late"]
    s = drv.stats("a")
    assert s["lost"] == 3 + 2 and s["out_of_order"] == 2
    assert s["malformed"] == 2 and s["bad_version"] == 2
    assert s["dropped_own"] == 1 and s["delivered"] == 7
    assert s["seq_streams"] == 1


def test_other_topics_publishes_are_no_loss(redis: Redis, drv: Driver) -> None:
    """Publish X, Y, X with only X subscribed: nothing was lost (the old
    per-origin sequence counted Y as a gap)."""
    for name in ("a", "b"):
        drv.ok(f"new {name} {url(redis)} {FAST}")
        drv.ok(f"wait {name} up 5000")
    drv.ok("sub a x")
    drv.ok("sleep 200")
    for topic in ("x", "y", "x"):
        assert drv.ok(f"pub b {topic} 1 {topic}") == "ok 0"
    assert drv.ok("waitmsgs a 2 3000") == "ok 2"
    drv.ok("sleep 200")
    assert texts(drv.msgs("a")) == ["x", "x"]
    s = drv.stats("a")
    assert s["lost"] == 0 and s["out_of_order"] == 0 and s["delivered"] == 2
    assert drv.stats("b")["seq_topics"] == 2


def test_disjoint_and_overlapping_topic_sets_lose_nothing(redis: Redis, drv: Driver) -> None:
    subs = {"a": ["x", "y"], "b": ["y", "z"], "c": ["z"], "d": ["w"]}
    for name, topics in subs.items():
        drv.ok(f"new {name} {url(redis)} {FAST}")
        drv.ok(f"wait {name} up 5000")
        for t in topics:
            drv.ok(f"sub {name} {t}")
    drv.ok("sleep 300")
    rounds = 50
    for i in range(rounds):  # every node publishes on every topic, interleaved
        for name in subs:
            for t in ("x", "y", "z", "w"):
                drv.ok(f"pub {name} {t} 1 {name}{t}{i}")
    expect = {name: sum(rounds * (len(subs) - 1) for _ in topics)
              for name, topics in subs.items()}
    for name, n in expect.items():
        assert drv.ok(f"waitmsgs {name} {n} 10000") == f"ok {n}"
    drv.ok("sleep 300")
    for name, topics in subs.items():
        got = drv.msgs(name)
        st = drv.stats(name)
        assert len(got) == expect[name] and {m[0] for m in got} == set(topics)
        assert st["lost"] == 0 and st["out_of_order"] == 0, (name, st)
        assert st["delivered"] == expect[name] and st["dropped_own"] == rounds * len(topics)
        assert st["seq_streams"] == len(topics) * (len(subs) - 1)
        assert st["seq_topics"] == 4 and st["seq_resets"] == 0


def test_unsubscribed_time_is_no_loss(redis: Redis, drv: Driver) -> None:
    for name in ("a", "b"):
        drv.ok(f"new {name} {url(redis)} {FAST}")
        drv.ok(f"wait {name} up 5000")
    for rnd in range(3):
        drv.ok("sub a t")
        drv.ok("sleep 150")
        drv.ok("pubn b t 5")
        assert drv.ok(f"waitmsgs a {5 * (rnd + 1)} 3000") == f"ok {5 * (rnd + 1)}"
        drv.ok("unsub a t")
        drv.ok("sleep 150")
        drv.ok("pubn b t 7")  # nobody wants these
    drv.ok("sleep 200")
    s = drv.stats("a")
    assert s["delivered"] == 15 and s["lost"] == 0 and s["out_of_order"] == 0
    assert s["seq_streams"] == 0


def test_killed_subscriber_connection_loss_is_counted(redis: Redis, drv: Driver) -> None:
    """CLIENT KILL TYPE pubsub mid-stream: what b published while a's
    subscribe connection was away is counted as lost, exactly."""
    for name in ("a", "b"):
        drv.ok(f"new {name} {url(redis)} bmin=300 bmax=400 cto=500 cmd=500 hb=200")
        drv.ok(f"wait {name} up 5000")
    drv.ok("sub a t")
    drv.ok("sub a other")
    drv.ok("sleep 200")
    assert drv.ok("pubn b t 100") == "ok sent=100 dropped=0"
    assert drv.ok("pubn b other 1") == "ok sent=1 dropped=0"  # a knows b's "other" stream
    assert drv.ok("waitmsgs a 101 3000") == "ok 101"
    assert resp(redis.port, "CLIENT", "KILL", "TYPE", "pubsub") == 2
    drv.ok("wait a down 1000")
    assert drv.ok("pubn b t 100") == "ok sent=100 dropped=0"  # a is away (>= 150 ms)
    assert drv.ok("pubn b other 10") == "ok sent=10 dropped=0"
    drv.ok("wait a up 5000")
    drv.ok("wait b up 5000")
    drv.ok("sleep 200")
    assert drv.ok("pubn b t 100") == "ok sent=100 dropped=0"
    # a gap shows at the stream's next message: one more on "other" reveals its 10
    assert drv.ok("pubn b other 1") == "ok sent=1 dropped=0"
    drv.ok("sleep 300")
    got = [m for m in drv.msgs("a") if m[0] == "t"]
    s, sb = drv.stats("a"), drv.stats("b")
    assert sb["published"] == 312
    assert len(got) < 300 and s["lost"] == 312 - s["delivered"], s
    assert s["lost"] >= 110 and s["out_of_order"] == 0


def test_unix_socket(tmp_path: Path, drv: Driver) -> None:
    sock = tmp_path / "redis.sock"
    r = Redis(tmp_path, "--unixsocket", str(sock))
    try:
        drv.ok(f"new a unix://{sock}?db=1 {FAST}")
        drv.ok(f"new b redis+unix://{sock} {FAST}")
        drv.ok("wait a up 5000")
        drv.ok("wait b up 5000")
        drv.ok("sub a t")
        drv.ok("sleep 200")
        drv.ok("pubn b t 4")
        assert drv.ok("waitmsgs a 4 3000") == "ok 4"
    finally:
        r.stop()


def test_close_during_reconnect_and_during_connect(redis: Redis, drv: Driver) -> None:
    """Shutdown while backing off, and while a connect hangs on a frozen Redis:
    the bridge closes at once and frees everything (the driver's loop ends
    with no handle left: exit 0; LSan/valgrind runs check the memory)."""
    drv.ok(f"new a {url(redis)} {FAST}")
    drv.ok("wait a up 5000")
    drv.ok("sub a t")
    drv.ok("pubn a t 3")
    redis.signal(signal.SIGSTOP)
    try:
        drv.ok(f"new b {url(redis)} {FAST} cto=5000")  # its connect will hang
        drv.ok("sleep 100")
        drv.ok("close b")
    finally:
        redis.signal(signal.SIGCONT)
    redis.kill()
    drv.ok("wait a down 1000")
    drv.ok("sleep 120")  # a refused retry or two
    drv.ok("close a")
    assert drv.cmd("stats a") == "err no such bridge"


def test_reconnect_backs_off_exponentially_with_jitter(tmp_path: Path, drv: Driver) -> None:
    """Nothing listens: each connection retries after 50, 100, 200, 400, 400...
    ms, each delay drawn from [base/2, base]. Over 2 s that is 8 (every delay
    at its longest) to 13 (every delay at its shortest) attempts per
    connection, one of slack either side; a fixed 50 ms retry would make 40."""
    port = free_port()
    drv.ok(f"new a redis://127.0.0.1:{port}/0 bmin=50 bmax=400")
    drv.ok("sleep 2000", timeout=10)
    attempts = drv.stats("a")["connects"] / 2
    assert 7 <= attempts <= 14, attempts


def test_bad_config_is_a_sentence(drv: Driver) -> None:
    assert drv.cmd("new a redis://127.0.0.1:0/0") == "err bad port (want 1..65535)"
    out = drv.cmd("new a redis://127.0.0.1:6379/0 bmin=10 bmax=5")
    assert out.startswith("err bad Redis backoff"), out


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="make asan preloads ASan, which valgrind cannot run under")
def test_under_valgrind(tmp_path: Path, driver_bin: Path) -> None:
    """Exchange, SIGKILL, restart and close under memcheck: no errors, no leaks."""
    redis = Redis(tmp_path)
    d = Driver(driver_bin, ["valgrind", "-q", "--leak-check=full", "--show-leak-kinds=all",
                            "--errors-for-leak-kinds=all", "--error-exitcode=1"])
    try:
        d.ok(f"new a {url(redis)} {FAST} cto=3000 cmd=3000", timeout=60)
        d.ok(f"new b {url(redis)} {FAST} cto=3000 cmd=3000")
        d.ok("wait a up 10000", timeout=20)
        d.ok("wait b up 10000", timeout=20)
        d.ok("sub a t")
        d.ok("sub b t")
        d.ok("sleep 300")
        d.ok("pubn a t 50")
        assert d.ok("waitmsgs b 50 10000", timeout=20) == "ok 50"
        redis.kill()
        d.ok("wait b down 3000", timeout=10)
        d.ok("pubn a t 10")
        redis.start()
        d.ok("wait a up 10000", timeout=20)
        d.ok("wait b up 10000", timeout=20)
        d.ok("sleep 300")
        d.ok("pubn a t 5")
        assert d.ok("waitmsgs b 55 10000", timeout=20) == "ok 55"
        d.ok("close a")
        rc, err = d.quit(timeout=60)
        assert rc == 0, err
        assert err == "", err
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        redis.stop()
