"""csrc/redisseq: sequence numbers per (origin, channel), against a model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wsuv._core import ffi, lib

KEY = bytes(16)


def new(max_pub: int = 64, max_origins: int = 8) -> object:
    return ffi.gc(lib.ws_rseq_new(KEY, max_pub, max_origins), lib.ws_rseq_free)


def nxt(s: object, topic: bytes) -> tuple[int, int]:
    e, q = ffi.new("uint32_t *"), ffi.new("uint64_t *")
    assert lib.ws_rseq_next(s, topic, len(topic), e, q) == lib.WS_RSEQ_NEXT
    return int(e[0]), int(q[0])


def track(s: object, topic: bytes, origin: bytes, epoch: int, seq: int) -> tuple[int, int]:
    lost = ffi.new("uint64_t *")
    rc = lib.ws_rseq_track(s, topic, len(topic), origin.ljust(16, b"\0"), epoch, seq, lost)
    return int(rc), int(lost[0])


def stats(s: object) -> object:
    out = ffi.new("ws_rseq_stats *")
    lib.ws_rseq_get_stats(s, out)
    return out


def test_counters_are_per_topic() -> None:
    s = new()
    assert [nxt(s, t) for t in (b"x", b"y", b"x", b"x", b"y")] == [
        (1, 1), (1, 1), (1, 2), (1, 3), (1, 2)]
    assert stats(s).pub_topics == 2


def test_full_table_restarts_under_a_new_epoch() -> None:
    s = new(max_pub=2)
    nxt(s, b"a"), nxt(s, b"a"), nxt(s, b"b")
    assert nxt(s, b"c") == (2, 1)  # table was full: cleared, epoch 2
    assert nxt(s, b"a") == (2, 1)
    st_ = stats(s)
    assert st_.resets == 1 and st_.pub_topics == 2


def test_publisher_memory() -> None:
    """The figure in redisseq.h: 65,536 topics of 16 bytes, then one more."""
    s = new(max_pub=65536)
    for i in range(65536):
        nxt(s, b"topic-%010d" % i)
    st_ = stats(s)
    assert st_.pub_topics == 65536 and st_.memory == 7_340_152
    assert nxt(s, b"one-more-topic!!") == (2, 1)  # the bound: cleared, epoch 2
    st_ = stats(s)
    assert st_.pub_topics == 1 and st_.resets == 1 and st_.memory < 1024


def test_receiver_rules() -> None:
    s = new()
    assert track(s, b"t", b"A", 1, 5) == (lib.WS_RSEQ_FIRST, 0)  # joined mid-stream
    assert track(s, b"t", b"A", 1, 6) == (lib.WS_RSEQ_NEXT, 0)
    assert track(s, b"t", b"A", 1, 9) == (lib.WS_RSEQ_NEXT, 2)
    assert track(s, b"t", b"A", 1, 9) == (lib.WS_RSEQ_STALE, 0)
    assert track(s, b"u", b"A", 1, 1) == (lib.WS_RSEQ_FIRST, 0)  # its own stream
    assert track(s, b"t", b"A", 2, 3) == (lib.WS_RSEQ_NEXT, 2)  # epoch 2's 1, 2 missed
    assert track(s, b"t", b"A", 1, 99) == (lib.WS_RSEQ_STALE, 0)
    assert lib.ws_rseq_forget(s, b"t", 1) == 1 and lib.ws_rseq_forget(s, b"t", 1) == 0
    assert track(s, b"t", b"A", 2, 40) == (lib.WS_RSEQ_FIRST, 0)
    assert stats(s).streams == 2


ops = st.lists(st.tuples(st.sampled_from(["next", "track", "forget"]),
                         st.sampled_from([b"a", b"b", b"topic-c", b"d" * 40]),
                         st.integers(0, 5), st.integers(1, 3), st.integers(1, 12)),
               max_size=80)


@given(ops, st.integers(1, 4), st.integers(1, 3))
def test_against_a_model(steps: list[tuple[str, bytes, int, int, int]], max_pub: int,
                         max_origins: int) -> None:
    s = new(max_pub, max_origins)
    pub: dict[bytes, list[int]] = {}
    epoch = 1
    recv: dict[bytes, dict[int, tuple[int, int]]] = {}
    for op, topic, origin, e, q in steps:
        if op == "next":
            if topic not in pub:
                if len(pub) >= max_pub:
                    pub.clear()
                    epoch += 1
                pub[topic] = [epoch, 0]
            pub[topic][1] += 1
            assert nxt(s, topic) == tuple(pub[topic])
        elif op == "track":
            streams = recv.setdefault(topic, {})
            if origin in streams:
                le, lq = streams[origin]
                if e == le and q > lq:
                    want = (lib.WS_RSEQ_NEXT, q - lq - 1)
                elif e > le:
                    want = (lib.WS_RSEQ_NEXT, q - 1)
                else:
                    want = (lib.WS_RSEQ_STALE, 0)
                if want[0] == lib.WS_RSEQ_NEXT:
                    streams[origin] = (e, q)
            else:
                if len(streams) >= max_origins:
                    streams.clear()
                streams[origin] = (e, q)
                want = (lib.WS_RSEQ_FIRST, 0)
            assert track(s, topic, bytes([origin]), e, q) == want
        else:
            assert lib.ws_rseq_forget(s, topic, len(topic)) == int(topic in recv)
            recv.pop(topic, None)
    got = stats(s)
    assert got.pub_topics == len(pub) and got.resets == epoch - 1
    assert got.streams == sum(len(v) for v in recv.values())
