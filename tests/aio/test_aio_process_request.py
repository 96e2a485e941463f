"""wsuv.aio.serve(handler, process_request=...): a connection handler's
decision before the 101 (the place of a Handler's on_connect), plain or
awaited, and its misuse refused at start with one sentence.

Real sockets on 127.0.0.1, clients from the `websockets` library; every wait
is bounded by asyncio.wait_for.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import wsuv
import wsuv.aio

T = 5.0  # seconds any single wait may take


def url(server: wsuv.aio.AioServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def who(ws: wsuv.aio.Connection) -> None:
    user = ws.request.query_params.get("user", ["?"])[0]
    async for message in ws:
        await ws.send(f"{user}: {message} ({ws.subprotocol})")


def check_token(request: wsuv.Request) -> Any:
    if request.headers.get("Authorization") != "Bearer s3cret":
        return wsuv.Response(401, "a token is needed\n")
    if "chat" in request.subprotocols:
        return wsuv.Accept(subprotocol="chat")
    return None


async def check_token_later(request: wsuv.Request) -> Any:
    await asyncio.sleep(0.01)  # as a lookup elsewhere would
    return check_token(request)


async def refused_status(address: str, **kw: Any) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(address, open_timeout=T, **kw):
            pass
    return info.value.response.status_code, info.value.response.body or b""


@pytest.mark.parametrize("decide", [check_token, check_token_later], ids=["plain", "async"])
def test_process_request_refuses_and_accepts(run: Any, decide: Any) -> None:
    good = {"Authorization": "Bearer s3cret"}

    async def main() -> None:
        async with wsuv.aio.serve(who, port=0, process_request=decide) as server:
            assert await refused_status(url(server, "/?user=eve")) == (401, b"a token is needed\n")
            async with connect(url(server, "/?user=ann"), additional_headers=good) as client:
                await client.send("hi")
                assert await asyncio.wait_for(client.recv(), T) == "ann: hi (None)"
            async with connect(url(server, "/?user=bob"), additional_headers=good,
                               subprotocols=["chat"]) as client:  # type: ignore[list-item]
                assert client.subprotocol == "chat"
                await client.send("yo")
                assert await asyncio.wait_for(client.recv(), T) == "bob: yo (chat)"
    run(main())


def test_process_request_that_raises_or_returns_nonsense_answers_500(
        run: Any, caplog: pytest.LogCaptureFixture) -> None:
    def decide(request: wsuv.Request) -> Any:
        if request.path == "/raise":
            raise RuntimeError("lookup failed")
        if request.path == "/int":
            return 403  # not a Response: refused as 500, never opened
        return None

    async def main() -> None:
        async with wsuv.aio.serve(who, port=0, process_request=decide) as server:
            assert (await refused_status(url(server, "/raise")))[0] == 500
            assert (await refused_status(url(server, "/int")))[0] == 500
            async with connect(url(server, "/?user=ann")) as client:  # it goes on serving
                await client.send("still")
                assert await asyncio.wait_for(client.recv(), T) == "ann: still (None)"
    run(main())
    assert "lookup failed" in caplog.text
    assert "process_request failed; answering 500" in caplog.text
    assert "process_request returned int, not None, Accept or Response" in caplog.text


class Echo(wsuv.Handler):
    def on_message(self, ws: wsuv.WebSocket, message: str | bytes) -> None:
        ws.send(message)


@pytest.mark.parametrize("handler, hook, sentence", [
    (who, lambda connection, request: None, "takes one argument, the request"),
    (who, "not callable", r"must be a function of \(request\), not str"),
    (Echo, check_token, "a wsuv.Handler decides in its on_connect"),
    (None, check_token, "goes with a connection handler"),
], ids=["websockets-form", "not-callable", "with-a-Handler", "with-the-echo"])
def test_process_request_misuse_is_one_sentence_at_start(
        run: Any, handler: Any, hook: Any, sentence: str) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match=sentence):
            async with wsuv.aio.serve(handler, port=0, process_request=hook):
                pass
    run(main())


def test_process_request_is_not_a_client_option(run: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="process_request"):
            async with wsuv.aio.client(Echo(), process_request=check_token):  # type: ignore[call-arg]
                pass
    run(main())


def health(request: wsuv.Request) -> Any:
    if request.path == "/healthz":
        return wsuv.Response(200, "ok\n")
    return check_token(request)


async def health_later(request: wsuv.Request) -> Any:
    return health(request)


async def http_get(port: int, path: str, extra: str = "") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), T)  # the server closes after answering
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_plain_process_request_answers_plain_http_too(run: Any) -> None:
    async def main() -> None:
        async with wsuv.aio.serve(who, port=0, process_request=health) as server:
            assert server.port is not None
            assert await http_get(server.port, "/healthz") == (200, b"ok\n")
            # A Response answers; anything else (None, an Accept) leaves the 426.
            assert (await http_get(server.port, "/other"))[0] == 401
            token = "Authorization: Bearer s3cret\r\n"
            assert (await http_get(server.port, "/other", token))[0] == 426
        async with wsuv.aio.serve(who, port=0, process_request=health_later) as server:
            assert server.port is not None
            # An async def one sees upgrade requests only.
            assert (await http_get(server.port, "/healthz"))[0] == 426
            assert await refused_status(url(server)) == (401, b"a token is needed\n")
    run(main())
