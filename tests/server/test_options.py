"""Server options: every number is checked against what its C field holds, so
a bad value is a clear error naming the option, never a silent change of
meaning (a negative timeout must not become "no timeout")."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest

from wsuv import Server
from wsuv.options import OPTIONS, resolve

BAD_VALUES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"handshake_timeout": -1}, ValueError, "handshake_timeout must be between 0 and"),
    ({"idle_timeout": math.nan}, ValueError, "idle_timeout must be between 0 and"),
    ({"ping_interval": math.inf}, ValueError, "ping_interval must be between 0 and"),
    ({"close_timeout": 5_000_000.0}, ValueError, "close_timeout must be between 0 and"),
    ({"port": 65536}, ValueError, "port must be between 0 and 65535"),
    ({"write_limit": -5}, ValueError, "write_limit must be between 0 and"),
    ({"max_fragments": 2**32}, ValueError, "max_fragments must be between 0 and 4294967295"),
    ({"busy_poll_us": -1}, ValueError, "busy_poll_us must be between 0 and"),
    ({"max_url": 8.5}, TypeError, "max_url must be an integer"),
    ({"busy_poll_us": True}, TypeError, "busy_poll_us must be an integer"),
    ({"handshake_timeout": "10"}, TypeError, "handshake_timeout must be a number"),
    ({"no_such_option": 1}, TypeError, "unknown server option(s): no_such_option"),
    # A websockets name, and a typo: what it is called here.
    ({"max_size": 1}, TypeError, "unknown server option(s): max_size (here: max_message_size)"),
    ({"max_conections": 1}, TypeError, "max_conections (here: max_connections)"),
    # None is off where 0 is (below); elsewhere it is told it needs a number.
    ({"ping_timeout": None}, TypeError, "ping_timeout must be a number, not None"),
    ({"max_message_size": None}, TypeError, "max_message_size must be an integer, not None"),
    ({"tcp_nodelay": "yes"}, TypeError, "tcp_nodelay must be True or False, not 'yes'"),
    ({"compression_filtered": None}, TypeError, "compression_filtered must be True or False"),
    ({"reuseport": 1}, TypeError, "reuseport must be True or False, not 1"),
    ({"host": 5}, TypeError, "host must be a string, not 5"),
    ({"pubsub_namespace": b"x"}, TypeError, "pubsub_namespace must be a string"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_VALUES,
                         ids=[next(iter(o)) + "=" + repr(next(iter(o.values())))
                              for o, _e, _m in BAD_VALUES])
def test_bad_option_values_are_refused_by_name(options: dict[str, Any], error: type[Exception],
                                                message: str) -> None:
    with pytest.raises(error) as info:
        Server(None, **options)
    assert message in str(info.value)


def test_every_default_passes_its_own_check_and_edges_are_allowed() -> None:
    values = resolve({})
    assert values == {o.name: o.default for o in OPTIONS}
    edges = resolve({"port": 65535, "handshake_timeout": 0, "idle_timeout": 4_294_967.0,
                     "max_fragments": 2**32 - 1, "ping_interval": 5})
    assert edges["max_fragments"] == 2**32 - 1
    server = Server(None, port=0, handshake_timeout=0, idle_timeout=4_294_967.0,
                    max_fragments=2**32 - 1, busy_poll_us=0)
    server.close()


def test_cli_names_the_flag_and_exits_2() -> None:
    out = subprocess.run([sys.executable, "-m", "wsuv.cli", "--port", "0",
                          "--handshake-timeout", "-1"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2, out
    assert "--handshake-timeout must be between 0 and" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_compression_options_are_checked_and_the_cli_can_turn_it_off() -> None:
    from wsuv.cli import build_parser

    with pytest.raises(ValueError, match="compression must be one of deflate or None"):
        resolve({"compression": "gzip"})
    with pytest.raises(ValueError, match="compression_window_bits must be between 9 and 15"):
        resolve({"compression_window_bits": 8})
    with pytest.raises(ValueError, match="compression_client_window_bits must be between 8"):
        resolve({"compression_client_window_bits": 16})
    assert resolve({"compression": None})["compression"] is None
    parser = build_parser()
    assert parser.parse_args([]).compression == "deflate"
    assert parser.parse_args(["--no-compression"]).compression is None
    assert parser.parse_args(["--compression", "deflate"]).compression == "deflate"
    args = parser.parse_args(["--compression-window-bits", "10", "--compression-idle-timeout",
                              "0.5", "--compression-client-no-context-takeover"])
    assert (args.compression_window_bits, args.compression_idle_timeout,
            args.compression_client_no_context_takeover) == (10, 0.5, True)
    assert parser.parse_args([]).compression_filtered is True
    assert parser.parse_args(["--no-compression-filtered"]).compression_filtered is False
    out = subprocess.run([sys.executable, "-m", "wsuv.cli", "--compression", "gzip"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "--compression" in out.stderr


def test_none_is_off_where_zero_is() -> None:
    """websockets' ping_interval=None (no keepalive) means the same here."""
    from wsuv.options import OPTIONS, resolve

    off = [o.name for o in OPTIONS if "0 = " in o.help]
    assert len(off) == 8
    values = resolve(dict.fromkeys(off))
    assert all(values[name] == 0 for name in off)
