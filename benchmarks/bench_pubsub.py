"""Publish fan-out: deliveries per server CPU-second, across workers too, and
memory per subscription.

    .venv/bin/python benchmarks/bench_pubsub.py [--quick] [--servers wsuv,wsuv-w2]
        [--scenarios pub1,pub100,redis,mem] [--reps N]

Scenarios (build/loadgen in broadcast mode: 1 sender and 1,000 receivers, K
messages of 64 B in flight; a message completes when every receiver has it):

  pub1    1 topic x 1,000 subscribers: each message is one publish to all.
  pub100  100 topics x 10 subscribers: each message is published to each of
          the 100 topics (connection k subscribed to topic k mod 100), so each
          publish reaches 10 and every receiver still gets every message.
  redis   two wsuv-serve nodes with --pubsub-url on one redis-server started
          here on a free loopback port: 1,000 subscribers of one topic split
          across the nodes, publishes from node A (benchmarks/pubsub_nodes.py,
          a Python load generator): deliveries per CPU-second of both nodes
          and Redis, p50/p99 publish-to-receive latency on node B at a fixed
          rate (--latency-rate), Redis PUBLISH calls per publish.
  mem     wsuv alone: 1,000 idle connections with 0, then 100 subscriptions
          each (100,000 over 1,000 topics); the RSS difference per
          subscription (malloc's overhead included).

Servers: wsuv (`server.publish` from a Python handler, fan-out in C),
wsuv-w2 / wsuv-w3 (the same under `wsuv-serve --workers N`: the subscribers
are split between the workers, each publish crosses the worker bus hub),
socketify (uWebSockets' C++ `app.publish`), websockets, aiohttp and picows (no
pub/sub of their own: a Python loop of sends to every connection, pub1 only).

Every server process (workers and hub included) is pinned to CPU 0 and loadgen
to CPU 1; the servers' CPU time is the sum over the server's process tree
(/proc/PID/stat), read by loadgen at the start and end of its own measured
window (--server-pid and --also-pid), so deliveries and CPU time cover the
same seconds. --reps N runs every server once per repetition, interleaved,
and lists wsuv's ratio to each other server per repetition.
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

import pubsub_nodes

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
    script = {"websockets": "websockets_echo.py", "aiohttp": "aiohttp_echo.py",
              "picows": "picows_echo.py"}[server]
    return [peer_py, str(PEERS / script), "--port", str(port), "--mode", "broadcast"], env


class Server:
    def __init__(self, server: str, topics: int, peer_py: str, extra_env: dict[str, str],
                 extra_args: tuple[str, ...] = (), tag: str = ""):
        self.port = free_port()
        cmd, env = command(server, self.port, topics, peer_py)
        cmd += extra_args
        env.update(extra_env)
        log = open(ROOT / "build" / f"bench-pubsub-{server}{tag}.log", "wb")
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
        # Every process of the server (workers and hub are up by now) is counted
        # by loadgen itself over its measured window: the same window as the
        # deliveries, for every server alike.
        pids = tree(srv.proc.pid)
        also = [a for p in pids[1:] for a in ("--also-pid", str(p))]
        cmd = ["taskset", "-c", "1", str(LOADGEN), "--port", str(srv.port), "--mode",
               "broadcast", "--conns", "1000", "--inflight", str(args.inflight), "--size", "64",
               "--settle", "0.5", "--warmup", str(args.warmup), "--duration",
               str(args.duration), "--server-pid", str(srv.proc.pid), *also, "--timeout", "120"]
        lg = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if lg.returncode != 0:
            return {"error": (lg.stderr.strip() or lg.stdout.strip()).splitlines()[-1]}
        res: dict[str, Any] = json.loads(lg.stdout.strip().splitlines()[-1])
        if "msgs_per_server_cpu_s" not in res:
            return {"error": "loadgen could not read the server's CPU time"}
        res["processes"] = len(pids)
        res["tree_cpu_pct"] = res["server_cpu_pct"]
        res["deliveries_per_cpu_s"] = res["msgs_per_server_cpu_s"]
        return res
    finally:
        srv.stop()


def two_nodes(args: argparse.Namespace) -> dict[str, Any]:
    """Two wsuv-serve nodes on one redis-server (both on CPU 0, with Redis); the
    Python load generator (this process) on CPU 1."""
    rport = free_port()
    redis = subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(rport),
                              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes: list[Server] = []
    load = None
    affinity = os.sched_getaffinity(0)
    try:
        deadline = time.monotonic() + 10
        while not listening(rport):
            if redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        url = ("--pubsub-url", f"redis://127.0.0.1:{rport}")
        nodes = [Server("wsuv", 1, args.peer_python, {}, url, tag) for tag in ("-a", "-b")]
        os.sched_setaffinity(0, {1})
        load = pubsub_nodes.Load(nodes[0].port, nodes[1].port, 1000, 20)
        load.drain(0.5, until_done=False)  # subscriptions reach Redis
        pids = [*tree(nodes[0].proc.pid), *tree(nodes[1].proc.pid), redis.pid]
        pub0 = pubsub_nodes.redis_publishes(rport)
        frame = pubsub_nodes.FRAME
        end = time.monotonic() + args.warmup
        while time.monotonic() < end:  # warm-up, then the measured window
            while load.behind() < args.inflight:
                load.publish()
            load.poll(0.05)
        c0, r0, t0, u0 = (cpu_seconds(pids), load.received, time.monotonic(),
                          sum(os.times()[:2]))
        end = t0 + args.duration
        while time.monotonic() < end:
            while load.behind() < args.inflight:
                load.publish()
            load.poll(0.05)
        c1, r1, t1, u1 = (cpu_seconds(pids), load.received, time.monotonic(),
                          sum(os.times()[:2]))
        load.drain(10.0)
        expected = load.sent * 1000 * frame
        lost = expected - load.received
        load.lat_ns.clear()
        sent_before = load.sent
        gap = 1 / args.latency_rate
        nxt = time.monotonic()
        end = nxt + args.duration
        while time.monotonic() < end:
            if time.monotonic() >= nxt:
                load.publish()
                nxt += gap
            load.poll(max(0.0, min(nxt - time.monotonic(), 0.01)))
        load.drain(10.0)
        lat = sorted(load.lat_ns)
        publishes = pubsub_nodes.redis_publishes(rport) - pub0
        dt = t1 - t0
        rate = (r1 - r0) / frame / dt
        cpu = (c1 - c0) / dt
        return {"deliveries_per_s": rate, "cpu_pct": 100 * cpu,
                "per_cpu_s": rate / max(cpu, 1e-9), "client_cpu_pct": 100 * (u1 - u0) / dt,
                "lost": lost // frame, "lat_p50_ms": lat[len(lat) // 2] / 1e6,
                "lat_p99_ms": lat[len(lat) * 99 // 100] / 1e6, "lat_samples": len(lat),
                "latency_publishes": load.sent - sent_before,
                "redis_per_publish": publishes / load.sent, "publishes": load.sent,
                "processes": len(pids)}
    finally:
        os.sched_setaffinity(0, affinity)
        if load is not None:
            load.close()
        for n in nodes:
            n.stop()
        redis.terminate()
        redis.wait(10)


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


def ratios(rows: list[tuple[int, str, str, dict[str, Any]]], servers: list[str]) -> list[str]:
    """wsuv's deliveries per server CPU-second over each other server's, per
    repetition (the two measured back to back)."""
    per = {(rep, sc, srv): r["deliveries_per_cpu_s"] for rep, sc, srv, r in rows
           if "error" not in r}
    out: list[str] = []
    for other in servers:
        if other == "wsuv" or not other or other.startswith("wsuv-"):
            continue
        for sc in ("pub1", "pub100"):
            got = [per[(rep, sc, "wsuv")] / per[(rep, sc, other)] for rep, s2, srv, _ in rows
                   if s2 == sc and srv == other and (rep, sc, "wsuv") in per
                   and (rep, sc, other) in per]
            if got:
                out.append(f"- {sc}: wsuv / {other} = "
                           + ", ".join(f"{g:.2f}x" for g in got)
                           + f" (min {min(got):.2f}x)")
    return ["", "Ratios of deliveries per server CPU-second, per repetition:", "", *out] \
        if out else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="wsuv,wsuv-w2,socketify,websockets,aiohttp,picows")
    p.add_argument("--scenarios", default="pub1,pub100,redis,mem")
    p.add_argument("--quick", action="store_true", help="0.5 s warm-up, 2 s windows")
    p.add_argument("--inflight", type=int, default=8)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--latency-rate", type=float, default=20.0,
                   help="publishes per second in the redis scenario's latency phase")
    p.add_argument("--reps", type=int, default=1,
                   help="repetitions, interleaved (every server once per repetition, so "
                        "a change in the machine's load hits all of them alike)")
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
    rows: list[tuple[int, str, str, dict[str, Any]]] = []
    for rep in range(1, args.reps + 1):
        for sc, topics in (("pub1", 1), ("pub100", 100)):
            if sc not in scen:
                continue
            for server in servers:
                if topics > 1 and server in ("websockets", "aiohttp", "picows"):
                    continue  # no topics: the Python loop is the same as pub1
                if server in ("socketify", "websockets", "aiohttp", "picows") and not Path(
                        args.peer_python).exists():
                    rows.append((rep, sc, server, {"error": f"no {args.peer_python}"}))
                    continue
                print(f"rep {rep} {sc} {server} ...", file=sys.stderr, flush=True)
                try:
                    rows.append((rep, sc, server, fanout(server, topics, args)))
                except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                    rows.append((rep, sc, server, {"error": str(exc)}))
    lines = ["# Publish fan-out (benchmarks/bench_pubsub.py)", "",
             f"`{' '.join(['bench_pubsub.py', *(argv or sys.argv[1:])])}`; 1,000 receivers + 1 "
             f"sender, {args.inflight} messages of 64 B in flight, {args.warmup:g} s warm-up, "
             f"{args.duration:g} s window; servers on CPU 0, loadgen on CPU 1. Deliveries and "
             "the server's CPU time (every process of it) over loadgen's same window.", "",
             "| rep | scenario | server | deliveries/s | server CPU % (all processes) | "
             "deliveries per server CPU-second | loadgen CPU % | p50 / p99 ms |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    for rep, sc, server, r in rows:
        if "error" in r:
            lines.append(f"| {rep} | {sc} | {server} | error: {r['error']} | | | | |")
            continue
        lines.append(f"| {rep} | {sc} | {server} ({r['processes']} proc) | "
                     f"{r['msgs_per_s']:,.0f} | {r['tree_cpu_pct']:.0f} | "
                     f"{r['deliveries_per_cpu_s']:,.0f} | "
                     f"{r['client_cpu_pct']:.0f} | {r['lat_p50_us'] / 1e3:.2f} / "
                     f"{r['lat_p99_us'] / 1e3:.2f} |")
    lines += ratios(rows, servers)
    if "redis" in scen:
        print("redis wsuv x2 ...", file=sys.stderr, flush=True)
        try:
            r = two_nodes(args)
            lines += ["", "Two nodes on Redis: two `wsuv-serve wsuv_pubsub:app --pubsub-url "
                      "redis://127.0.0.1:PORT` and the redis-server this bench starts, all on "
                      "CPU 0; 1,000 subscribers of one topic alternating between the nodes, 1 "
                      "publisher on node A; the Python load generator (this process) on CPU 1.",
                      "", "| deliveries/s | CPU % (both nodes + Redis) | deliveries per "
                      "CPU-second (per core) | load generator CPU % | lost | p50 / p99 ms "
                      f"(node B, {args.latency_rate:.0f}/s) | Redis PUBLISH per publish |",
                      "|---:|---:|---:|---:|---:|---:|---:|",
                      f"| {r['deliveries_per_s']:,.0f} | {r['cpu_pct']:.0f} | "
                      f"{r['per_cpu_s']:,.0f} | {r['client_cpu_pct']:.0f} | {r['lost']} | "
                      f"{r['lat_p50_ms']:.2f} / {r['lat_p99_ms']:.2f} ({r['lat_samples']} "
                      f"samples) | {r['redis_per_publish']:.3f} ({r['publishes']} publishes) |"]
        except (RuntimeError, OSError, ValueError) as exc:
            lines += ["", f"Two nodes on Redis: error: {exc}"]
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
