"""wsuv-serve app.c / app.so as a real subprocess: compile cache, load errors, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import websocket  # websocket-client: a client independent of the server's code

from tests.capp.conftest import APPS, EXAMPLES
from tests.conftest import free_port, wait_port

SERVE = [sys.executable, "-m", "wsuv.cli"]


def _env(cache: Path) -> dict[str, str]:
    return dict(os.environ, XDG_CACHE_HOME=str(cache))


def _serve_and_check(args: list[str], env: dict[str, str],
                     check: Callable[[int], None]) -> str:
    """Run wsuv-serve with args on a free port, check(port), SIGTERM; the log."""
    port = free_port()
    proc = subprocess.Popen([*SERVE, *args, "--port", str(port), "--host", "127.0.0.1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    try:
        wait_port(port, timeout=60)  # the first start compiles
        check(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return out


def _echo(port: int) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=5)
    try:
        ws.send("over the CLI")
        assert ws.recv() == "over the CLI"
        ws.send_binary(b"\x00" * 100000)
        assert ws.recv() == b"\x00" * 100000
    finally:
        ws.close()


def test_serve_c_source_compiles_once(tmp_path: Path) -> None:
    env = _env(tmp_path)
    src = str(EXAMPLES / "echo.c")
    log1 = _serve_and_check([src], env, _echo)
    assert "compiling" in log1
    built = list((tmp_path / "wsuv").glob("echo-abi*.so"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    log2 = _serve_and_check([src], env, _echo)
    assert "compiling" not in log2  # the cached library was loaded as it was
    assert [p.stat().st_mtime_ns for p in (tmp_path / "wsuv").glob("*.so")] == [mtime]


def test_changed_source_compiles_again(tmp_path: Path) -> None:
    env = _env(tmp_path)
    src = tmp_path / "myecho.c"
    src.write_text((EXAMPLES / "echo.c").read_text())
    _serve_and_check([str(src)], env, _echo)
    src.write_text((EXAMPLES / "echo.c").read_text() + "\n/* changed */\n")
    assert "compiling" in _serve_and_check([str(src)], env, _echo)
    assert len(list((tmp_path / "wsuv").glob("myecho-*.so"))) == 2


@pytest.mark.parametrize("kind", ["so", "c"])
def test_serve_chat_with_app_arg(tmp_path: Path, build: Callable[[str], str], kind: str) -> None:
    def check(port: int) -> None:
        url = f"ws://127.0.0.1:{port}"
        a = websocket.create_connection(f"{url}/r1", timeout=5)
        b = websocket.create_connection(f"{url}/r1", timeout=5)
        try:
            assert a.recv() == "joined r1 (1 here)"
            assert b.recv() == "joined r1 (2 here)"
            with pytest.raises(websocket.WebSocketBadStatusException) as full:
                websocket.create_connection(f"{url}/r1", timeout=5)
            assert full.value.status_code == 503
            b.send("to the room")
            assert a.recv() == "to the room"
        finally:
            a.close()
            b.close()

    app = build("examples/chat") if kind == "so" else str(EXAMPLES / "chat.c")
    log = _serve_and_check([app, "--app-arg", "2"], _env(tmp_path), check)
    assert "chat rooms of at most 2 members" in log


def _fails(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    return out.stderr


@pytest.mark.parametrize(("name", "expect"), [
    ("old_abi", "built for wsuv C application ABI version 999"),
    ("no_init", "does not export wsuv_app_init"),
    ("bad_table_version", "callback table for ABI version"),
])
def test_load_errors_are_one_line(tmp_path: Path, build: Callable[[str], str], name: str,
                                  expect: str) -> None:
    err = _fails([build(name)], _env(tmp_path))
    assert err.count("\n") == 1 and err.startswith("wsuv-serve: ") and expect in err


def test_missing_and_not_shared_object(tmp_path: Path) -> None:
    err = _fails([str(tmp_path / "missing.so")], _env(tmp_path))
    assert err == f"wsuv-serve: cannot load the C application {tmp_path}/missing.so: no such file\n"
    fake = tmp_path / "fake.so"
    fake.write_bytes(b"\x7fELF but not really" * 10)
    err = _fails([str(fake)], _env(tmp_path))
    assert err.count("\n") == 1 and "cannot load the C application" in err
    err = _fails([str(tmp_path / "missing.c")], _env(tmp_path))
    assert err.count("\n") == 1 and "cannot read the C application" in err


def test_init_refused(tmp_path: Path) -> None:
    err = _fails([str(APPS / "probe.c"), "--app-arg", "refuse"], _env(tmp_path))
    # The log says it compiled; then the one line of the error.
    log, line = err.splitlines()
    assert " INFO wsuv: compiling " in log
    assert line.startswith("wsuv-serve: ") and line.endswith("refused to start: told to refuse")


def test_compile_error_prints_compiler_messages(tmp_path: Path) -> None:
    err = _fails([str(APPS / "broken.c")], _env(tmp_path))
    assert "no_such_member" in err and "error" in err
    assert err.splitlines()[-1].startswith("compiling the C application")


def test_missing_compiler_names_the_package(tmp_path: Path) -> None:
    env = dict(_env(tmp_path), CC="/nonexistent/cc")
    err = _fails([str(EXAMPLES / "echo.c")], env)
    assert err.count("\n") == 1 and "install gcc (Debian: apt-get install build-essential)" in err


def test_print_include_dir_and_app_arg_misuse() -> None:
    out = subprocess.run([*SERVE, "--print-include-dir"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0
    assert (Path(out.stdout.strip()) / "wsuv_app.h").is_file()
    out = subprocess.run([*SERVE, "--app-arg", "x"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--app-arg is for a C application" in out.stderr
