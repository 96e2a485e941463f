"""The README's "Applications in C" example compiles and does what it says."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import wsuv
from tests.capp.conftest import ROOT
from tests.conftest import running_server


def test_readme_example(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Applications in C", 1)[1]
    code = re.search(r"```c\n(.*?)```", section, re.S)
    assert code is not None
    src = tmp_path / "shout.c"
    src.write_text(code.group(1))
    so = wsuv.capp.compile_c_app(str(src), cache=str(tmp_path / "cache"))
    app = wsuv.load_c_app(so, arg="200")
    assert app.name == "shout"
    with running_server(app) as srv:
        with connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=5) as ws:
            ws.send("hello, c")
            assert ws.recv(timeout=5) == "HELLO, C"
            t0 = time.monotonic()
            assert ws.recv(timeout=5) == "STILL HERE"
            assert ws.recv(timeout=5) == "STILL HERE"
            assert time.monotonic() - t0 >= 0.2
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{srv.port}/quiet", open_timeout=5)
        assert info.value.response.status_code == 403
    app.close()
    with pytest.raises(wsuv.CAppError, match="a period in ms > 0"):
        wsuv.load_c_app(so, arg="0")
