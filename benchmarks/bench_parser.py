"""Frame parsing through Python: wsuv.frames.FrameParser against its peers.

Run from the repository root with the project's venv (wsuv built in place):

    .venv/bin/python benchmarks/bench_parser.py

Peers, measured in the same run on the same bytes (missing ones are skipped):

- websockets: ``Frame.parse`` driven by a ``StreamReader``, as its protocol
  does, with ``websockets.speedups.apply_mask`` (C) when it is importable.
- wsproto: ``FrameProtocol.receive_bytes`` + ``received_frames()``, the frame
  layer under ``WSConnection`` (binary frames, so no UTF-8 decoding).

All frames are binary and masked (client to server), and every parser runs
as the server. Small frames are fed 1000 to a call; large ones one frame to a
call. Each number is the best of several rounds of ``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable

from wsuv.frames import FrameParser, Opcode, encode_frame

Parser = Callable[[bytes], int]  # feeds bytes, returns the number of frames parsed


def make_frames(size: int, count: int, seed: int = 1) -> tuple[bytes, bytes]:
    """(wire bytes of ``count`` masked binary frames of ``size`` bytes, one payload)."""
    rng = random.Random(seed)
    payload = rng.randbytes(size)
    wire = b"".join(
        encode_frame(Opcode.BINARY, payload, mask=rng.randbytes(4)) for _ in range(count)
    )
    return wire, payload


# --- the parsers under test --------------------------------------------------------


def wsuv_parser() -> tuple[Parser, Callable[[bytes], bytes]]:
    parser = FrameParser(role="server")

    def feed(data: bytes) -> int:
        return len(parser.feed(data))

    def first_payload(data: bytes) -> bytes:
        return FrameParser(role="server").feed(data)[0].payload

    return feed, first_payload


def websockets_available() -> str | None:
    try:
        import websockets
        import websockets.frames as wf
    except ImportError:
        return None
    try:
        from websockets.speedups import apply_mask as c_apply_mask
    except ImportError:
        c_apply_mask = None
    # Identity, not __module__: the C function reports "websocket.speedups".
    speedups = c_apply_mask is not None and wf.apply_mask is c_apply_mask
    return f"websockets {websockets.version.version}" + (
        " (C apply_mask)" if speedups else " (pure-Python apply_mask!)"
    )


def websockets_parser() -> tuple[Parser, Callable[[bytes], bytes]]:
    from websockets.frames import Frame
    from websockets.streams import StreamReader

    def make() -> tuple[StreamReader, list[Frame], object]:
        reader = StreamReader()
        out: list[Frame] = []

        def parse():  # the shape of websockets.protocol.Protocol.parse
            while True:
                frame = yield from Frame.parse(reader.read_exact, mask=True, max_size=None)
                out.append(frame)

        gen = parse()
        next(gen)
        return reader, out, gen

    reader, out, gen = make()

    def feed(data: bytes) -> int:
        reader.feed_data(data)
        next(gen)
        n = len(out)
        out.clear()
        return n

    def first_payload(data: bytes) -> bytes:
        r, o, g = make()
        r.feed_data(data)
        next(g)
        return bytes(o[0].data)

    return feed, first_payload


def wsproto_available() -> str | None:
    try:
        from importlib.metadata import version

        import wsproto  # noqa: F401
    except ImportError:
        return None
    return f"wsproto {version('wsproto')}"


def wsproto_parser() -> tuple[Parser, Callable[[bytes], bytes]]:
    from wsproto.frame_protocol import FrameProtocol

    proto = FrameProtocol(client=False, extensions=[])

    def feed(data: bytes) -> int:
        proto.receive_bytes(data)
        return sum(1 for _ in proto.received_frames())

    def first_payload(data: bytes) -> bytes:
        p = FrameProtocol(client=False, extensions=[])
        p.receive_bytes(data)
        return bytes(next(p.received_frames()).payload)

    return feed, first_payload


# --- timing -------------------------------------------------------------------------------


def time_pass(feed: Parser, chunks: list[bytes], frames_expected: int, budget: float) -> float:
    """Best wall time of one pass over ``chunks``, passes repeated for at
    least ``budget`` seconds (at least once)."""
    best, elapsed = float("inf"), 0.0
    while elapsed == 0.0 or elapsed < budget:
        t0 = time.perf_counter()
        got = 0
        for chunk in chunks:
            got += feed(chunk)
        dt = time.perf_counter() - t0
        if got != frames_expected:
            raise AssertionError(f"parsed {got} frames, expected {frames_expected}")
        elapsed += dt
        best = min(best, dt)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="rounds per case (best of)")
    ap.add_argument("--budget", type=float, default=0.1, help="seconds per round, at least")
    ap.add_argument("--quick", action="store_true", help="one round, tiny budget (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.budget = 1, 0.0

    peers: list[tuple[str, Callable[[], tuple[Parser, Callable[[bytes], bytes]]]]] = [
        ("wsuv", wsuv_parser)
    ]
    ws_name = websockets_available()
    if ws_name:
        peers.append((ws_name, websockets_parser))
    else:
        print("websockets not installed: skipped", file=sys.stderr)
    wp_name = wsproto_available()
    if wp_name:
        peers.append((wp_name, wsproto_parser))
    else:
        print("wsproto not installed: skipped", file=sys.stderr)

    # (label, payload size, frames per feed, feeds per pass, unit)
    cases = [
        ("2 B", 2, 1000, 1, "frames"),
        ("125 B", 125, 1000, 1, "frames"),
        ("1 KiB", 1024, 1000, 1, "frames"),
        ("64 KiB", 64 * 1024, 1, 64, "bytes"),
        ("1 MiB", 1024 * 1024, 1, 8, "bytes"),
    ]
    print(f"### Frame parsing through Python ({sys.implementation.name} "
          f"{sys.version.split()[0]}, pid {os.getpid()}), best of {args.rounds}\n")
    print("Masked binary frames parsed as a server. Small payloads: 1000 frames per feed();"
          " large: one frame per feed().\n")
    names = [name for name, _ in peers]
    header = ["payload", *[f"{n}" for n in names]]
    header += [f"wsuv vs {n.split()[0]}" for n in names[1:]]
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))

    for label, size, per_feed, feeds, unit in cases:
        wire, payload = make_frames(size, per_feed)
        chunks = [wire] * feeds
        total_frames = per_feed * feeds
        feeds_ = []
        for name, factory in peers:
            feed, first_payload = factory()
            if first_payload(wire) != payload:
                raise AssertionError(f"{name} decoded a wrong payload")
            feeds_.append(feed)
        # Rounds interleave the parsers, so a burst of load elsewhere on the
        # machine hits all of them alike; each keeps its best.
        times = [float("inf")] * len(peers)
        for _ in range(args.rounds):
            for i, feed in enumerate(feeds_):
                times[i] = min(times[i], time_pass(feed, chunks, total_frames, args.budget))
        cells = []
        for t in times:
            if unit == "frames":
                ns = t / total_frames * 1e9
                cells.append(f"{total_frames / t / 1e6:.2f} Mframes/s ({ns:.0f} ns)")
            else:
                cells.append(f"{size * total_frames / t / 1e6:.0f} MB/s")
        ratios = [f"{times[i] / times[0]:.1f}x" for i in range(1, len(times))]
        print(f"| {label} | " + " | ".join(cells + ratios) + " |")
    print("\nRatios: peer time per frame / wsuv time per frame (higher = wsuv faster).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
