"""Low-level RFC 6455 frames: parse a byte stream, encode single frames.

This is the C frame parser with a Python face, for people who want frames
rather than messages (proxies, clients, tests). One C call parses everything
passed to :meth:`FrameParser.feed`; payloads are unmasked in C.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal, NamedTuple

from wsuv._core import ffi, lib
from wsuv.exceptions import ProtocolError

Role = Literal["server", "client", "any"]
_ROLES = {"server": lib.WS_ROLE_SERVER, "client": lib.WS_ROLE_CLIENT, "any": lib.WS_ROLE_ANY}
_BATCH = 256  # records read back per C call
_MAX_LENGTH = (1 << 63) - 1
_KNOWN_OPCODES = frozenset((0x0, 0x1, 0x2, 0x8, 0x9, 0xA))


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 5.2)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class Frame(NamedTuple):
    """One frame as it arrived; ``payload`` is already unmasked."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False


class FrameHeader(NamedTuple):
    """Streaming event: a frame header; its payload follows in chunks."""

    opcode: int
    length: int
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool


class FrameChunk(NamedTuple):
    """Streaming event: the next run of the current frame's payload."""

    data: bytes


class FrameEnd(NamedTuple):
    """Streaming event: the current frame is complete."""

    opcode: int
    fin: bool


FrameEvent = FrameHeader | FrameChunk | FrameEnd


_HEADS: dict[int, tuple[int, bool, bool, bool, bool]] = {}
_SNAPSHOT_MAX = 64 * 1024  # below this, slicing one bytes copy beats a memoryview per frame
_new_tuple = tuple.__new__


def _head(info: int) -> tuple[int, bool, bool, bool, bool]:
    """(opcode, fin, rsv1, rsv2, rsv3) of a record's info word, cached."""
    head = _HEADS.get(info)
    if head is None:
        head = ((info >> 16) & 0xF, bool(info & 0x100), bool(info & 0x4000),
                bool(info & 0x2000), bool(info & 0x1000))
        _HEADS[info] = head
    return head


def _collect_frames(frames: list[Frame], words: list[int], buf: bytearray) -> None:
    """Turn FRAME records into Frame tuples with payloads copied out of buf."""
    src: bytes | memoryview = bytes(buf) if len(buf) <= _SNAPSHOT_MAX else memoryview(buf)
    for k in range(0, len(words), 3):
        off, length = words[k + 1], words[k + 2]
        op, fin, r1, r2, r3 = _HEADS.get(words[k]) or _head(words[k])
        payload = src[off:off + length]
        if not isinstance(payload, bytes):
            payload = bytes(payload)
        frames.append(_new_tuple(Frame, (op, payload, fin, r1, r2, r3)))
    if isinstance(src, memoryview):
        src.release()


def _role(role: Role) -> int:
    try:
        return int(_ROLES[role])
    except KeyError:
        raise ValueError(f"role must be 'server', 'client' or 'any', not {role!r}") from None


class _Base:
    """The C collector, its buffer and its configuration."""

    def __init__(self, events: int, role: Role, max_size: int | None, rsv_allowed: int) -> None:
        if max_size is not None and not 0 < max_size <= _MAX_LENGTH:
            raise ValueError("max_size must be a positive int below 2**63, or None")
        if rsv_allowed & ~0x7:
            raise ValueError("rsv_allowed is a bit set: 1=RSV1, 2=RSV2, 4=RSV3")
        self._c = ffi.new("ws_collect *")
        lib.ws_collect_init(self._c, events)
        self._c.parser.role = _role(role)
        self._c.parser.max_frame_size = max_size or 0
        self._c.parser.rsv_allowed = _rsv_bits(rsv_allowed)
        self._out = ffi.new("uint64_t[]", _BATCH * lib.WS_COLLECT_WORDS)
        self._buf = bytearray()

    def _error(self, frames: list[object]) -> ProtocolError:
        err = self._c.parser.error
        reason = ffi.string(lib.ws_parser_strerror(err)).decode()
        return ProtocolError(lib.ws_parser_close_code(err), reason, frames)

    def reset(self) -> None:
        """Forget any partial frame and error; keep the configuration."""
        lib.ws_parser_reset(ffi.addressof(self._c.parser))
        self._buf.clear()


def _rsv_bits(rsv_allowed: int) -> int:
    """Map 1/2/4 (RSV1/2/3) to the header-byte bits the parser checks."""
    return (0x40 if rsv_allowed & 1 else 0) | (0x20 if rsv_allowed & 2 else 0) | (
        0x10 if rsv_allowed & 4 else 0
    )


class FrameParser(_Base):
    """Parse a stream of frames, fed in pieces of any size.

    ``role`` is which side *we* are: ``"server"`` requires masked frames (from
    clients), ``"client"`` forbids them, ``"any"`` takes both. ``max_size``
    bounds one frame's payload (close code 1009). ``rsv_allowed`` is the RSV
    bits a negotiated extension permits (1 = RSV1). Protocol violations raise
    :class:`ProtocolError`; after one, call :meth:`reset` to reuse the parser.
    """

    def __init__(
        self, *, role: Role = "server", max_size: int | None = None, rsv_allowed: int = 0
    ) -> None:
        super().__init__(0, role, max_size, rsv_allowed)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Parse ``data`` and return the frames it completed, in order."""
        buf = self._buf
        start = len(buf)
        buf += data
        end = len(buf)
        frames: list[Frame] = []
        c, out = self._c, self._out
        while True:
            cbuf = ffi.from_buffer(buf)
            pos = lib.ws_collect_run(c, cbuf, start, end, out, _BATCH)
            n = c.count
            if n:
                _collect_frames(frames, ffi.unpack(out, n * 3), buf)
            del cbuf
            if c.parser.error:
                self._buf = bytearray()
                raise self._error(list(frames))
            if pos >= end:
                break
            start = pos
        keep = lib.ws_collect_retain(c, end)
        if keep:
            del buf[:keep]
        return frames


class StreamingFrameParser(_Base):
    """Parse frames into header / chunk / end events without buffering payloads.

    For frames too large to hold whole: each :meth:`feed` returns the events
    it produced, and a chunk's bytes are only those that arrived in that feed.
    Options as for :class:`FrameParser`.
    """

    def __init__(
        self, *, role: Role = "server", max_size: int | None = None, rsv_allowed: int = 0
    ) -> None:
        super().__init__(1, role, max_size, rsv_allowed)

    def feed(self, data: bytes | bytearray | memoryview) -> list[FrameEvent]:
        """Parse ``data`` and return the events it produced, in order."""
        buf = bytearray(data)
        end = len(buf)
        events: list[FrameEvent] = []
        c, out = self._c, self._out
        start = 0
        while True:
            cbuf = ffi.from_buffer(buf)
            pos = lib.ws_collect_run(c, cbuf, start, end, out, _BATCH)
            n = c.count
            if n:
                words = ffi.unpack(out, n * 3)
                view = memoryview(buf)
                for k in range(0, n * 3, 3):
                    info, off, length = words[k], words[k + 1], words[k + 2]
                    kind = info & 0xFF
                    if kind == lib.WS_COLLECT_CHUNK:
                        events.append(FrameChunk(bytes(view[off : off + length])))
                    elif kind == lib.WS_COLLECT_HEADER:
                        events.append(
                            FrameHeader(
                                (info >> 16) & 0xF,
                                length,
                                bool(info & 0x100),
                                bool(info & 0x4000),
                                bool(info & 0x2000),
                                bool(info & 0x1000),
                            )
                        )
                    else:
                        events.append(FrameEnd((info >> 16) & 0xF, bool(info & 0x100)))
                view.release()
            del cbuf
            if c.parser.error:
                raise self._error(list(events))
            if pos >= end and n < _BATCH:
                return events
            start = pos


def encode_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Encode one frame. ``mask`` is a 4-byte key for client frames (RFC 6455 5.3).

    Control frames must be final and at most 125 bytes (RFC 6455 5.5); this
    raises ``ValueError`` rather than write a frame no peer may accept.
    """
    if opcode not in _KNOWN_OPCODES:
        raise ValueError(f"opcode {opcode} is reserved (RFC 6455 5.2: 0-2 and 8-10 exist)")
    if rsv1 and (opcode == 0 or opcode & 0x8):
        raise ValueError("RSV1 marks a message's first frame (RFC 7692): not on "
                         "continuation or control frames")
    n = len(payload) if not isinstance(payload, memoryview) else payload.nbytes
    if opcode & 0x8 and (n > 125 or not fin):
        raise ValueError("control frames must be final and at most 125 bytes")
    if mask is not None and len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    header = ffi.new("uint8_t[14]")
    key = ffi.NULL if mask is None else ffi.from_buffer("uint8_t[]", mask)
    hlen = lib.ws_frame_header(header, opcode, fin, 0x40 if rsv1 else 0, n, key)
    if mask is None:
        return bytes(ffi.buffer(header, hlen)) + bytes(payload)
    out = bytearray(ffi.buffer(header, hlen))
    out += payload
    body = ffi.from_buffer("uint8_t[]", out)
    lib.ws_frame_mask(body + hlen, n, key, 0)
    del body
    return bytes(out)
