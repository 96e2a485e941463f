"""permessage-deflate (RFC 7692) for the conformance tests of sections 12 and 13.

Everything on our side of the wire is independent of wsuv's deflate code:
offers and answers are read by :func:`parse_extensions` here, and every
message is compressed and inflated with Python's ``zlib`` using exactly the
negotiated window and context-takeover mode. The inflaters use the
negotiated window itself (8 bits included), so a peer that reaches further
back than it agreed fails with zlib's "invalid distance too far back"; an
inflater for a direction without context takeover is new for every message,
so a peer that kept its history fails the same way.

:class:`DeflateClient` is the client side over a raw socket (the server role
under test); :class:`RawDeflateServer` is a one-connection-at-a-time server
thread that answers with a chosen extension header (the client role under
test). Payloads come from :func:`corpus`: deterministic text and binary of
several kinds, each message a different slice, so that context takeover has
something to refer back to.
"""

from __future__ import annotations

import base64
import hashlib
import random
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from client import TIMEOUT, Client, raw_frame

import wsuv
from wsuv import FrameParser

TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: stripped by the sender, added back to inflate
TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
KiB = 1024
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- payloads ----------------------------------------------------------------------

_WORDS = ("der Geist der stets verneint und das mit Recht denn alles was entsteht ist wert "
          "dass es zugrunde geht habe nun ach Philosophie Juristerei und Medizin durchaus "
          "studiert mit heißem Bemühn da steh ich nun ich armer Tor und bin so klug als wie "
          "zuvor Übermut größer Straße naïve café résumé 東京 中文 😀 ελληνικά").split()


def _json_corpus(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += (f'{{"id":{i},"user":"user-{rng.randrange(50)}","score":{rng.random():.6f},'
                f'"tags":["{rng.choice(_WORDS)}","{rng.choice(_WORDS)}"],'
                f'"active":{"true" if rng.random() < 0.5 else "false"},'
                f'"text":"{" ".join(rng.choice(_WORDS) for _ in range(rng.randrange(1, 12)))}"}},'
                ).encode()
        i += 1
    return bytes(out)


def _prose_corpus(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 14)))
        out += (line[:1].upper() + line[1:] + ".\n").encode()
    return bytes(out)


def _html_corpus(rng: random.Random, size: int) -> bytes:
    out = bytearray(b"<!DOCTYPE html><html><head><title>wsuv</title></head><body>\n")
    while len(out) < size:
        cls = rng.choice(("row", "cell", "header", "note"))
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(2, 9)))
        out += f'<div class="{cls}" id="n{rng.randrange(10**6)}"><p>{words}</p></div>\n'.encode()
    return bytes(out)


def _bitmap_corpus(rng: random.Random, size: int) -> bytes:
    """A picture-like byte stream: smooth gradients with noise in the low bits."""
    out = bytearray()
    y = 0
    while len(out) < size:
        base = rng.randrange(256)
        for x in range(512):
            v = (base + x // 3 + y) & 0xFF
            out += bytes((v, (v + 40) & 0xFF, v ^ (rng.randrange(8))))
        y += 1
    return bytes(out)


def _mixed_corpus(rng: random.Random, size: int) -> bytes:
    """A document-like binary: compressible runs between incompressible ones."""
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.4:
            out += rng.randbytes(rng.randrange(64, 2048))
        else:
            out += _prose_corpus(rng, rng.randrange(64, 2048))
    return bytes(out)


_KINDS = {
    "json": (TEXT, _json_corpus),
    "prose": (TEXT, _prose_corpus),
    "html": (TEXT, _html_corpus),
    "bitmap": (BINARY, _bitmap_corpus),
    "mixed": (BINARY, _mixed_corpus),
    "random": (BINARY, lambda rng, size: rng.randbytes(size)),
}
KINDS = tuple(_KINDS)
_CORPORA: dict[str, bytes] = {}
CORPUS_SIZE = 640 * KiB


def corpus(kind: str) -> bytes:
    if kind not in _CORPORA:
        _CORPORA[kind] = _KINDS[kind][1](random.Random(f"pmd-{kind}"), CORPUS_SIZE)
    return _CORPORA[kind]


def opcode_of(kind: str) -> int:
    return _KINDS[kind][0]


def message(kind: str, size: int, i: int) -> bytes:
    """Message i of a case: ``size`` bytes from the kind's corpus (valid UTF-8 for text)."""
    data = corpus(kind)
    start = (i * 7919) % (len(data) - size - 8)
    chunk = data[start:start + size + 8]
    if opcode_of(kind) == BINARY:
        return chunk[:size]
    while chunk and chunk[0] & 0xC0 == 0x80:  # start on a character
        chunk = chunk[1:]
    text = chunk[:size].decode("utf-8", "ignore").encode()
    return text + b"." * (size - len(text))


def count_for(size: int, budget: int = 1024 * KiB, most: int = 1000, least: int = 10) -> int:
    """Messages per case: many small ones, a byte budget for the large."""
    return max(least, min(most, budget // size))


# -- negotiation, read independently -----------------------------------------------

@dataclass(frozen=True)
class Params:
    """What one connection negotiated (RFC 7692 7.1), from the answer."""

    server_bits: int = 15
    client_bits: int = 15
    server_nct: bool = False
    client_nct: bool = False


def parse_extensions(value: str) -> list[list[tuple[str, str | None]]]:
    """An extensions header value as elements of (name, value) pairs, the
    extension name first; quoted values unquoted. Raises ValueError."""
    elements = []
    for element in value.split(","):
        parts = [p.strip() for p in element.split(";")]
        if not parts[0]:
            raise ValueError(f"empty extension in {value!r}")
        pairs: list[tuple[str, str | None]] = [(parts[0].lower(), None)]
        for part in parts[1:]:
            name, eq, val = part.partition("=")
            v: str | None = val.strip().strip('"') if eq else None
            pairs.append((name.strip().lower(), v))
        elements.append(pairs)
    return elements


def answer_params(answer: str | None) -> Params | None:
    """The parameters a server's answer sets; None if it declined. The answer
    must be one permessage-deflate element with known, single, valid parameters."""
    if answer is None:
        return None
    elements = parse_extensions(answer)
    assert len(elements) == 1 and elements[0][0][0] == "permessage-deflate", answer
    seen: dict[str, str | None] = {}
    for name, value in elements[0][1:]:
        assert name not in seen, f"{name} twice in {answer!r}"
        seen[name] = value
        if name.endswith("_no_context_takeover"):
            assert value is None, answer
        else:
            assert name in ("server_max_window_bits", "client_max_window_bits"), answer
            assert value is not None and value.isdigit() and 8 <= int(value) <= 15, answer
    return Params(server_bits=int(seen.get("server_max_window_bits") or 15),
                  client_bits=int(seen.get("client_max_window_bits") or 15),
                  server_nct="server_no_context_takeover" in seen,
                  client_nct="client_no_context_takeover" in seen)


def _valid_offer(pairs: list[tuple[str, str | None]]) -> bool:
    if pairs[0][0] != "permessage-deflate":
        return False
    names = [n for n, _ in pairs[1:]]
    if len(set(names)) != len(names):
        return False
    for name, value in pairs[1:]:
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return False
        elif name == "server_max_window_bits":
            if value is None or value not in {str(b) for b in range(8, 16)}:
                return False
        elif name == "client_max_window_bits":
            if value is not None and value not in {str(b) for b in range(8, 16)}:
                return False
        else:
            return False
    return True


@dataclass(frozen=True)
class ServerChoice:
    """The server's configuration as it bears on the answer."""

    window_bits: int = 12         # compression_window_bits
    client_window_bits: int = 12  # compression_client_window_bits
    nct: bool = False             # compression_no_context_takeover
    client_nct: bool = False      # compression_client_no_context_takeover

    def options(self) -> dict[str, object]:
        return {"compression_window_bits": self.window_bits,
                "compression_client_window_bits": self.client_window_bits,
                "compression_no_context_takeover": self.nct,
                "compression_client_no_context_takeover": self.client_nct}


def expected_answer(offer: str, choice: ServerChoice) -> Params | None:
    """What RFC 7692 and wsuv's documented policy make of ``offer``: the first
    valid element; server_max_window_bits only if offered, no larger than
    offered; client_max_window_bits only if offered (8 only if offered as
    8); the takeover flags if offered or configured."""
    for pairs in parse_extensions(offer):
        if not _valid_offer(pairs):
            continue
        got = dict(pairs[1:])
        server_bits = 15
        if "server_max_window_bits" in got:
            server_bits = min(int(got["server_max_window_bits"] or 15), choice.window_bits)
        client_bits = 15
        if "client_max_window_bits" in got:
            asked = got["client_max_window_bits"]
            client_bits = min(int(asked or 15), choice.client_window_bits)
            if asked != "8":  # 8 only if offered: zlib-based clients cannot take it
                client_bits = max(client_bits, 9)
        return Params(server_bits=server_bits, client_bits=client_bits,
                      server_nct="server_no_context_takeover" in got or choice.nct,
                      client_nct="client_no_context_takeover" in got or choice.client_nct)
    return None


# -- one direction's zlib stream -----------------------------------------------------

class Deflater:
    """Compresses messages within ``bits`` (9 for 8: zlib refuses a raw 8-bit
    deflate window, and its 9-bit output reaches back at most 250 bytes)."""

    def __init__(self, bits: int, reset: bool, level: int = 6) -> None:
        self.bits, self.reset, self.level = max(bits, 9), reset, level
        self._z = self._new()

    def _new(self) -> zlib._Compress:
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.bits)

    def message(self, data: bytes) -> bytes:
        wire = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        assert wire.endswith(TAIL)
        if self.reset:
            self._z = self._new()
        return wire[:-4]


class Inflater:
    """Inflates messages within exactly ``bits``; new per message without takeover."""

    def __init__(self, bits: int, reset: bool) -> None:
        self.bits, self.reset = bits, reset
        self._z = zlib.decompressobj(-bits)

    def message(self, payload: bytes) -> bytes:
        data = self._z.decompress(payload + TAIL)
        assert not self._z.unconsumed_tail
        if self.reset:
            self._z = zlib.decompressobj(-self.bits)
        return data


def chunks(data: bytes, size: int | None) -> list[bytes]:
    if not size:
        return [data]
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


# -- the client side over a raw socket (the server role under test) -----------------

class DeflateClient:
    """A raw client that offers ``offer`` and speaks deflate with Python's zlib."""

    def __init__(self, port: int, offer: str | None, *, timeout: float = TIMEOUT) -> None:
        self.c = Client(port, timeout=timeout)
        headers = [("Sec-WebSocket-Extensions", offer)] if offer is not None else []
        resp = self.c.handshake(headers=headers)
        self.answer = resp.get("sec-websocket-extensions")
        self.params = answer_params(self.answer)
        p = self.params or Params()
        self.deflater = Deflater(p.client_bits, p.client_nct)
        self.inflater = Inflater(p.server_bits, p.server_nct)
        self.compressed_received = 0

    def send(self, opcode: int, data: bytes, *, frag: int | None = None,
             compress: bool = True) -> None:
        """One message: compressed (RSV1 on its first frame only) unless told
        not to, cut into frames of ``frag`` payload bytes."""
        compress = compress and self.params is not None
        payload = self.deflater.message(data) if compress else data
        parts = chunks(payload, frag)
        wire = bytearray()
        for i, part in enumerate(parts):
            wire += raw_frame(opcode if i == 0 else CONT, part, fin=i == len(parts) - 1,
                              rsv=1 if compress and i == 0 else 0)
        self.c.send(bytes(wire))

    def recv(self, timeout: float | None = None) -> tuple[int, bytes, bool]:
        """The next data message, inflated if it came compressed: (opcode, data, compressed)."""
        f = self.c.recv_frame(timeout)
        assert f.opcode in (TEXT, BINARY), f"expected a data frame, got opcode {f.opcode}"
        assert not (f.rsv2 or f.rsv3)
        opcode, compressed, parts = f.opcode, f.rsv1, [f.payload]
        while not f.fin:
            f = self.c.recv_frame(timeout)
            assert f.opcode == CONT and not f.rsv1, "RSV1 or a new message inside a message"
            parts.append(f.payload)
        data = b"".join(parts)
        if compressed:
            assert self.params is not None, "RSV1 without permessage-deflate negotiated"
            data = self.inflater.message(data)
            self.compressed_received += 1
        if opcode == TEXT:
            data.decode("utf-8")
        return opcode, data, compressed

    def close(self) -> None:
        self.c.close_handshake(1000)
        self.c.close()


def echo_case(client: DeflateClient, kind: str, size: int, count: int, *,
              frag: int | None = None, window: int = 16, threshold: int = 64,
              mix_uncompressed: bool = False) -> None:
    """``count`` messages of ``size`` bytes, up to ``window`` in flight; each
    echo must be byte-exact, and compressed when it could be."""
    opcode = opcode_of(kind)
    sent: list[bytes] = []
    got = 0
    takeover = client.params is not None and not client.params.server_nct
    deadline = time.monotonic() + 60
    for i in range(count):
        data = message(kind, size, i)
        client.send(opcode, data, frag=frag, compress=not (mix_uncompressed and i % 3 == 2))
        sent.append(data)
        while len(sent) - got >= window or (i == count - 1 and got < len(sent)):
            assert time.monotonic() < deadline, "echo case over 60 s"
            op, back, compressed = client.recv()
            assert op == opcode, (op, opcode)
            assert back == sent[got], f"message {got} of {size} bytes differs after the echo"
            if client.params is None or size < threshold:
                assert not compressed, f"message {got} of {size} bytes compressed"
            elif takeover:  # without takeover an incompressible message may go raw
                assert compressed, f"message {got} of {size} bytes not compressed"
            got += 1


# -- a raw server for the client role ------------------------------------------------

class RawDeflateServer:
    """Accepts connections on 127.0.0.1, answers every upgrade with ``answer``
    as its Sec-WebSocket-Extensions (None: no header), and echoes each
    message with Python's zlib under the parameters the answer sets, cut
    into frames of ``frag`` compressed bytes. Records the offers it saw and
    whether each client message came compressed; a violation (an unmasked
    frame, RSV1 on a continuation, a stream beyond the window) is recorded
    in ``errors`` and ends that connection."""

    def __init__(self, answer: str | None, *, frag: int | None = None) -> None:
        self.answer = answer
        self.params = answer_params(answer)
        self.frag = frag
        self.offers: list[str | None] = []
        self.compressed: list[bool] = []
        self.errors: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._session(conn)
                except (AssertionError, zlib.error, UnicodeDecodeError, ValueError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                except OSError:
                    pass

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        fields = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields.setdefault(name.strip().lower(), []).append(value.strip())
        offer = ", ".join(fields.get("sec-websocket-extensions", [])) or None
        self.offers.append(offer)
        key = fields["sec-websocket-key"][0]
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}"]
        if self.answer is not None:
            lines.append(f"Sec-WebSocket-Extensions: {self.answer}")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        p = self.params or Params()
        deflater = Deflater(p.server_bits, p.server_nct)
        inflater = Inflater(p.client_bits, p.client_nct)
        parser = FrameParser(role="server", rsv_allowed=1 if self.params else 0)
        frames = list(parser.feed(buf)) if buf else []
        current: list[wsuv.Frame] = []
        while True:
            while not frames:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                frames.extend(parser.feed(chunk))
            f = frames.pop(0)
            if f.opcode == CLOSE:
                conn.sendall(wsuv.encode_frame(CLOSE, f.payload[:2]))
                return
            if f.opcode == PING:
                conn.sendall(wsuv.encode_frame(PONG, f.payload))
                continue
            if f.opcode == PONG:
                continue
            current.append(f)
            assert not any(x.rsv1 for x in current[1:]), "RSV1 on a continuation"
            if not f.fin:
                continue
            first, data = current[0], b"".join(x.payload for x in current)
            current = []
            if first.rsv1:
                data = inflater.message(data)
            self.compressed.append(first.rsv1)
            self._send(conn, first.opcode, data, deflater)

    def _send(self, conn: socket.socket, opcode: int, data: bytes, deflater: Deflater) -> None:
        if self.params is None:
            conn.sendall(wsuv.encode_frame(opcode, data))
            return
        parts = chunks(deflater.message(data), self.frag)
        out = bytearray()
        for i, part in enumerate(parts):
            out += wsuv.encode_frame(opcode if i == 0 else CONT, part,
                                     fin=i == len(parts) - 1, rsv1=i == 0)
        conn.sendall(bytes(out))

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(5)

    def __enter__(self) -> RawDeflateServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sizes_up_to(largest: int) -> Iterator[int]:
    size = 16
    while size <= largest:
        yield size
        size *= 4 if size < 1024 else 2

