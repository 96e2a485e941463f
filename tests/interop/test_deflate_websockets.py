"""permessage-deflate against the `websockets` client's own implementation
(its zlib streams, its parsing of our answer), in each of its configurations.
websockets always offers client_max_window_bits, so every answer names it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from interop_support import BIG_TIMEOUT, TIMEOUT, EchoTarget, text_payload
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("default", {"client_max_window_bits": True},
     "permessage-deflate; client_max_window_bits=14"),
    ("no-context-takeover", {"server_no_context_takeover": True,
                             "client_no_context_takeover": True},
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "client_max_window_bits=14"),
    ("small-windows", {"server_max_window_bits": 9, "client_max_window_bits": 10},
     "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10"),
    ("window-8", {"server_max_window_bits": 8},
     "permessage-deflate; server_max_window_bits=8; client_max_window_bits=14"),
]


def json_message(i: int) -> str:
    return json.dumps({"seq": i, "user": f"user-{i % 7}", "text": "hello " * (i % 30),
                       "tags": ["chat", "demo", str(i % 5)]})


@pytest.mark.parametrize(("options", "answer"), [(o, a) for _n, o, a in CONFIGS],
                         ids=[n for n, _o, _a in CONFIGS])
def test_websockets_client_configurations(echo: EchoTarget, options: dict[str, Any],
                                          answer: str) -> None:
    factory = ClientPerMessageDeflateFactory(**options)
    with connect(echo.url, extensions=[factory], compression=None, max_size=None,
                 open_timeout=TIMEOUT) as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"] == answer
        for i in range(60):  # many small messages: context taken over (or not) each time
            msg = json_message(i)
            ws.send(msg)
            assert ws.recv(timeout=TIMEOUT) == msg
        big = text_payload(1 << 20, seed=3)
        ws.send(big)
        assert ws.recv(timeout=BIG_TIMEOUT) == big
        ws.send([big[:1000], big[1000:500000], big[500000:]])  # fragmented, compressed
        assert ws.recv(timeout=BIG_TIMEOUT) == big


def test_websockets_client_without_compression_gets_none(echo: EchoTarget) -> None:
    with connect(echo.url, compression=None, open_timeout=TIMEOUT) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv(timeout=TIMEOUT) == "plain"
