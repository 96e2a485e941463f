"""One C loop per asyncio loop (wsuv._uvdrive): however many wsuv.aio
servers and clients run in an asyncio loop, they share one ws_loop, one
add_reader fd and one timer; one closes while the others keep serving."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

import wsuv.aio
from wsuv import _uvdrive
from wsuv._core import ffi, lib


def _readers(loop: asyncio.AbstractEventLoop) -> set[int]:
    """The fds the asyncio loop watches for reading (the standard selector loop)."""
    selector = loop._selector  # type: ignore[attr-defined]
    return {key.fd for key in selector.get_map().values() if key.events & 1}


def _tagged(tag: str) -> Any:
    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{tag}:{message}")
    return handler


async def _three_servers_one_fd() -> None:
    loop = asyncio.get_running_loop()
    before = _readers(loop)
    servers = [await wsuv.aio.serve(_tagged(t), port=0) for t in "ABC"]
    added = _readers(loop) - before
    host = _uvdrive._HOSTS[loop]
    assert added == {lib.ws_loop_backend_fd(host.ptr)}  # one fd for the three
    assert len({int(ffi.cast("uintptr_t", lib.ws_server_loop(s.server._s))) for s in servers}) == 1
    assert lib.ws_loop_server_count(host.ptr) == 3
    # A client connection on the same loop: same ws_loop, still one fd.
    client = await wsuv.aio.connect(f"ws://127.0.0.1:{servers[1].port}/")
    assert lib.ws_server_loop(client._s) == host.ptr
    assert _readers(loop) - before == added
    await client.send("hi")
    assert await client.recv(timeout=5) == "B:hi"
    # A's server closes and is freed while B and C (and the client) go on.
    servers[0].close()
    await asyncio.wait_for(servers[0].wait_closed(), 10)
    assert lib.ws_loop_server_count(host.ptr) == 3  # B, C and the client's host
    await client.send("again")
    assert await client.recv(timeout=5) == "B:again"
    async with ws_connect(f"ws://127.0.0.1:{servers[2].port}/") as peer:
        await peer.send("x")
        assert await asyncio.wait_for(peer.recv(), 5) == "C:x"
    await client.close()
    for s in servers[1:]:
        s.close()
        await asyncio.wait_for(s.wait_closed(), 10)
    # The last one out removed the reader and freed the C loop.
    await asyncio.sleep(0)
    assert loop not in _uvdrive._HOSTS
    assert _readers(loop) == before


def test_servers_and_a_client_share_one_fd() -> None:
    asyncio.run(_three_servers_one_fd())


async def _failed_listen_leaves_nothing() -> None:
    loop = asyncio.get_running_loop()
    before = _readers(loop)
    first = await wsuv.aio.serve(_tagged("A"), port=0)
    with pytest.raises(OSError):
        await wsuv.aio.serve(_tagged("B"), port=first.port)  # taken
    # The first still serves on the shared loop.
    async with ws_connect(f"ws://127.0.0.1:{first.port}/") as peer:
        await peer.send("ok")
        assert await asyncio.wait_for(peer.recv(), 5) == "A:ok"
    first.close()
    await asyncio.wait_for(first.wait_closed(), 10)
    await asyncio.sleep(0)
    assert loop not in _uvdrive._HOSTS and _readers(loop) == before
    with pytest.raises(OSError):  # alone: the host made for it goes with it
        await wsuv.aio.serve(_tagged("C"), host="127.0.0.1", port=_taken_port())
    await asyncio.sleep(0)
    assert loop not in _uvdrive._HOSTS and _readers(loop) == before


def _taken_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    _KEEP.append(s)
    return int(s.getsockname()[1])


_KEEP: list[Any] = []


def test_a_failed_serve_on_a_shared_loop() -> None:
    try:
        asyncio.run(_failed_listen_leaves_nothing())
    finally:
        for s in _KEEP:
            s.close()
        _KEEP.clear()


def test_each_asyncio_loop_has_its_own_c_loop() -> None:
    """Two asyncio loops (two threads) at once: two ws_loops, never one."""
    import threading

    barrier = threading.Barrier(2, timeout=20)
    ptrs: list[int] = []
    errors: list[BaseException] = []

    async def main() -> None:
        srv = await wsuv.aio.serve(_tagged("A"), port=0)
        ptrs.append(int(ffi.cast("uintptr_t", _uvdrive._HOSTS[asyncio.get_running_loop()].ptr)))
        await asyncio.to_thread(barrier.wait)  # both are serving now
        srv.close()
        await asyncio.wait_for(srv.wait_closed(), 10)

    def in_thread() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not any(th.is_alive() for th in threads) and not errors, errors
    assert len(set(ptrs)) == 2
