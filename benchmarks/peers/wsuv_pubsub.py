"""wsuv publish fan-out for benchmarks/bench_pubsub.py, as a wsuv-serve app
(``wsuv-serve wsuv_pubsub:app``, with ``--workers N`` across processes).

Connection k subscribes to topic ``t<k mod TOPICS>``; every message received is
published to each of the TOPICS topics, so every connection gets every message
once (what loadgen's broadcast mode checks) and each publish reaches
conns / TOPICS subscribers. BENCH_TOPICS sets TOPICS (default 1).
BENCH_SUBS > 0 instead subscribes each connection to that many topics out of
1,000 (the memory scenario) and publishes nothing.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import wsuv

TOPICS = int(os.environ.get("BENCH_TOPICS", "1"))
SUBS = int(os.environ.get("BENCH_SUBS", "0"))


class Pub(wsuv.Handler):
    def __init__(self) -> None:
        self.count = itertools.count()
        self.names = [f"t{i}" for i in range(TOPICS)]

    def on_open(self, ws: Any) -> None:
        k = next(self.count)
        if SUBS:
            for j in range(SUBS):
                ws.subscribe(f"m{(k * SUBS + j) % 1000}")
        else:
            ws.subscribe(self.names[k % TOPICS])

    def on_message(self, ws: Any, message: str | bytes) -> None:
        publish = ws.server.publish
        for name in self.names:
            publish(name, message)


app = Pub()
