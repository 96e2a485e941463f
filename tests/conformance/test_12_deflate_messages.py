"""Section 12 of the public conformance suite, our own: permessage-deflate echo.

Many messages per case, compressed both ways with Python's zlib on our side
(tests/conformance/pmdkit.py: exact negotiated windows, a fresh inflater per
message where the server does not take over its context), every echo
byte-exact and compressed when it is at least the threshold. Six kinds of
payload (JSON, prose with multi-byte UTF-8, HTML, a picture-like bitmap, a
document-like mix, random bytes), sizes 16 B to 128 KiB, then fragmented at
several frame sizes and written to the socket in small pieces. Both servers
of the conformance fixture: the C echo and a Python Handler echo.

12.1-12.6: one kind each, unfragmented; 12.7: fragmented; 12.8: TCP split
at odd sizes; 12.9: compressed and uncompressed messages interleaved on one
context; 12.10: one connection, every kind and size in turn; 12.11: the context
really spans messages.
"""

from __future__ import annotations

import pytest
from client import raw_frame
from pmdkit import KINDS, DeflateClient, KiB, count_for, echo_case, message, opcode_of

SIZES = [16, 64, 256, 1 * KiB, 4 * KiB, 8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB, 128 * KiB]
OFFER = "permessage-deflate; client_max_window_bits"  # what Chrome offers


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_12_echo_compressed(server, kind, size):
    c = DeflateClient(server.port, OFFER)
    assert c.params is not None, c.answer
    echo_case(c, kind, size, count_for(size))
    c.close()


@pytest.mark.parametrize(("size", "frag"), [
    (1 * KiB, 64), (4 * KiB, 256), (16 * KiB, 256), (16 * KiB, 4 * KiB),
    (64 * KiB, 1 * KiB), (128 * KiB, 256), (128 * KiB, 16 * KiB),
])
@pytest.mark.parametrize("kind", ["json", "bitmap", "random"])
def test_12_7_fragmented_compressed(server, kind, size, frag):
    c = DeflateClient(server.port, OFFER)
    echo_case(c, kind, size, count_for(size, budget=512 * KiB), frag=frag)
    c.close()


@pytest.mark.parametrize("chop", [1, 7, 1000])
def test_12_8_frames_split_anywhere_on_the_wire(server, chop):
    c = DeflateClient(server.port, OFFER)
    for i in range(20 if chop > 1 else 4):
        size = 300 + 97 * i
        data = message("prose", size, i)
        payload = c.deflater.message(data)
        wire = raw_frame(1, payload[:len(payload) // 2], fin=False, rsv=1)
        wire += raw_frame(0, payload[len(payload) // 2:], fin=True)
        c.c.send(wire, chop=chop)
        assert c.recv()[1] == data
    c.close()


@pytest.mark.parametrize("kind", ["json", "mixed"])
def test_12_9_uncompressed_messages_between_compressed_ones(server, kind):
    c = DeflateClient(server.port, OFFER)
    echo_case(c, kind, 2 * KiB, 300, mix_uncompressed=True)
    c.close()


def test_12_10_every_kind_and_size_on_one_connection(server):
    c = DeflateClient(server.port, OFFER)
    for kind in KINDS:
        for size in SIZES:
            echo_case(c, kind, size, 3)
    c.close()


def test_12_11_context_takeover_spans_messages(server):
    """The server's context spans messages: 500 similar 1 KiB JSON messages
    come back in under a third of their bytes, each decoded by one stream."""
    c = DeflateClient(server.port, OFFER)
    total = wire = 0
    for i in range(500):
        data = message("json", 1 * KiB, i)
        c.send(opcode_of("json"), data)
        total += len(data)
        f = c.c.recv_frame()
        assert f.rsv1 and f.fin
        wire += len(f.payload)
        assert c.inflater.message(f.payload) == data
    assert wire < total / 3, (wire, total)
    c.close()
