"""wss:// interop: `wsuv-serve --ssl-certfile --ssl-keyfile` against the
`websockets` client (Python's ssl), Node's `ws` and headless Chromium, each
trusting the test CA of tests/tlskit.py (made with `openssl` for this run)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tlskit as kit_mod
from test_browser import CHROMIUM_TIMEOUT, browser_env, element_text, stop
from test_browser import chromium as chromium  # the fixture
from test_node_ws import CLIENT, NODE_TIMEOUT, ROOT, check
from test_node_ws import node as node  # the fixture
from websockets.sync.client import connect

from tests.conftest import free_port, wait_port

SERVE = [sys.executable, "-m", "wsuv.cli"]


@contextlib.contextmanager
def wsuv_serve(kit: Any, *extra: str) -> Iterator[int]:
    """wsuv-serve (the built-in C echo) with TLS on a free port; yields the port."""
    port = free_port()
    proc = subprocess.Popen([*SERVE, "--port", str(port), "--ssl-certfile", str(kit.server.cert),
                             "--ssl-keyfile", str(kit.server.key), *extra],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        try:
            _out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert f"listening on wss://127.0.0.1:{port}/" in err, err


def test_wsuv_serve_with_websockets_client(tlskit: Any) -> None:
    with wsuv_serve(tlskit) as port:
        for host in ("localhost", "127.0.0.1"):
            with connect(f"wss://{host}:{port}/", ssl=tlskit.client_context(),
                         open_timeout=10, max_size=None) as ws:
                ws.send("hello")
                assert ws.recv(10) == "hello"
                payload = os.urandom(3 * 1024 * 1024)
                ws.send(payload)
                assert ws.recv(30) == payload


def test_wsuv_serve_client_certificates(tlskit: Any) -> None:
    with wsuv_serve(tlskit, "--ssl-ca-certs", str(tlskit.ca.cert), "--ssl-cert-reqs", "2") as port:
        with connect(f"wss://localhost:{port}/", ssl=tlskit.client_context(cert=tlskit.client),
                     open_timeout=10) as ws:
            ws.send("mutual")
            assert ws.recv(10) == "mutual"
        with pytest.raises(Exception):  # noqa: B017 - TLS alert, EOF or reset: all refusals
            with connect(f"wss://localhost:{port}/", ssl=tlskit.client_context(),
                         open_timeout=10) as ws:
                ws.send("x")
                ws.recv(10)


def run_node_tls(node: str, kit: Any, url: str, scenario: str) -> dict[str, Any]:
    """node_client.js against a wss:// URL; NODE_EXTRA_CA_CERTS makes Node trust the kit."""
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(kit.ca.cert))
    env.pop("LD_PRELOAD", None)  # `make asan` preloads the sanitizers: not for node
    proc = subprocess.run([node, str(CLIENT), url, scenario], cwd=ROOT, capture_output=True,
                          text=True, timeout=NODE_TIMEOUT, env=env)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize("scenario", ["echo", "bulk"])
def test_node_ws_over_tls(node: str, tlskit: Any, scenario: str) -> None:
    with wsuv_serve(tlskit) as port:
        check(run_node_tls(node, tlskit, f"wss://localhost:{port}/", scenario))


def test_node_ws_refuses_an_unknown_issuer(node: str, tlskit: Any) -> None:
    with wsuv_serve(tlskit) as port:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NODE_EXTRA_CA_CERTS", "LD_PRELOAD")}
        proc = subprocess.run([node, str(CLIENT), f"wss://localhost:{port}/", "echo"],
                              cwd=ROOT, capture_output=True, text=True, timeout=NODE_TIMEOUT,
                              env=env)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert not result["ok"]
        assert "certificate" in result["error"].lower() or "issuer" in result["error"].lower()


def test_echo_page_in_chromium_over_https(chromium: str, tlskit: Any) -> None:
    """The built-in echo page over https://, connecting back over wss://; Chromium
    accepts the test server's key by its SPKI hash (nothing else is trusted)."""
    spki = kit_mod.spki_sha256(tlskit.server.cert)
    with wsuv_serve(tlskit) as port:
        dom = ""
        # Virtual time does not wait for WebSocket traffic: a loaded machine may
        # still show "connecting" or "open" (no echo yet); retried, bounded.
        for _attempt in range(3):
            with tempfile.TemporaryDirectory(prefix="wsuv-chromium-",
                                             ignore_cleanup_errors=True) as profile:
                cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                       "--disable-quic", "--no-first-run", "--disable-background-networking",
                       "--disable-component-update", "--disable-sync", "--disable-extensions",
                       "--no-proxy-server", f"--user-data-dir={profile}",
                       f"--ignore-certificate-errors-spki-list={spki}",
                       "--virtual-time-budget=5000", "--dump-dom",
                       f"https://localhost:{port}/"]
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True,
                                        start_new_session=True, env=browser_env())
                try:
                    dom, err = proc.communicate(timeout=CHROMIUM_TIMEOUT)
                except subprocess.TimeoutExpired:
                    stop(proc)
                    raise AssertionError("chromium did not finish in time") from None
                assert proc.returncode == 0, err[-3000:]
            if "id=\"status\"" in dom and element_text(dom, "status") not in ("connecting",
                                                                              "open"):
                break
            time.sleep(0.5)
        assert element_text(dom, "status") == "echo ok", dom[:3000]
        assert "&lt; hello wsuv" in dom


def test_chromium_without_trust_gets_no_page(chromium: str, tlskit: Any) -> None:
    """Without the SPKI exception the certificate is refused: no echo page."""
    with wsuv_serve(tlskit) as port, tempfile.TemporaryDirectory(
            prefix="wsuv-chromium-", ignore_cleanup_errors=True) as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--no-proxy-server", f"--user-data-dir={profile}",
               "--virtual-time-budget=3000", "--dump-dom", f"https://localhost:{port}/"]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=CHROMIUM_TIMEOUT, env=browser_env())
        assert 'id="status"' not in proc.stdout
        assert Path(profile).is_dir()
