"""uWebSockets' own publish/subscribe through socketify, for bench_pubsub.py:
connection k subscribes to topic t<k mod TOPICS> (``--topics``), and every
message is published (``app.publish``, C++ fan-out) to each topic."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

from socketify import App, AppListenOptions, CompressOptions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--topics", type=int, default=1)
    args = p.parse_args()
    names = [f"t{i}" for i in range(args.topics)]
    count = itertools.count()
    app = App()

    def on_open(ws: Any) -> None:
        ws.subscribe(names[next(count) % len(names)])

    def on_message(ws: Any, message: Any, opcode: Any) -> None:
        for name in names:
            app.publish(name, message, opcode)

    app.ws("/*", {
        "compression": CompressOptions.DISABLED,
        "max_payload_length": 16 * 1024 * 1024,
        "max_backpressure": 64 * 1024 * 1024,
        "idle_timeout": 120,
        "open": on_open,
        "message": on_message,
    })
    app.listen(AppListenOptions(port=args.port, host="127.0.0.1"), lambda config: None)
    app.run()


if __name__ == "__main__":
    main()
