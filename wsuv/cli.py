"""``wsuv-serve``: run a handler (or the built-in C echo) from the command line.

Options are generated from :data:`wsuv.options.OPTIONS`, so each has the same
name (with dashes) and default as in the Python API.

A failed start ends with one line on stderr naming what is wrong and exit
status 1 (2 for a malformed command line); ``--log-level debug`` adds the
traceback. With ``--daemon`` the command waits until the daemon is listening
or has failed, so its status and message are the daemon's.
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
    from collections.abc import Callable
    from typing import Any

log = logging.getLogger("wsuv")


class StartError(Exception):
    """A start-up failure; its message is the one line ``wsuv-serve`` prints."""


def _workers(text: str) -> int:
    """argparse type of --workers: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: APP, every server option, and process options."""
    p = argparse.ArgumentParser(
        prog="wsuv-serve",
        description="Serve WebSockets with wsuv. With no APP, run the built-in echo server "
        "(messages are echoed in C; GET / shows a page that tests it).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("app", nargs="?", help="handler as module:attribute (a Handler instance, "
                   "or a class instantiated with no arguments), or a C application: "
                   "path/app.so, or path/app.c (compiled once, cached)")
    p.add_argument("--version", action="version", version=f"wsuv {__version__}")
    # C applications (wsuv/capp.py).
    p.add_argument("--app-arg", default=None, help="string passed to a C application's "
                   "wsuv_app_init (default: empty)")
    p.add_argument("--print-include-dir", action="store_true", help="print the directory of "
                   "wsuv_app.h (for cc -I) and exit")
    for opt in OPTIONS:
        flag = "--" + opt.name.replace("_", "-")
        text = opt.help.replace("%", "%%")  # argparse formats help with %
        if opt.type is bool:
            p.add_argument(flag, dest=opt.name, action=argparse.BooleanOptionalAction,
                           default=opt.default, help=text)
        elif opt.choices is not None:
            p.add_argument(flag, dest=opt.name, choices=opt.choices, default=opt.default,
                           help=text)
            p.add_argument("--no-" + flag[2:], dest=opt.name, action="store_const",
                           const=None, help=f"turn {flag} off")
        else:
            p.add_argument(flag, dest=opt.name, type=opt.type, default=opt.default,
                           help=text)
    p.add_argument("--workers", type=_workers, default=1, help="processes serving one "
                   "listening socket; a supervisor restarts any that dies. Connections are "
                   "split between them: publish reaches every worker's subscribers (through "
                   "a hub process, or Redis with --pubsub-url), a broadcast only its own "
                   "process's share")
    p.add_argument("--daemon", action="store_true", help="detach from the terminal "
                   "(double fork, setsid) once listening; stdio goes to /dev/null or "
                   "--log-file; exits 1 with the daemon's error if it fails to start")
    p.add_argument("--pidfile", help="write the (daemon or supervisor) process id here "
                   "once listening; removed at exit")
    p.add_argument("--log-file", help="append logs here instead of stderr")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error", "critical"],
                   help="logging level (debug also prints the traceback of a failed start)")
    return p


# -- loading the application ----------------------------------------------------------

def _where(exc: BaseException) -> str:
    """file:line where exc was raised, skipping importlib's own frames."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen ")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` and resolve it to a handler instance.

    Every failure is a :class:`StartError` of one sentence: a syntax error
    (file:line), an exception raised by the import (its type, message and
    where), a missing module or attribute, or an object that is not a handler
    (the same check as ``wsuv.Server``: :func:`wsuv.handler.resolve_handler`).
    """
    from wsuv.handler import resolve_handler

    module_name, _, attr = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise StartError(f"cannot load {spec!r}: syntax error in {exc.filename}:{exc.lineno}: "
                         f"{exc.msg}") from exc
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise StartError(f"cannot load {spec!r}: no module named {exc.name!r} (looked in "
                             f"the current directory and sys.path)") from exc
        raise StartError(f"cannot load {spec!r}: importing {module_name} raised "
                         f"ModuleNotFoundError: {exc} (at {_where(exc)})") from exc
    except Exception as exc:
        raise StartError(f"cannot load {spec!r}: importing {module_name} raised "
                         f"{type(exc).__name__}: {exc} (at {_where(exc)})") from exc
    owner = f"module {module_name!r}"
    parts = attr.split(".")
    for i, part in enumerate(parts):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise StartError(f"cannot load {spec!r}: {owner} has no attribute "
                             f"{part!r}") from exc
        owner = f"{type(obj).__name__} {module_name}:{'.'.join(parts[:i + 1])}"
    try:
        return resolve_handler(obj, where=spec, allow_async=True)
    except TypeError as exc:
        raise StartError(str(exc)) from exc
    except Exception as exc:  # the class's __init__ raised
        raise StartError(f"{spec}() raised {type(exc).__name__}: {exc} "
                         f"(at {_where(exc)})") from exc


# -- checks made before anything starts -------------------------------------------------

def _precheck(args: argparse.Namespace, opts: dict[str, Any]) -> None:
    """Refuse, in the foreground, paths that cannot work: before a fork hides them."""
    if args.log_file:
        try:
            with open(args.log_file, "a"):
                pass
        except OSError as exc:
            raise StartError(f"cannot open --log-file {args.log_file}: "
                             f"{exc.strerror}") from exc
    if args.pidfile:
        tmp = f"{args.pidfile}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w"):
                pass
            os.unlink(tmp)
        except OSError as exc:
            raise StartError(f"cannot write --pidfile {args.pidfile}: "
                             f"{exc.strerror}") from exc
    static = opts["static_dir"]
    if static is not None and not os.path.isdir(static):
        what = "is not a directory" if os.path.exists(static) else "does not exist"
        raise StartError(f"--static-dir {static} {what}")
    from wsuv.tls import check, wants_tls

    if wants_tls(opts):
        try:
            check(opts)  # certificate, key, password, CA file, ciphers: one sentence
        except (TypeError, ValueError) as exc:
            raise StartError(str(exc)) from exc


def _write_pidfile(path: str) -> None:
    """Written whole, then renamed: a reader never sees an empty file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise StartError(f"cannot write --pidfile {path}: {exc.strerror}") from exc


# -- daemon ----------------------------------------------------------------------------

def _daemonize(log_file: str | None) -> tuple[int | None, int]:
    """Detach: fork, setsid, fork again; stdio to /dev/null (stderr to the log file).

    Returns ``(status, fd)``. In the command the user ran, status is the exit
    status it must return, after waiting on a pipe for the daemon to write
    ``ok`` (listening) or its error (and to close it). In the daemon, status
    is None and fd is the pipe's write end, for :class:`_Start`.
    """
    r, w = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(w)
        os.waitpid(first, 0)
        chunks = []
        try:
            while chunk := os.read(r, 65536):
                chunks.append(chunk)
        except KeyboardInterrupt:
            return 130, -1
        finally:
            os.close(r)
        text = b"".join(chunks).decode("utf-8", "replace")
        if text == "ok\n":
            return 0, -1
        sys.stderr.write(text or "wsuv-serve: the daemon exited before it was listening\n")
        return 1, -1
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.umask(0o022)
    devnull = os.open(os.devnull, os.O_RDWR)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_file else devnull
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    return None, w


class _Start:
    """Where the outcome of start-up goes: the terminal, or a daemon's waiting parent."""

    def __init__(self, pipe: int | None, pidfile: str | None, debug: bool,
                 log_file: bool) -> None:
        self.pipe = pipe
        self.pidfile = pidfile
        self.debug = debug
        self.log_file = log_file  # logs go to a file: the failure is recorded there too
        self.wrote_pidfile = False
        self.started = False

    def ready(self) -> None:
        """Listening: write the pidfile; from now on a failure is not a failed start."""
        if self.pidfile:
            _write_pidfile(self.pidfile)
            self.wrote_pidfile = True
        self.started = True

    def release(self) -> None:
        """Let a waiting parent exit 0: called once signals are handled."""
        self._tell(b"ok\n")

    def failed(self, exc: BaseException) -> int:
        """Report a failed start in one line (and the traceback under debug); exit 1."""
        import traceback

        msg = str(exc) if isinstance(exc, StartError) else _one_line(exc)
        line = f"wsuv-serve: {msg}\n"
        tb = "".join(traceback.format_exception(exc)) if self.debug else ""
        if self.log_file or self.pipe is not None:
            log.error("%s", msg, exc_info=exc if self.debug else None)
        if self.pipe is not None:
            self._tell((tb + line).encode())
        else:
            sys.stderr.write(tb + line)
        return 1

    def _tell(self, data: bytes) -> None:
        if self.pipe is None:
            return
        try:
            os.write(self.pipe, data)
        except OSError:
            pass  # the parent is gone (killed): nobody to tell
        os.close(self.pipe)
        self.pipe = None


def _one_line(exc: BaseException) -> str:
    """An unexpected exception as one line: its type, message and where."""
    return f"{type(exc).__name__}: {exc} (at {_where(exc)})"


# -- serving ---------------------------------------------------------------------------

def _listen_error(exc: OSError, where: str) -> StartError:
    """A bind/resolve failure as one sentence naming the address."""
    import socket

    if isinstance(exc, socket.gaierror):
        return StartError(f"cannot resolve --host {where}: {exc.strerror}")
    msg = exc.strerror or str(exc)
    msg = msg[:1].lower() + msg[1:]  # as libuv words it: "address already in use"
    return StartError(msg if msg.startswith("cannot listen") else
                      f"cannot listen on {where}: {msg}")


def _systemd_fd() -> int | None:
    """fd 3 when systemd socket activation (LISTEN_PID/LISTEN_FDS) applies to us."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(
            os.environ.get("LISTEN_FDS", "0") or 0) >= 1:
        return 3
    return None


def _shared_socket(opts: dict[str, Any]) -> socket.socket:
    """The listening socket workers inherit (TCP or Unix)."""
    import socket

    if opts["unix_path"]:
        where = opts["unix_path"]
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(where)
        except OSError as exc:
            raise _listen_error(exc, where) from exc
    else:
        try:
            info = socket.getaddrinfo(opts["host"], opts["port"], type=socket.SOCK_STREAM,
                                      flags=socket.AI_PASSIVE)[0]
        except OSError as exc:
            raise _listen_error(exc, opts["host"]) from exc
        host = str(info[4][0])
        where = f"[{host}]:{opts['port']}" if ":" in host else f"{host}:{opts['port']}"
        s = socket.socket(info[0], socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(info[4])
        except OSError as exc:
            s.close()
            raise _listen_error(exc, where) from exc
    s.listen(opts["backlog"])
    s.set_inheritable(True)
    return s


def _run_worker(app: Any, opts: dict[str, Any], start: _Start | None = None,
                bus: str | None = None) -> None:
    """Serve in this process; ``start`` learns when the listeners are bound;
    ``bus`` is the worker bus hub's socket (a worker of --workers N)."""
    from wsuv.handler import has_async_methods, is_connection_handler
    from wsuv.server import Server

    if is_connection_handler(app) or has_async_methods(app):
        _run_worker_aio(app, opts, start, bus)
        return

    try:
        server = Server(app, **opts)
        if bus is not None:
            server._join_bus(bus)
    except (TypeError, ValueError) as exc:  # Server's own checks: already one sentence
        raise StartError(str(exc)) from exc
    try:
        server.listen()
    except OSError as exc:
        raise _listen_error(exc, opts["host"]) from exc
    if start is not None:
        start.ready()
        # From inside the loop, as "listening on" is: a SIGTERM sent by whoever
        # waited for the daemon then finds the loop's graceful handler.
        server.call_soon_threadsafe(start.release)
    server.run()
    if getattr(type(app), "_wsuv_c_app", False):
        app.close()  # the C application's on_destroy, in this process


def _run_worker_aio(app: Any, opts: dict[str, Any], start: _Start | None,
                    bus: str | None = None) -> None:
    """An async handler: a fresh asyncio loop in this process (uvloop when
    installed), the server embedded in it, SIGINT/SIGTERM drain it."""
    import asyncio

    import wsuv.aio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        try:
            server = await wsuv.aio.serve(app, **dict(opts, handle_signals=False))
        except (TypeError, ValueError) as exc:
            raise StartError(str(exc)) from exc
        except OSError as exc:
            raise _listen_error(exc, opts["host"]) from exc
        if bus is not None:
            server.server._join_bus(bus)
            server._driver.soon()  # the link's connect reaches epoll at the next turn
        if opts["handle_signals"]:
            signals = 0

            def on_signal() -> None:
                nonlocal signals
                signals += 1  # the first drains gracefully, a second stops at once
                server.close(graceful=signals == 1)

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal)
        if start is not None:
            start.ready()
            start.release()
        await server.wait_closed()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())





def _bus_socket() -> tuple[socket.socket, str]:
    """The worker bus hub's listening Unix socket, in a fresh private directory.

    The supervisor holds it for its whole life, so workers (re)connecting
    while the hub restarts wait in its backlog."""
    import socket
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="wsuv-bus-"), "hub.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(128)
    return s, path


def _run_hub(fd: int) -> int:
    """The hub process: relay publishes between the workers until SIGTERM."""
    from wsuv._core import ffi, lib

    cfg = ffi.new("ws_bushub_config *")
    lib.ws_bushub_config_default(cfg)
    err = ffi.new("char[256]")
    st = ffi.new("ws_bushub_stats *")
    rc = lib.ws_bushub_run(fd, cfg, st, err, len(err))
    for sig in (signal.SIGINT, signal.SIGTERM):  # stopping already: a repeat must not kill
        signal.signal(sig, signal.SIG_IGN)
    if rc != 0:
        log.error("%s", ffi.string(err).decode())
        return 1
    log.info("worker bus hub stopped: %s",
             " ".join(f"{k}={int(getattr(st, k))}" for k in _HUB_COUNTERS))
    return 0


# the hub's final counters, logged when it stops (csrc/bushub.h)
_HUB_COUNTERS = ("accepted", "received", "forwarded", "dropped_full", "malformed")


def _supervise(app: Any, opts: dict[str, Any], workers: int, start: _Start) -> int:
    """Fork workers on one socket, restart any that dies, forward signals.

    Without ``pubsub_url`` a hub process joins the workers (csrc/bushub.c):
    each worker links to it, so a publish in any worker reaches every
    worker's subscribers. With ``pubsub_url`` each worker is a Redis node
    instead, which already reaches them all exactly once."""
    sock = _shared_socket(opts)
    scheme = "wss" if opts["ssl_certfile"] else "ws"
    where = opts["unix_path"] or "{}://{}:{}/".format(scheme, *sock.getsockname()[:2])
    wopts = dict(opts, fd=sock.fileno(), unix_path=None)
    bus, bus_path = (None, None) if opts["pubsub_url"] else _bus_socket()
    children: dict[int, float] = {}
    hub: list[int] = []  # the hub's pid while it runs
    stopping = 0

    # A graceful stop is bounded: a worker still running this long after the
    # signal (a handler stuck in a call, a loop that cannot turn) is killed.
    grace = opts["shutdown_timeout"] + opts["close_timeout"] + 5.0
    killed: list[int] = []

    stop_signals = {signal.SIGINT, signal.SIGTERM}

    def child(run: Callable[[], None], register: Callable[[int], None]) -> None:
        # Blocked across the fork: a signal that arrives meanwhile must not run
        # the supervisor's handler inside the child (it would be swallowed
        # there); the child gets it once its own disposition is in place, and
        # the parent's handler runs only once the new pid is registered.
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            raise
        if pid != 0:
            register(pid)
            if stopping and register is add_worker:  # forked as a stop began
                os.kill(pid, signal.SIGTERM)  # it missed the forward
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            return
        else:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
            try:
                run()
            except BaseException:
                log.exception("worker failed")
                os._exit(1)
            os._exit(0)

    def work() -> None:
        if bus is not None:
            bus.close()  # the hub's: a worker only connects to it
        _run_worker(app, wopts, bus=bus_path)

    def relay() -> None:
        sock.close()
        if bus is not None:
            os._exit(_run_hub(bus.fileno()))

    def forward(signum: int, _frame: Any) -> None:
        # To the workers only: the hub serves them while they drain, and gets
        # its one SIGTERM once they are gone (a second would kill it before
        # its final counters).
        nonlocal stopping
        stopping += 1
        if stopping == 1:
            signal.setitimer(signal.ITIMER_REAL, grace)
        for pid in list(children) or list(hub):  # no worker left: the hub at once
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def overdue(_signum: int, _frame: Any) -> None:
        for pid in [*children, *hub]:
            log.warning("worker %d still running %.0f s after the signal; killing it",
                        pid, grace)
            killed.append(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGALRM, overdue)
    start.ready()
    start.release()
    log.info("wsuv listening on %s with %d workers (supervisor pid %d)", where, workers,
             os.getpid())
    hub_started = time.monotonic()
    def add_worker(pid: int) -> None:
        children[pid] = time.monotonic()

    if bus is not None:
        child(relay, hub.append)
    for _ in range(workers):
        child(work, add_worker)
    while children or hub:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if hub and pid == hub[0]:
            hub.clear()
            if stopping:
                continue
            log.warning("worker bus hub %d exited (status %d); restarting", pid, status)
            if time.monotonic() - hub_started < 1.0:
                time.sleep(1.0)  # a hub that dies at once: don't spin
            hub_started = time.monotonic()
            if not stopping:
                child(relay, hub.append)
            continue
        started = children.pop(pid, time.monotonic())
        if stopping:
            if not children:  # the workers are done: the hub goes too
                for h in hub:
                    try:
                        os.kill(h, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            continue
        log.warning("worker %d exited (status %d); restarting", pid, status)
        if time.monotonic() - started < 1.0:
            time.sleep(1.0)  # a worker that dies at once: don't spin
        if not stopping:
            child(work, add_worker)
    sock.close()
    if bus is not None and bus_path is not None:
        import shutil

        bus.close()
        shutil.rmtree(os.path.dirname(bus_path), ignore_errors=True)
    signal.setitimer(signal.ITIMER_REAL, 0)
    return 1 if killed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``wsuv-serve``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    c_app = bool(args.app) and args.app.endswith((".so", ".c"))  # a C application
    if args.print_include_dir:
        from wsuv.capp import get_include
        print(get_include())
        return 0
    if args.app_arg is not None and not c_app:
        parser.error("--app-arg is for a C application (APP ending in .so or .c)")
    opts = {o.name: getattr(args, o.name) for o in OPTIONS}
    try:
        resolve(opts)
    except (TypeError, ValueError) as exc:
        parser.error("--" + str(exc).replace("_", "-"))  # exits 2, naming the flag
    if args.app is not None and not c_app:
        module_name, _, attr = args.app.partition(":")
        if not module_name or not attr:
            parser.error(f"APP must be module:attribute, not {args.app!r}")
    if opts["fd"] is None:
        opts["fd"] = _systemd_fd()
    debug = args.log_level == "debug"
    try:
        _precheck(args, opts)
    except StartError as exc:
        return _Start(None, None, debug, False).failed(exc)
    pipe = None
    if args.daemon:
        status, pipe = _daemonize(args.log_file)
        if status is not None:
            return status
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        filename=None if args.daemon else args.log_file,
    )
    start = _Start(pipe, args.pidfile, debug, bool(args.log_file))
    try:
        app: Any
        if c_app:
            from wsuv.capp import cli_load
            app = cli_load(args.app, args.app_arg or "")  # SystemExit(1) with its one line
        else:
            app = load_app(args.app) if args.app else None
        if args.workers > 1:
            return _supervise(app, opts, args.workers, start)
        _run_worker(app, opts, start)
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not start.started:
            return start.failed(exc)
        if not isinstance(exc, OSError):
            raise
        log.error("%s", exc)  # after start: the loop itself failed
        return 1
    finally:
        if start.wrote_pidfile:
            try:
                os.unlink(args.pidfile)
            except OSError:
                pass


if __name__ == "__main__":
    raise SystemExit(main())
