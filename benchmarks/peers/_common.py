"""Shared command line for the peer echo servers (stdlib only).

Every server binds 127.0.0.1 only, turns compression off (on with --deflate), echoes each message
with its own type (text stays text) in ``echo`` mode, and in ``broadcast``
mode sends each message it receives to every open connection, the sender
included, as a loop in Python over its own set of connections.
"""

from __future__ import annotations

import argparse
import ssl


def parse_args(description: str, extra: dict[str, list[str]] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["echo", "broadcast"], default="echo")
    p.add_argument("--deflate", action="store_true",
                   help="permessage-deflate on, with the library's own defaults")
    p.add_argument("--certfile", help="serve TLS (Python's ssl) with this certificate chain")
    p.add_argument("--keyfile", help="the key of --certfile")
    for flag, choices in (extra or {}).items():
        p.add_argument(flag, choices=choices, default=choices[0])
    return p.parse_args()


HOST = "127.0.0.1"
MAX_SIZE = 16 * 1024 * 1024


def server_ssl(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A Python ssl server context from --certfile/--keyfile (None without them):
    TLS 1.2 and 1.3, as wsuv allows, otherwise Python's defaults."""
    if not args.certfile:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.certfile, args.keyfile)
    return ctx
