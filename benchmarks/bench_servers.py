"""WebSocket servers under load: wsuv against its peers, same client, same run.

Run through ``make bench-servers`` (it builds ``build/loadgen`` and installs
the peers into ``benchmarks/.venv``), or directly from the repository root:

    .venv/bin/python benchmarks/bench_servers.py [--quick]
        [--servers wsuv-c,picows-uvloop] [--scenarios c100,k16] [--reps N]

Every server runs as a subprocess bound to 127.0.0.1 on a free port, pinned
to CPU 0 (``taskset -c 0``); the C load generator (benchmarks/loadgen.c) runs
pinned to CPU 1. Each run has a warm-up, then a measured window in which the
load generator counts messages, latency, its own CPU time and the server's
(/proc/PID/stat). Repetitions are interleaved across servers (rep 1 of every
server, then rep 2, ...) so that drift on a shared machine hits all alike,
and the servers not being measured are stopped (SIGSTOP) meanwhile;
the tables show the median with min-max. Memory is measured on a fresh server
process: RSS at start, then with N idle upgraded connections open.

The results go to benchmarks/RESULTS.md (and every run's raw numbers to
build/bench-servers.json); server logs to build/bench-logs/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PEERS = BENCH / "peers"
LOADGEN = ROOT / "build" / "loadgen"
LOGS = ROOT / "build" / "bench-logs"
# wsuv runs from a normal (non-editable) install of this tree when `make
# bench-servers` made one: an editable install's import finder alone adds
# about 2 MiB to every process, which the memory scenario would count.
_INSTALLED_PY = Path(__file__).resolve().parent / ".venv-wsuv" / "bin" / "python"
MAIN_PY = _INSTALLED_PY if _INSTALLED_PY.exists() else ROOT / ".venv" / "bin" / "python"
PEER_PY = BENCH / ".venv" / "bin" / "python"

# --- servers -------------------------------------------------------------------------


@dataclasses.dataclass
class ServerSpec:
    name: str
    label: str
    python: Path | None                 # interpreter, or None for node
    command: Callable[[int, str], list[str]]  # (port, mode) -> argv after the interpreter
    modes: tuple[str, ...]              # "echo" and/or "broadcast"
    probe: str                          # import statement proving it is installed
    wsuv: bool = False
    only: tuple[str, ...] = ()          # measured in these scenarios only (empty: all)

    def applies(self, sc: Scenario) -> bool:
        mode = "echo" if sc.mode == "idle" else sc.mode  # idle conns: the echo server
        if sc.deflate and self.name not in DEFLATE_SERVERS:
            return False
        if sc.tls and self.name not in TLS_SERVERS:
            return False
        return mode in self.modes and (not self.only or sc.name in self.only)


TLS_DIR = ROOT / "build" / "bench-tls"


def bench_cert() -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1, made once with `openssl`
    into build/bench-tls/ (the load generator does not verify it)."""
    cert, key = TLS_DIR / "cert.pem", TLS_DIR / "key.pem"
    if not (cert.exists() and key.exists()):
        TLS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True,
                       capture_output=True, timeout=60)
    return cert, key


def _tls_args(mode: str, cert_flag: str, key_flag: str) -> list[str]:
    """Mode "echo-tls": the server's TLS options (every TLS server uses one cert)."""
    if not mode.endswith("-tls"):
        return []
    cert, key = bench_cert()
    return [cert_flag, str(cert), key_flag, str(key)]


def _peer(script: str, *extra: str) -> Callable[[int, str], list[str]]:
    """A peer script; mode "echo-deflate" runs "echo" with permessage-deflate on,
    "echo-tls" with TLS (Python's ssl in the peers, --certfile/--keyfile)."""
    return lambda port, mode: [str(PEERS / script), *extra, "--port", str(port), "--mode",
                               mode.removesuffix("-tls").removesuffix("-deflate"),
                               *(["--deflate"] if mode.endswith("-deflate") else []),
                               *_tls_args(mode, "--certfile", "--keyfile")]


def _wsuv_serve(*extra: str) -> Callable[[int, str], list[str]]:
    """wsuv-serve (the built-in C echo); compression is on by default, off otherwise."""
    return lambda port, mode: [str(MAIN_PY.parent / "wsuv-serve"), "--port", str(port),
                               "--log-level", "warning", *extra,
                               *([] if mode.endswith("-deflate") else ["--no-compression"]),
                               *_tls_args(mode, "--ssl-certfile", "--ssl-keyfile")]


SERVERS: list[ServerSpec] = [
    ServerSpec("wsuv-c", "wsuv, built-in C echo (the `wsuv-serve` console script, no app)",
               MAIN_PY, _wsuv_serve(), ("echo",), "import wsuv", wsuv=True),
    ServerSpec("wsuv-capp", "wsuv, a C application under `wsuv-serve` (compiled once into "
               "the cache; no Python per message): examples/c/echo.c; broadcast: "
               "benchmarks/peers/capp_broadcast.c (`host->broadcast`)", MAIN_PY,
               lambda port, mode: [str(MAIN_PY.parent / "wsuv-serve"), str(
                   ROOT / "examples" / "c" / "echo.c" if mode == "echo"
                   else PEERS / "capp_broadcast.c"), "--port", str(port), "--log-level",
                   "warning"],
               ("echo", "broadcast"), "import wsuv", wsuv=True,
               only=("c1", "c100", "k16", "bcast")),
    ServerSpec("wsuv-py", "wsuv, Python handler: `ws.send(message)`; broadcast: "
               "`server.broadcast(message)`", MAIN_PY, _peer("wsuv_echo.py"),
               ("echo", "broadcast"), "import wsuv", wsuv=True),
    ServerSpec("wsuv-c-busy", "wsuv-c with `--busy-poll-us 1000` (opt-in: after a read the "
               "loop polls without sleeping for 1 ms, trading a spinning CPU for wake-up "
               "latency); latency scenario only", MAIN_PY,
               _wsuv_serve("--busy-poll-us", "1000"),
               ("echo",), "import wsuv", wsuv=True, only=("c1",)),
    ServerSpec("wsuv-py-busy", "wsuv-py with `busy_poll_us=1000` (as wsuv-c-busy); latency "
               "scenario only", MAIN_PY, _peer("wsuv_echo.py", "--busy-poll-us", "1000"),
               ("echo",), "import wsuv", wsuv=True, only=("c1",)),
    ServerSpec("wsuv-py-loop", "wsuv, Python handler, broadcast as a Python loop of `ws.send`",
               MAIN_PY, lambda port, mode: [str(PEERS / "wsuv_echo.py"), "--port", str(port),
                                            "--mode", "broadcast-loop",
                                            *(["--deflate"] if mode.endswith("-deflate")
                                              else [])],
               ("broadcast",), "import wsuv", wsuv=True),
    ServerSpec("wsuv-aio-uvloop", "wsuv.aio on uvloop, connection handler: "
               "`async for m in ws: await ws.send(m)`", MAIN_PY,
               _peer("wsuv_echo.py", "--embed", "uvloop", "--style", "conn"), ("echo",),
               "import wsuv, uvloop", wsuv=True),
    ServerSpec("wsuv-aio-asyncio", "wsuv.aio on the asyncio loop, the same connection handler",
               MAIN_PY, _peer("wsuv_echo.py", "--embed", "asyncio", "--style", "conn"),
               ("echo",), "import wsuv", wsuv=True),
    ServerSpec("wsuv-py-uvloop", "wsuv-py's plain Handler embedded in uvloop (wsuv.aio)",
               MAIN_PY, _peer("wsuv_echo.py", "--embed", "uvloop", "--style", "handler"),
               ("echo",), "import wsuv, uvloop", wsuv=True),
    ServerSpec("websockets", "websockets (asyncio implementation, asyncio loop)", PEER_PY,
               _peer("websockets_echo.py"), ("echo", "broadcast"), "import websockets"),
    ServerSpec("picows-uvloop", "picows on uvloop", PEER_PY,
               _peer("picows_echo.py", "--loop", "uvloop"), ("echo", "broadcast"),
               "import picows, uvloop"),
    ServerSpec("picows-asyncio", "picows on the asyncio loop", PEER_PY,
               _peer("picows_echo.py", "--loop", "asyncio"), ("echo", "broadcast"),
               "import picows"),
    ServerSpec("aiohttp", "aiohttp web server (asyncio loop)", PEER_PY, _peer("aiohttp_echo.py"),
               ("echo", "broadcast"), "import aiohttp"),
    ServerSpec("node-ws", "Node.js `ws` (root package.json)", None,
               _peer("node_ws_echo.js"), ("echo", "broadcast"), ""),
    ServerSpec("socketify", "socketify (uWebSockets via cffi). It drives uWS from an asyncio "
               "loop by polling it (`run_nowait`): many `epoll_wait` calls per message and CPU "
               "use even with no connection, which shortens its wake-up latency",
               PEER_PY, _peer("socketify_echo.py"), ("echo", "broadcast"), "import socketify"),
]
# WSUV_BENCH_BEFORE=<a tree of another commit, its extension built in place> adds
# wsuv-c@before, wsuv-py@before, wsuv-aio-uvloop@before and wsuv-aio-asyncio@before:
# the same servers from that tree, measured in the same run (a before/after
# comparison of a change).
_BEFORE = os.environ.get("WSUV_BENCH_BEFORE")


def _from_tree(tree: str, argv: Callable[[int, str], list[str]],
               script: bool) -> Callable[[int, str], list[str]]:
    """argv run with tree first on sys.path: a script path, or wsuv-serve's main."""
    def command(port: int, mode: str) -> list[str]:
        args = argv(port, mode)
        run = (f"import runpy; sys.argv = {args!r}; runpy.run_path(sys.argv[0], "
               "run_name='__main__')") if script else (
               f"sys.argv = {['wsuv-serve', *args[1:]]!r}; from wsuv.cli import main; "
               "sys.exit(main())")
        return ["-c", f"import sys; sys.path.insert(0, {tree!r}); {run}"]
    return command


if _BEFORE:
    SERVERS += [
        ServerSpec("wsuv-c@before", f"wsuv-c from {_BEFORE}", MAIN_PY,
                   _from_tree(_BEFORE, _wsuv_serve(), False), ("echo",), "import wsuv",
                   wsuv=True),
        ServerSpec("wsuv-py@before", f"wsuv-py from {_BEFORE}", MAIN_PY,
                   _from_tree(_BEFORE, _peer("wsuv_echo.py"), True), ("echo", "broadcast"),
                   "import wsuv", wsuv=True),
        ServerSpec("wsuv-aio-uvloop@before", f"wsuv-aio-uvloop from {_BEFORE}", MAIN_PY,
                   _from_tree(_BEFORE, _peer("wsuv_echo.py", "--embed", "uvloop", "--style",
                                             "conn"), True),
                   ("echo",), "import wsuv, uvloop", wsuv=True),
        ServerSpec("wsuv-aio-asyncio@before", f"wsuv-aio-asyncio from {_BEFORE}", MAIN_PY,
                   _from_tree(_BEFORE, _peer("wsuv_echo.py", "--embed", "asyncio", "--style",
                                             "conn"), True),
                   ("echo",), "import wsuv", wsuv=True),
    ]
BY_NAME = {s.name: s for s in SERVERS}
# Servers measured with permessage-deflate on (the peers' own implementations).
DEFLATE_SERVERS = ("wsuv-c", "wsuv-py", "wsuv-py-loop", "websockets", "aiohttp", "node-ws")
# Servers measured with TLS (wsuv: its own OpenSSL layer; the peers: Python's ssl).
TLS_SERVERS = ("wsuv-c", "wsuv-py", "websockets", "picows-uvloop", "picows-asyncio")

# --- scenarios -----------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    name: str
    title: str
    mode: str          # echo, broadcast, idle
    conns: int
    inflight: int
    size: int
    deflate: bool = False  # permessage-deflate on both ends, JSON-like text payloads
    tls: bool = False      # TLS (loadgen --tls: csrc/tls.c's client role, no verification)

    @property
    def server_mode(self) -> str:
        mode = "echo" if self.mode == "idle" else self.mode
        return mode + ("-deflate" if self.deflate else "") + ("-tls" if self.tls else "")


SCENARIOS: list[Scenario] = [
    Scenario("c1", "1 conn, K=1, 64 B", "echo", 1, 1, 64),
    Scenario("c100", "100 conns, K=1, 64 B", "echo", 100, 1, 64),
    Scenario("k16", "100 conns, K=16, 64 B", "echo", 100, 16, 64),
    Scenario("c1000", "1,000 conns, K=1, 64 B", "echo", 1000, 1, 64),
    Scenario("64k", "10 conns, K=1, 64 KiB", "echo", 10, 1, 65536),
    Scenario("bcast", "broadcast 1 -> 1,000, K=8, 64 B", "broadcast", 1000, 8, 64),
    Scenario("mem", "idle connections", "idle", 10000, 1, 64),
    Scenario("z1", "deflate: 100 conns, K=1, 1 KiB JSON", "echo", 100, 1, 1024, deflate=True),
    Scenario("z16", "deflate: 100 conns, K=16, 1 KiB JSON", "echo", 100, 16, 1024, deflate=True),
    Scenario("zbcast", "deflate: broadcast 1 -> 1,000, K=8, 1 KiB JSON", "broadcast", 1000, 8,
             1024, deflate=True),
    Scenario("zmem", "1,000 idle connections with deflate, after one 1 KiB JSON message each "
             "way and 12 s idle", "idle", 1000, 1, 1024, deflate=True),
    Scenario("t100", "TLS: 100 conns, K=1, 64 B", "echo", 100, 1, 64, tls=True),
    Scenario("tk16", "TLS: 100 conns, K=16, 64 B", "echo", 100, 16, 64, tls=True),
    Scenario("t64k", "TLS: 10 conns, K=1, 64 KiB", "echo", 10, 1, 65536, tls=True),
    Scenario("tmem", "TLS: 1,000 idle connections (TLS handshakes + upgrades per second)",
             "idle", 1000, 1, 64, tls=True),
]
SCEN = {s.name: s for s in SCENARIOS}

# --- processes -----------------------------------------------------------------------

_CHILDREN: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """True if some socket listens on 127.0.0.1:port (read from /proc, no connection made)."""
    want = f"0100007F:{port:04X}"
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 3 and parts[1] == want and parts[3] == "0A":
                return True
    return False


def pin(cpu: int, pinning: bool) -> list[str]:
    return ["taskset", "-c", str(cpu)] if pinning else []


class Running:
    """One server process (a server in one mode), started on a free port."""

    def __init__(self, spec: ServerSpec, mode: str, pinning: bool) -> None:
        self.spec, self.mode = spec, mode
        self.port = free_port()
        interp = str(spec.python) if spec.python else (shutil.which("node") or "node")
        argv = [*pin(0, pinning), interp, *spec.command(self.port, mode)]
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{spec.name}-{mode}.log"
        log = open(self.log_path, "ab")
        log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        # taskset execs the server: the pid is the server's own
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     cwd=ROOT,
                                     start_new_session=True)
        log.close()
        _CHILDREN.append(self.proc)
        deadline = time.monotonic() + 30
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{spec.name} exited with {self.proc.returncode} at start "
                                   f"(see {self.log_path.relative_to(ROOT)})")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{spec.name} did not listen within 30 s")
            time.sleep(0.02)
        time.sleep(0.1)  # let it finish starting (a listening socket may come before the loop)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP/SIGCONT: a server that is not being measured takes no CPU (socketify
        polls its loop even with no connection, on the CPU the measured server has)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc in _CHILDREN:
            _CHILDREN.remove(self.proc)


def kill_all() -> None:
    for p in list(_CHILDREN):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(2)
    _CHILDREN.clear()


def run_loadgen(server: Running, sc: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    """One measured run; returns loadgen's JSON (or {"error": ...})."""
    conns = args.mem_conns if sc.mode == "idle" and not (sc.deflate or sc.tls) else sc.conns
    cmd = [*pin(1, args.pin), str(LOADGEN), "--port", str(server.port), "--mode", sc.mode,
           "--conns", str(conns), "--inflight", str(sc.inflight), "--size", str(sc.size),
           "--warmup", str(args.warmup), "--duration", str(args.duration),
           "--server-pid", str(server.pid)]
    if args.text:
        cmd.append("--text")
    if sc.deflate:
        cmd += ["--deflate", "--json"]
    if sc.tls:
        cmd.append("--tls")
    if sc.mode == "broadcast":
        cmd += ["--settle", "0.5"]
    if sc.mode == "idle" and sc.deflate:
        cmd += ["--settle", "12"]  # past wsuv's compression_idle_timeout (5 s) twice
    timeout = 180.0 if sc.mode == "idle" else args.warmup + args.duration + 60
    cmd += ["--timeout", str(timeout)]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout + 10, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"loadgen did not finish in {timeout + 10:.0f} s"}
    if out.returncode != 0:
        lines = (out.stderr.strip() or out.stdout.strip() or f"exit {out.returncode}").splitlines()
        return {"error": lines[-1]}
    try:
        res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"unreadable loadgen output: {out.stdout[-200:]!r}"}
    if not server.alive():
        res["error"] = f"server exited ({server.proc.returncode}) during the run"
    busy = res.get("cpu_busy_pct")
    if args.pin and isinstance(busy, list) and len(busy) >= 2 and "server_cpu_pct" in res:
        # CPU time other processes took on the two CPUs during the window
        res["other_cpu0_pct"] = max(0.0, busy[0] - res["server_cpu_pct"])
        res["other_cpu1_pct"] = max(0.0, busy[1] - res["client_cpu_pct"])
    return res


# --- machine, versions ----------------------------------------------------------------


def sh(cmd: list[str], timeout: float = 20) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        kib = int(f.readline().split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": mem,
            "kernel": platform.release(), "hypervisor": sh(["systemd-detect-virt"]) or "?"}


def versions(available: list[str]) -> dict[str, str]:
    v: dict[str, str] = {}
    commit = sh(["git", "rev-parse", "--short", "HEAD"])
    dirty = " + uncommitted changes in csrc/ or wsuv/" if sh(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "csrc", "wsuv"]) else ""
    v["wsuv"] = sh([str(MAIN_PY), "-c", "import wsuv; print(wsuv.__version__)"]) + \
        f" at {commit}{dirty}"
    v["Python (wsuv)"] = sh([str(MAIN_PY), "-c", "import platform; "
                             "print(platform.python_version())"])
    v["libuv (system)"] = sh(["pkg-config", "--modversion", "libuv"])
    v["gcc"] = sh(["gcc", "-dumpfullversion"])
    if PEER_PY.exists():
        code = ("import importlib.metadata as m, platform\n"
                "print('Python (peers)', platform.python_version())\n"
                "for n in ['websockets','picows','uvloop','aiohttp','socketify','aiofastnet']:\n"
                "    try: print(n, m.version(n))\n"
                "    except Exception: print(n, 'not installed')\n")
        for line in sh([str(PEER_PY), "-c", code]).splitlines():
            name, _, ver = line.rpartition(" ")
            v[name] = ver
    if "node-ws" in available:
        v["node"] = sh(["node", "--version"])
        with contextlib.suppress(OSError, ValueError):
            v["ws (npm)"] = json.loads((ROOT / "node_modules" / "ws" / "package.json")
                                       .read_text())["version"]
    return v


def check_available(spec: ServerSpec) -> str | None:
    """None if the server can run here, else why not."""
    if spec.python is None:
        if not shutil.which("node"):
            return "node is not installed"
        if not (ROOT / "node_modules" / "ws").is_dir():
            return "node_modules/ws is missing (run npm install)"
        return None
    if not spec.python.exists():
        return f"{spec.python.relative_to(ROOT)} does not exist"
    try:
        out = subprocess.run([str(spec.python), "-c", spec.probe], capture_output=True,
                             text=True, timeout=60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return "import timed out"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"does not import: {last}"
    return None


# --- statistics and formatting ---------------------------------------------------------


def agg(runs: list[dict[str, Any]], key: str) -> tuple[float, float, float] | None:
    vals = [float(r[key]) for r in runs if "error" not in r and key in r]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def si(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def med_range(a: tuple[float, float, float] | None, fmt: Callable[[float], str] = si,
              reps: int = 1) -> str:
    if a is None:
        return "-"
    if reps <= 1 or a[1] == a[2]:
        return fmt(a[0])
    return f"{fmt(a[0])} ({fmt(a[1])}-{fmt(a[2])})"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


# --- the run ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--servers", default=",".join(s.name for s in SERVERS),
                   help="comma-separated: " + ", ".join(BY_NAME) + " (default: all)")
    p.add_argument("--scenarios", default=",".join(SCEN),
                   help="comma-separated: " + ", ".join(
                       f"{s.name} ({s.title})" for s in SCENARIOS) + " (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="development mode: 1 repetition, 0.2 s warm-up, 0.5 s windows")
    p.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    p.add_argument("--warmup", type=float, help="seconds before each window (default 0.5)")
    p.add_argument("--duration", type=float, help="seconds measured per run (default 2)")
    p.add_argument("--mem-conns", type=int, default=10000,
                   help="idle connections for the memory scenario (default 10000)")
    p.add_argument("--text", action="store_true",
                   help="send text messages (default binary: no server decodes them)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin server and client to CPUs 0 and 1")
    p.add_argument("--output", default=str(BENCH / "RESULTS.md"),
                   help="markdown report (default benchmarks/RESULTS.md)")
    p.add_argument("--json", default=str(ROOT / "build" / "bench-servers.json"),
                   help="raw results (default build/bench-servers.json)")
    args = p.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if args.quick else 0.5)
    args.duration = args.duration if args.duration is not None else (0.5 if args.quick else 2.0)
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in args.server_list:
        if s not in BY_NAME:
            p.error(f"unknown server {s!r}; choose from {', '.join(BY_NAME)}")
    for s in args.scenario_list:
        if s not in SCEN:
            p.error(f"unknown scenario {s!r}; choose from {', '.join(SCEN)}")
    if (os.cpu_count() or 1) < 2 and args.pin:
        print("fewer than 2 CPUs: not pinning", file=sys.stderr)
        args.pin = False
    return args


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def progress(msg: str) -> None:
    print(msg, flush=True)


def describe(res: dict[str, Any], sc: Scenario) -> str:
    if "error" in res:
        return "ERROR " + str(res["error"])
    if sc.mode == "idle":
        return (f"rss {res['rss_start_kib'] / 1024:.1f} MiB -> {res['rss_conns_kib'] / 1024:.1f} "
                f"MiB, {res.get('kib_per_conn', 0):.2f} KiB/conn, "
                f"{res['conns_per_s']:.0f} upgrades/s")
    return (f"{res['msgs_per_s']:>10.0f} msg/s {res['mb_per_s']:8.2f} MB/s "
            f"p50 {res['lat_p50_us']:8.1f} us  server cpu {res.get('server_cpu_pct', 0):5.1f}% "
            f"client cpu {res['client_cpu_pct']:5.1f}%"
            + (f"  {res['msgs_per_server_cpu_s']:.0f} msgs/server-CPU-s, "
               f"{res['wire_bytes_per_msg']:.0f} wire B/msg" if sc.deflate
               and "wire_bytes_per_msg" in res and "msgs_per_server_cpu_s" in res else ""))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not LOADGEN.exists():
        print(f"{LOADGEN.relative_to(ROOT)} is missing: run `make bench-servers`",
              file=sys.stderr)
        return 2
    raise_nofile()
    started = time.monotonic()
    load_before = os.getloadavg()
    # before any server starts: the wsuv commit and build these runs use
    vers = versions([n for n in args.server_list if n == "node-ws" or BY_NAME[n].python])

    skipped: dict[str, str] = {}
    servers: list[ServerSpec] = []
    for name in args.server_list:
        why = check_available(BY_NAME[name])
        if why:
            skipped[name] = why
            progress(f"skipping {name}: {why}")
        else:
            servers.append(BY_NAME[name])
    scenarios = [SCEN[n] for n in args.scenario_list]

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def record(spec: ServerSpec, sc: Scenario, res: dict[str, Any]) -> None:
        results.setdefault((spec.name, sc.name), []).append(res)
        progress(f"  {sc.name:6} {spec.name:15} {describe(res, sc)}")

    try:
        # memory: a fresh process per server
        for sc in [s for s in scenarios if s.mode == "idle"]:
            n_idle = args.mem_conns if not (sc.deflate or sc.tls) else sc.conns
            progress(f"{sc.name}: {n_idle} idle connections")
            for spec in [s for s in servers if s.applies(sc)]:
                try:
                    srv = Running(spec, sc.server_mode, args.pin)
                except RuntimeError as exc:
                    record(spec, sc, {"error": str(exc)})
                    continue
                try:
                    time.sleep(0.3)
                    record(spec, sc, run_loadgen(srv, sc, args))
                finally:
                    srv.stop()

        # throughput: every server stays up, repetitions interleaved
        running: dict[tuple[str, str], Running] = {}

        def server_for(spec: ServerSpec, mode: str) -> Running:
            key = (spec.name, mode)
            srv = running.get(key)
            if srv is not None and not srv.alive():
                progress(f"  ({spec.name} {mode} had exited with {srv.proc.returncode}; "
                         "restarting)")
                srv.stop()
                srv = None
            if srv is None:
                srv = running[key] = Running(spec, mode, args.pin)
            return srv

        timed = [s for s in scenarios if s.mode != "idle"]
        for rep in range(args.reps):
            for sc in timed:
                progress(f"{sc.name}: {sc.title} (rep {rep + 1}/{args.reps})")
                for spec in servers:
                    if not spec.applies(sc):
                        continue
                    try:
                        srv = server_for(spec, sc.server_mode)
                    except RuntimeError as exc:
                        record(spec, sc, {"error": str(exc)})
                        continue
                    idle = [r for r in running.values() if r is not srv]
                    for r in idle:
                        r.freeze(True)
                    try:
                        record(spec, sc, run_loadgen(srv, sc, args))
                    finally:
                        for r in idle:
                            r.freeze(False)
        for srv in running.values():
            srv.stop()
    finally:
        kill_all()

    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    raw = {"args": {k: v for k, v in vars(args).items()}, "skipped": skipped,
           "results": {f"{k[0]}/{k[1]}": v for k, v in results.items()}}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(raw, indent=1))
    report = render(args, servers, scenarios, results, skipped, elapsed, load_before,
                    load_after, argv, vers)
    Path(args.output).write_text(report)
    progress(f"\nwrote {args.output} ({elapsed:.0f} s); raw runs in {args.json}\n")
    print(report.split("\n## Details")[0])
    errors = sum(1 for runs in results.values() for r in runs if "error" in r)
    return 1 if errors else 0


# --- the report --------------------------------------------------------------------------


def render(args: argparse.Namespace, servers: list[ServerSpec], scenarios: list[Scenario],
           results: dict[tuple[str, str], list[dict[str, Any]]], skipped: dict[str, str],
           elapsed: float, load_before: tuple[float, float, float],
           load_after: tuple[float, float, float], argv: list[str] | None,
           vers: dict[str, str]) -> str:
    reps = args.reps

    def get(server: str, scen: str, key: str) -> tuple[float, float, float] | None:
        return agg(results.get((server, scen), []), key)

    def med(server: str, scen: str, key: str) -> float | None:
        a = get(server, scen, key)
        return a[0] if a else None

    def errors(server: str, scen: str) -> list[str]:
        return [str(r["error"]) for r in results.get((server, scen), []) if "error" in r]

    def syscalls(server: str, scen: str) -> str:
        r = med(server, scen, "server_reads_per_msg")
        wr = med(server, scen, "server_writes_per_msg")
        if r is None or wr is None or (r < 0.005 and wr < 0.005):
            return "-"  # sendto/recvfrom are not counted in /proc/PID/io
        if wr < 0.005:
            return f"{r:.2f} / -"  # reads counted, writes by sendmsg (wsuv) are not
        return f"{r:.2f} / {wr:.2f}"

    def client_bound(server: str, scen: str) -> bool:
        a = get(server, scen, "client_cpu_pct")
        return a is not None and a[0] >= 90

    names = [s.name for s in servers]
    timed = [s for s in scenarios if s.mode != "idle"]
    out: list[str] = []
    w = out.append
    shown = argv if argv is not None else sys.argv[1:]
    cmdline = "make bench-servers" + (f' ARGS="{" ".join(shown)}"' if shown else "")
    w("# wsuv against other WebSocket servers\n")
    w(f"Generated by `{cmdline}` on {datetime.date.today().isoformat()} in {elapsed:.0f} s"
      f" ({'quick mode, ' if args.quick else ''}{reps} repetition{'s' if reps > 1 else ''},"
      f" {args.warmup:g} s warm-up, {args.duration:g} s measured per run,"
      f" {'text' if args.text else 'binary'} messages).\n")
    m = machine()
    w(f"Machine: {m['nproc']} CPUs, {m['cpu']}, {m['memory']}, Linux {m['kernel']}, "
      f"virtualization: {m['hypervisor']}. Load average (1 min) {load_before[0]:.2f} before, "
      f"{load_after[0]:.2f} after."
      + (" **The machine was busy with other work: treat absolute numbers with care; "
         "ratios come from interleaved runs.**" if load_before[0] > 0.7 else "") + "\n")
    others = [(r["other_cpu0_pct"], r["other_cpu1_pct"]) for runs in results.values()
              for r in runs if "other_cpu0_pct" in r]
    if others:
        o0 = statistics.median(o[0] for o in others)
        o1 = statistics.median(o[1] for o in others)
        w(f"Other processes on the machine took a median {o0:.0f}% of CPU 0 and {o1:.0f}% of "
          "CPU 1 during the measured windows (CPU busy time from /proc/stat minus the server's "
          "and the client's own)."
          + (" **The servers did not have CPU 0 to themselves: msgs/s understate what they can "
             "do and vary from run to run; msgs per server CPU-second is the steadier "
             "measure.**" if o0 > 10 else "") + "\n")
    w("Server pinned to CPU 0 (`taskset -c 0`), load generator (`build/loadgen`, C on libuv "
      "with wsuv's own frame code) to CPU 1. " if args.pin else "No CPU pinning. ")
    w("Every server stays up for the whole run; those not being measured are stopped "
      "(SIGSTOP) during each window, so an idle server that polls its loop (socketify) "
      "takes no CPU from the one measured.\n")
    w("Each cell is msgs/s, median of the repetitions (min-max); for broadcast, deliveries/s "
      "to the 1,000 receivers. In peer rows, `c` and `py` are wsuv-c's and wsuv-py's "
      "msgs/s divided by that peer's (in the broadcast column `py` is wsuv-py with "
      "`server.broadcast`). `*` marks a client that used >= 90% of its CPU (the numbers "
      "may be the client's limit).\n")

    # the main table
    header = "| server | " + " | ".join(s.title for s in timed) + " |"
    w(header)
    w("|---" * (len(timed) + 1) + "|")
    for n in names:
        cells = []
        for sc in timed:
            if not BY_NAME[n].applies(sc):
                cells.append("n/a")
                continue
            errs = errors(n, sc.name)
            a = get(n, sc.name, "msgs_per_s")
            cell = med_range(a, si, reps)
            if client_bound(n, sc.name):
                cell += " *"
            if errs:
                cell += f" ({len(errs)} failed)"
            if not BY_NAME[n].wsuv and a is not None:
                rs = []
                for wn, tag in (("wsuv-c", "c"), ("wsuv-py", "py")):
                    r = ratio(med(wn, sc.name, "msgs_per_s"), a[0])
                    if wn in names and r != "-":
                        rs.append(f"{tag} {r}")
                if rs:
                    cell += "<br>" + ", ".join(rs)
            cells.append(cell)
        w(f"| {n} | " + " | ".join(cells) + " |")
    w("")
    if skipped:
        w("Not measured: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ".\n")

    # targets
    targets = evaluate_targets(names, [s.name for s in scenarios], med)
    if targets:
        w("## Targets\n")
        w("| target | measured | holds |")
        w("|---|---|---|")
        for t, measured, ok in targets:
            w(f"| {t} | {measured} | {'yes' if ok else '**no**'} |")
        w("")

    # compression
    zs = [s for s in scenarios if s.deflate and s.mode != "idle"]
    if zs:
        w("## permessage-deflate\n")
        w("Every server with its own permessage-deflate on (wsuv: its defaults; websockets "
          "and aiohttp: compression on; Node ws: `perMessageDeflate: true`); the load "
          "generator offers Chrome's `permessage-deflate; client_max_window_bits`, "
          "compresses its 1 KiB JSON-like messages with a 15-bit window (wsuv's "
          "csrc/pmdeflate.c in the client role), requires the server to accept, and checks "
          "every inflated echo. Wire bytes: TCP payload both ways per echoed message "
          "(frame headers included). Ratios: wsuv's value over the best peer's.\n")
        w("| server | " + " | ".join(f"{s.title}: msgs/s | msgs per server CPU-s | wire B/msg"
                                    for s in zs) + " |")
        w("|---" * (3 * len(zs) + 1) + "|")
        for n in names:
            cells = []
            for sc in zs:
                if not BY_NAME[n].applies(sc):
                    cells += ["n/a"] * 3
                    continue
                errs = errors(n, sc.name)
                if errs and len(errs) == len(results.get((n, sc.name), [])):
                    cells += [f"error: {errs[0]}", "", ""]
                    continue
                cells.append(med_range(get(n, sc.name, "msgs_per_s"), si, reps))
                cells.append(med_range(get(n, sc.name, "msgs_per_server_cpu_s"), si, reps))
                wb = med(n, sc.name, "wire_bytes_per_msg")
                cells.append("-" if wb is None else f"{wb:.0f}")
            w(f"| {n} | " + " | ".join(cells) + " |")
        for wn in ("wsuv-c", "wsuv-py"):
            if wn not in names:
                continue
            for sc in zs:
                peers = [p for p in names if not BY_NAME[p].wsuv and BY_NAME[p].applies(sc)]
                cpu = {p: med(p, sc.name, "msgs_per_server_cpu_s") for p in peers}
                cpu = {p: v for p, v in cpu.items() if v}
                mine = med(wn, sc.name, "msgs_per_server_cpu_s")
                wire = {p: med(p, sc.name, "wire_bytes_per_msg") for p in peers}
                wire = {p: v for p, v in wire.items() if v}
                mwire = med(wn, sc.name, "wire_bytes_per_msg")
                if mine and cpu:
                    best = max(cpu, key=lambda p: cpu[p])
                    w(f"\n{sc.name}: {wn} {mine / cpu[best]:.2f}x the msgs per server CPU-s "
                      f"of the best peer ({best})"
                      + (f"; wire bytes {mwire:.0f} vs smallest peer "
                         f"{min(wire.values()):.0f} B/msg" if mwire and wire else "") + ".")
        w("")

    # memory
    mem = [s for s in scenarios if s.mode == "idle"]
    if mem:
        w("## Memory and connection rate\n")
        w("RSS from /proc/PID/status of a fresh server process: at start, then with every "
          "connection open and idle (after 1 s; with deflate after 12 s, twice wsuv's "
          "compression_idle_timeout). Upgrades/s: connections opened and upgraded "
          "per second by the load generator, 64 handshakes at a time; server CPU is its "
          "CPU time spent over that phase.\n")
        w("| server | RSS at start | RSS with conns | KiB per conn | upgrades/s | "
          "server CPU for the upgrades |")
        w("|---|---|---|---|---|---|")
        for sc in mem:
            title = f"{args.mem_conns:,} idle upgraded connections" if sc.name == "mem" \
                else sc.title
            w(f"| **{title}** | | | | | |")
            for n in names:
                runs = results.get((n, sc.name), [])
                if not runs:
                    continue
                r = runs[-1]
                if "error" in r:
                    w(f"| {n} | error: {r['error']} | | | | |")
                    continue
                w(f"| {n} | {r['rss_start_kib'] / 1024:.1f} MiB | "
                  f"{r['rss_conns_kib'] / 1024:.1f} MiB | {r.get('kib_per_conn', 0):.2f} | "
                  f"{r['conns_per_s']:,.0f} | {r.get('server_cpu_connect_s', 0):.2f} s |")
        w("")

    # details
    w("## Details\n")
    w("Medians over the repetitions. MB/s counts echoed payload bytes received by the "
      "client. Latency is from a message's send to its echo's receipt (for broadcast: to its "
      "receipt by the last receiver). CPU % is CPU time over the measured window's wall "
      "time (100% = one core busy), split into user and kernel time; msgs per server "
      "CPU-s = messages / server CPU seconds, the measure least disturbed by other load "
      "on the machine. Syscalls per message: the server's read-like and write-like system "
      "calls (/proc/PID/io syscr, syscw) over the window divided by the messages (for "
      "broadcast, by the deliveries); the kernel counts read/readv/write/writev there but "
      "not recvfrom/sendto/sendmsg, which uvloop, aiofastnet and uWS use (and wsuv's "
      "socket writes, one sendmsg each), hence `-`.\n")
    for sc in timed:
        w(f"### {sc.title}\n")
        w("| server | msgs/s | MB/s | p50 us | p99 us | server CPU (user + sys) "
          "| msgs per server CPU-s | MB per server CPU-s | server syscalls per msg "
          "(read / write) | client CPU | other load on CPU 0 / 1 |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for n in names:
            if not BY_NAME[n].applies(sc) or (n, sc.name) not in results:
                continue
            errs = errors(n, sc.name)
            if len(errs) == len(results[(n, sc.name)]):
                w(f"| {n} | error: {errs[0]} | | | | | | | | | |")
                continue

            def f(key: str, fmt: str = "{:.0f}", _n: str = n, _s: str = sc.name) -> str:
                v = med(_n, _s, key)
                return "-" if v is None else fmt.format(v)

            mbcpu = med(n, sc.name, "msgs_per_server_cpu_s")
            mbcpu_s = "-" if mbcpu is None else f"{mbcpu * sc.size / 1e6:.1f}"
            secs = med(n, sc.name, "seconds") or 1.0
            usr, sys_ = med(n, sc.name, "server_user_s"), med(n, sc.name, "server_sys_s")
            split = "" if usr is None or sys_ is None else \
                f" ({100 * usr / secs:.0f} + {100 * sys_ / secs:.0f})"
            w(f"| {n} | {med_range(get(n, sc.name, 'msgs_per_s'), si, reps)} | "
              f"{f('mb_per_s', '{:.1f}')} | {f('lat_p50_us', '{:.1f}')} | "
              f"{f('lat_p99_us', '{:.0f}')} | {f('server_cpu_pct', '{:.0f}%')}{split} | "
              f"{si(mbcpu) if mbcpu else '-'} | {mbcpu_s} | "
              f"{syscalls(n, sc.name)} | "
              f"{f('client_cpu_pct', '{:.0f}%')}"
              + (" *" if client_bound(n, sc.name) else "")
              + f" | {f('other_cpu0_pct', '{:.0f}%')} / {f('other_cpu1_pct', '{:.0f}%')} |")
        for n in names:
            for e in errors(n, sc.name):
                w(f"\n{n}: failed run: {e}")
        w("")

    w("## Servers\n")
    for n in names:
        w(f"- `{n}`: {BY_NAME[n].label}")
    w("\nAll bind 127.0.0.1, with compression off (the client offers no extension and "
      "rejects any), and echo each message with its own type; in broadcast mode every "
      "server sends each message to all its connections (the sender too) with a Python "
      "loop, except `wsuv-py` (`server.broadcast`, one C call) and node-ws (a JavaScript "
      "loop). Sources: `benchmarks/peers/`. The load generator checks every byte of every "
      "echo, in order, and fails the run on any difference.\n")
    w("## Versions\n")
    for k, v in vers.items():
        w(f"- {k}: {v}")
    w("")
    return "\n".join(out)


def evaluate_targets(names: list[str], scen: list[str],
                     med: Callable[[str, str, str], float | None]
                     ) -> list[tuple[str, str, bool]]:
    rows: list[tuple[str, str, bool]] = []

    def cmp(title: str, a: tuple[str, str, str], b: tuple[str, str, str], factor: float,
            transform: Callable[[float], float] = lambda x: x) -> None:
        if a[0] not in names or b[0] not in names or a[1] not in scen:
            return
        va, vb = med(*a), med(*b)
        if va is None or vb is None or vb <= 0:
            rows.append((title, "not measured", False))
            return
        r = transform(va) / transform(vb)
        rows.append((title, f"{r:.2f}x", r >= factor))

    P = "picows-uvloop"
    cmp("c100: wsuv-py >= 1.3x picows-uvloop msgs/s", ("wsuv-py", "c100", "msgs_per_s"),
        (P, "c100", "msgs_per_s"), 1.3)
    cmp("c100: wsuv-py >= 1.3x picows-uvloop msgs per server CPU-s",
        ("wsuv-py", "c100", "msgs_per_server_cpu_s"), (P, "c100", "msgs_per_server_cpu_s"), 1.3)
    cmp("c100: wsuv-c >= 1.35x picows-uvloop msgs/s", ("wsuv-c", "c100", "msgs_per_s"),
        (P, "c100", "msgs_per_s"), 1.35)
    cmp("k16: wsuv-py >= 3x picows-uvloop msgs/s", ("wsuv-py", "k16", "msgs_per_s"),
        (P, "k16", "msgs_per_s"), 3)
    cmp("k16: wsuv-py >= 8x websockets msgs/s", ("wsuv-py", "k16", "msgs_per_s"),
        ("websockets", "k16", "msgs_per_s"), 8)
    cmp("k16: wsuv-c >= 10x picows-uvloop msgs/s", ("wsuv-c", "k16", "msgs_per_s"),
        (P, "k16", "msgs_per_s"), 10)
    for sc_name in ("c100", "k16"):  # issue 15: a C application costs what the built-in echo does
        cmp(f"{sc_name}: wsuv-capp (examples/c/echo.c) >= 0.95x wsuv-c msgs per server CPU-s",
            ("wsuv-capp", sc_name, "msgs_per_server_cpu_s"),
            ("wsuv-c", sc_name, "msgs_per_server_cpu_s"), 0.95)
    for wn in ("wsuv-py", "wsuv-c"):
        cmp(f"64k: {wn} >= 1.3x picows-uvloop MB per server CPU-s",
            (wn, "64k", "msgs_per_server_cpu_s"), (P, "64k", "msgs_per_server_cpu_s"), 1.3)
    if "c1" in scen:
        for wn in ("wsuv-py", "wsuv-c", "wsuv-py-busy", "wsuv-c-busy"):
            if wn not in names:
                continue
            mine = med(wn, "c1", "lat_p50_us")
            others = {p: med(p, "c1", "lat_p50_us") for p in names if not BY_NAME[p].wsuv}
            others_ok = {p: v for p, v in others.items() if v is not None}
            if mine is None or not others_ok:
                rows.append((f"c1: {wn} p50 latency <= every peer's", "not measured", False))
                continue
            best = min(others_ok, key=lambda p: others_ok[p])
            rows.append((f"c1: {wn} p50 latency <= every peer's",
                         f"{mine:.1f} us vs best peer {best} {others_ok[best]:.1f} us",
                         mine <= others_ok[best]))
    if "zmem" in scen:
        for wn in ("wsuv-c", "wsuv-py"):
            v = med(wn, "zmem", "kib_per_conn")
            if wn in names:
                rows.append((f"zmem: {wn} <= 8 KiB per idle connection with deflate",
                             "not measured" if v is None else f"{v:.2f} KiB",
                             v is not None and v <= 8))
    for z in ("z1", "z16"):
        if z not in scen:
            continue
        for wn in ("wsuv-c", "wsuv-py"):
            peers = [p for p in ("websockets", "aiohttp", "node-ws") if p in names]
            vals = {p: med(p, z, "msgs_per_server_cpu_s") for p in peers}
            vals = {p: v for p, v in vals.items() if v}
            mine = med(wn, z, "msgs_per_server_cpu_s")
            if wn not in names or not vals:
                continue
            best = max(vals, key=lambda p: vals[p])
            r = (mine or 0) / vals[best]
            rows.append((f"{z}: {wn} >= 2x the fastest deflate peer, msgs per server CPU-s",
                         f"{r:.2f}x ({best})", r >= 2))
            wire = {p: med(p, z, "wire_bytes_per_msg") for p in peers}
            wire = {p: v for p, v in wire.items() if v}
            mw = med(wn, z, "wire_bytes_per_msg")
            if mw and wire:
                rows.append((f"{z}: {wn} wire bytes per message <= every deflate peer's",
                             f"{mw:.0f} vs {min(wire.values()):.0f} B",
                             mw <= min(wire.values())))
    if "mem" in scen:
        for wn in ("wsuv-c", "wsuv-py"):
            v = med(wn, "mem", "kib_per_conn")
            if wn in names:
                rows.append((f"mem: {wn} <= 4 KiB per idle upgraded connection",
                             "not measured" if v is None else f"{v:.2f} KiB",
                             v is not None and v <= 4))
        v = med("wsuv-c", "mem", "rss_start_kib")
        if "wsuv-c" in names:
            rows.append(("mem: wsuv-serve idle RSS <= 15 MiB",
                         "not measured" if v is None else f"{v / 1024:.1f} MiB",
                         v is not None and v <= 15 * 1024))
    # TLS (issue 13): wsuv's OpenSSL layer against the peers on Python's ssl.
    cmp("tk16: wsuv-py >= 1.5x picows-uvloop msgs per server CPU-s (TLS)",
        ("wsuv-py", "tk16", "msgs_per_server_cpu_s"), (P, "tk16", "msgs_per_server_cpu_s"), 1.5)
    cmp("tk16: wsuv-c >= 1.5x picows-uvloop msgs per server CPU-s (TLS)",
        ("wsuv-c", "tk16", "msgs_per_server_cpu_s"), (P, "tk16", "msgs_per_server_cpu_s"), 1.5)
    if "tmem" in scen:
        for wn in ("wsuv-c", "wsuv-py"):
            v = med(wn, "tmem", "kib_per_conn")
            peers = {p: med(p, "tmem", "kib_per_conn") for p in names
                     if not BY_NAME[p].wsuv and p in TLS_SERVERS}
            peers = {p: x for p, x in peers.items() if x}
            if wn in names and peers:
                low = min(peers, key=lambda p: peers[p])
                rows.append((f"tmem: {wn} KiB per idle TLS connection < every peer's",
                             "not measured" if v is None else
                             f"{v:.2f} vs {low} {peers[low]:.2f} KiB",
                             v is not None and v < peers[low]))
    # wsuv.aio (issue 11): the async connection handler against the peers on the same loop.
    cpu = "msgs_per_server_cpu_s"
    cmp("k16: wsuv-aio-asyncio >= 3x websockets msgs per server CPU-s",
        ("wsuv-aio-asyncio", "k16", cpu), ("websockets", "k16", cpu), 3)
    cmp("k16: wsuv-aio-asyncio >= 1.5x picows-asyncio msgs per server CPU-s",
        ("wsuv-aio-asyncio", "k16", cpu), ("picows-asyncio", "k16", cpu), 1.5)
    cmp("k16: wsuv-aio-uvloop >= 1.5x picows-uvloop msgs per server CPU-s",
        ("wsuv-aio-uvloop", "k16", cpu), (P, "k16", cpu), 1.5)
    for sc in ("c1", "c100", "c1000"):
        cmp(f"{sc}: wsuv-aio-uvloop >= picows-uvloop msgs per server CPU-s",
            ("wsuv-aio-uvloop", sc, cpu), (P, sc, cpu), 1.0)
        cmp(f"{sc}: wsuv-aio-asyncio >= picows-asyncio msgs per server CPU-s",
            ("wsuv-aio-asyncio", sc, cpu), ("picows-asyncio", sc, cpu), 1.0)
    for sc in ("c100", "k16"):
        cmp(f"{sc}: wsuv-py-uvloop (embedded) within 10% of wsuv-py msgs per server CPU-s",
            ("wsuv-py-uvloop", sc, cpu), ("wsuv-py", sc, cpu), 0.9)
    cmp("bcast: wsuv-capp (host->broadcast) >= wsuv-py (server.broadcast), deliveries per "
        "server CPU-s", ("wsuv-capp", "bcast", "msgs_per_server_cpu_s"),
        ("wsuv-py", "bcast", "msgs_per_server_cpu_s"), 1.0)
    cmp("bcast: wsuv-py (server.broadcast) >= 5x picows-uvloop's Python loop, deliveries/s",
        ("wsuv-py", "bcast", "msgs_per_s"), (P, "bcast", "msgs_per_s"), 5)
    return rows


@contextlib.contextmanager
def _signals_kill_children() -> Iterator[None]:
    def handler(signum: int, _frame: Any) -> None:
        kill_all()
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


if __name__ == "__main__":
    with _signals_kill_children():
        sys.exit(main())
