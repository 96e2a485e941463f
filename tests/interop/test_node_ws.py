"""Interop with Node.js's `ws` package: tests/interop/node_client.js runs one
scenario per process and prints one JSON line, which these tests check."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from interop_support import EchoTarget

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLIENT = HERE / "node_client.js"
NODE_TIMEOUT = 30.0  # the script gives up by itself after 20 s


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary; its absence is a failure (CI installs nodejs and npm)."""
    exe = shutil.which("node") or shutil.which("nodejs")
    if exe is None:
        pytest.fail("Node.js is not installed: apt-get install nodejs npm "
                    "(the Makefile's APT_PKGS has them), then `npm install` at the repo root")
    if not (ROOT / "node_modules" / "ws" / "package.json").is_file():
        pytest.fail(f"the `ws` package is missing: run `cd {ROOT} && npm install --no-audit "
                    "--no-fund` (`make test` does it)")
    return exe


def run_node(node: str, url: str, scenario: str, *args: str) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [node, str(CLIENT), url, scenario, *args],
            cwd=ROOT, capture_output=True, text=True, timeout=NODE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"node {scenario} did not finish in {NODE_TIMEOUT} s: "
                             f"{exc.stdout!r} {exc.stderr!r}") from None
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, (
        f"node {scenario} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    assert result["scenario"] == scenario
    return result


def check(result: dict[str, Any]) -> None:
    bad = [r for r in result.get("results", []) if not r["ok"]]
    assert result["ok"] and not bad, json.dumps(result, indent=1)[:4000]


def test_echo_text_and_binary(node: str, echo: EchoTarget) -> None:
    result = run_node(node, echo.url, "echo")
    check(result)
    sizes = {(r["kind"], r["size"]) for r in result["results"]}
    assert ("text", 1024 * 1024) in sizes and ("binary", 1024 * 1024) in sizes
    assert ("binary", 0) in sizes and ("text", 65536) in sizes
    assert result["closed"]["code"] == 1000


def test_fragmented_send(node: str, echo: EchoTarget) -> None:
    result = run_node(node, echo.url, "fragmented")
    check(result)
    assert [r["kind"] for r in result["results"]] == ["text", "binary"]


def test_ping_pong(node: str, echo: EchoTarget) -> None:
    check(run_node(node, echo.url, "ping"))


@pytest.mark.parametrize("code,reason", [(1000, "done"), (4000, "app reason ✓")])
def test_client_close(node: str, echo: EchoTarget, code: int, reason: str) -> None:
    result = run_node(node, echo.url, "close", str(code), reason)
    check(result)
    assert result["closed"]["code"] == code, "the server should echo the close code"
    if echo.handler is not None:
        closed = echo.handler.wait_closed()
        assert (closed.code, closed.reason) == (code, reason)


@pytest.mark.parametrize("code,reason", [(1001, "going away"), (4001, "kicked")])
def test_server_close(node: str, py_echo: EchoTarget, code: int, reason: str) -> None:
    url = py_echo.path_url(f"/server-close?code={code}&reason={reason.replace(' ', '+')}")
    result = run_node(node, url, "wait_close")
    check(result)
    assert result["closed"] == {"code": code, "reason": reason}
    assert py_echo.handler is not None
    assert py_echo.handler.wait_closed().code == code


def test_subprotocol(node: str, py_echo: EchoTarget) -> None:
    result = run_node(node, py_echo.path_url("/subprotocol?choose=b"), "subprotocol")
    check(result)
    assert result["protocol"] == "b"


@pytest.mark.parametrize("status", [403, 404])
def test_rejected_handshake(node: str, py_echo: EchoTarget, status: int) -> None:
    result = run_node(node, py_echo.path_url(f"/reject?status={status}"), "reject")
    check(result)
    assert result["status"] == status


def test_bulk(node: str, echo: EchoTarget) -> None:
    result = run_node(node, echo.url, "bulk", "20000")
    check(result)
    print(f"\n[node ws bulk {echo.name}] {result['count']} echoes in {result['seconds']:.3f} s "
          f"= {result['rate']:,.0f} msg/s")


@pytest.mark.parametrize("mode,answer", [
    ("takeover", "permessage-deflate; client_max_window_bits=14"),
    ("no-takeover", "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                    "client_max_window_bits=14"),
])
def test_permessage_deflate(node: str, echo: EchoTarget, mode: str, answer: str) -> None:
    """ws's own zlib streams against ours: JSON, text and binary up to 16 MiB, and a
    fragmented compressed message; the extension as ws parsed our answer."""
    result = run_node(node, echo.url, "deflate", mode)
    check(result)
    assert result["extensions"] == {"names": "permessage-deflate", "answered": answer}
    assert {r["kind"] for r in result["results"]} == {"json", "text", "binary", "fragmented"}
    assert max(r["size"] for r in result["results"] if "size" in r) == 16 * 1024 * 1024 - 1024
