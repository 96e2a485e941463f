"""Section 13 of the public conformance suite, our own: permessage-deflate
parameters, wsuv in the client role (wsuv.sync.connect and wsuv.aio.connect).

wsuv's client offers what a browser does ("permessage-deflate;
client_max_window_bits"); the parameters are the server's to choose. 13.16:
a raw server (pmdkit.RawDeflateServer, Python's zlib) answers each valid
combination in turn (both no_context_takeover flags, server_max_window_bits
and client_max_window_bits 8-15, all four at once) and echoes with exactly
those parameters, its replies cut into several frames for some; it inflates
what the client sends within the window it granted (a client reaching
further fails there) and with a new stream per message when it asked for
client_no_context_takeover. 13.17-13.18: the `websockets` server and Node's
`ws` server, each configured over the same sweep. 13.19: wsuv.aio.connect
over a part of it, against the raw server, websockets and Node ws.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pmdkit import KiB, RawDeflateServer, answer_params, count_for, message, opcode_of
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as ws_serve

import wsuv.aio
import wsuv.sync

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OFFER = "permessage-deflate; client_max_window_bits"
THRESHOLD = 64  # the client's compression threshold (ws_pmd_config_default)


def answer_of(server_nct: bool = False, client_nct: bool = False, server_bits: int | None = None,
              client_bits: int | None = None) -> str:
    parts = ["permessage-deflate"]
    if server_nct:
        parts.append("server_no_context_takeover")
    if client_nct:
        parts.append("client_no_context_takeover")
    if server_bits:
        parts.append(f"server_max_window_bits={server_bits}")
    if client_bits:
        parts.append(f"client_max_window_bits={client_bits}")
    return "; ".join(parts)


ANSWERS: list[str | None] = [None, answer_of()]
ANSWERS += [answer_of(server_bits=b) for b in range(8, 16)]
ANSWERS += [answer_of(client_bits=b) for b in range(8, 16)]
ANSWERS += [answer_of(s, c) for s in (False, True) for c in (False, True) if s or c]
ANSWERS += [answer_of(True, True, b, b) for b in (8, 9, 12, 15)]
ANSWERS += [answer_of(False, False, 9, 15), answer_of(True, False, 15, 8)]


def messages() -> Iterator[str | bytes]:
    for kind in ("json", "prose", "bitmap"):
        for size in (16, 100, 1 * KiB, 8 * KiB, 64 * KiB, 128 * KiB):
            for i in range(count_for(size, budget=256 * KiB, most=12, least=2)):
                data = message(kind, size, i)
                yield data.decode() if opcode_of(kind) == 1 else data


def echo_all(ws: wsuv.sync.ClientConnection) -> list[int]:
    """Every message of :func:`messages` echoed byte-exact; their sizes."""
    sizes = []
    for out in messages():
        ws.send(out)
        assert ws.recv(timeout=10) == out
        sizes.append(len(out.encode() if isinstance(out, str) else out))
    return sizes


def check_raw_server(srv: RawDeflateServer, sizes: list[int]) -> None:
    assert srv.errors == []
    assert srv.offers == [OFFER]
    assert len(srv.compressed) == len(sizes)
    p = srv.params
    for size, compressed in zip(sizes, srv.compressed, strict=True):
        if p is None or size < THRESHOLD:
            assert not compressed, size
        elif not p.client_nct:  # without takeover a message that would grow goes raw
            assert compressed, size
    if p is not None and p.client_nct:
        assert sum(srv.compressed) > len(sizes) // 2, srv.compressed


@pytest.mark.parametrize("frag", [None, 300], ids=["whole", "frames-of-300"])
@pytest.mark.parametrize("answer", ANSWERS, ids=[a or "declined" for a in ANSWERS])
def test_13_16_sync_client_against_zlib(answer: str | None, frag: int | None) -> None:
    with RawDeflateServer(answer, frag=frag) as srv:
        with wsuv.sync.connect(srv.url, max_message_size=None) as ws:
            assert ws.extensions == ([answer] if answer else [])
            sizes = echo_all(ws)
        check_raw_server(srv, sizes)


# -- 13.17: the `websockets` server --------------------------------------------------

WS_CONFIGS: list[dict[str, Any]] = [{}]
# websockets refuses windows of 8 either way (zlib cannot compress within 8 bits).
WS_CONFIGS += [{"server_max_window_bits": b} for b in range(9, 16)]
WS_CONFIGS += [{"client_max_window_bits": b} for b in range(9, 16)]
WS_CONFIGS += [{"server_no_context_takeover": s, "client_no_context_takeover": c}
               for s in (False, True) for c in (False, True) if s or c]
WS_CONFIGS += [{"server_no_context_takeover": True, "client_no_context_takeover": True,
                "server_max_window_bits": b, "client_max_window_bits": b} for b in (9, 15)]


def cfg_id(cfg: dict[str, Any]) -> str:
    return ",".join(f"{k.replace('_max_window_bits', '_bits')}={v}"
                    for k, v in sorted(cfg.items())) or "defaults"


def expected_params(cfg: dict[str, Any]) -> dict[str, Any]:
    """What a server configured with ``cfg`` must have answered our offer."""
    return {"server_bits": cfg.get("server_max_window_bits") or 15,
            "client_bits": cfg.get("client_max_window_bits") or 15,
            "server_nct": bool(cfg.get("server_no_context_takeover")),
            "client_nct": bool(cfg.get("client_no_context_takeover"))}


def check_answer(extensions: list[str], cfg: dict[str, Any]) -> None:
    assert len(extensions) == 1, extensions
    p = answer_params(extensions[0])
    assert p is not None
    assert {"server_bits": p.server_bits, "client_bits": p.client_bits,
            "server_nct": p.server_nct, "client_nct": p.client_nct} == expected_params(cfg)


class WebsocketsServer:
    """A websockets echo server configured with ``cfg``, in a thread."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        def echo(conn: ServerConnection) -> None:
            for msg in conn:
                conn.send(msg)

        self.server = ws_serve(echo, "127.0.0.1", 0, compression=None, max_size=None,
                               extensions=[ServerPerMessageDeflateFactory(**cfg)])
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self) -> WebsocketsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.mark.parametrize("cfg", WS_CONFIGS, ids=[cfg_id(c) for c in WS_CONFIGS])
def test_13_17_sync_client_against_websockets(cfg: dict[str, Any]) -> None:
    with WebsocketsServer(cfg) as srv, wsuv.sync.connect(srv.url, max_message_size=None) as ws:
        check_answer(ws.extensions, cfg)
        echo_all(ws)


# -- 13.18: Node's `ws` server ---------------------------------------------------------

NODE_CONFIGS = WS_CONFIGS + [{"server_max_window_bits": 8}, {"client_max_window_bits": 8},
                             {"server_max_window_bits": 8, "client_max_window_bits": 8,
                              "client_no_context_takeover": True}]
NODE_NAMES = {"server_no_context_takeover": "serverNoContextTakeover",
              "client_no_context_takeover": "clientNoContextTakeover",
              "server_max_window_bits": "serverMaxWindowBits",
              "client_max_window_bits": "clientMaxWindowBits"}


@pytest.fixture(scope="module")
def node_servers() -> Iterator[list[str]]:
    """One Node `ws` echo server per entry of NODE_CONFIGS, in one process."""
    exe = shutil.which("node") or shutil.which("nodejs")
    if exe is None or not (ROOT / "node_modules" / "ws" / "package.json").is_file():
        pytest.fail("Node.js and its `ws` package are needed: apt-get install nodejs npm, "
                    "then `npm install` at the repo root (`make test` does it)")
    configs = [{NODE_NAMES[k]: v for k, v in c.items()} for c in NODE_CONFIGS]
    proc = subprocess.Popen([exe, str(HERE / "pmd_node_peer.js"), "server", json.dumps(configs)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())["ports"]
        yield [f"ws://127.0.0.1:{p}/" for p in ports]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("index", range(len(NODE_CONFIGS)),
                         ids=[cfg_id(c) for c in NODE_CONFIGS])
def test_13_18_sync_client_against_node_ws(node_servers: list[str], index: int) -> None:
    cfg = NODE_CONFIGS[index]
    with wsuv.sync.connect(node_servers[index], max_message_size=None) as ws:
        check_answer(ws.extensions, cfg)
        echo_all(ws)


# -- 13.19: wsuv.aio.connect -----------------------------------------------------------

AIO_ANSWERS = [answer_of(), answer_of(server_bits=8), answer_of(client_bits=8),
               answer_of(True, True, 11, 10), answer_of(False, True, 15, 15)]


async def aio_echo_all(url: str) -> tuple[list[str], list[int]]:
    async with wsuv.aio.connect(url, max_message_size=None) as ws:
        sizes = []
        for out in messages():
            await ws.send(out)
            assert await ws.recv(timeout=10) == out
            sizes.append(len(out.encode() if isinstance(out, str) else out))
        return list(ws.extensions), sizes


@pytest.mark.parametrize("answer", AIO_ANSWERS)
def test_13_19_aio_client_against_zlib(answer: str) -> None:
    with RawDeflateServer(answer, frag=700) as srv:
        extensions, sizes = asyncio.run(asyncio.wait_for(aio_echo_all(srv.url), 60))
        assert extensions == [answer]
        check_raw_server(srv, sizes)


@pytest.mark.parametrize("cfg", [WS_CONFIGS[0], WS_CONFIGS[-1], {"server_max_window_bits": 9}],
                         ids=cfg_id)
def test_13_19_aio_client_against_websockets(cfg: dict[str, Any]) -> None:
    with WebsocketsServer(cfg) as srv:
        extensions, _ = asyncio.run(asyncio.wait_for(aio_echo_all(srv.url), 60))
        check_answer(extensions, cfg)


@pytest.mark.parametrize("index", [0, len(NODE_CONFIGS) - 2, len(NODE_CONFIGS) - 1],
                         ids=lambda i: cfg_id(NODE_CONFIGS[i]))
def test_13_19_aio_client_against_node_ws(node_servers: list[str], index: int) -> None:
    extensions, _ = asyncio.run(asyncio.wait_for(aio_echo_all(node_servers[index]), 60))
    check_answer(extensions, NODE_CONFIGS[index])
