"""``serve()`` and ``Server.run()`` show "listening on" without any set-up.

A script that never configures logging (the README's ``python echo.py``)
used to print nothing. wsuv now adds a stderr handler to its own logger when
neither the root logger nor "wsuv" has one (as uvicorn does), and leaves an
application's own configuration alone.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port


def run_script(tmp_path: Path, body: str, needle: str) -> str:
    """Run body as a script; return its stderr once needle appeared, after SIGINT."""
    script = tmp_path / "app.py"
    script.write_text(body)
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    assert proc.stderr is not None
    seen = b""
    try:
        deadline = time.monotonic() + 15
        while needle.encode() not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
        assert needle.encode() in seen, seen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=15)
        assert proc.returncode == 0, (seen + rest).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
    return (seen + rest).decode()


ECHO = '''\
import wsuv

class Echo(wsuv.Handler):
    def on_message(self, ws, message):
        ws.send(message)
'''


def test_serve_prints_listening_line_without_logging_setup(tmp_path: Path) -> None:
    port = free_port()
    err = run_script(tmp_path, ECHO + f"wsuv.serve(Echo(), port={port})\n",
                     f"wsuv listening on ws://127.0.0.1:{port}/")
    assert f"INFO wsuv: wsuv listening on ws://127.0.0.1:{port}/" in err


def test_server_run_prints_listening_line_without_logging_setup(tmp_path: Path) -> None:
    port = free_port()
    err = run_script(tmp_path, ECHO + f"wsuv.Server(Echo(), port={port}).run()\n",
                     f"wsuv listening on ws://127.0.0.1:{port}/")
    assert err.count("wsuv listening on") == 1


def test_application_logging_setup_wins(tmp_path: Path) -> None:
    port = free_port()
    body = ("import logging\n"
            "logging.basicConfig(level=logging.INFO, format='APP %(name)s %(message)s')\n"
            + ECHO + f"wsuv.serve(Echo(), port={port})\n")
    err = run_script(tmp_path, body, f"APP wsuv wsuv listening on ws://127.0.0.1:{port}/")
    assert err.count("wsuv listening on") == 1  # the app's handler only, not ours too
    assert "INFO wsuv:" not in err
