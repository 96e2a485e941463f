"""C applications: sources built once per session into a private cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from wsuv.capp import compile_c_app

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
EXAMPLES = ROOT / "examples" / "c"


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    """build("probe") or build("examples/echo"): the path of the compiled .so."""
    cache = str(tmp_path_factory.mktemp("capp-cache"))

    def _build(name: str) -> str:
        src = EXAMPLES / f"{name[9:]}.c" if name.startswith("examples/") else APPS / f"{name}.c"
        return compile_c_app(str(src), cache=cache)

    return _build
