"""examples/nginx/wsuv.conf, really run: TLS terminated by nginx in front of wsuv."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

from websockets.sync.client import connect

from tests.conftest import free_port, running_server, wait_port
from wsuv import Handler, WebSocket

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Echo(Handler):
    def __init__(self) -> None:
        self.forwarded: list[str | None] = []

    def on_open(self, ws: WebSocket) -> None:
        self.forwarded.append(ws.headers.get("x-forwarded-proto"))

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        ws.send(message)


def test_wss_through_nginx(tmp_path: Path) -> None:
    assert Path(NGINX).exists(), "nginx is missing: make test installs nginx-light"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    handler = Echo()
    with running_server(handler) as server:
        tls_port = free_port()
        conf = (ROOT / "examples" / "nginx" / "wsuv.conf").read_text()
        for name, value in {"RUNDIR": str(tmp_path), "UPSTREAM_PORT": str(server.port),
                            "TLS_PORT": str(tls_port), "CERT": str(cert),
                            "KEY": str(key)}.items():
            conf = conf.replace(f"@{name}@", value)
        (tmp_path / "nginx.conf").write_text(conf)
        nginx = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
             "-g", "daemon off;"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        try:
            wait_port(tls_port)
            ctx = ssl.create_default_context(cafile=str(cert))
            ctx.check_hostname = False
            with connect(f"wss://127.0.0.1:{tls_port}/", ssl=ctx, open_timeout=10) as ws:
                ws.send("through TLS")
                assert ws.recv(timeout=5) == "through TLS"
                big = bytes(range(256)) * 4096
                ws.send(big)
                assert ws.recv(timeout=10) == big
            assert handler.forwarded == ["https"]
        finally:
            nginx.terminate()
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait(5)
            if nginx.stdout:
                nginx.stdout.close()
