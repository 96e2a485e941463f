"""csrc/topics: the topic registry against a dict-of-sets reference model.

Random sequences of subscribe / unsubscribe / unsubscribe_all / iterate
(with callbacks that change the registry while it is being iterated) are
run against both the C registry and the model, checking every return value,
every count, the first/last notifications, each subscriber's own topic list
and the registry's allocation counter (back to its empty size once every
subscription is gone). The memory test measures bytes per subscription with
the registry's own counter for the issue's shapes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsuv._core import ffi, lib

NSUBS = 6
TOPICS = [b"a", b"b", b"room:1", b"x" * 256, b"\x00bin\xff"]
BAD_TOPICS = [b"", b"y" * 257]


@dataclass
class Registry:
    """A C registry with NSUBS subscribers and the notifications it made."""

    reg: Any
    subs: Any
    events: list[tuple[str, bytes]] = field(default_factory=list)
    keep: list[Any] = field(default_factory=list)

    def owner(self, i: int) -> Any:
        return ffi.cast("void *", i + 1)

    def index(self, owner: Any) -> int:
        return int(ffi.cast("uintptr_t", owner)) - 1


@contextmanager
def registry(max_bytes: int = 0, nsubs: int = NSUBS) -> Iterator[Registry]:
    cfg = ffi.new("ws_topics_config *")
    lib.ws_topics_config_default(cfg)
    cfg.max_bytes = max_bytes
    for i in range(16):
        cfg.hash_key[i] = (i * 37 + 11) & 0xFF
    events: list[tuple[str, bytes]] = []

    @ffi.callback("void(void *, const char *, size_t)")
    def on_first(user: Any, name: Any, n: int) -> None:
        events.append(("first", bytes(ffi.buffer(name, n))))

    @ffi.callback("void(void *, const char *, size_t)")
    def on_last(user: Any, name: Any, n: int) -> None:
        events.append(("last", bytes(ffi.buffer(name, n))))

    cfg.on_first = on_first
    cfg.on_last = on_last
    reg = lib.ws_topics_new(cfg)
    assert reg != ffi.NULL
    subs = ffi.new("ws_topics_sub[]", nsubs)
    r = Registry(reg, subs, events, [on_first, on_last])
    for i in range(nsubs):
        lib.ws_topics_sub_init(subs + i, r.owner(i))
    try:
        yield r
    finally:
        lib.ws_topics_free(reg)


class Model:
    """The reference: topic -> set of subscriber indices."""

    def __init__(self) -> None:
        self.topics: dict[bytes, set[int]] = {}
        self.events: list[tuple[str, bytes]] = []

    def subscribe(self, s: int, t: bytes) -> int:
        if not 1 <= len(t) <= 256:
            return int(lib.WS_TOPICS_EINVAL)
        members = self.topics.setdefault(t, set())
        if s in members:
            return 0
        members.add(s)
        if len(members) == 1:
            self.events.append(("first", t))
        return 1

    def unsubscribe(self, s: int, t: bytes) -> int:
        members = self.topics.get(t)
        if not members or s not in members:
            return 0
        members.remove(s)
        if not members:
            del self.topics[t]
            self.events.append(("last", t))
        return 1

    def unsubscribe_all(self, s: int) -> int:
        mine = [t for t, m in self.topics.items() if s in m]
        for t in mine:
            self.unsubscribe(s, t)
        return len(mine)

    def of(self, s: int) -> set[bytes]:
        return {t for t, m in self.topics.items() if s in m}


def sub_topics(r: Registry, s: int) -> set[bytes]:
    name = ffi.new("const char **")
    n = ffi.new("size_t *")
    out: list[bytes] = []
    for i in range(lib.ws_topics_sub_count(r.subs + s)):
        assert lib.ws_topics_sub_topic(r.subs + s, i, name, n) == 0
        out.append(bytes(ffi.buffer(name[0], n[0])))
    assert len(out) == len(set(out)), "a subscriber lists a topic twice"
    assert lib.ws_topics_sub_topic(r.subs + s, len(out), name, n) == lib.WS_TOPICS_EINVAL
    return set(out)


def check_all(r: Registry, m: Model) -> None:
    for t in TOPICS + BAD_TOPICS:
        expect = m.topics.get(t, set())
        assert lib.ws_topics_count(r.reg, t, len(t)) == len(expect)
        out = ffi.new("void *[]", NSUBS)
        assert lib.ws_topics_collect(r.reg, t, len(t), out, NSUBS) == len(expect)
        assert {r.index(out[i]) for i in range(len(expect))} == expect
        for s in range(NSUBS):
            assert lib.ws_topics_is_subscribed(r.reg, r.subs + s, t, len(t)) == (s in expect)
    assert lib.ws_topics_topic_count(r.reg) == len(m.topics)
    for s in range(NSUBS):
        assert sub_topics(r, s) == m.of(s)
    assert by_topic(r.events) == by_topic(m.events)


def by_topic(events: list[tuple[str, bytes]]) -> dict[bytes, list[str]]:
    """Notifications per topic, in order (unsubscribe_all's order across
    topics is unspecified)."""
    out: dict[bytes, list[str]] = {}
    for kind, t in events:
        out.setdefault(t, []).append(kind)
    return out


sub_idx = st.integers(0, NSUBS - 1)
topic = st.sampled_from(TOPICS + BAD_TOPICS)
# What a visit callback does to the registry.
action = st.one_of(
    st.tuples(st.just("unsub"), sub_idx, topic),
    st.tuples(st.just("unsub_all"), sub_idx),
    st.tuples(st.just("sub"), sub_idx, topic),
    st.tuples(st.just("nested"), topic),
    st.tuples(st.just("stop")),
    st.tuples(st.just("none")),
)
op = st.one_of(
    st.tuples(st.just("sub"), sub_idx, topic),
    st.tuples(st.just("unsub"), sub_idx, topic),
    st.tuples(st.just("unsub_all"), sub_idx),
    st.tuples(st.just("each"), topic, st.lists(action, max_size=8)),
)


def run_each(r: Registry, m: Model, t: bytes, actions: list[tuple[Any, ...]],
             depth: int = 0) -> None:
    """ws_topics_each with callbacks doing `actions`, checked against the rule:
    present at the start and still subscribed at its turn -> visited once;
    joiners never visited; nobody visited twice or after leaving."""
    initial = set(m.topics.get(t, set()))
    visited: list[int] = []
    removed: set[int] = set()  # left the topic during this iteration
    todo = list(actions)

    @ffi.callback("int(void *, void *, ws_topics_sub *)")
    def visit(arg: Any, owner: Any, sub: Any) -> int:
        s = r.index(owner)
        assert sub == r.subs + s
        assert s in initial, "a subscriber that joined during the iteration was visited"
        assert s not in visited, "visited twice"
        assert s in m.topics.get(t, set()), "visited after leaving"
        visited.append(s)
        if not todo:
            return 0
        a = todo.pop(0)
        if a[0] == "unsub":
            before = t in m.of(a[1]) and a[2] == t
            assert lib.ws_topics_unsubscribe(r.reg, r.subs + a[1], a[2], len(a[2])) == \
                m.unsubscribe(a[1], a[2])
            if before:
                removed.add(a[1])
        elif a[0] == "unsub_all":
            if t in m.of(a[1]):
                removed.add(a[1])
            assert lib.ws_topics_unsubscribe_all(r.reg, r.subs + a[1]) == m.unsubscribe_all(a[1])
        elif a[0] == "sub":
            assert lib.ws_topics_subscribe(r.reg, r.subs + a[1], a[2], len(a[2])) == \
                m.subscribe(a[1], a[2])
        elif a[0] == "nested" and depth < 2:
            run_each(r, m, a[1], [], depth + 1)
        elif a[0] == "stop":
            stopped.append(s)
            return 1
        return 0

    stopped: list[int] = []
    n = lib.ws_topics_each(r.reg, t, len(t), visit, ffi.NULL)
    assert n == len(visited)
    if not stopped:
        assert initial - removed <= set(visited), "a subscriber present throughout was skipped"


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=60))
def test_against_model(ops: list[tuple[Any, ...]]) -> None:
    with registry() as r:
        empty = lib.ws_topics_memory(r.reg)
        m = Model()
        for o in ops:
            if o[0] == "sub":
                assert lib.ws_topics_subscribe(r.reg, r.subs + o[1], o[2], len(o[2])) == \
                    m.subscribe(o[1], o[2])
            elif o[0] == "unsub":
                assert lib.ws_topics_unsubscribe(r.reg, r.subs + o[1], o[2], len(o[2])) == \
                    m.unsubscribe(o[1], o[2])
            elif o[0] == "unsub_all":
                assert lib.ws_topics_unsubscribe_all(r.reg, r.subs + o[1]) == \
                    m.unsubscribe_all(o[1])
            else:
                run_each(r, m, o[1], o[2])
            check_all(r, m)
        for s in range(NSUBS):
            assert lib.ws_topics_unsubscribe_all(r.reg, r.subs + s) == m.unsubscribe_all(s)
        check_all(r, m)
        # Every topic, array and tombstone is gone: back to the empty registry.
        assert lib.ws_topics_memory(r.reg) == empty
        assert lib.ws_topics_allocations(r.reg) == 2


def test_iteration_unsubscribing_itself_and_others() -> None:
    with registry() as r:
        for s in range(NSUBS):
            assert lib.ws_topics_subscribe(r.reg, r.subs + s, b"t", 1) == 1
        seen: list[int] = []

        @ffi.callback("int(void *, void *, ws_topics_sub *)")
        def visit(arg: Any, owner: Any, sub: Any) -> int:
            s = r.index(owner)
            seen.append(s)
            # Drop myself and everyone not yet seen with an odd index.
            lib.ws_topics_unsubscribe(r.reg, sub, b"t", 1)
            for o in range(NSUBS):
                if o % 2 and o not in seen:
                    lib.ws_topics_unsubscribe(r.reg, r.subs + o, b"t", 1)
            return 0

        n = lib.ws_topics_each(r.reg, b"t", 1, visit, ffi.NULL)
        assert n == len(seen)
        assert len(seen) == len(set(seen))
        assert {s for s in range(NSUBS) if s % 2 == 0} <= set(seen)
        assert lib.ws_topics_count(r.reg, b"t", 1) == 0
        assert r.events == [("first", b"t"), ("last", b"t")]
        assert lib.ws_topics_allocations(r.reg) == 2  # the topic was freed after the loop


def test_errors_leave_the_registry_unchanged() -> None:
    with registry(max_bytes=400) as r:
        assert lib.ws_topics_subscribe(r.reg, r.subs, b"", 0) == lib.WS_TOPICS_EINVAL
        assert lib.ws_topics_subscribe(r.reg, r.subs, b"z" * 257, 257) == lib.WS_TOPICS_EINVAL
        n = 0
        while (rc := lib.ws_topics_subscribe(r.reg, r.subs, b"%d" % n, len(b"%d" % n))) == 1:
            n += 1
            assert n < 100
        assert rc == lib.WS_TOPICS_ENOMEM
        assert lib.ws_topics_memory(r.reg) <= 400
        assert lib.ws_topics_sub_count(r.subs) == n
        assert lib.ws_topics_topic_count(r.reg) == n
        assert ffi.string(lib.ws_topics_strerror(rc)).startswith(b"out of memory")
        assert lib.ws_topics_unsubscribe_all(r.reg, r.subs) == n


@dataclass
class Shape:
    name: str
    subscribers: int
    topics_each: int
    topics: int


SHAPES = [
    Shape("100k subscribers x 1 topic over 1k topics", 100_000, 1, 1000),
    Shape("10k subscribers x 10 topics over 1k topics", 10_000, 10, 1000),
    Shape("100k subscribers x 1 topic, one topic", 100_000, 1, 1),
]


def _heap_in_use() -> int | None:
    """glibc's view of the heap (mallinfo2: arena + mmapped bytes in use)."""
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    libc = ctypes.CDLL(path)
    if not hasattr(libc, "mallinfo2"):
        return None

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = Mallinfo2
    mi = libc.mallinfo2()
    return int(mi.uordblks + mi.hblkhd)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_memory_per_subscription(shape: Shape) -> None:
    """<= 64 bytes per subscription, counting every byte the registry allocates
    and the 40-byte ws_topics_sub the transport embeds per subscriber."""
    names = [b"room:%d" % i for i in range(shape.topics)]
    with registry(nsubs=shape.subscribers) as r:
        base = lib.ws_topics_memory(r.reg)
        heap0 = _heap_in_use()
        k = 0
        for s in range(shape.subscribers):
            for _ in range(shape.topics_each):
                t = names[k % shape.topics]
                k += 1
                assert lib.ws_topics_subscribe(r.reg, r.subs + s, t, len(t)) == 1
        heap1 = _heap_in_use()
        nsub = shape.subscribers * shape.topics_each
        assert nsub == 100_000
        registry_bytes = lib.ws_topics_memory(r.reg) - base
        embedded = shape.subscribers * ffi.sizeof("ws_topics_sub")
        per_sub = registry_bytes / nsub
        total = (registry_bytes + embedded) / nsub
        heap = "n/a" if heap0 is None or heap1 is None else f"{(heap1 - heap0) / nsub:.1f}"
        print(f"\n{shape.name}: registry {per_sub:.1f} B/subscription "
              f"({lib.ws_topics_allocations(r.reg)} allocations), with the embedded "
              f"ws_topics_sub {total:.1f} B; glibc heap growth {heap} B/subscription")
        assert total <= 64
        # Freed again, every byte.
        for s in range(shape.subscribers):
            lib.ws_topics_unsubscribe_all(r.reg, r.subs + s)
        assert lib.ws_topics_memory(r.reg) == base
        assert lib.ws_topics_topic_count(r.reg) == 0
