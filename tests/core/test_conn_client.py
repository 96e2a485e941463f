"""The engine in the client role (ws_conn_init_client), without sockets: every
frame we send is masked with a fresh key from the transport, the caller's bytes
are left alone, and a masked frame from the server fails with 1002."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib
from wsuv.frames import FrameParser, encode_frame

TEXT, BINARY, PING, CLOSE = lib.WS_OP_TEXT, lib.WS_OP_BINARY, lib.WS_OP_PING, lib.WS_OP_CLOSE


class Client:
    """One client-role engine and what it wrote and delivered."""

    def __init__(self) -> None:
        self.c = ffi.new("ws_conn *")
        self.written = b""
        self.keys: list[bytes] = []
        self.messages: list[tuple[int, bytes]] = []
        self.closed: tuple[int, bytes] | None = None
        self._keep = [
            ffi.callback("void(ws_conn *, const ws_conn_buf *, size_t)", self._write),
            ffi.callback("void(ws_conn *, unsigned, const uint8_t *, size_t)", self._message),
            ffi.callback("void(ws_conn *, unsigned, const char *, size_t, int)", self._closed),
            ffi.callback("void(ws_conn *, uint8_t *)", self._key),
        ]
        self.cb = ffi.new("ws_conn_callbacks *", {
            "write": self._keep[0], "message": self._keep[1], "closed": self._keep[2],
            "mask_key": self._keep[3]})
        lib.ws_conn_init_client(self.c, self.cb, ffi.NULL)

    def _write(self, c: Any, bufs: Any, n: int) -> None:
        self.written += b"".join(ffi.buffer(bufs[i].base, bufs[i].len)[:] for i in range(n))

    def _message(self, c: Any, opcode: int, data: Any, length: int) -> None:
        self.messages.append((opcode, ffi.buffer(data, length)[:]))

    def _closed(self, c: Any, code: int, reason: Any, length: int, clean: int) -> None:
        self.closed = (code, ffi.buffer(reason, length)[:])

    def _key(self, c: Any, key: Any) -> None:
        k = os.urandom(4)
        self.keys.append(k)
        ffi.memmove(key, k, 4)

    def feed(self, data: bytes) -> None:
        buf = ffi.new("uint8_t[]", data)
        lib.ws_conn_feed(self.c, buf, len(data))

    def frames(self) -> list[Any]:
        return FrameParser(role="server").feed(self.written)  # we are the server reading them

    def __del__(self) -> None:
        lib.ws_conn_free(self.c)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=5000), min_size=1, max_size=8))
def test_every_frame_is_masked_with_its_own_key(payloads: list[bytes]) -> None:
    client = Client()
    originals = [bytes(p) for p in payloads]
    for p in payloads:
        assert lib.ws_conn_send(client.c, BINARY, p, len(p)) == 0
    assert payloads == originals  # the caller's bytes are not masked in place
    frames = client.frames()  # a server-role parser requires the mask bit
    assert [f.payload for f in frames] == originals
    assert len(client.keys) == len(payloads)
    raw = client.written
    for key in client.keys:
        assert key in raw  # each frame carried the key the transport gave


def test_control_and_close_frames_are_masked_too() -> None:
    client = Client()
    assert lib.ws_conn_ping(client.c, b"hi", 2) == 0
    assert lib.ws_conn_close(client.c, 1000, b"bye", 3) == 0
    frames = client.frames()
    assert [(f.opcode, f.payload) for f in frames] == [(PING, b"hi"),
                                                       (CLOSE, b"\x03\xe8bye")]
    assert len(client.keys) == 2


def test_unmasked_server_frames_are_messages() -> None:
    client = Client()
    client.feed(encode_frame(TEXT, "héllo".encode()) + encode_frame(BINARY, b"\x00\x01"))
    assert client.messages == [(TEXT, "héllo".encode()), (BINARY, b"\x00\x01")]
    assert client.closed is None


def test_a_masked_frame_from_the_server_fails_with_1002() -> None:
    client = Client()
    client.feed(encode_frame(TEXT, b"sneaky", mask=b"abcd"))
    assert client.messages == []
    assert client.closed is not None and client.closed[0] == 1002
    frames = client.frames()
    assert frames[-1].opcode == CLOSE and frames[-1].payload[:2] == b"\x03\xea"  # our 1002
