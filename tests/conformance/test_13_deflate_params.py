"""Section 13 of the public conformance suite, our own: permessage-deflate
parameters, wsuv in the server role.

Every offer the public suite makes (13.1-13.7: server_no_context_takeover
and server_max_window_bits requested or not, 8 and 15, several offers), then
each parameter swept on its own over its whole range (13.8-13.11), against
servers configured with default, wide (15/15), tight (9/8) and
no-context-takeover settings; offers with fallback and offers that must be
declined (13.12-13.13). For each: the answer is what RFC 7692 and wsuv's
documented policy make of the offer (pmdkit.expected_answer, computed here),
then JSON and document-like messages of 16 B to 64 KiB are echoed, compressed
both ways by Python's zlib under exactly the negotiated parameters
(pmdkit.Inflater uses the negotiated window itself, and a new stream per
message without takeover: a server reaching beyond either fails).

13.14-13.15: the same parameter sweeps with independent peers as clients,
the `websockets` client and Node's `ws` (their own zlib streams and their
own reading of our answer).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client import EchoHandler, running_server
from pmdkit import (
    DeflateClient,
    KiB,
    ServerChoice,
    answer_params,
    count_for,
    echo_case,
    expected_answer,
    message,
    opcode_of,
)
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect as ws_connect

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

DEFAULT = ServerChoice()
WIDE = ServerChoice(window_bits=15, client_window_bits=15)
TIGHT = ServerChoice(window_bits=9, client_window_bits=8)
NCT = ServerChoice(nct=True)
CNCT = ServerChoice(client_nct=True)
BOTH_NCT = ServerChoice(nct=True, client_nct=True)
CHOICES = {"default": DEFAULT, "wide": WIDE, "tight": TIGHT, "nct": NCT, "cnct": CNCT,
           "both-nct": BOTH_NCT}


def offer_of(server_nct: bool = False, client_nct: bool = False, server_bits: int | None = None,
             client_bits: int | bool | None = True) -> str:
    """One permessage-deflate offer element with the given parameters."""
    parts = ["permessage-deflate"]
    if server_nct:
        parts.append("server_no_context_takeover")
    if client_nct:
        parts.append("client_no_context_takeover")
    if server_bits is not None:
        parts.append(f"server_max_window_bits={server_bits}")
    if client_bits is True:
        parts.append("client_max_window_bits")
    elif client_bits:
        parts.append(f"client_max_window_bits={client_bits}")
    return "; ".join(parts)


def suite_offer(request_nct: bool, request_bits: int) -> str:
    """The public suite's offer: it accepts client_no_context_takeover and
    client_max_window_bits, and requests the server's parameters."""
    return offer_of(request_nct, True, request_bits or None, True)


CASES: list[tuple[str, str, str]] = []  # (id, offer, choice)
for _choice in ("default", "wide"):
    for _n, (_nct, _bits) in enumerate([(False, 0), (True, 0), (False, 8), (False, 15),
                                        (True, 8), (True, 15)], start=1):
        CASES.append((f"13.{_n}-{_choice}", suite_offer(_nct, _bits), _choice))
    CASES.append((f"13.7-{_choice}", ", ".join(suite_offer(n, b) for n, b in
                                               [(True, 8), (True, 0), (False, 0)]), _choice))
    for _b in range(8, 16):
        CASES.append((f"13.8-server-bits-{_b}-{_choice}", offer_of(server_bits=_b), _choice))
        CASES.append((f"13.9-client-bits-{_b}-{_choice}", offer_of(client_bits=_b), _choice))
        CASES.append((f"13.10-both-bits-{_b}-nct-{_choice}",
                      offer_of(True, True, _b, _b), _choice))
for _choice in CHOICES:
    for _snct in (False, True):
        for _cnct in (False, True):
            for _cb in (True, None):
                CASES.append((f"13.11-snct{int(_snct)}-cnct{int(_cnct)}-cmwb{int(bool(_cb))}"
                              f"-{_choice}", offer_of(_snct, _cnct, None, _cb), _choice))
CASES += [
    ("13.11-firefox-tight", "permessage-deflate", "tight"),
    ("13.11-chrome-tight", offer_of(), "tight"),
    ("13.12-fallback-past-bad-window", "permessage-deflate; server_max_window_bits=7, "
     "permessage-deflate; server_max_window_bits=10", "default"),
    ("13.12-fallback-past-unknown-param", "permessage-deflate; foo=1, "
     "permessage-deflate; client_max_window_bits=9", "default"),
    ("13.12-fallback-past-duplicate", "permessage-deflate; server_no_context_takeover; "
     "server_no_context_takeover, permessage-deflate; client_no_context_takeover", "wide"),
    ("13.12-fallback-past-other-extension", "x-webkit-deflate-frame, permessage-deflate; "
     "server_max_window_bits=8; client_max_window_bits=8", "wide"),
    ("13.12-fallback-past-valued-nct", "permessage-deflate; client_no_context_takeover=1, "
     "permessage-deflate; server_max_window_bits=\"11\"", "default"),
    ("13.12-first-of-three-valid", ", ".join([offer_of(server_bits=9), offer_of(True, True),
                                              "permessage-deflate"]), "wide"),
    ("13.13-declined-bad-windows", "permessage-deflate; server_max_window_bits=16, "
     "permessage-deflate; client_max_window_bits=07", "default"),
    ("13.13-declined-no-value", "permessage-deflate; server_max_window_bits", "default"),
    ("13.13-declined-unknown-only", "permessage-deflate; mystery", "wide"),
]


@contextlib.contextmanager
def deflate_server(echo: str, choice: ServerChoice) -> Iterator[int]:
    """The C echo or a Python Handler echo, configured as ``choice``; its port."""
    with running_server(EchoHandler() if echo == "py-echo" else None,
                        **choice.options()) as srv:
        assert srv.port
        yield srv.port


def echo_matrix(c: DeflateClient) -> None:
    """JSON and document-like messages, 16 B to 64 KiB, some fragmented."""
    for kind in ("json", "mixed"):
        for size in (16, 100, 1 * KiB, 8 * KiB, 64 * KiB):
            echo_case(c, kind, size, count_for(size, budget=64 * KiB, most=40, least=3),
                      window=8)
        echo_case(c, kind, 20 * KiB, 4, frag=1000)


@pytest.mark.parametrize("echo", ["c-echo", "py-echo"])
@pytest.mark.parametrize(("offer", "choice"), [(o, c) for _i, o, c in CASES],
                         ids=[i for i, _o, _c in CASES])
def test_13_offer_answer_and_echo(echo: str, offer: str, choice: str) -> None:
    with deflate_server(echo, CHOICES[choice]) as port:
        c = DeflateClient(port, offer)
        assert c.params == expected_answer(offer, CHOICES[choice]), (offer, c.answer)
        echo_matrix(c)
        c.close()


# -- 13.14: the `websockets` client as the peer ---------------------------------------

PEER_CONFIGS: list[dict[str, Any]] = [{}]
PEER_CONFIGS += [{"server_max_window_bits": b} for b in range(8, 16)]
PEER_CONFIGS += [{"client_max_window_bits": b} for b in range(8, 16)]
PEER_CONFIGS += [{"server_no_context_takeover": s, "client_no_context_takeover": c}
                 for s in (False, True) for c in (False, True) if s or c]
PEER_CONFIGS += [{"server_no_context_takeover": True, "client_no_context_takeover": True,
                  "server_max_window_bits": b, "client_max_window_bits": b} for b in (8, 11, 15)]
PEER_CONFIGS += [{"client_max_window_bits": None}]


def peer_offer(cfg: dict[str, Any]) -> str:
    """The offer a peer configured with ``cfg`` (websockets' / ws's names) makes."""
    return offer_of(bool(cfg.get("server_no_context_takeover")),
                    bool(cfg.get("client_no_context_takeover")),
                    cfg.get("server_max_window_bits"), cfg.get("client_max_window_bits", True))


def peer_messages() -> Iterator[tuple[str, bytes]]:
    for kind in ("json", "bitmap"):
        for size in (16, 100, 1 * KiB, 8 * KiB, 64 * KiB, 128 * KiB):
            for i in range(count_for(size, budget=128 * KiB, most=8, least=1)):
                yield kind, message(kind, size, i)


def peer_id(cfg: dict[str, Any]) -> str:
    return ",".join(f"{k.replace('_max_window_bits', '_bits')}={v}"
                    for k, v in sorted(cfg.items())) or "defaults"


# websockets' client cannot compress within 8 bits and refuses to offer it.
WS_CONFIGS = [c for c in PEER_CONFIGS if c.get("client_max_window_bits") != 8]


@pytest.mark.parametrize("choice", ["default", "wide", "tight"])
@pytest.mark.parametrize("cfg", WS_CONFIGS, ids=[peer_id(c) for c in WS_CONFIGS])
def test_13_14_websockets_client(cfg: dict[str, Any], choice: str) -> None:
    with deflate_server("c-echo", CHOICES[choice]) as port:
        factory = ClientPerMessageDeflateFactory(**cfg)
        with ws_connect(f"ws://127.0.0.1:{port}/", extensions=[factory], compression=None,
                        max_size=None, open_timeout=10) as ws:
            answer = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert answer_params(answer) == expected_answer(peer_offer(cfg), CHOICES[choice])
            for kind, data in peer_messages():
                out: str | bytes = data.decode() if opcode_of(kind) == 1 else data
                ws.send(out)
                assert ws.recv(timeout=10) == out
            big = message("json", 40 * KiB, 9).decode()
            ws.send([big[:1], big[1:20000], big[20000:]])  # fragmented, compressed
            assert ws.recv(timeout=10) == big


# -- 13.15: Node's `ws` client as the peer ---------------------------------------------

NODE_NAMES = {"server_no_context_takeover": "serverNoContextTakeover",
              "client_no_context_takeover": "clientNoContextTakeover",
              "server_max_window_bits": "serverMaxWindowBits",
              "client_max_window_bits": "clientMaxWindowBits"}


def node_exe() -> str:
    exe = shutil.which("node") or shutil.which("nodejs")
    if exe is None or not (ROOT / "node_modules" / "ws" / "package.json").is_file():
        pytest.fail("Node.js and its `ws` package are needed: apt-get install nodejs npm, "
                    "then `npm install` at the repo root (`make test` does it)")
    return exe


def node_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """ws's option names; ws leaves client_max_window_bits out only when false."""
    out = {NODE_NAMES[k]: v for k, v in cfg.items()}
    if out.get("clientMaxWindowBits", True) is None:
        out["clientMaxWindowBits"] = False
    return out


@pytest.mark.parametrize(("echo", "choice"), [("c-echo", "default"), ("py-echo", "wide"),
                                              ("c-echo", "tight")])
def test_13_15_node_ws_client(echo: str, choice: str) -> None:
    """Every peer configuration in turn from one Node process."""
    with deflate_server(echo, CHOICES[choice]) as port:
        proc = subprocess.run(
            [node_exe(), str(HERE / "pmd_node_peer.js"), "client", f"ws://127.0.0.1:{port}/",
             json.dumps([node_config(c) for c in PEER_CONFIGS])],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(PEER_CONFIGS)
    for cfg, result in zip(PEER_CONFIGS, results, strict=True):
        assert result["ok"], (cfg, result.get("error"))
        assert result["messages"] == 86 and result["closeCode"] == 1000, result
        expected = expected_answer(peer_offer(cfg), CHOICES[choice])
        assert answer_params(result["answered"]) == expected, (cfg, result["answered"])
