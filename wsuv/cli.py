"""``wsuv-serve``: run a handler (or the built-in C echo) from the command line.

Options are generated from :data:`wsuv.options.OPTIONS`, so each has the same
name (with dashes) and default as in the Python API.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import time

from wsuv import __version__
from wsuv.options import OPTIONS, resolve

TYPE_CHECKING = False  # typing is not imported at run time: it costs RSS
if TYPE_CHECKING:
    import socket
    from typing import Any

log = logging.getLogger("wsuv")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: APP, every server option, and process options."""
    p = argparse.ArgumentParser(
        prog="wsuv-serve",
        description="Serve WebSockets with wsuv. With no APP, run the built-in echo server "
        "(messages are echoed in C; GET / shows a page that tests it).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("app", nargs="?", help="handler as module:attribute (a Handler instance, "
                   "or a class instantiated with no arguments)")
    p.add_argument("--version", action="version", version=f"wsuv {__version__}")
    for opt in OPTIONS:
        flag = "--" + opt.name.replace("_", "-")
        if opt.type is bool:
            p.add_argument(flag, dest=opt.name, action=argparse.BooleanOptionalAction,
                           default=opt.default, help=opt.help)
        elif opt.choices is not None:
            p.add_argument(flag, dest=opt.name, choices=opt.choices, default=opt.default,
                           help=opt.help)
            p.add_argument("--no-" + flag[2:], dest=opt.name, action="store_const",
                           const=None, help=f"turn {flag} off")
        else:
            p.add_argument(flag, dest=opt.name, type=opt.type, default=opt.default,
                           help=opt.help)
    p.add_argument("--workers", type=int, default=1, help="processes serving one listening "
                   "socket; a supervisor restarts any that dies")
    p.add_argument("--daemon", action="store_true", help="detach from the terminal "
                   "(double fork, setsid); stdio goes to /dev/null or --log-file")
    p.add_argument("--pidfile", help="write the (daemon or supervisor) process id here")
    p.add_argument("--log-file", help="append logs here instead of stderr")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error", "critical"],
                   help="logging level")
    return p


def load_app(spec: str) -> Any:
    """Import ``module:attribute``; instantiate it if it is a class."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"wsuv-serve: APP must be module:attribute, not {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"wsuv-serve: cannot load {spec!r}: {exc}") from None
    return obj() if isinstance(obj, type) else obj


def _systemd_fd() -> int | None:
    """fd 3 when systemd socket activation (LISTEN_PID/LISTEN_FDS) applies to us."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(
            os.environ.get("LISTEN_FDS", "0") or 0) >= 1:
        return 3
    return None


def _daemonize(log_file: str | None) -> None:
    """Detach: fork, setsid, fork again; stdio to /dev/null (stderr to the log file)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.umask(0o022)
    devnull = os.open(os.devnull, os.O_RDWR)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_file else devnull
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)


def _shared_socket(opts: dict[str, Any]) -> socket.socket:
    """The listening socket workers inherit (TCP or Unix)."""
    import socket

    if opts["unix_path"]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(opts["unix_path"])
    else:
        info = socket.getaddrinfo(opts["host"], opts["port"], type=socket.SOCK_STREAM,
                                  flags=socket.AI_PASSIVE)[0]
        s = socket.socket(info[0], socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(info[4])
    s.listen(opts["backlog"])
    s.set_inheritable(True)
    return s


def _run_worker(app: Any, opts: dict[str, Any]) -> None:
    from wsuv.server import Server

    server = Server(app, **opts)
    for url in server.listen():
        log.info("wsuv listening on %s (pid %d)", url, os.getpid())
    server.run()


def _supervise(app: Any, opts: dict[str, Any], workers: int) -> int:
    """Fork workers on one socket, restart any that dies, forward signals."""
    sock = _shared_socket(opts)
    where = opts["unix_path"] or "ws://{}:{}/".format(*sock.getsockname()[:2])
    log.info("wsuv listening on %s with %d workers (supervisor pid %d)", where, workers,
             os.getpid())
    wopts = dict(opts, fd=sock.fileno(), unix_path=None)
    children: dict[int, float] = {}
    stopping = 0

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            try:
                _run_worker(app, wopts)
            except BaseException:
                log.exception("worker failed")
                os._exit(1)
            os._exit(0)
        children[pid] = time.monotonic()

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping += 1
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for _ in range(workers):
        spawn()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        started = children.pop(pid, time.monotonic())
        if stopping:
            continue
        log.warning("worker %d exited (status %d); restarting", pid, status)
        if time.monotonic() - started < 1.0:
            time.sleep(1.0)  # a worker that dies at once: don't spin
        if not stopping:
            spawn()
    sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``wsuv-serve``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    opts = {o.name: getattr(args, o.name) for o in OPTIONS}
    try:
        resolve(opts)
    except (TypeError, ValueError) as exc:
        parser.error("--" + str(exc).replace("_", "-"))  # exits 2, naming the flag
    if opts["fd"] is None:
        opts["fd"] = _systemd_fd()
    if args.daemon:
        _daemonize(args.log_file)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        filename=None if args.daemon else args.log_file,
    )
    if args.pidfile:
        # Written whole, then renamed: a reader never sees an empty file.
        tmp = f"{args.pidfile}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, args.pidfile)
    app = load_app(args.app) if args.app else None
    try:
        if args.workers > 1:
            return _supervise(app, opts, args.workers)
        _run_worker(app, opts)
        return 0
    except OSError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if args.pidfile:
            try:
                os.unlink(args.pidfile)
            except OSError:
                pass


if __name__ == "__main__":
    raise SystemExit(main())
