"""Shared command line for the peer echo servers (stdlib only).

Every server binds 127.0.0.1 only, turns compression off (on with --deflate), echoes each message
with its own type (text stays text) in ``echo`` mode, and in ``broadcast``
mode sends each message it receives to every open connection, the sender
included, as a loop in Python over its own set of connections.
"""

from __future__ import annotations

import argparse


def parse_args(description: str, extra: dict[str, list[str]] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["echo", "broadcast"], default="echo")
    p.add_argument("--deflate", action="store_true",
                   help="permessage-deflate on, with the library's own defaults")
    for flag, choices in (extra or {}).items():
        p.add_argument(flag, choices=choices, default=choices[0])
    return p.parse_args()


HOST = "127.0.0.1"
MAX_SIZE = 16 * 1024 * 1024
