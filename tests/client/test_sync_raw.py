"""wsuv.sync against raw sockets: what goes on the wire, and servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time

import pytest
from clientkit import TIMEOUT, FrameReader, frame, free_port, raw_server, read_head, switching

import wsuv
import wsuv.sync


def test_every_frame_is_masked_with_a_fresh_key() -> None:
    seen: list[tuple[int, bytes | None, bytes]] = []

    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        reader = FrameReader(conn)
        while True:
            opcode, _fin, key, data = reader.read()
            seen.append((opcode, key, data))
            if opcode == 9:
                conn.sendall(frame(10, data))
            if opcode == 8:
                conn.sendall(frame(8, data))
                return

    with raw_server(script) as url:
        with wsuv.sync.connect(url, compression=None) as ws:
            for i in range(20):
                ws.send(f"text {i}")
            ws.send(b"\x00" * 70000)
            ws.send(b"")
            ws.ping(b"p")
    assert [op for op, _, _ in seen] == [1] * 20 + [2, 2, 9, 8]
    assert [d for _, _, d in seen[:20]] == [f"text {i}".encode() for i in range(20)]
    assert seen[20][2] == b"\x00" * 70000
    assert seen[-1][2][:2] == (1000).to_bytes(2, "big")
    keys = [k for _, k, _ in seen]
    assert all(k is not None for k in keys), "a client frame went unmasked"
    assert len(set(keys)) == len(keys), "a mask key was reused"


def test_frames_in_the_same_packet_as_the_101() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]) + frame(1, b"early") +
                     frame(2, b"\x01\x02"))
        reader = FrameReader(conn)
        opcode, _, _, data = reader.read()
        assert opcode == 8
        conn.sendall(frame(8, data))

    with raw_server(script) as url, wsuv.sync.connect(url) as ws:
        assert ws.recv(timeout=TIMEOUT) == "early"
        assert ws.recv(timeout=TIMEOUT) == b"\x01\x02"


def test_masked_server_frame_fails_with_1002() -> None:
    got: list[bytes] = []

    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]) + frame(1, b"hidden", mask=b"abcd"))
        opcode, _, _, data = FrameReader(conn).read()
        assert opcode == 8
        got.append(data)

    with raw_server(script) as url, wsuv.sync.connect(url) as ws:
        with pytest.raises(wsuv.ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.code == 1002
    assert got and got[0][:2] == (1002).to_bytes(2, "big")


def _answer(response: bytes) -> contextlib.AbstractContextManager[str]:
    def script(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(response)

    return raw_server(script)


def test_wrong_accept_is_rejected() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"], accept="dGhlIHNhbXBsZSBub25jZQ=="))

    with raw_server(script) as url, pytest.raises(wsuv.InvalidHandshake) as info:
        wsuv.sync.connect(url)
    assert not isinstance(info.value, wsuv.InvalidStatus)
    assert "Accept" in str(info.value)


def test_not_101_is_invalid_status() -> None:
    body = b"<h1>hello</h1>"
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" %
            len(body)) + body
    with _answer(resp) as url, pytest.raises(wsuv.InvalidStatus) as info:
        wsuv.sync.connect(url)
    err = info.value
    assert err.status == 200 and err.body == body
    assert err.headers.get("Content-Type") == "text/html"  # type: ignore[attr-defined]


def test_unexpected_subprotocol() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"], "Sec-WebSocket-Protocol: evil\r\n"))

    with raw_server(script) as url, pytest.raises(wsuv.InvalidHandshake) as info:
        wsuv.sync.connect(url, subprotocols=["chat"])
    assert "protocol" in str(info.value).lower()


def test_unacceptable_extension_answer() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"],
                               "Sec-WebSocket-Extensions: permessage-deflate; bogus=1\r\n"))

    with raw_server(script) as url, pytest.raises(wsuv.InvalidHandshake) as info:
        wsuv.sync.connect(url)
    assert "extension" in str(info.value)


def test_eof_before_the_response() -> None:
    with _answer(b"") as url, pytest.raises(wsuv.InvalidHandshake):
        wsuv.sync.connect(url)


def test_connection_refused() -> None:
    with pytest.raises(ConnectionRefusedError):
        wsuv.sync.connect(f"ws://127.0.0.1:{free_port()}/", open_timeout=TIMEOUT)


def test_dns_failure() -> None:
    with pytest.raises(socket.gaierror) as info:
        wsuv.sync.connect("ws://no-such-host.invalid/", open_timeout=TIMEOUT)
    assert "no-such-host.invalid" in str(info.value)


def test_open_timeout() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            wsuv.sync.connect(f"ws://127.0.0.1:{lsock.getsockname()[1]}/", open_timeout=0.3)
        assert 0.25 <= time.monotonic() - t0 < 3
    finally:
        lsock.close()


def test_close_timeout_when_the_server_never_closes_tcp() -> None:
    done = threading.Event()

    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        opcode, _, _, data = FrameReader(conn).read()
        assert opcode == 8
        conn.sendall(frame(8, data))  # the close answered, TCP kept open
        done.wait(TIMEOUT)

    with raw_server(script) as url:
        ws = wsuv.sync.connect(url, close_timeout=0.3)
        t0 = time.monotonic()
        ws.close()
        elapsed = time.monotonic() - t0
        done.set()
    assert ws.close_code == 1000
    assert 0.25 <= elapsed < 3


def test_close_timeout_when_the_server_never_answers_the_close() -> None:
    done = threading.Event()

    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        done.wait(TIMEOUT)

    with raw_server(script) as url:
        ws = wsuv.sync.connect(url, close_timeout=0.3)
        t0 = time.monotonic()
        ws.close()
        elapsed = time.monotonic() - t0
        done.set()
    assert ws.close_code == 1006
    assert 0.25 <= elapsed < 3


def test_recv_and_ping_timeouts() -> None:
    done = threading.Event()

    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        done.wait(TIMEOUT)

    with raw_server(script) as url:
        ws = wsuv.sync.connect(url, close_timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        with pytest.raises(TimeoutError):
            ws.ping(timeout=0.2)
        assert 0.35 <= time.monotonic() - t0 < 3
        ws.close()
        done.set()


def test_use_after_close_raises() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        opcode, _, _, data = FrameReader(conn).read()
        conn.sendall(frame(8, data))

    with raw_server(script) as url:
        with wsuv.sync.connect(url) as ws:
            pass
        for call in (lambda: ws.send("x"), lambda: ws.recv(timeout=1), ws.ping):
            with pytest.raises(wsuv.ConnectionClosed):
                call()
        ws.close()  # idempotent


def test_urls_refused_up_front() -> None:
    with pytest.raises(wsuv.InvalidURI, match="not a WebSocket URL"):
        wsuv.sync.connect("http://example.com/")
    with pytest.raises(wsuv.InvalidURI, match="fragment"):
        wsuv.sync.connect("wss://example.com/#frag")
    with pytest.raises(wsuv.InvalidURI):
        wsuv.sync.connect("ws://example.com/#frag")


def test_refuses_to_run_inside_asyncio() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="asyncio"):
            wsuv.sync.connect("ws://127.0.0.1:1/")

    asyncio.run(main())


def test_unix_socket_missing() -> None:
    with pytest.raises(FileNotFoundError):
        wsuv.sync.connect("ws+unix:///nonexistent-dir-wsuv/ws.sock")


def test_refusal_body_is_bounded() -> None:
    body = b"x" * (200 * 1024)
    resp = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with _answer(resp) as url, pytest.raises(wsuv.InvalidStatus) as info:
        wsuv.sync.connect(url)
    assert info.value.status == 503
    assert info.value.body == body[:64 * 1024]


def test_interim_response_before_the_101() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(switching(h["sec-websocket-key"]) + frame(1, b"after 100"))
        opcode, _, _, data = FrameReader(conn).read()
        conn.sendall(frame(8, data))

    with raw_server(script) as url, wsuv.sync.connect(url) as ws:
        assert ws.response is not None and ws.response.status == 101
        assert ws.recv(timeout=TIMEOUT) == "after 100"


def test_response_split_byte_by_byte() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in switching(h["sec-websocket-key"]) + frame(2, b"\x07"):
            conn.sendall(bytes([b]))
            time.sleep(0.001)
        opcode, _, _, data = FrameReader(conn).read()
        conn.sendall(frame(8, data))

    with raw_server(script) as url, wsuv.sync.connect(url) as ws:
        assert ws.recv(timeout=TIMEOUT) == b"\x07"


# A server that breaks RFC 6455 after the 101: the client fails the
# connection with the code the RFC asks for, says so in its close frame, and
# recv reports it.
BAD_SERVER_FRAMES = [
    ("reserved opcode 3", bytes([0x83, 0x00]), 1002),
    ("RSV2 set", bytes([0xA1, 0x01]) + b"x", 1002),
    ("RSV1 without deflate", bytes([0xC1, 0x01]) + b"x", 1002),
    ("continuation with nothing to continue", bytes([0x80, 0x01]) + b"x", 1002),
    ("fragmented ping", bytes([0x09, 0x00]), 1002),
    ("ping over 125 bytes", bytes([0x89, 126, 0, 126]) + b"p" * 126, 1002),
    ("text not UTF-8", bytes([0x81, 0x02, 0xC3, 0x28]), 1007),
    ("close with a 1-byte payload", bytes([0x88, 0x01, 0x03]), 1002),
    ("close code 1005 on the wire", bytes([0x88, 0x02, 0x03, 0xED]), 1002),
    ("data frame inside a fragmented message", bytes([0x01, 0x01]) + b"a" +
     bytes([0x81, 0x01]) + b"b", 1002),
    ("message over max_message_size", bytes([0x82, 126, 0x10, 0x00]) + b"\0" * 4096, 1009),
]


@pytest.mark.parametrize("case,data,code", BAD_SERVER_FRAMES,
                         ids=[c[0] for c in BAD_SERVER_FRAMES])
def test_server_protocol_errors(case: str, data: bytes, code: int) -> None:
    got: list[bytes] = []

    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]) + data)
        opcode, _, key, payload = FrameReader(conn).read()
        assert opcode == 8 and key is not None
        got.append(payload)

    with raw_server(script) as url, \
            wsuv.sync.connect(url, compression=None, max_message_size=1024) as ws:
        with pytest.raises(wsuv.ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.code == code, case
    assert got and int.from_bytes(got[0][:2], "big") == code, case


def test_ctrl_c_interrupts_a_blocking_recv() -> None:
    done = threading.Event()

    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        done.wait(TIMEOUT)

    assert threading.current_thread() is threading.main_thread()
    with raw_server(script) as url:
        ws = wsuv.sync.connect(url, close_timeout=0.2)
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                ws.recv()  # no timeout: only the signal ends it
        finally:
            timer.cancel()
        assert time.monotonic() - t0 < 3
        ws.close()
        done.set()


def test_write_limit_drops_a_server_that_does_not_read() -> None:
    done = threading.Event()

    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]))
        done.wait(TIMEOUT)  # never reads again

    with raw_server(script) as url:
        ws = wsuv.sync.connect(url, compression=None, write_limit=1 << 20)
        # The kernel takes a few MiB; more than 1 MiB left over drops the peer at once.
        t0 = time.monotonic()
        with pytest.raises(wsuv.ConnectionClosed) as info:
            ws.send(b"\x00" * (32 << 20))
        assert time.monotonic() - t0 < 3
        assert info.value.code == 1006 and "write buffer limit" in info.value.reason
        ws.close()
        done.set()


def test_iteration_ends_on_a_close_without_code() -> None:
    def script(conn: socket.socket) -> None:
        _, h = read_head(conn)
        conn.sendall(switching(h["sec-websocket-key"]) + frame(1, b"only") + frame(8, b""))
        opcode, _, _, data = FrameReader(conn).read()
        assert opcode == 8 and data == b""  # the client echoes a code-less close

    with raw_server(script) as url, wsuv.sync.connect(url) as ws:
        assert list(ws) == ["only"]
        assert ws.close_code == 1005
