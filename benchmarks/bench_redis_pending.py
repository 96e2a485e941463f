"""How large the Redis bridge's max_pending_bytes must be for bursts.

Runs tests/c/redis_bridge_test (make build/tests/redis_bridge_test) against a
redis-server of its own on a free 127.0.0.1 port: node `a` publishes BURSTS
bursts of COUNT publishes ("a:<i>" padded to SIZE bytes, one call each, as a handler's loop
would), the loop running GAP ms between bursts; node `b` subscribes to the
topic and receives. For each bound it prints what `a` dropped (dropped_full),
what `b` received, and the peak of unanswered bytes seen.

    .venv/bin/python benchmarks/bench_redis_pending.py [--bursts 20 --count 5000 --gap 1]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "build" / "tests" / "redis_bridge_test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Driver:
    def __init__(self) -> None:
        self.p = subprocess.Popen([str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)

    def cmd(self, line: str) -> str:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def stats(self, name: str) -> dict[str, int]:
        out = self.cmd(f"stats {name}").split()[1:]
        return {k: int(v) for k, v in (kv.split("=") for kv in out)}

    def close(self) -> None:
        self.cmd("quit")
        self.p.wait(10)


def run(port: int, maxpend: int, bursts: int, count: int, gap: int,
        size: int) -> dict[str, int]:
    d = Driver()
    try:
        url = f"redis://127.0.0.1:{port}"
        assert d.cmd(f"new a {url} maxpend={maxpend}") == "ok"
        assert d.cmd(f"new b {url}") == "ok"
        assert d.cmd("wait a up 5000") == "ok" and d.cmd("wait b up 5000") == "ok"
        d.cmd("sub b t")
        d.cmd("sleep 200")
        dropped = peak = 0
        for _ in range(bursts):
            reply = d.cmd(f"pubn a t {count} {size}")
            dropped += int(reply.split("dropped=")[1])
            peak = max(peak, d.stats("a")["pending_bytes"])
            d.cmd(f"sleep {gap}")
        got = d.cmd(f"waitmsgs b {bursts * count - dropped} 20000").split()
        st = d.stats("a")
        return {"maxpend": maxpend, "dropped": dropped, "received": int(got[1]),
                "peak_pending": peak, "dropped_full": st["dropped_full"]}
    finally:
        d.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bursts", type=int, default=20)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--gap", type=int, default=1, help="ms of loop between bursts")
    p.add_argument("--size", type=int, default=64, help="payload bytes (up to 4096)")
    p.add_argument("--bounds", default="1,4,16,32,64", help="MiB")
    args = p.parse_args()
    if not DRIVER.exists() or shutil.which("redis-server") is None:
        print("needs build/tests/redis_bridge_test and redis-server")
        return 1
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", tmp],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            total = args.bursts * args.count
            print(f"{args.bursts} bursts x {args.count} publishes of {args.size} B, "
                  f"{args.gap} ms apart ({total} in all)")
            print("| max_pending_bytes | dropped | received by b | peak unanswered bytes |")
            print("|---:|---:|---:|---:|")
            for mib in (int(x) for x in args.bounds.split(",")):
                r = run(port, mib << 20, args.bursts, args.count, args.gap, args.size)
                print(f"| {mib} MiB | {r['dropped']:,} | {r['received']:,} | "
                      f"{r['peak_pending']:,} |")
        finally:
            redis.terminate()
            redis.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
