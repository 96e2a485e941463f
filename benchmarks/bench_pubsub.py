"""Publish fan-out: deliveries per server CPU-second, across workers too, and
memory per subscription.

    .venv/bin/python benchmarks/bench_pubsub.py [--quick] [--servers wsuv,wsuv-w2]
        [--scenarios pub1,pub100,mem]

Scenarios (build/loadgen in broadcast mode: 1 sender and 1,000 receivers, K
messages of 64 B in flight; a message completes when every receiver has it):

  pub1    1 topic x 1,000 subscribers: each message is one publish to all.
  pub100  100 topics x 10 subscribers: each message is published to each of
          the 100 topics (connection k subscribed to topic k mod 100), so each
          publish reaches 10 and every receiver still gets every message.
  mem     wsuv alone: 1,000 idle connections with 0, then 100 subscriptions
          each (100,000 over 1,000 topics); the RSS difference per
          subscription (malloc's overhead included).

Servers: wsuv (`server.publish` from a Python handler, fan-out in C),
wsuv-w2 / wsuv-w3 (the same under `wsuv-serve --workers N`: the subscribers
are split between the workers, each publish crosses the worker bus hub),
socketify (uWebSockets' C++ `app.publish`), websockets and aiohttp (no
pub/sub of their own: a Python loop of sends to every connection, pub1 only).

Every server process (workers and hub included) is pinned to CPU 0 and loadgen
to CPU 1; the servers' CPU time is the sum over the server's process tree
(/proc/PID/stat), sampled over a window inside loadgen's measured window.
Writes benchmarks/RESULTS-pubsub.md (and prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PEERS = BENCH / "peers"
LOADGEN = ROOT / "build" / "loadgen"
MAIN_PY = ROOT / ".venv" / "bin" / "python"
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def tree(pid: int) -> list[int]:
    """pid and its descendants now."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12])  # utime, stime
    return total / CLK


def command(server: str, port: int, topics: int, peer_py: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, BENCH_TOPICS=str(topics))
    serve = [str(MAIN_PY.parent / "wsuv-serve"), "wsuv_pubsub:app", "--port", str(port),
             "--log-level", "warning"]
    if server == "wsuv":
        return serve, env
    if server.startswith("wsuv-w"):
        return [*serve, "--workers", server[len("wsuv-w"):]], env
    if server == "socketify":
        return [peer_py, str(PEERS / "socketify_pubsub.py"), "--port", str(port), "--topics",
                str(topics)], env
    script = {"websockets": "websockets_echo.py", "aiohttp": "aiohttp_echo.py"}[server]
    return [peer_py, str(PEERS / script), "--port", str(port), "--mode", "broadcast"], env


class Server:
    def __init__(self, server: str, topics: int, peer_py: str, extra_env: dict[str, str]):
        self.port = free_port()
        cmd, env = command(server, self.port, topics, peer_py)
        env.update(extra_env)
        log = open(ROOT / "build" / f"bench-pubsub-{server}.log", "wb")
        self.proc = subprocess.Popen(["taskset", "-c", "0", *cmd], cwd=PEERS, env=env,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while not listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{server} did not start (see {log.name})")
            time.sleep(0.05)
        time.sleep(0.5)  # workers and hub up, links connected

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def fanout(server: str, topics: int, args: argparse.Namespace) -> dict[str, Any]:
    srv = Server(server, topics, args.peer_python, {})
    try:
        cmd = ["taskset", "-c", "1", str(LOADGEN), "--port", str(srv.port), "--mode",
               "broadcast", "--conns", "1000", "--inflight", str(args.inflight), "--size", "64",
               "--settle", "0.5", "--warmup", str(args.warmup), "--duration",
               str(args.duration), "--server-pid", str(srv.proc.pid), "--timeout", "120"]
        lg = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Our CPU window: inside loadgen's (connect + settle + warm-up before it).
        lead = args.connect_allowance + 0.5 + args.warmup
        time.sleep(lead)
        pids = tree(srv.proc.pid)
        c0, t0 = cpu_seconds(pids), time.monotonic()
        time.sleep(args.duration * 0.6)
        c1, t1 = cpu_seconds(pids), time.monotonic()
        out, err = lg.communicate(timeout=180)
        if lg.returncode != 0:
            return {"error": (err.strip() or out.strip()).splitlines()[-1]}
        res: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        res["processes"] = len(pids)
        res["tree_cpu_pct"] = 100 * (c1 - c0) / (t1 - t0)
        res["deliveries_per_cpu_s"] = res["msgs_per_s"] / max((c1 - c0) / (t1 - t0), 1e-9)
        res["window_ok"] = res["connect_s"] < args.connect_allowance
        return res
    finally:
        srv.stop()


def memory(args: argparse.Namespace) -> dict[str, Any]:
    rss = {}
    for subs in (0, 100):
        srv = Server("wsuv", 1, args.peer_python, {"BENCH_SUBS": str(subs)})
        try:
            out = subprocess.run(["taskset", "-c", "1", str(LOADGEN), "--port", str(srv.port),
                                  "--mode", "idle", "--conns", "1000", "--settle", "1",
                                  "--server-pid", str(srv.proc.pid), "--timeout", "120"],
                                 capture_output=True, text=True, timeout=150)
            rss[subs] = json.loads(out.stdout.strip().splitlines()[-1])["rss_conns_kib"]
        finally:
            srv.stop()
    return {"rss0_kib": rss[0], "rss100_kib": rss[100],
            "bytes_per_subscription": (rss[100] - rss[0]) * 1024 / 100000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="wsuv,wsuv-w2,socketify,websockets,aiohttp")
    p.add_argument("--scenarios", default="pub1,pub100,mem")
    p.add_argument("--quick", action="store_true", help="0.5 s warm-up, 2 s windows")
    p.add_argument("--inflight", type=int, default=8)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--connect-allowance", type=float, default=1.5,
                   help="seconds allowed for loadgen's 1,001 connects before the CPU window")
    p.add_argument("--peer-python", default=str(BENCH / ".venv" / "bin" / "python"),
                   help="python with socketify, websockets and aiohttp (make bench-servers "
                        "makes benchmarks/.venv)")
    p.add_argument("--output", default=str(BENCH / "RESULTS-pubsub.md"))
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.duration = 0.5, 2.0
    if not LOADGEN.exists():
        print("build/loadgen is missing: make bench-servers builds it", file=sys.stderr)
        return 1
    servers = args.servers.split(",")
    scen = args.scenarios.split(",")
    rows = []
    for sc, topics in (("pub1", 1), ("pub100", 100)):
        if sc not in scen:
            continue
        for server in servers:
            if topics > 1 and server in ("websockets", "aiohttp"):
                continue  # no topics: the Python loop is the same as pub1
            if server in ("socketify", "websockets", "aiohttp") and not Path(
                    args.peer_python).exists():
                rows.append((sc, server, {"error": f"no {args.peer_python}"}))
                continue
            print(f"{sc} {server} ...", file=sys.stderr, flush=True)
            try:
                rows.append((sc, server, fanout(server, topics, args)))
            except (RuntimeError, OSError, ValueError) as exc:
                rows.append((sc, server, {"error": str(exc)}))
    lines = ["# Publish fan-out (benchmarks/bench_pubsub.py)", "",
             f"`{' '.join(['bench_pubsub.py', *(argv or sys.argv[1:])])}`; 1,000 receivers + 1 "
             f"sender, {args.inflight} messages of 64 B in flight; servers on CPU 0, loadgen on "
             "CPU 1.", "",
             "| scenario | server | deliveries/s | server CPU % (all processes) | "
             "deliveries per server CPU-second | loadgen CPU % | p50 / p99 ms |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for sc, server, r in rows:
        if "error" in r:
            lines.append(f"| {sc} | {server} | error: {r['error']} | | | | |")
            continue
        flag = "" if r["window_ok"] else " (connects overran the CPU window)"
        lines.append(f"| {sc} | {server} ({r['processes']} proc) | {r['msgs_per_s']:,.0f} | "
                     f"{r['tree_cpu_pct']:.0f} | {r['deliveries_per_cpu_s']:,.0f}{flag} | "
                     f"{r['client_cpu_pct']:.0f} | {r['lat_p50_us'] / 1e3:.2f} / "
                     f"{r['lat_p99_us'] / 1e3:.2f} |")
    if "mem" in scen:
        print("mem wsuv ...", file=sys.stderr, flush=True)
        m = memory(args)
        lines += ["", f"Memory: 1,000 idle connections, RSS {m['rss0_kib']:,} KiB with no "
                  f"subscriptions and {m['rss100_kib']:,} KiB with 100 each (100,000 over 1,000 "
                  f"topics): **{m['bytes_per_subscription']:.1f} B per subscription** "
                  "(RSS, malloc overhead included; uWebSockets: 92-264 B)."]
    text = "\n".join(lines) + "\n"
    Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
