"""Every way loading a C application fails: one sentence, before any of its code runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import wsuv
from wsuv.capp import ABI_VERSION, CAppError


def _refused(path: str, arg: str = "") -> str:
    with pytest.raises(CAppError) as info:
        wsuv.load_c_app(path, arg)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_no_such_file(tmp_path: Path) -> None:
    assert _refused(str(tmp_path / "nope.so")).endswith("nope.so: no such file")


def test_not_a_shared_object(tmp_path: Path) -> None:
    fake = tmp_path / "fake.so"
    fake.write_text("this is not ELF\n" * 100)
    msg = _refused(str(fake))
    assert msg.startswith(f"cannot load the C application {fake}:")
    assert "invalid ELF header" in msg or "file too short" in msg


def test_no_entry_point(build: Callable[[str], str]) -> None:
    msg = _refused(build("no_init"))
    assert "is not a wsuv C application: it does not export wsuv_app_init" in msg


def test_entry_point_without_the_header(build: Callable[[str], str]) -> None:
    msg = _refused(build("no_abi_symbol"))
    assert "not wsuv_app_abi_version" in msg


def test_library_of_another_abi_is_refused_before_init(build: Callable[[str], str]) -> None:
    # old_abi.c's init aborts the process if called: getting here proves it was not.
    msg = _refused(build("old_abi"))
    assert f"built for wsuv C application ABI version 999, but this wsuv has version " \
           f"{ABI_VERSION}" in msg
    assert "rebuild it" in msg


def test_table_of_another_version_or_size(build: Callable[[str], str]) -> None:
    msg = _refused(build("bad_table_version"))
    assert f"callback table for ABI version {ABI_VERSION + 1}" in msg
    msg = _refused(build("bad_table_size"))
    assert f"callback table for ABI version {ABI_VERSION} of" in msg and "bytes" in msg


def test_init_refuses_with_its_reason(build: Callable[[str], str]) -> None:
    assert _refused(build("probe"), "refuse").endswith("refused to start: told to refuse")
    assert _refused(build("probe"), "refuse-silently").endswith(
        "refused to start: (wsuv_app_init gave no reason)")
    assert "most members per room" in _refused(build("examples/chat"), "many")


def test_compile_error_carries_the_compiler_messages(tmp_path: Path) -> None:
    src = Path(__file__).parent / "apps" / "broken.c"
    with pytest.raises(CAppError) as info:
        wsuv.capp.compile_c_app(str(src), cache=str(tmp_path))
    text = str(info.value)
    assert "no_such_member" in text and "error" in text
    assert text.splitlines()[-1].startswith(f"compiling the C application {src} failed")
    assert not list(tmp_path.iterdir())  # nothing half-built left in the cache


def test_missing_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
    src = Path(__file__).parent / "apps" / "probe.c"
    with pytest.raises(CAppError, match=r"install gcc \(Debian: apt-get install build-essential\)"):
        wsuv.capp.compile_c_app(str(src), cache=str(tmp_path))


def test_get_include_holds_the_header() -> None:
    inc = Path(wsuv.get_include())
    text = (inc / "wsuv_app.h").read_text()
    assert f"#define WSUV_APP_ABI_VERSION {ABI_VERSION}u" in text


def test_a_c_app_is_a_handler_and_nothing_else_is(build: Callable[[str], str]) -> None:
    from wsuv.handler import resolve_handler

    app = wsuv.load_c_app(build("examples/echo"))
    assert resolve_handler(app) is app
    app.close()
    with pytest.raises(TypeError):
        resolve_handler(object())
