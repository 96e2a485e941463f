"""Every server option in one table: name, default, and why.

The Python API (``Server(**options)``) and the command line
(``wsuv-serve --option-name``) are both generated from :data:`OPTIONS`, so an
option has one name, one default and one sentence of documentation.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported at run time: it costs wsuv-serve RSS
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

KiB = 1024
MiB = 1024 * KiB
C_INT = 2**31 - 1
U32 = 2**32 - 1
U63 = 2**63 - 1
SECONDS = U32 / 1000  # timeouts become uint32 milliseconds in C


class Option:
    """One server option."""

    __slots__ = ("name", "type", "default", "help", "maximum", "minimum", "choices")

    def __init__(self, name: str, type: type, default: Any, help: str,  # noqa: A002
                 maximum: float | None = None, minimum: float = 0,
                 choices: tuple[str, ...] | None = None) -> None:
        self.name = name
        self.type = type
        self.default = default
        self.help = help
        # Numbers run from 0 to what the C field holds (or a narrower sane bound).
        self.maximum = maximum if maximum is not None else (
            SECONDS if type is float else U32 if type is int else None)
        self.minimum = minimum
        # A str option with choices also takes None (off): --no-NAME on the CLI.
        self.choices = choices

    def check(self, value: Any) -> None:
        """Raise TypeError/ValueError naming the option if value is not allowed."""
        if self.choices is not None and value is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)} or None, "
                             f"not {value!r}")
        if self.type is bool and not isinstance(value, bool):
            raise TypeError(f"{self.name} must be True or False, not {value!r}")
        if self.type is str and value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{self.name} must be a string, not {value!r}")
        if self.maximum is None or value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int if self.type is int
                                                     else (int, float)):
            kind = "an integer" if self.type is int else "a number"
            raise TypeError(f"{self.name} must be {kind}, not {value!r}")
        if not self.minimum <= value <= self.maximum:  # NaN fails too
            raise ValueError(f"{self.name} must be between {int(self.minimum)} and "
                             f"{int(self.maximum)}, not {value!r}")


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "127.0.0.1", "address to listen on; loopback by default so nothing is "
           "exposed by accident (use 0.0.0.0 or :: to serve the network)"),
    Option("port", int, 8080, "TCP port; 0 picks a free one", 65535),
    Option("unix_path", str, None, "listen on this Unix socket path instead of TCP"),
    Option("fd", int, None, "serve an inherited listening socket (systemd LISTEN_FDS sets "
           "this to 3 automatically)", C_INT),
    Option("backlog", int, 511, "listen(2) backlog: pending connections the kernel queues",
           C_INT),
    Option("tcp_nodelay", bool, True, "disable Nagle's algorithm so small messages leave at once"),
    Option("tcp_keepalive", int, 0, "TCP keepalive delay in seconds (0 = off); WebSocket pings "
           "already detect dead peers", C_INT),
    Option("reuseport", bool, False, "set SO_REUSEPORT so several processes can bind one port"),
    Option("max_connections", int, 0, "open sockets beyond this get 503 (0 = no limit)"),
    Option("max_url", int, 8 * KiB, "longest request target; longer gets 414"),
    Option("max_headers", int, 64, "most header fields in the upgrade request; more gets 431"),
    Option("max_header_bytes", int, 16 * KiB, "largest request head; larger gets 431"),
    Option("max_message_size", int, 16 * MiB, "largest message (after reassembly); larger is "
           "closed with 1009", U63),
    Option("max_fragments", int, 100000, "most frames in one message: bounds a flood of tiny "
           "fragments (1009)"),
    Option("handshake_timeout", float, 10.0, "seconds a client has to send its upgrade request"),
    Option("idle_timeout", float, 0.0, "close (1001) after this many seconds without a byte "
           "from the peer (0 = never)"),
    Option("ping_interval", float, 20.0, "send a ping after this many quiet seconds (0 = never)"),
    Option("ping_timeout", float, 20.0, "drop a peer that sends nothing this long after a ping"),
    Option("close_timeout", float, 5.0, "seconds to wait for the peer's close frame or FIN"),
    Option("shutdown_timeout", float, 5.0, "seconds a graceful shutdown waits for peers"),
    Option("write_high_water", int, 1 * MiB, "buffered outgoing bytes at which a connection "
           "counts as full (on_drain fires when it falls to write_low_water)", U63),
    Option("write_low_water", int, None, "a full connection drains (on_drain) when its buffer "
           "falls to this many bytes; default half of write_high_water, so a writer that "
           "waits for on_drain resumes with room to spare but is not woken for every write",
           U63),
    Option("write_limit", int, 16 * MiB, "buffered outgoing bytes at which a peer that does not "
           "read is dropped", U63),
    Option("read_rate", int, 0, "per-connection read limit in bytes/s, enforced by pausing "
           "reads (0 = off)", U63),
    Option("write_rate", int, 0, "per-connection write limit in bytes/s: what exceeds a "
           "second's budget waits in the connection's queue (counted by write_limit; "
           "0 = off)", U63),
    Option("busy_poll_us", int, 0, "after a read, keep polling without sleeping for this many "
           "microseconds: lower latency for a few busy connections, paid with a CPU that "
           "spins while they are active (0 = off)"),
    Option("compression", str, "deflate", "negotiate permessage-deflate (RFC 7692) with clients "
           "that offer it (every browser does): JSON-like text shrinks to about a fifth on "
           "the wire; None (--no-compression) declines it", choices=("deflate",)),
    Option("compression_window_bits", int, 12, "window of our compressor, in bits (9-15): 1 KiB "
           "JSON messages compress to 0.224 of their size at 12 bits against 0.210 at 15 "
           "(level 6, filtered), but a 15-bit compressor walks 8 times more history: "
           "end to end it halved a K=1 compressed echo's messages per server CPU-second "
           "(docs/PERFORMANCE.md); it costs 39 KiB at 12 bits and memLevel 5, 151 KiB at "
           "15 (2^(bits+2) + 2^(mem_level+9) bytes, only while it is in use)", 15, 9),
    Option("compression_mem_level", int, 5, "zlib memLevel of our compressor (1-9): 5 compresses "
           "1 KiB JSON as well as 8 (0.232 against 0.231 at 12 bits) with 112 KiB less per "
           "active compressor", 9, 1),
    Option("compression_level", int, 6, "zlib level of our compressor (1-9): 6 compresses 1 KiB "
           "JSON to 0.224 of its size at 12 bits (filtered), 1 to 0.281 in about 30% less "
           "time (benchmarks/pmd_sweep.c); end to end, 1 gave a compressed echo about a "
           "quarter more messages per server CPU-second for a tenth more bytes on the wire "
           "(docs/PERFORMANCE.md)", 9, 1),
    Option("compression_filtered", bool, True, "compress with zlib's Z_FILTERED strategy "
           "(matches shorter than 6 bytes go as literals): JSON records full of numbers "
           "shrink 4% more than with the default strategy (0.224 against 0.232 of 1 KiB at "
           "12 bits), in the same time; prose, source code and text-heavy JSON shrink 3-5% "
           "less: --no-compression-filtered for those"),
    Option("compression_client_window_bits", int, 14, "window (bits, 8-15) we ask a client to "
           "compress within when its offer lets us (client_max_window_bits, as Chrome's): "
           "our inflater is then 16 KiB instead of 32, and what it keeps while idle (that "
           "window, deflated: about 4 KiB of JSON) too, for 2% more bytes than at 15 bits; "
           "8 only to a client that offered 8 itself (zlib-based clients cannot compress "
           "within 8 bits)", 15, 8),
    Option("compression_client_no_context_takeover", bool, False, "ask clients to compress "
           "every message on its own (client_no_context_takeover): an idle connection then "
           "keeps no inflater window at all, paid with a worse ratio (0.30 instead of 0.20 "
           "for 1 KiB JSON)"),
    Option("compression_no_context_takeover", bool, False, "compress every message we send on "
           "its own (server_no_context_takeover): less memory between messages, a worse "
           "ratio"),
    Option("compression_threshold", int, 64, "messages shorter than this many bytes are sent "
           "uncompressed: below 64 bytes a message alone does not shrink (32-byte JSON "
           "compresses to 1.0 of its size without context) and saves under 50 bytes with it"),
    Option("compression_idle_timeout", float, 5.0, "after this many seconds without a "
           "compressed message a connection frees its compressor and keeps only its "
           "inflater's window (0 = never): idle connections cost a few KiB, not ~50"),
    Option("handle_signals", bool, True, "SIGINT/SIGTERM start a graceful shutdown; a second "
           "signal stops at once"),
    Option("static_dir", str, None, "serve files from this directory to plain HTTP GETs"),
    Option("pubsub_url", str, None, "Redis for publish across processes and machines: "
           "redis://[[user]:password@]host[:port][/db] or unix:///path?db=N (give an address, "
           "not a name: hiredis resolves names blocking); None = this process only"),
    Option("pubsub_namespace", str, "default", "channels are wsuv:<namespace>:<topic>, so "
           "several applications can share one Redis"),
    Option("ssl_certfile", str, None, "serve TLS (wss://) with this PEM certificate chain, "
           "leaf first; None = plain ws:// (a TLS proxy in front is the other way)"),
    Option("ssl_keyfile", str, None, "PEM private key of ssl_certfile; None = the key is in "
           "ssl_certfile"),
    Option("ssl_keyfile_password", str, None, "password of an encrypted ssl_keyfile (never "
           "prompted for)"),
    Option("ssl_ca_certs", str, None, "PEM CA certificates that client certificates must "
           "chain to (with ssl_cert_reqs)"),
    Option("ssl_cert_reqs", int, 0, "client certificates: 0 none asked for, 1 optional (one "
           "sent must verify), 2 required (Python's ssl.CERT_* numbers)", 2),
    Option("ssl_ciphers", str, None, "OpenSSL cipher list for TLS 1.2 (TLS 1.3 keeps "
           "OpenSSL's suites); None = OpenSSL's defaults. TLS 1.2 and 1.3 only, always"),
)

OPTION_NAMES = frozenset(o.name for o in OPTIONS)

# Numbers whose 0 means off, as their help says ("0 = never", "0 = no limit"):
# None means the same.
_NONE_IS_OFF = frozenset(o.name for o in OPTIONS if "0 = " in o.help)

# What a `websockets` server's options are here, for the refusal's sentence.
_PORTED = {
    "max_size": "max_message_size",
    "open_timeout": "handshake_timeout",
    "ssl": "ssl_certfile and ssl_keyfile",
    "origins": "a check of request.headers['Origin'] in on_connect or process_request",
    "subprotocols": "Accept(subprotocol=...) from on_connect or process_request",
    "select_subprotocol": "Accept(subprotocol=...) from on_connect or process_request",
    "process_response": "Accept(headers=[...]) from on_connect or process_request",
    "logger": "the 'wsuv' logger",
}


def unknown_names(names: Iterable[str], known: Iterable[str] = OPTION_NAMES,
                  ported: dict[str, str] = _PORTED) -> str:
    """The refused names, each with what it is called here when we can tell
    (a websockets name, or a near typo of a known one)."""
    import difflib

    known = list(known)
    said = []
    for name in sorted(names):
        hint = ported.get(name)
        if hint is None:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            hint = close[0] if close else None
        said.append(f"{name} (here: {hint})" if hint else name)
    return ", ".join(said)


def resolve(overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``overrides``. Unknown names and numbers of the
    wrong type are a TypeError, numbers out of range a ValueError (a negative
    timeout must not quietly mean "no timeout")."""
    unknown = set(overrides) - OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown server option(s): {unknown_names(unknown)}")
    values = {o.name: o.default for o in OPTIONS}
    values.update(overrides)
    for o in OPTIONS:
        if values[o.name] is None and o.default is not None and o.maximum is not None:
            # A number that has an off state takes None for it (websockets'
            # ping_interval=None); any other is told it needs a number.
            if o.name not in _NONE_IS_OFF:
                kind = "an integer" if o.type is int else "a number"
                raise TypeError(f"{o.name} must be {kind}, not None")
            values[o.name] = o.type(0)
        o.check(values[o.name])
    low = values["write_low_water"]
    if low is not None and low > values["write_high_water"]:
        raise ValueError(f"write_low_water ({low}) must not exceed write_high_water "
                         f"({values['write_high_water']})")
    return values
