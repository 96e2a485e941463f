"""Topics in one process: ws.subscribe / unsubscribe / topics, server.publish /
subscribers, over real sockets (websockets clients on 127.0.0.1)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from websockets.sync.client import connect

import wsuv
from tests.server.srvkit import TIMEOUT, on_loop, running_server, url, wait_for


class Rooms(wsuv.Handler):
    """'join X' subscribes, 'leave X' unsubscribes, 'say X text' publishes to X
    (not to the sender), 'topics' answers the list, 'direct' sends to self."""

    def __init__(self) -> None:
        self.members: list[wsuv.WebSocket] = []
        self.published: list[int] = []

    def on_open(self, ws: wsuv.WebSocket) -> None:
        self.members.append(ws)

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        assert isinstance(message, str)
        cmd, _, rest = message.partition(" ")
        if cmd == "join":
            ws.send(f"joined {rest} {ws.subscribe(rest)}")
        elif cmd == "leave":
            ws.send(f"left {rest} {ws.unsubscribe(rest)}")
        elif cmd == "say":
            topic, _, text = rest.partition(" ")
            self.published.append(ws.server.publish(topic, text, exclude=ws))
        elif cmd == "topics":
            ws.send(",".join(sorted(ws.topics)))
        elif cmd == "burst":  # a publish between two direct sends: order holds
            ws.send("before")
            ws.server.publish(rest, "published")
            ws.send("after")

    def on_close(self, ws: wsuv.WebSocket, code: int, reason: str) -> None:
        self.members.remove(ws)


def test_publish_reaches_every_subscriber_once() -> None:
    handler = Rooms()
    with running_server(handler) as server:
        with connect(url(server)) as a, connect(url(server)) as b, connect(url(server)) as c:
            for ws, topic in ((a, "red"), (b, "red"), (c, "blue")):
                ws.send(f"join {topic}")
                assert ws.recv(timeout=TIMEOUT) == f"joined {topic} True"
            a.send("join red")  # again: not new
            assert a.recv(timeout=TIMEOUT) == "joined red False"
            assert server.subscribers("red") == 2 and server.subscribers("green") == 0
            c.send("say red hello reds")
            assert a.recv(timeout=TIMEOUT) == "hello reds"
            assert b.recv(timeout=TIMEOUT) == "hello reds"
            wait_for(lambda: handler.published == [2])
            a.send("say red from a")  # exclude: the sender is not among the receivers
            assert b.recv(timeout=TIMEOUT) == "from a"
            wait_for(lambda: handler.published == [2, 1])
            a.send("topics")
            assert a.recv(timeout=TIMEOUT) == "red"
            a.send("leave red")
            assert a.recv(timeout=TIMEOUT) == "left red True"
            assert server.subscribers("red") == 1
        # Closed connections drop their subscriptions.
        wait_for(lambda: server.subscribers("red") == 0 and server.subscribers("blue") == 0)


def test_publish_and_direct_sends_keep_their_order() -> None:
    with running_server(Rooms()) as server:
        with connect(url(server)) as a:
            a.send("join news")
            assert a.recv(timeout=TIMEOUT) == "joined news True"
            for _ in range(20):
                a.send("burst news")
            got = [a.recv(timeout=TIMEOUT) for _ in range(60)]
            assert got == ["before", "published", "after"] * 20


def test_publish_from_another_thread_and_compressed_once() -> None:
    """A ticker thread publishes; each compressed receiver (its own inflater in
    the websockets client) decodes the one shared copy."""
    import contextlib

    handler = Rooms()
    with running_server(handler) as server, contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(url(server))) for _ in range(5)]
        for ws in clients:
            ws.send("join ticks")
            assert ws.recv(timeout=TIMEOUT) == "joined ticks True"
        counts: list[int] = []
        text = '{"tick": "' + "x" * 500 + '"}'
        t = threading.Thread(target=lambda: counts.extend(
            server.publish("ticks", text) for _ in range(3)))
        t.start()
        t.join(TIMEOUT)
        assert counts == [5, 5, 5]
        for ws in clients:
            assert ws.protocol.extensions  # permessage-deflate was negotiated
            assert [ws.recv(timeout=TIMEOUT) for _ in range(3)] == [text] * 3


def test_topic_misuse_is_one_sentence() -> None:
    handler = Rooms()
    with running_server(handler) as server:
        with connect(url(server)):
            wait_for(lambda: handler.members)
            ws = handler.members[0]
            for bad, exc in ((b"bytes", TypeError), ("", ValueError), ("x" * 257, ValueError)):
                with pytest.raises(exc, match="topic"):
                    on_loop_raising(server, lambda b=bad: ws.subscribe(b))
                with pytest.raises(exc, match="topic"):
                    server.publish(bad, "m")  # type: ignore[arg-type]
            with pytest.raises(RuntimeError, match="loop thread"):
                ws.topics  # noqa: B018
            assert on_loop(server, lambda: ws.topics) == []


def on_loop_raising(server: wsuv.Server, fn: Any) -> Any:
    box: list[Any] = []
    done = threading.Event()

    def call() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:
            box.append((False, exc))
        finally:
            done.set()

    server.call_soon_threadsafe(call)
    assert done.wait(TIMEOUT)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def test_hub_stats_is_none_off_the_worker_bus() -> None:
    """A server that is no worker of `wsuv-serve --workers N` has no hub."""
    with running_server(wsuv.Handler()) as server:
        assert on_loop(server, server.hub_stats) is None


class Repeats(wsuv.Handler):
    """One handler call publishes one message to several topics, equal-length
    different ones, and direct sends in between: a frame byte-equal to the last
    one is shared in the cork, any other is not."""

    def on_open(self, ws: wsuv.WebSocket) -> None:
        for topic in ("t1", "t2", "t3"):
            ws.subscribe(topic)
        ws.send("ready")

    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        publish = ws.server.publish
        for topic in ("t1", "t2", "t3"):
            publish(topic, "same")
        publish("t1", "diff")  # same length, other bytes
        ws.send("same")  # a direct send between equal publishes
        publish("t2", "same")
        publish("t3", b"same")  # binary: another opcode, so another frame


def test_equal_publishes_in_one_turn_arrive_whole_and_in_order() -> None:
    with running_server(Repeats()) as server:
        with connect(url(server)) as a:
            assert a.recv(timeout=TIMEOUT) == "ready"
            for _ in range(3):
                a.send("go")
            got = [a.recv(timeout=TIMEOUT) for _ in range(3 * 7)]
            assert got == ["same", "same", "same", "diff", "same", "same", b"same"] * 3
            assert server.subscribers("t2") == 1
