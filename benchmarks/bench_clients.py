"""WebSocket clients under load: wsuv's clients against their peers, one echo server.

    .venv/bin/python benchmarks/bench_clients.py [--quick] [--reps N]
        [--clients wsuv-callback,picows-uvloop] [--scenarios rr64,k16]

The server is wsuv's C echo (``wsuv-serve`` with no application) in its own
process pinned to CPU 0; each client runs in a fresh process pinned to CPU 1
(benchmarks/client_drivers.py) and reports its own CPU time
(``time.process_time``: user + system, every thread) over the measured part
of its run (after a warm-up tenth). The figure is echoes per client
CPU-second: what one message costs the client, independent of the machine's
other load. The server's CPU share over the same wall time is shown too: near
100% would mean the server, not the client, set the pace (it never does
here, but the column says so for each row).

Repetitions are interleaved across clients (rep 1 of every client, then rep
2, ...); tables show the median with min-max. Results go to
benchmarks/CLIENT_RESULTS.md (``--output``), raw numbers to
build/bench-clients.json.

Peers run from benchmarks/.venv (``make bench-clients`` installs
benchmarks/requirements-peers.txt there), or from the project's .venv when it
has the package (websockets and websocket-client are test dependencies);
a peer found in neither is skipped and named.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
DRIVERS = BENCH / "client_drivers.py"
MAIN_PY = ROOT / ".venv" / "bin" / "python"
PEER_PY = Path(os.environ.get("WSUV_BENCH_PEER_PY", BENCH / ".venv" / "bin" / "python"))

#: client kind -> the import that proves its package is there
CLIENTS: dict[str, str] = {
    "wsuv-callback": "wsuv",
    "wsuv-sync": "wsuv",
    "wsuv-aio-asyncio": "wsuv",
    "wsuv-aio-uvloop": "wsuv, uvloop",
    "websocket-client": "websocket",
    "websockets-sync": "websockets.sync.client",
    "websockets-asyncio": "websockets.asyncio.client",
    "picows-uvloop": "picows, uvloop",
    "aiohttp": "aiohttp",
}
SYNC = ("wsuv-sync", "websocket-client", "websockets-sync")

#: name -> (label, size, messages, connections, depth)
SCENARIOS: dict[str, tuple[str, int, int, int, int]] = {
    "rr64": ("1 connection, request/response, 64 B", 64, 20000, 1, 1),
    "rr8k": ("1 connection, request/response, 8 KiB", 8192, 20000, 1, 1),
    "rr100k": ("1 connection, request/response, 100 KiB", 102400, 5000, 1, 1),
    "k16": ("100 connections, 16 in flight each, 64 B", 64, 200000, 100, 16),
}

#: (numerator, denominator, target) ratios shown under each table
RATIOS = [
    ("wsuv-callback", "picows-uvloop", 1.5),
    ("wsuv-aio-uvloop", "websockets-asyncio", 3.0),
    ("wsuv-aio-asyncio", "websockets-asyncio", 3.0),
    ("wsuv-sync", "websocket-client", 3.0),
    ("wsuv-sync", "websockets-sync", None),
    ("wsuv-callback", "aiohttp", None),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpu: int, argv: list[str], pin: bool) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu), *argv] if pin and taskset else argv


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interpreter(kind: str, probes: dict[tuple[str, str], bool]) -> Path | None:
    """The python that has kind's package: wsuv's own venv for wsuv, else the
    peers' venv, else wsuv's venv; None if neither has it."""
    wanted = [MAIN_PY] if kind.startswith("wsuv") else [PEER_PY, MAIN_PY]
    for py in wanted:
        key = (str(py), CLIENTS[kind])
        if key not in probes:
            probes[key] = py.exists() and subprocess.run(
                [str(py), "-c", f"import {CLIENTS[kind]}"], capture_output=True,
                timeout=60).returncode == 0
        if probes[key]:
            return py
    return None


@contextlib.contextmanager
def echo_server(pin: bool) -> Any:
    port = free_port()
    argv = [str(MAIN_PY), "-c", "from wsuv.cli import main; main()", "--port", str(port),
            "--no-handle-signals", "--log-level", "warning"]
    proc = subprocess.Popen(pinned(0, argv, pin), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"the echo server exited: {proc.stderr.read().decode()}"
                                   if proc.stderr else "the echo server exited")
            time.sleep(0.05)
        else:
            raise RuntimeError("the echo server did not listen within 20 s")
        yield proc, f"ws://127.0.0.1:{port}/"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def run_one(py: Path, kind: str, url: str, scenario: str, scale: float, pin: bool,
            server_pid: int) -> dict[str, float]:
    _label, size, messages, conns, depth = SCENARIOS[scenario]
    n = max(1000, int(messages * scale))
    argv = [str(py), str(DRIVERS), kind, url, str(size), str(n), str(conns), str(depth)]
    s0, t0 = proc_cpu(server_pid), time.monotonic()
    out = subprocess.run(pinned(1, argv, pin), capture_output=True, text=True, timeout=300)
    s1, t1 = proc_cpu(server_pid), time.monotonic()
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {scenario}: exit {out.returncode}: "
                           f"{out.stderr.strip().splitlines()[-1:]}")
    r: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    r["server_share"] = (s1 - s0) / (t1 - t0)  # over the whole process run, warm-up included
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--clients", default=",".join(CLIENTS),
                   help=f"comma-separated: {', '.join(CLIENTS)} (default: all)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="comma-separated: " + ", ".join(f"{k} ({v[0]})"
                                                        for k, v in SCENARIOS.items()))
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --quick 1)")
    p.add_argument("--quick", action="store_true", help="1 repetition, a quarter of the messages")
    p.add_argument("--no-pin", action="store_true", help="do not pin to CPUs 0 and 1")
    p.add_argument("--output", default=str(BENCH / "CLIENT_RESULTS.md"))
    p.add_argument("--json", default=str(ROOT / "build" / "bench-clients.json"))
    a = p.parse_args()
    clients = [c.strip() for c in a.clients.split(",") if c.strip()]
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    for name in clients:
        if name not in CLIENTS:
            p.error(f"unknown client {name!r}; choose from {', '.join(CLIENTS)}")
    for name in scenarios:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    reps = a.reps if a.reps is not None else (1 if a.quick else 3)
    scale = 0.25 if a.quick else 1.0
    pin = not a.no_pin
    probes: dict[tuple[str, str], bool] = {}
    pythons: dict[str, Path] = {}
    skipped: list[str] = []
    for kind in clients:
        py = interpreter(kind, probes)
        if py is None:
            skipped.append(kind)
            print(f"skipping {kind}: `{CLIENTS[kind]}` imports in neither {PEER_PY} nor "
                  f"{MAIN_PY}", file=sys.stderr)
        else:
            pythons[kind] = py
    results: dict[str, dict[str, list[dict[str, float]]]] = {s: {} for s in scenarios}
    with echo_server(pin) as (server, url):
        for rep in range(reps):
            for sc in scenarios:
                for kind in pythons:
                    if SCENARIOS[sc][3] > 1 and kind in SYNC:
                        continue  # a sync client is one connection per thread: not compared
                    r = run_one(pythons[kind], kind, url, sc, scale, pin, server.pid)
                    results[sc].setdefault(kind, []).append(r)
                    print(f"rep {rep + 1} {sc:7} {kind:20} {r['msgs'] / r['cpu']:>10,.0f} "
                          f"msgs/client CPU-s  {r['msgs'] / r['wall']:>10,.0f} msgs/s  "
                          f"server {r['server_share']:.0%}", file=sys.stderr)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=1))
    report = render(results, reps, skipped, pin)
    Path(a.output).write_text(report)
    print(report)
    return 0


def _median(rows: list[dict[str, float]], key: str) -> tuple[float, float, float]:
    vals = [r["msgs"] / r[key] for r in rows]
    return statistics.median(vals), min(vals), max(vals)


def render(results: dict[str, dict[str, list[dict[str, float]]]], reps: int,
           skipped: list[str], pin: bool) -> str:
    lines = ["# Client benchmarks (benchmarks/bench_clients.py)", "",
             f"Echo server: wsuv's C echo (`wsuv-serve`), {'CPU 0' if pin else 'unpinned'}; "
             f"each client in its own process{', CPU 1' if pin else ''}. Binary messages, "
             f"no compression. {reps} repetition(s), median (min-max). "
             "Server % = the server's CPU share over the client's whole run.", ""]
    if skipped:
        lines += [f"Skipped (not installed): {', '.join(skipped)}.", ""]
    for sc, by_kind in results.items():
        lines += [f"## {sc}: {SCENARIOS[sc][0]}", "",
                  "| client | msgs per client CPU-s | msgs/s (wall) | server % |",
                  "|---|---:|---:|---:|"]
        medians: dict[str, float] = {}
        for kind, rows in by_kind.items():
            med, lo, hi = _median(rows, "cpu")
            wall, _, _ = _median(rows, "wall")
            share = statistics.median(r["server_share"] for r in rows)
            medians[kind] = med
            lines.append(f"| {kind} | {med:,.0f} ({lo:,.0f}-{hi:,.0f}) | {wall:,.0f} | "
                         f"{share:.0%} |")
        lines.append("")
        shown = [(n, d, t) for n, d, t in RATIOS if n in medians and d in medians]
        if shown:
            lines += ["| ratio (msgs per client CPU-s) | value | target |", "|---|---:|---:|"]
            for num, den, target in shown:
                want = f"≥ {target}x" if target else "-"
                lines.append(f"| {num} / {den} | {medians[num] / medians[den]:.2f}x | {want} |")
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
