"""RFC 6455 5.6: data frames.

Text (opcode 0x1): "The "Payload data" is text data encoded as UTF-8." A
message whose payload is not valid UTF-8 fails the connection (8.1, 1007;
the detailed cases are in test_8_1_utf8.py). Binary (opcode 0x2): "arbitrary
binary data whose interpretation is solely up to the application layer", so
any bytes at all are delivered untouched. An echo must give back each message
with its type and its exact bytes (no normalisation, no BOM stripping).
"""

from __future__ import annotations

import os

import pytest
from client import BINARY, TEXT, frame

TEXTS = {
    "empty": "",
    "ascii": "Hello, world!",
    "latin": "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!",
    "greek": "\u03ba\u1f79\u03c3\u03bc\u03b5",
    "cjk": "\u4f60\u597d\uff0c\u4e16\u754c",
    "emoji": "\U0001f600\U0001f44d\U0001f3fd",
    "nul": "a\x00b\x00",
    "controls": "".join(chr(i) for i in range(32)) + "\x7f",
    "bom": "\ufeffBOM stays",
    "edges": "\x7f\x80\u07ff\u0800\ud7ff\ue000\ufffd\U00010000\U0010ffff",
    # Noncharacters are valid UTF-8 scalar values.
    "noncharacters": "\ufdd0\ufdef\ufffe\uffff\U0001fffe\U0010fffe",
}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_valid_text_echoed_exactly(server, name):
    payload = TEXTS[name].encode("utf-8")
    with server.connect() as c:
        c.echo(TEXT, payload)
        c.close_handshake()


def test_every_code_point_plane(server):
    """One text message with a sample of every plane and every UTF-8 length."""
    chars = [chr(cp) for cp in range(0x20, 0x800, 7)]
    chars += [chr(cp) for cp in range(0x800, 0x10000, 97) if not 0xD800 <= cp <= 0xDFFF]
    chars += [chr(cp) for cp in range(0x10000, 0x110000, 4099)]
    payload = "".join(chars).encode()
    with server.connect() as c:
        c.echo(TEXT, payload)
        c.close_handshake()


@pytest.mark.parametrize("payload", [
    b"", bytes(range(256)), b"\xff\xfe\xfd", b"\xed\xa0\x80", b"\xc0\xaf", b"\x00" * 100,
    os.urandom(4096),
], ids=["empty", "all-bytes", "ff-fe-fd", "surrogate", "overlong", "zeros", "random"])
def test_binary_is_not_interpreted(server, payload):
    """Bytes that are invalid UTF-8 are fine in a binary message."""
    with server.connect() as c:
        c.echo(BINARY, payload)
        c.close_handshake()


def test_types_preserved_across_a_sequence(server):
    with server.connect() as c:
        for i in range(50):
            if i % 3:
                c.echo(TEXT, f"message {i} \u00e9".encode())
            else:
                c.echo(BINARY, bytes([i, 0xFF, 0x80]))
        c.close_handshake()


def test_invalid_utf8_text_fails_with_1007(server):
    data = frame(TEXT, b"valid") + frame(TEXT, b"Hello \xff") + frame(TEXT, b"never")
    server.fail(data, 1007, before=((TEXT, b"valid"),))
