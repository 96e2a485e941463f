"""The README's Python examples, run the two ways the README says they run.

Conventions the README follows (a README example that breaks fails here):

* Every ```python block is run, unless the last non-blank line before its
  fence is ``<!-- readme-test: skip -->`` (a fragment, not a program).
* A block that defines a ``wsuv.Handler`` subclass and has an
  ``if __name__ == "__main__":`` part is a *server example*. It listens with
  the literal ``port=8080``, exactly once: the test puts a free port there
  (nothing else in the block is changed). It is written to
  ``<class name in lower case>.py`` and run as ``python echo.py``, as
  ``wsuv-serve echo:Echo --port P`` and, for each module-level instance
  (``app = Chat()``), as ``wsuv-serve chat:app --port P``; each must print
  "wsuv listening on" on stderr and exit 0 on SIGINT.
* A server example is checked as an echo (a client on ``/`` sends "hello"
  and gets "hello" back) unless the line before its fence says otherwise:
  ``<!-- readme-test: {"path": "/chat?name=ann", "send": "hi",
  "expect": "ann: hi", "clients": 2} -->`` (JSON on one line): ``clients``
  clients connect to ``path``, the first sends ``send``, and every one of
  them must receive ``expect``.
* A block marked ``<!-- readme-test: asyncio -->`` is an *asyncio server
  example*: it names the port ``8080`` exactly once (replaced by a free
  port), is run as ``python block.py`` and checked as an echo; SIGINT (which
  asyncio.run turns into a cancellation) must close the client with 1001 and
  end the process.
* Any other block is a *script*: ``python block.py`` must exit 0.
* Every ``wsuv-serve module:attribute`` in a ```sh block names a server
  example's module and an attribute that module defines.
"""

from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import free_port

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->$")
PORT = "port=8080"
ECHO_CHECK: dict[str, Any] = {"path": "/", "send": "hello", "expect": "hello", "clients": 1}


class Block:
    """One fenced code block of the README."""

    def __init__(self, lang: str, line: int, code: str, marker: str | None) -> None:
        self.lang = lang
        self.line = line  # of the opening fence, 1-based
        self.code = code
        self.marker = marker  # text after "readme-test:" on the line before, if any

    @property
    def handler_class(self) -> str | None:
        """The one wsuv.Handler subclass a server example defines (None for a script)."""
        tree = ast.parse(self.code)
        has_main = any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
                       for node in tree.body)
        names = [node.name for node in tree.body if isinstance(node, ast.ClassDef)
                 and any(ast.unparse(base) in ("wsuv.Handler", "Handler")
                         for base in node.bases)]
        if not has_main or not names:
            return None
        assert len(names) == 1, f"README line {self.line}: one Handler class per example"
        return names[0]

    @property
    def handler_attrs(self) -> list[str]:
        """What ``wsuv-serve module:attr`` can name: the class, and any module-level
        ``name = Class()`` (an instance)."""
        cls = self.handler_class
        assert cls is not None
        instances = [target.id for node in ast.parse(self.code).body
                     if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                     and ast.unparse(node.value.func) == cls
                     for target in node.targets if isinstance(target, ast.Name)]
        return [cls, *instances]

    @property
    def check(self) -> dict[str, Any]:
        """What a client does against this server example (see the module docstring)."""
        if self.marker is None:
            return ECHO_CHECK
        spec = json.loads(self.marker)
        assert isinstance(spec, dict), f"README line {self.line}: readme-test wants a JSON object"
        unknown = set(spec) - set(ECHO_CHECK)
        assert not unknown, f"README line {self.line}: unknown readme-test keys {unknown}"
        return {**ECHO_CHECK, **spec}


def readme_blocks() -> list[Block]:
    """Every fenced block of README.md, with the readme-test marker before it."""
    blocks: list[Block] = []
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        m = MARKER.match(previous)
        blocks.append(Block(fence.group(1), start + 1, "\n".join(lines[start + 1:i]) + "\n",
                            m.group(1) if m else None))
        i += 1
    return blocks


BLOCKS = [b for b in readme_blocks()
          if b.lang == "python" and b.marker not in ("skip", "asyncio")]
ASYNCIO = [b for b in readme_blocks() if b.lang == "python" and b.marker == "asyncio"]
SERVERS = [b for b in BLOCKS if b.handler_class is not None]
SCRIPTS = [b for b in BLOCKS if b.handler_class is None]


def _module(block: Block) -> str:
    assert block.handler_class is not None
    return block.handler_class.lower()


def _write_server(block: Block, directory: Path, port: int) -> Path:
    count = block.code.count(PORT)
    assert count == 1, (f"README line {block.line}: a server example listens with {PORT!r} "
                        f"exactly once (found {count}); the test replaces it with a free port")
    path = directory / f"{_module(block)}.py"
    path.write_text(block.code.replace(PORT, f"port={port}"))
    return path


def _wsuv_serve() -> list[str]:
    script = Path(sys.executable).with_name("wsuv-serve")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wsuv.cli"]


@contextmanager
def running(cmd: list[str], cwd: Path, port: int) -> Iterator[Path]:
    """Run a server command until it says it listens on port; SIGINT must end it with 0.

    stderr goes to a file (no pipe to fill); yields that file's path.
    """
    err = cwd / "stderr.txt"
    needle = f"wsuv listening on ws://127.0.0.1:{port}/"
    with err.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=sink)
    try:
        deadline = time.monotonic() + 15
        while needle not in err.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, f"no {needle!r} in 15 s: {err.read_text()}"
            time.sleep(0.05)
        assert needle in err.read_text(), f"exited {proc.returncode}: {err.read_text()}"
        yield err
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _exchange(port: int, check: dict[str, Any]) -> None:
    """Connect check["clients"] clients; the first sends; every one receives the answer."""
    url = f"ws://127.0.0.1:{port}{check['path']}"
    with ExitStack() as stack:
        clients: list[ClientConnection] = [
            stack.enter_context(connect(url, open_timeout=5))
            for _ in range(int(check["clients"]))]
        clients[0].send(check["send"])
        for ws in clients:
            assert ws.recv(timeout=5) == check["expect"]


def _id(block: Block) -> str:
    return block.handler_class or f"line{block.line}"


def test_readme_has_examples() -> None:
    """The extraction found the README's examples (a changed fence would skip them all)."""
    assert SERVERS, "no server example found in README.md"
    assert all(b.code.strip() for b in BLOCKS)


@pytest.mark.parametrize("block", SERVERS, ids=_id)
def test_server_example_as_script(block: Block, tmp_path: Path) -> None:
    port = free_port()
    path = _write_server(block, tmp_path, port)
    with running([sys.executable, path.name], tmp_path, port):
        _exchange(port, block.check)


@pytest.mark.parametrize("block, attr", [(b, a) for b in SERVERS for a in b.handler_attrs],
                         ids=[f"{_module(b)}:{a}" for b in SERVERS for a in b.handler_attrs])
def test_server_example_through_wsuv_serve(block: Block, attr: str, tmp_path: Path) -> None:
    port = free_port()
    _write_server(block, tmp_path, free_port())  # the __main__ part does not run here
    spec = f"{_module(block)}:{attr}"
    with running([*_wsuv_serve(), spec, "--port", str(port)], tmp_path, port):
        _exchange(port, block.check)


@pytest.mark.parametrize("block", SCRIPTS, ids=_id)
def test_script_example_runs(block: Block, tmp_path: Path) -> None:
    (tmp_path / "block.py").write_text(block.code)
    out = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"README line {block.line}:\n{out.stderr}"


def test_wsuv_serve_lines_name_an_example() -> None:
    """``wsuv-serve mod:attr`` in the README refers to an example that defines attr."""
    defined = {_module(b): {n.id for node in ast.parse(b.code).body
                            if isinstance(node, ast.Assign) for n in node.targets
                            if isinstance(n, ast.Name)}
               | {node.name for node in ast.parse(b.code).body
                  if isinstance(node, ast.ClassDef | ast.FunctionDef)}
               for b in SERVERS}
    specs = [(b.line, m.group(1), m.group(2)) for b in readme_blocks() if b.lang == "sh"
             for m in re.finditer(r"wsuv-serve\s+([A-Za-z_][\w.]*):([\w.]+)", b.code)]
    for line, module, attr in specs:
        assert module in defined, (f"README line {line}: wsuv-serve {module}:{attr} names no "
                                   f"example (examples: {sorted(defined)})")
        assert attr.split(".")[0] in defined[module], (
            f"README line {line}: {module}.py (the README's example) defines no {attr!r}")


@pytest.mark.parametrize("block", ASYNCIO, ids=_id)
def test_asyncio_example_runs(block: Block, tmp_path: Path) -> None:
    assert block.code.count("8080") == 1, f"README line {block.line}: name port 8080 once"
    port = free_port()
    path = tmp_path / f"aio_line{block.line}.py"
    path.write_text(block.code.replace("8080", str(port)))
    proc = subprocess.Popen([sys.executable, path.name], cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                ws = connect(f"ws://127.0.0.1:{port}/", open_timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "did not listen"
                time.sleep(0.05)
        with ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
            proc.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_every_option_is_in_the_readme_table() -> None:
    """One table for every knob: a new option is documented with its flag and default."""
    from wsuv.options import OPTIONS

    text = README.read_text()
    for opt in OPTIONS:
        flag = f"--{opt.name.replace('_', '-')}"
        start = f"| `{opt.name}` | `{flag}"
        assert start in text, f"README options table lacks a row for {opt.name}"
        row = text[text.index(start):].split("\n", 1)[0]
        assert f"`{opt.default!r}`" in row, f"README gives {opt.name} another default: {row}"
