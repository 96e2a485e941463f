"""Echo / broadcast server on socketify (uWebSockets through cffi), compression off.

The broadcast is a Python loop over the open connections, like the other
peers' (uWS' own C++ publish/subscribe is not used). socketify hands every
callback a new wrapper object for the same socket, so connections are kept
in a dict keyed by the uWS socket pointer (``ws.ws``): a set of wrappers
would never lose the closed ones, and sending to one of those crashes.
"""

from __future__ import annotations

from typing import Any

from _common import HOST, MAX_SIZE, parse_args
from socketify import App, AppListenOptions, CompressOptions


def main() -> None:
    args = parse_args(__doc__ or "")
    clients: dict[Any, Any] = {}

    def on_open(ws: Any) -> None:
        clients[ws.ws] = ws

    def on_close(ws: Any, code: int, message: Any) -> None:
        clients.pop(ws.ws, None)

    def echo(ws: Any, message: Any, opcode: Any) -> None:
        ws.send(message, opcode)

    def fan_out(ws: Any, message: Any, opcode: Any) -> None:
        for c in clients.values():
            c.send(message, opcode)

    app = App()
    app.ws("/*", {
        "compression": CompressOptions.DISABLED,
        "max_payload_length": MAX_SIZE,
        "idle_timeout": 120,
        "open": on_open,
        "message": echo if args.mode == "echo" else fan_out,
        "close": on_close,
    })
    app.listen(AppListenOptions(port=args.port, host=HOST), lambda config: None)
    app.run()


if __name__ == "__main__":
    main()
