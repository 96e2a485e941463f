"""wsuv-serve refuses every start-up mistake with one line on stderr.

Each case runs the real command (``python -m wsuv.cli``) and checks: a
non-zero status, stderr that is exactly one line starting ``wsuv-serve:`` and
naming the problem, and no traceback (only ``--log-level debug`` adds one).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_port
from tests.server.test_cli import SERVE, _echo, serve

APP_MODULE = '''\
import os as a_module
import wsuv

number = 42
text = "hello"

def plain_function(ws, message):
    ws.send(message)

class Upper(wsuv.Handler):
    def on_message(self, ws, message):
        ws.send(message.upper())

upper = Upper()

class NeedsArgs(wsuv.Handler):
    def __init__(self, prefix):
        self.prefix = prefix

class AsyncEcho(wsuv.Handler):
    async def on_message(self, ws, message):
        ws.send(message)

async def conn_echo(ws):
    async for message in ws:
        await ws.send(message.upper())

class AsyncGen(wsuv.Handler):
    async def on_message(self, ws, message):
        yield message

class FailsInInit(wsuv.Handler):
    def __init__(self):
        raise LookupError("no config")
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding apps.py (handlers and non-handlers) and broken modules."""
    (tmp_path / "apps.py").write_text(APP_MODULE)
    (tmp_path / "broken_syntax.py").write_text("import wsuv\n\ndef f(:\n    pass\n")
    (tmp_path / "raises_on_import.py").write_text(
        "import wsuv\nx = 1\nraise RuntimeError('database unreachable')\n")
    (tmp_path / "imports_missing.py").write_text("import no_such_dependency_xyz\n")
    return tmp_path


def refused(*args: str, cwd: Path | None = None, status: int = 1) -> str:
    """Run wsuv-serve expecting a refused start; return its one stderr line."""
    out = subprocess.run([*SERVE, *args], cwd=cwd, capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == status, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.splitlines()
    if status == 2:  # argparse: usage, then the error line last
        assert lines and lines[-1].startswith("wsuv-serve: error: "), out.stderr
        return lines[-1]
    assert len(lines) == 1 and lines[0].startswith("wsuv-serve: "), out.stderr
    return lines[0]


@pytest.mark.parametrize("attr, named", [
    ("number", "int 42"),
    ("text", "str 'hello'"),
    ("a_module", "the module 'os'"),
    ("plain_function", "the function 'plain_function'"),
])
def test_non_handler_is_refused_at_start(app_dir: Path, attr: str, named: str) -> None:
    line = refused(f"apps:{attr}", "--port", str(free_port()), cwd=app_dir)
    assert (f"apps:{attr} must be a coroutine function (async def handler(ws)) "
            "or a wsuv.Handler instance or class") in line
    assert named in line


@pytest.mark.parametrize("attr", ["Upper", "upper"], ids=["class", "instance"])
def test_handler_class_or_instance_serves(app_dir: Path, attr: str) -> None:
    """A class is instantiated with no arguments; an instance is used as it is."""
    port = free_port()
    with serve(f"apps:{attr}", "--port", str(port), cwd=str(app_dir)) as proc:
        wait_port(port)
        assert _echo(port, "abc") == "ABC"
        proc.terminate()
        assert proc.wait(15) == 0


@pytest.mark.parametrize("attr, workers", [("AsyncEcho", "1"), ("conn_echo", "1"),
                                           ("conn_echo", "2")])
def test_async_handlers_serve_on_asyncio(app_dir: Path, attr: str, workers: str) -> None:
    """Async handler methods and connection handlers run embedded in asyncio
    (each forked worker starts its own loop); SIGTERM drains and exits 0."""
    port = free_port()
    with serve(f"apps:{attr}", "--port", str(port), "--workers", workers,
               cwd=str(app_dir)) as proc:
        wait_port(port)
        for _ in range(4):  # with 2 workers, connections land in both
            assert _echo(port, "abc") == ("ABC" if attr == "conn_echo" else "abc")
        proc.terminate()
        assert proc.wait(15) == 0


def test_class_needing_arguments_is_one_line(app_dir: Path) -> None:
    line = refused("apps:NeedsArgs", "--port", str(free_port()), cwd=app_dir)
    assert "NeedsArgs cannot be instantiated with no arguments" in line
    assert "'prefix'" in line


def test_class_whose_init_raises_is_one_line(app_dir: Path) -> None:
    line = refused("apps:FailsInInit", "--port", str(free_port()), cwd=app_dir)
    assert "apps:FailsInInit() raised LookupError: no config" in line
    assert "apps.py:" in line


def test_async_generator_method_is_one_line(app_dir: Path) -> None:
    line = refused("apps:AsyncGen", "--port", str(free_port()), cwd=app_dir)
    assert "on_message is an async generator" in line


def test_syntax_error_names_file_line_and_message(app_dir: Path) -> None:
    line = refused("broken_syntax:app", "--port", str(free_port()), cwd=app_dir)
    assert f"syntax error in {app_dir / 'broken_syntax.py'}:3: invalid syntax" in line


def test_exception_while_importing_names_type_message_and_where(app_dir: Path) -> None:
    line = refused("raises_on_import:app", "--port", str(free_port()), cwd=app_dir)
    assert "RuntimeError: database unreachable" in line
    assert f"{app_dir / 'raises_on_import.py'}:3" in line


def test_missing_dependency_of_the_app_is_not_called_a_missing_app(app_dir: Path) -> None:
    line = refused("imports_missing:app", "--port", str(free_port()), cwd=app_dir)
    assert "importing imports_missing raised ModuleNotFoundError" in line
    assert "no_such_dependency_xyz" in line


def test_missing_module_and_missing_attribute(app_dir: Path) -> None:
    line = refused("no_such_module_xyz:app", "--port", str(free_port()), cwd=app_dir)
    assert "no module named 'no_such_module_xyz'" in line
    line = refused("apps:Nope", "--port", str(free_port()), cwd=app_dir)
    assert "module 'apps' has no attribute 'Nope'" in line


def test_debug_log_level_adds_the_traceback(app_dir: Path) -> None:
    out = subprocess.run([*SERVE, "raises_on_import:app", "--log-level", "debug"],
                         cwd=app_dir, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "Traceback" in out.stderr
    assert out.stderr.splitlines()[-1].startswith("wsuv-serve: cannot load")


@pytest.mark.parametrize("flag", ["--log-file", "--pidfile"])
def test_file_in_missing_directory(tmp_path: Path, flag: str) -> None:
    path = tmp_path / "no-such-dir" / "wsuv.out"
    line = refused("--port", str(free_port()), flag, str(path))
    assert f"{flag} {path}: No such file or directory" in line
    assert not path.parent.exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_host_that_does_not_resolve_is_named(workers: str) -> None:
    line = refused("--host", "no-such-host.invalid", "--port", str(free_port()),
                   "--workers", workers)
    assert "cannot resolve --host no-such-host.invalid" in line


@pytest.mark.parametrize("workers", ["1", "2"])
def test_unix_path_in_missing_directory_is_enoent(tmp_path: Path, workers: str) -> None:
    path = tmp_path / "no-such-dir" / "wsuv.sock"
    line = refused("--unix-path", str(path), "--workers", workers)
    assert line == f"wsuv-serve: cannot listen on {path}: no such file or directory"


def test_unix_path_under_a_file_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    line = refused("--unix-path", str(tmp_path / "file" / "wsuv.sock"))
    assert "not a directory" in line


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_workers_must_be_positive(value: str) -> None:
    line = refused("--workers", value, "--port", str(free_port()), status=2)
    assert "argument --workers: must be" in line
    assert value in line


def test_workers_help_says_publish_reaches_all_and_broadcast_one_share() -> None:
    out = subprocess.run([*SERVE, "--help"], capture_output=True, text=True, timeout=30)
    text = " ".join(out.stdout.split())
    assert "publish reaches every worker's subscribers" in text
    assert "a broadcast only its own process's share" in text


def test_static_dir_that_does_not_exist(tmp_path: Path) -> None:
    line = refused("--static-dir", str(tmp_path / "missing"), "--port", str(free_port()))
    assert line == f"wsuv-serve: --static-dir {tmp_path / 'missing'} does not exist"


@pytest.mark.parametrize("workers", ["1", "3"])
def test_port_in_use_names_the_address(workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = refused("--port", str(port), "--workers", workers)
    assert line == f"wsuv-serve: cannot listen on 127.0.0.1:{port}: address already in use"


def test_bad_app_spec_is_an_argument_error() -> None:
    line = refused("not-a-spec", status=2)
    assert "APP must be module:attribute" in line


def test_cli_runs_as_module_and_entry_point_alike() -> None:
    """The .venv's wsuv-serve script answers like python -m wsuv.cli."""
    script = Path(sys.executable).with_name("wsuv-serve")
    out = subprocess.run([str(script), "--workers", "0"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1].endswith("must be at least 1, not 0")


def test_failure_with_log_file_is_on_stderr_and_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "wsuv.log"
    pidfile = tmp_path / "wsuv.pid"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = refused("--port", str(port), "--log-file", str(log), "--pidfile", str(pidfile))
    assert line.endswith("address already in use")
    assert f"ERROR wsuv: cannot listen on 127.0.0.1:{port}" in log.read_text()
    assert not pidfile.exists()
