"""Interop with a real browser: headless Chromium loads a page from wsuv, the
page's script talks WebSocket back to it, and ``--dump-dom`` shows the result.

Debian package ``chromium`` (the Makefile's APT_PKGS installs it).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from interop_support import EchoHandler, running_server
from websockets.sync.client import ClientConnection, connect

from wsuv.request import Request, Response
from wsuv.server import Accept
from wsuv.websocket import WebSocket

CHROMIUM_TIMEOUT = 45.0


@pytest.fixture(scope="module")
def chromium() -> str:
    for exe in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if exe and os.access(exe, os.X_OK):
            return exe
    pytest.fail("Chromium is not installed: apt-get install chromium "
                "(the Makefile's APT_PKGS has it)")


def browser_env() -> dict[str, str]:
    """Our environment minus the sanitizer runtime `make asan` preloads: the
    browser is a peer under test, not code to sanitize (and will not start
    with libasan preloaded)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}


def dump_dom(chromium: str, url: str, budget_ms: int = 5000) -> str:
    with tempfile.TemporaryDirectory(prefix="wsuv-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--no-proxy-server",
            f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
            "--dump-dom", url,
        ]
        # Its own process group, so a timeout takes the renderer and helpers too.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env=browser_env())
        try:
            out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop(proc)
            raise AssertionError(f"chromium did not finish in {CHROMIUM_TIMEOUT} s") from None
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {err[-3000:]}"
    return out


def element_text(dom: str, element_id: str) -> str:
    """Text of the element with that id (the page's script also contains the
    strings it may write, so searching the whole DOM would prove nothing)."""
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"no #{element_id} in the dumped DOM:\n{dom[:2000]}"
    return html.unescape(match.group(1))


def launch_devtools(chromium: str, profile: str) -> tuple[subprocess.Popen[Any], str]:
    """Start headless Chromium with a DevTools port; return it and the browser's ws URL."""
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", "--no-proxy-server",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=browser_env())
    port_file = Path(profile) / "DevToolsActivePort"
    deadline = time.monotonic() + 20
    while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise AssertionError("chromium did not open its DevTools port within 20 s")
        time.sleep(0.05)
    port, path = port_file.read_text().split()[:2]
    return proc, f"ws://127.0.0.1:{port}{path}"


def stop(proc: subprocess.Popen[Any]) -> None:
    """Wait a little for Chromium to exit, then kill its whole process group."""
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        # Still running, so its pid is still its group's id (start_new_session).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()
    if proc.stderr is not None:
        proc.stderr.close()


class DevTools:
    """Chromium driven over the DevTools protocol, with the `websockets` client.

    ``--dump-dom`` ends when virtual time runs out, and virtual time does not
    wait for WebSocket traffic: a page making many round trips gets dumped
    halfway. Here we poll the page in real time instead, with a deadline.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.session = ""

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        for _ in range(10000):  # skip events up to our answer
            answer = json.loads(self.ws.recv(timeout=10))
            if answer.get("id") == self.next_id:
                assert "error" not in answer, answer
                result: dict[str, Any] = answer["result"]
                return result
        raise AssertionError(f"no answer to {method}")

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll a JS expression until it gives something other than null/undefined."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
            value = got["result"].get("value")
            if value is not None:
                return value
            time.sleep(0.05)
        raise AssertionError(f"{expression!r} still null after {timeout} s")


@pytest.fixture
def devtools(chromium: str) -> Iterator[DevTools]:
    with tempfile.TemporaryDirectory(prefix="wsuv-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        proc, url = launch_devtools(chromium, profile)
        try:
            with connect(url, proxy=None, open_timeout=10, close_timeout=2, max_size=None,
                         ping_interval=None) as ws:
                browser = DevTools(ws)
                yield browser
                browser.session = ""
                with contextlib.suppress(Exception):
                    browser.call("Browser.close")
        finally:
            stop(proc)


def test_echo_page_in_chromium(chromium: str, echo_server: Any) -> None:
    """The built-in echo page: connects back, sends 'hello wsuv', shows 'echo ok'."""
    started = time.monotonic()
    # --dump-dom fires when the virtual-time budget runs out, and virtual time
    # does not wait for WebSocket traffic: on a loaded machine the socket may not
    # have opened ("connecting") or the echo not come back ("open") by then.
    # Those two are retried (bounded); any other state fails at once.
    for _attempt in range(3):
        dom = dump_dom(chromium, f"http://127.0.0.1:{echo_server.port}/")
        if element_text(dom, "status") not in ("connecting", "open"):
            break
    print(f"\n[chromium] echo page done in {time.monotonic() - started:.2f} s")
    assert element_text(dom, "status") == "echo ok", dom[:3000]
    assert "&lt; hello wsuv" in dom  # the page logged the echo


# A page for a Python handler: text, binary of several sizes, ping-free close
# with a code and reason; results land in #result as JSON.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wsuv browser interop</title></head>
<body><pre id="result">running</pre><p id="progress">0</p>
<script>
const out = document.getElementById('result');
const sizes = [0, 1, 125, 126, 65535, 65536, 1048576];
function bytes(n, seed) {
  const a = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; a[i] = x >>> 24; }
  return a;
}
function text(n) {  // exactly n UTF-8 bytes, multi-byte characters included
  const units = ['a', 'é', '€', '😀'];  // 1, 2, 3 and 4 bytes
  const parts = [];
  let left = n, i = 0;
  while (left > 0) {
    const len = (i % 4) + 1;
    parts.push(len <= left ? units[i % 4] : 'x');
    left -= len <= left ? len : 1;
    i++;
  }
  return parts.join('');
}
function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
const ws = new WebSocket('ws://' + location.host + '/ws', ['a', 'b']);
ws.binaryType = 'arraybuffer';
const results = [];
const plan = [];
for (const n of sizes) { plan.push(['text', n]); plan.push(['binary', n]); }
let expected = null;
function next() {
  if (!plan.length) { ws.close(4000, 'browser done'); return; }
  const [kind, n] = plan.shift();
  expected = [kind, n, kind === 'text' ? text(n) : bytes(n, n + 1)];
  ws.send(expected[2]);
}
ws.onopen = () => next();
ws.onmessage = (e) => {
  const [kind, n, sent] = expected;
  const ok = kind === 'text' ? e.data === sent
    : e.data instanceof ArrayBuffer && equal(new Uint8Array(e.data), sent);
  results.push({kind, size: n, ok});
  document.getElementById('progress').textContent = results.length;
  next();
};
ws.onclose = (e) => {
  out.textContent = JSON.stringify(
    {protocol: ws.protocol, results, code: e.code, reason: e.reason, clean: e.wasClean});
};
ws.onerror = () => { results.push({kind: 'error', ok: false}); };
</script></body></html>
"""


class PageEcho(EchoHandler):
    """The Python echo, plus the test page over plain HTTP and subprotocol 'b'; it
    records what was negotiated (Chromium offers permessage-deflate by default)."""

    extensions: list[str] | None = None

    def on_open(self, ws: WebSocket) -> None:
        self.extensions = list(ws.extensions)
        super().on_open(ws)

    def on_http(self, request: Request) -> Response | None:
        if request.path == "/":
            return Response(200, PAGE, [("Content-Type", "text/html; charset=utf-8")])
        return None

    def on_connect(self, request: Request) -> Accept | Response | None:
        return Accept(subprotocol="b") if "b" in request.subprotocols else None


def test_python_handler_in_chromium(devtools: DevTools) -> None:
    """Text and binary up to 1 MiB, subprotocol, close 4000 from the browser; the
    messages go compressed both ways (Chromium's own permessage-deflate)."""
    handler = PageEcho()
    with running_server(handler) as server:
        started = time.monotonic()
        devtools.open(f"http://127.0.0.1:{server.port}/")
        raw = devtools.wait_for(
            "(() => { const e = document.getElementById('result');"
            " return e && e.textContent !== 'running' ? e.textContent : null; })()")
        elapsed = time.monotonic() - started
        closed = handler.wait_closed()
    print(f"\n[chromium devtools] 14 echoes up to 1 MiB + close in {elapsed:.2f} s")
    result = json.loads(raw)
    bad = [r for r in result["results"] if not r["ok"]]
    assert not bad and len(result["results"]) == 14, result
    assert result["protocol"] == "b"
    assert handler.extensions == ["permessage-deflate; client_max_window_bits=14"]
    assert (result["code"], result["clean"]) == (4000, True), result
    assert (closed.code, closed.reason) == (4000, "browser done")
    assert not handler.errors
