"""Atheris harness for wsuv's Python-facing low-level API.

Input: [mode, config, seed] + data.
  mode % 4 == 0  FrameParser (whole feed and random splits) and
                 StreamingFrameParser (random splits) against a small
                 pure-Python reference parser (below), which follows RFC 6455 5.2
  mode % 4 == 1  Utf8Validator (whole and split) and is_valid_utf8 against
                 Python's own UTF-8 decoder
  mode % 4 == 2  encode_frame -> FrameParser round trip, masked or not
  mode % 4 == 3  all three on the same bytes
config: bits 0-1 role (server, client, any), bits 2-4 rsv_allowed,
        bits 5-7 max_size (None, or 1, 16, 125, 126, 65535, 65536, 2**20).

Run: .venv/bin/python fuzz/fuzz_python.py [libFuzzer flags] [corpus dirs]
(`make fuzz` runs it for a bounded time).
"""

from __future__ import annotations

import codecs
import random
import sys

import atheris

with atheris.instrument_imports():
    import wsuv
    from wsuv import (
        Frame,
        FrameChunk,
        FrameEnd,
        FrameHeader,
        FrameParser,
        ProtocolError,
        StreamingFrameParser,
        Utf8Validator,
        encode_frame,
        is_valid_utf8,
    )

ROLES = ("server", "client", "any", "server")
MAX_SIZES = (None, 1, 16, 125, 126, 65535, 65536, 1 << 20)
KNOWN = {0, 1, 2, 8, 9, 10}


def ref_parse(
    data: bytes, role: str, max_size: int | None, rsv_allowed: int
) -> tuple[list[tuple], int | None]:
    """Whole-buffer reference: (complete frames, close code of the error or None)."""
    rsv_bits = (0x40 if rsv_allowed & 1 else 0) | (0x20 if rsv_allowed & 2 else 0) | (
        0x10 if rsv_allowed & 4 else 0)
    frames: list[tuple] = []
    i, n, in_message = 0, len(data), False
    while i < n:
        b0 = data[i]
        i += 1
        op, fin, rsv = b0 & 0xF, bool(b0 & 0x80), b0 & 0x70
        control = bool(op & 8)
        if op not in KNOWN or rsv & ~rsv_bits or (rsv and (op == 0 or control)):
            return frames, 1002
        if control and not fin:
            return frames, 1002
        if op == 0 and not in_message or op in (1, 2) and in_message:
            return frames, 1002
        if i == n:
            break
        b1 = data[i]
        i += 1
        masked, length = bool(b1 & 0x80), b1 & 0x7F
        if role == "server" and not masked or role == "client" and masked:
            return frames, 1002
        if control and length > 125:
            return frames, 1002
        if length >= 126:
            k = 2 if length == 126 else 8
            if n - i < k:
                break
            length = int.from_bytes(data[i:i + k], "big")
            i += k
            if k == 2 and length < 126 or k == 8 and (length <= 0xFFFF or length >> 63):
                return frames, 1002
        if max_size is not None and length > max_size:
            return frames, 1009
        key = b"\0\0\0\0"
        if masked:
            if n - i < 4:
                break
            key = data[i:i + 4]
            i += 4
        if not control:
            in_message = not fin
        if n - i < length:
            break
        payload = bytes(b ^ key[j & 3] for j, b in enumerate(data[i:i + length]))
        i += length
        frames.append((op, payload, fin, bool(rsv & 0x40), bool(rsv & 0x20), bool(rsv & 0x10)))
    return frames, None


def pieces(rng: random.Random, data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        k = rng.choice((1, 2, 3, rng.randint(1, 20), rng.randint(1, 300), rng.randint(1, 3000),
                        len(data)))
        out.append(data[i:i + k])
        i += k
    return out


def check_frame_parsers(data: bytes, cfg: int, rng: random.Random) -> None:
    role = ROLES[cfg & 3]
    rsv_allowed = (cfg >> 2) & 7
    max_size = MAX_SIZES[(cfg >> 5) & 7]
    want, want_code = ref_parse(data, role, max_size, rsv_allowed)
    want_frames = [Frame(*f) for f in want]

    # FrameParser, whole and split.
    for split in (False, True):
        p = FrameParser(role=role, max_size=max_size, rsv_allowed=rsv_allowed)
        got: list[Frame] = []
        code = None
        for chunk in (pieces(rng, data) if split else [data]):
            try:
                got += p.feed(chunk)
            except ProtocolError as e:
                got += e.frames
                code = e.code
                break
        assert got == want_frames, (split, got[:3], want_frames[:3])
        assert code == want_code, (split, code, want_code)
        assert all(isinstance(f, Frame) and type(f.payload) is bytes for f in got)

    # StreamingFrameParser, split: rebuild frames from the events.
    sp = StreamingFrameParser(role=role, max_size=max_size, rsv_allowed=rsv_allowed)
    events: list[object] = []
    code = None
    for chunk in pieces(rng, data):
        try:
            events += sp.feed(chunk)
        except ProtocolError as e:
            events += e.frames
            code = e.code
            break
    assert code == want_code, ("streaming", code, want_code)
    rebuilt: list[Frame] = []
    head: FrameHeader | None = None
    body = bytearray()
    for ev in events:
        if isinstance(ev, FrameHeader):
            assert head is None, "header inside a frame"
            head, body = ev, bytearray()
        elif isinstance(ev, FrameChunk):
            assert head is not None and len(ev.data) > 0, "bad chunk"
            body += ev.data
            assert len(body) <= head.length
        else:
            assert isinstance(ev, FrameEnd) and head is not None, "end outside a frame"
            assert len(body) == head.length and ev.opcode == head.opcode and ev.fin == head.fin
            rebuilt.append(Frame(head.opcode, bytes(body), head.fin, head.rsv1, head.rsv2,
                                 head.rsv3))
            head = None
    assert rebuilt == want_frames, ("streaming", rebuilt[:3], want_frames[:3])


def check_utf8(data: bytes, rng: random.Random) -> None:
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert is_valid_utf8(data) == valid
    assert is_valid_utf8(bytearray(data)) == valid
    v = Utf8Validator()
    ok = v.feed(data)
    assert (ok and v.complete) == valid
    if ok:
        assert v.error_offset is None
        # No invalid byte: what is there decodes as a (possibly unfinished) prefix.
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
        assert v.complete == valid
    else:
        bad = v.error_offset
        assert bad is not None and 0 <= bad < len(data)
        # Everything before the bad byte is a valid prefix; with it, no amount
        # of continuation bytes makes valid UTF-8 (CPython's incremental decoder
        # itself only rejects ED A0..BF at the third byte, so ask the question
        # through whole decodes).
        codecs.getincrementaldecoder("utf-8")().decode(data[:bad], final=False)
        for k in range(4):
            for c in (0x80, 0x90, 0xA0, 0xBF):
                try:
                    (data[:bad + 1] + bytes([c]) * k).decode("utf-8")
                except UnicodeDecodeError as e:
                    assert e.start <= bad, (e.start, bad)
                else:
                    raise AssertionError(f"byte {bad} reported bad, but adding {k} x {c:#x} "
                                         "makes valid UTF-8")
    # Split feeding agrees, including the absolute offset.
    w = Utf8Validator()
    okw = True
    for chunk in pieces(rng, data):
        okw = w.feed(memoryview(chunk))
        if not okw:
            break
    assert okw == ok and w.error_offset == v.error_offset, (w.error_offset, v.error_offset)
    if ok:
        assert w.complete == v.complete
    w.reset()
    assert w.error_offset is None and w.complete


def check_encode(data: bytes, cfg: int, rng: random.Random) -> None:
    if not data:
        return
    op = data[0] & 0xF
    fin = bool(data[0] & 0x80)
    rsv1 = bool(data[0] & 0x40)
    payload = data[1:]
    if len(payload) > 300:
        payload = payload * (1 + (cfg & 3) * 100)  # sometimes a 16- or 64-bit length
    mask = bytes(rng.randrange(256) for _ in range(4)) if cfg & 0x10 else None
    try:
        wire = encode_frame(op, payload, fin=fin, rsv1=rsv1, mask=mask)
    except ValueError:
        # encode_frame refuses exactly what no peer may accept (RFC 6455 5.2,
        # 5.5; RFC 7692: RSV1 only on a message's first frame).
        reserved = op not in (0, 1, 2, 8, 9, 10)
        bad_control = bool(op & 8) and (len(payload) > 125 or not fin)
        bad_rsv1 = rsv1 and (op == 0 or bool(op & 8))
        assert reserved or bad_control or bad_rsv1, (op, len(payload), fin, rsv1)
        return
    assert op in (0, 1, 2, 8, 9, 10) and not (rsv1 and (op == 0 or op & 8)), (op, rsv1)
    n = len(payload)
    hlen = 2 + (0 if n < 126 else 2 if n < 65536 else 8) + (4 if mask else 0)
    assert len(wire) == hlen + n
    assert wire[0] == (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    prefix = b""
    if op == 0:  # a continuation needs a message to continue
        prefix = encode_frame(2, b"", fin=False, mask=mask)
    p = FrameParser(role="server" if mask else "client", rsv_allowed=1)
    got: list[Frame] = []
    try:
        for chunk in pieces(rng, prefix + wire):
            got += p.feed(chunk)
    except ProtocolError as e:
        assert op not in KNOWN or (rsv1 and (op == 0 or op & 8)), (op, rsv1, e)
        assert e.code == 1002
        return
    assert op in KNOWN and not (rsv1 and (op == 0 or op & 8)), (op, rsv1)
    if prefix:
        got = got[1:]
    assert got == [Frame(op, bytes(payload), fin, rsv1, False, False)], (got[:1], op, n)


def TestOneInput(data: bytes) -> None:
    if len(data) < 3:
        return
    mode, cfg = data[0] & 3, data[1]
    rng = random.Random(data[2])
    body = data[3:]
    if mode in (0, 3):
        check_frame_parsers(body, cfg, rng)
    if mode in (1, 3):
        check_utf8(body, rng)
    if mode in (2, 3):
        check_encode(body, cfg, rng)


def main() -> None:
    assert wsuv.__version__
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
