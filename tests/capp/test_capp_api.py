"""The host table and the callbacks, through tests/capp/apps/probe.c."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

import wsuv
from tests.conftest import running_server, server_thread


@contextmanager
def probe_server(build: Callable[[str], str], **options: object) -> Iterator[wsuv.Server]:
    app = wsuv.load_c_app(build("probe"), arg="hello")
    try:
        with running_server(app, **options) as srv:
            yield srv
    finally:
        app.close()


def _open(srv: wsuv.Server, path: str = "/", **kw: object) -> ClientConnection:
    ws = connect(f"ws://127.0.0.1:{srv.port}{path}", open_timeout=5, **kw)  # type: ignore[arg-type]
    return ws


def test_request_readable_in_on_open_and_set_user_refused_in_on_connect(
        build: Callable[[str], str]) -> None:
    with probe_server(build) as srv, \
            _open(srv, "/room?x=1", additional_headers={"X-Probe": "  v 1 "}) as ws:
        # -3 = WSUV_ESTATE: user data only from on_open on.
        assert ws.recv(timeout=5) == "open /room?x=1 v 1 setuser=-3"
    with probe_server(build) as srv, _open(srv) as ws:
        assert ws.recv(timeout=5) == "open / - setuser=-3"


def test_reject_with_status_and_reason(build: Callable[[str], str],
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wsuv.app")
    app = wsuv.load_c_app(build("probe"))
    with running_server(app) as srv:
        with pytest.raises(InvalidStatus) as info:
            _open(srv, "/reject")
        assert info.value.response.status_code == 403
        assert info.value.response.body == b"go away\n"
        with _open(srv) as ws:  # the server goes on
            assert ws.recv(timeout=5).startswith("open /")
    app.close()
    # A second decision after reject is refused (WSUV_ESTATE).
    assert "on_destroy reject-then-accept=-3" in caplog.text


def test_subprotocol_chosen_and_not_offered(build: Callable[[str], str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    with probe_server(build) as srv:
        with _open(srv, "/proto", subprotocols=["alpha", "beta"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "beta"
            assert ws.recv(timeout=5).startswith("open /proto")
        with pytest.raises(InvalidStatus) as info:
            _open(srv, "/proto", subprotocols=["alpha"])  # type: ignore[list-item]
        assert info.value.response.status_code == 500
        with pytest.raises(InvalidStatus) as info:
            _open(srv, "/badproto", subprotocols=["beta"])  # type: ignore[list-item]
        assert info.value.response.status_code == 500
        with pytest.raises(InvalidStatus) as info:
            _open(srv, "/badstatus")
        assert info.value.response.status_code == 500
    assert "did not offer" in caplog.text
    assert "outside 400-599" in caplog.text


def test_close_own_connection_in_on_message(build: Callable[[str], str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wsuv.app")
    checked = False
    # The client's own close on leaving the block fails: the server closed first.
    with probe_server(build) as srv, contextlib.suppress(ConnectionClosed), _open(srv) as ws:
        ws.recv(timeout=5)
        ws.send("close")
        with contextlib.suppress(ConnectionClosed):
            ws.send("more after close")  # ignored: the server is closing
        with pytest.raises(ConnectionClosed) as info:
            assert ws.recv(timeout=5) is None  # only the close may come
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "bye")
        checked = True
    assert checked
    # close=0, then send and a second close refused with WSUV_ECLOSED (-1).
    assert "closed: close=0 send=-1 again=-1" in caplog.text
    assert "on_close 4000 bye" in caplog.text


def test_connection_dropped_inside_send_closes_after_the_callback(
        build: Callable[[str], str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wsuv.app")
    # Compression off: 32 MiB of zeros must stay 32 MiB on the wire to pass
    # write_limit. A raw client that does not read, with a small receive
    # buffer: a client reading on the other core lets loopback take almost all
    # of one 32 MiB write, and then nothing is left over the limit.
    from tests.server.srvkit import raw_connect, read_response, upgrade_request
    from wsuv.frames import encode_frame

    with probe_server(build, write_limit=1 << 20, compression=None) as srv:
        sock = raw_connect(srv, rcvbuf=4096)
        sock.sendall(upgrade_request("/"))
        assert read_response(sock).status == 101
        sock.sendall(encode_frame(1, b"overflow", mask=b"abcd"))
        deadline = time.monotonic() + 5
        while "on_close 1006" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        sock.close()
        with _open(srv) as ws2:  # the server goes on
            assert str(ws2.recv(timeout=5)).startswith("open")
    # The first send was taken (then the limit dropped the connection); the
    # second is refused; on_close had not run inside the callback.
    assert "overflow: send=0 after=-1 on_close_ran=0" in caplog.text
    assert "on_close 1006 write buffer limit exceeded" in caplog.text
    lines = [r.getMessage() for r in caplog.records]
    assert lines.index("probe: overflow: send=0 after=-1 on_close_ran=0") < lines.index(
        "probe: on_close 1006 write buffer limit exceeded")


def test_bad_arguments_are_refused(build: Callable[[str], str]) -> None:
    with probe_server(build) as srv, _open(srv) as ws:
        ws.recv(timeout=5)
        ws.send("bad")
        assert ws.recv(timeout=5) == "send9=-2 close999=-2 ping126=-2 ping=0 accept=-3"
        ws.send("still open")
        assert ws.recv(timeout=5) == "still open"


def test_timer_fires_on_time(build: Callable[[str], str]) -> None:
    with probe_server(build) as srv, _open(srv) as ws:
        ws.recv(timeout=5)
        t0 = time.monotonic()
        ws.send("timer 150")
        assert ws.recv(timeout=5) == "timer started 150 1"
        fired = ws.recv(timeout=5)
        elapsed = time.monotonic() - t0
        assert isinstance(fired, str) and fired.startswith("timer fired after ")
        assert int(fired.split()[3]) >= 150
        assert 0.14 <= elapsed < 3


def test_pause_and_resume_reading(build: Callable[[str], str]) -> None:
    with probe_server(build) as srv, _open(srv) as ws:
        ws.recv(timeout=5)
        t0 = time.monotonic()
        ws.send("pause")
        assert ws.recv(timeout=5) == "paused"
        ws.send("read after the pause")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.1)  # not read yet
        resumed = str(ws.recv(timeout=5))
        assert resumed.startswith("resumed after ") and int(resumed.split()[2]) >= 200
        assert ws.recv(timeout=5) == "read after the pause"
        assert time.monotonic() - t0 >= 0.18  # the loop clock is cached per turn: ~ms early


def test_timer_cancel_and_stale_id(build: Callable[[str], str]) -> None:
    with probe_server(build) as srv, _open(srv) as ws:
        ws.recv(timeout=5)
        ws.send("cancel")
        assert ws.recv(timeout=5) == "cancel=0 again=-4"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # the cancelled timer never fires


def test_timer_pending_at_close_is_cancelled(build: Callable[[str], str]) -> None:
    """on_close cancels the connection's timer; the server goes on (no use after free)."""
    with probe_server(build) as srv:
        for _ in range(20):
            with _open(srv) as ws:
                ws.recv(timeout=5)
                ws.send("timer 100")
                ws.recv(timeout=5)
        time.sleep(0.3)
        with _open(srv) as ws:
            ws.recv(timeout=5)
            ws.send("timer 10")
            ws.recv(timeout=5)
            assert str(ws.recv(timeout=5)).startswith("timer fired")


def test_python_timers_still_work_beside_c_timers(build: Callable[[str], str]) -> None:
    """The C app's on_timer passes the server's other timers (call_later) on."""
    fired = threading.Event()
    with probe_server(build) as srv, _open(srv) as ws:
        ws.recv(timeout=5)
        srv.call_later(0.05, fired.set)
        ws.send("timer 20")
        ws.recv(timeout=5)
        assert str(ws.recv(timeout=5)).startswith("timer fired")
        assert fired.wait(5)


def test_backpressure_buffered_and_on_drain(build: Callable[[str], str]) -> None:
    with probe_server(build, write_high_water=64 * 1024, compression=None) as srv, \
            _open(srv, max_size=None, compression=None) as ws:
        ws.recv(timeout=5)
        ws.send("flood")  # 8 MiB at once: the kernel cannot take it all
        got = [ws.recv(timeout=10) for _ in range(130)]
        assert got[:128] == [bytes(65536)] * 128
        flooded, drained = got[128:]
        assert isinstance(flooded, str) and flooded.startswith("flooded, most buffered ")
        assert int(flooded.split()[-1]) > 64 * 1024  # it went over write_high_water
        assert isinstance(drained, str) and drained.startswith("drained ")
        assert int(drained.split()[-1]) <= 32 * 1024  # at most half of it is left


def test_broadcast_count_id_peer(build: Callable[[str], str]) -> None:
    with probe_server(build) as srv, _open(srv) as a, _open(srv) as b:
        a.recv(timeout=5)
        b.recv(timeout=5)
        a.send("broadcast all of you")
        got_a = {a.recv(timeout=5), a.recv(timeout=5)}
        assert got_a == {"all of you", "broadcast to 2"}
        assert b.recv(timeout=5) == "all of you"
        a.send("count")
        assert a.recv(timeout=5) == "count 2"
        a.send("id")
        ida = str(a.recv(timeout=5))
        b.send("id")
        idb = str(b.recv(timeout=5))
        assert ida.endswith("nonzero=1") and ida != idb
        a.send("peer")
        host, port = a.socket.getsockname()[:2]
        assert a.recv(timeout=5) == f"peer {host}:{port}"


def test_stop_from_the_app_and_shutdown_destroy_order(build: Callable[[str], str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wsuv.app")
    app = wsuv.load_c_app(build("probe"), arg="x")
    with server_thread(app) as (srv, thread), _open(srv) as ws:
        ws.recv(timeout=5)
        ws.send("stop")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        thread.join(10)
        assert not thread.is_alive()
    assert "on_destroy" not in caplog.text  # not before the application is unloaded
    app.close()
    app.close()  # idempotent
    lines = [r.getMessage() for r in caplog.records if r.name == "wsuv.app"]
    assert lines[0] == "probe init arg=x"  # no name yet: init has not returned its table
    events = [m.split()[1] for m in lines[1:]]
    assert events == ["on_shutdown", "on_close", "on_destroy"], lines
    assert lines[2] == "probe: on_close 1001 server shutting down"


def test_one_server_at_a_time_then_reuse(build: Callable[[str], str]) -> None:
    app = wsuv.load_c_app(build("probe"))
    with running_server(app) as srv:
        with pytest.raises(RuntimeError, match="one at a time"):
            wsuv.Server(app, port=0)
        with _open(srv) as ws:
            assert ws.recv(timeout=5).startswith("open")
    with running_server(app) as srv2, _open(srv2) as ws:  # detached: serves again
        assert ws.recv(timeout=5).startswith("open")
    unused = wsuv.Server(app, host="127.0.0.1", port=0)
    unused.close()  # never ran: detached too
    app.close()
    with pytest.raises(ValueError, match="closed"):
        wsuv.Server(app, port=0)


def test_two_applications_side_by_side(build: Callable[[str], str]) -> None:
    echo = wsuv.load_c_app(build("examples/echo"))
    probe = wsuv.load_c_app(build("probe"))
    with running_server(echo) as s1, running_server(probe) as s2:
        with _open(s1) as a, _open(s2) as b:
            a.send("to echo")
            assert a.recv(timeout=5) == "to echo"
            assert str(b.recv(timeout=5)).startswith("open /")
    echo.close()
    probe.close()
