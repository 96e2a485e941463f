"""wsuv-serve as a real subprocess: options, --fd, workers, daemon, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import free_port, wait_port

SERVE = [sys.executable, "-m", "wsuv.cli"]


def _echo(port: int, text: str = "hi") -> str:
    with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
        ws.send(text)
        reply = ws.recv(timeout=5)
    assert isinstance(reply, str)
    return reply


@contextmanager
def serve(*args: str, **popen: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([*SERVE, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            for kid in _children(proc.pid):  # a failed test leaves no worker behind
                os.kill(kid, signal.SIGKILL)
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def test_help_lists_every_option_with_default() -> None:
    from wsuv.options import OPTIONS

    out = subprocess.run([*SERVE, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for opt in OPTIONS:
        assert "--" + opt.name.replace("_", "-") in text
    assert "default:" in text


def test_version() -> None:
    import wsuv

    out = subprocess.run([*SERVE, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and wsuv.__version__ in out.stdout


def test_echo_start_line_and_sigterm_exits_zero() -> None:
    port = free_port()
    with serve("--port", str(port), "--log-level", "info") as proc:
        wait_port(port)
        assert _echo(port, "héllo") == "héllo"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert proc.stdout is not None
        log = proc.stdout.read().decode()
    assert f"listening on ws://127.0.0.1:{port}/" in log


@pytest.mark.parametrize("extra", [(), ("--busy-poll-us", "2000")], ids=["default", "busy-poll"])
def test_sigterm_closes_clients_with_1001(extra: tuple[str, ...]) -> None:
    port = free_port()
    with serve("--port", str(port), *extra) as proc:
        wait_port(port)
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1001
        assert proc.wait(15) == 0


def test_python_app_from_module(tmp_path: Path) -> None:
    (tmp_path / "upper_app.py").write_text(
        "import wsuv\n"
        "class Upper(wsuv.Handler):\n"
        "    def on_message(self, ws, message):\n"
        "        ws.send(message.upper())\n"
    )
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    with serve("upper_app:Upper", "--port", str(port), cwd=str(tmp_path), env=env) as proc:
        wait_port(port)
        assert _echo(port, "abc") == "ABC"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0


def test_bad_app_spec_is_a_clear_error() -> None:
    out = subprocess.run([*SERVE, "no_such_module:app"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1
    assert out.stderr.startswith("wsuv-serve: cannot load 'no_such_module:app'")


def test_inherited_fd() -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    with serve("--fd", str(fd), pass_fds=(fd,)) as proc:
        wait_port(port)
        assert _echo(port) == "hi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    sock.close()


def test_workers_share_one_socket_and_restart() -> None:
    port = free_port()
    with serve("--port", str(port), "--workers", "2", "--log-level", "info") as proc:
        wait_port(port)
        for _ in range(10):
            assert _echo(port) == "hi"
        kids = _children(proc.pid)
        assert len(kids) == 3  # two workers and the worker bus hub (forked first)
        victim = max(kids)  # a worker
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = _children(proc.pid)
            if len(now) == 3 and victim not in now:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("killed worker was not replaced")
        assert _echo(port) == "hi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


STUCK_APP = '''\
import time
import wsuv


class Stuck(wsuv.Handler):
    """A handler that never returns from a call: its worker's loop cannot turn."""

    def on_message(self, ws, message):
        time.sleep(600)
'''


def test_a_stuck_worker_is_killed_after_the_graceful_bound(tmp_path: Path) -> None:
    """SIGTERM drains gracefully, but a worker whose handler never returns is
    killed once shutdown_timeout + close_timeout + 5 s have passed: the
    supervisor exits (status 1, said in the log) instead of waiting forever."""
    (tmp_path / "stuckapp.py").write_text(STUCK_APP)
    port = free_port()
    with serve("stuckapp:Stuck", "--port", str(port), "--workers", "2",
               "--shutdown-timeout", "1", "--close-timeout", "1", cwd=tmp_path) as proc:
        wait_port(port)
        kids = _children(proc.pid)
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
            ws.send("block")  # its worker is now asleep inside on_message
            time.sleep(0.3)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(25) == 1
            took = time.monotonic() - started
        assert 6.0 <= took < 20.0, took
        assert proc.stdout is not None
        log = proc.stdout.read().decode()
        assert "still running 7 s after the signal; killing it" in log
        assert not [k for k in kids if _alive(k)]  # nothing left behind


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    """Live child pids of pid, read from /proc (no subprocess: robust under ASan)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(entry.name))
    return kids


def _gone(pid: int, timeout: float) -> bool:
    """Poll until pid no longer exists (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_daemon_with_pidfile(tmp_path: Path, workers: str) -> None:
    """The command returns once the daemon listens; the pidfile holds its live pid."""
    port = free_port()
    pidfile = tmp_path / "wsuv.pid"
    logfile = tmp_path / "wsuv.log"
    out = subprocess.run([*SERVE, "--port", str(port), "--daemon", "--pidfile", str(pidfile),
                          "--log-file", str(logfile), "--workers", workers],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    pid = int(pidfile.read_text())  # there already: written before the parent returned
    try:
        os.kill(pid, 0)
        wait_port(port)
        assert _echo(port) == "hi"
        # Double fork: a new session, and not its leader (it cannot regain a terminal).
        assert os.getsid(pid) != os.getsid(0)
        assert os.getsid(pid) != pid
    finally:
        os.kill(pid, signal.SIGTERM)
        assert _gone(pid, 15), "daemon did not exit within 15 s of SIGTERM"
    assert not pidfile.exists()
    assert "listening on" in logfile.read_text()


def test_daemon_missing_module_fails_in_the_foreground(tmp_path: Path) -> None:
    pidfile = tmp_path / "wsuv.pid"
    logfile = tmp_path / "wsuv.log"
    out = subprocess.run([*SERVE, "no_such_module_xyz:app", "--port", str(free_port()),
                          "--daemon", "--pidfile", str(pidfile), "--log-file", str(logfile)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "wsuv-serve: cannot load 'no_such_module_xyz:app': no module named "
        "'no_such_module_xyz' (looked in the current directory and sys.path)"]
    assert not pidfile.exists()
    assert "no_such_module_xyz" in logfile.read_text()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_daemon_port_in_use_fails_in_the_foreground(tmp_path: Path, workers: str) -> None:
    pidfile = tmp_path / "wsuv.pid"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = subprocess.run([*SERVE, "--port", str(port), "--daemon", "--pidfile",
                              str(pidfile), "--workers", workers],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"wsuv-serve: cannot listen on 127.0.0.1:{port}: address already in use"]
    assert not pidfile.exists()


def test_daemon_debug_failure_carries_the_traceback(tmp_path: Path) -> None:
    out = subprocess.run([*SERVE, "no_such_module_xyz:app", "--daemon", "--log-level",
                          "debug"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "Traceback" in out.stderr
    assert out.stderr.splitlines()[-1].startswith("wsuv-serve: cannot load")


def test_static_dir_serves_files_without_traversal(tmp_path: Path) -> None:
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "a.txt").write_text("public")
    (tmp_path / "secret.txt").write_text("secret")
    port = free_port()
    with serve("--port", str(port), "--static-dir", str(tmp_path / "pub")) as proc:
        wait_port(port)
        assert b"public" in _http_get(port, "/a.txt")
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"):
            reply = _http_get(port, path)
            assert b"secret" not in reply
            assert reply.startswith(b"HTTP/1.1 404") or reply.startswith(b"HTTP/1.1 400")
        assert _echo(port) == "hi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def _http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)
