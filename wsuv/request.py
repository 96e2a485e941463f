"""The opening handshake as the application sees it."""

from __future__ import annotations

import struct


class Headers:
    """Request headers: case-insensitive lookup, order and repeats kept."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        lname = name.lower()
        for k, v in self._items:
            if k.lower() == lname:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        lname = name.lower()
        return [v for k, v in self._items if k.lower() == lname]

    def items(self) -> list[tuple[str, str]]:
        """All (name, value) pairs as sent."""
        return list(self._items)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Request:
    """An upgrade (or plain HTTP) request: what ``on_connect`` decides on.

    Headers are kept as the raw request head and parsed on first use, so an
    open connection that never looks at them costs a few hundred bytes.
    """

    __slots__ = ("method", "target", "remote_address", "_raw", "_spans", "_headers")

    def __init__(self, method: str, target: str, headers: Headers | None = None,
                 remote_address: str = "", *, raw: bytes = b"", spans: bytes = b"") -> None:
        self.method = method
        self.target = target
        self.remote_address = remote_address
        self._raw = raw
        self._spans = spans
        self._headers = headers

    @property
    def headers(self) -> Headers:
        """The request's header fields, in order."""
        if self._headers is None:
            raw = self._raw
            self._headers = Headers([
                (raw[no:no + nl].decode("latin-1"), raw[vo:vo + vl].decode("latin-1"))
                for no, nl, vo, vl in struct.iter_unpack("=4I", self._spans)
            ])
            self._raw = self._spans = b""
        return self._headers

    # urllib.parse is imported on first use: an idle wsuv-serve stays small.
    @property
    def path(self) -> str:
        """Request path, percent-decoded ("/" if empty)."""
        from urllib.parse import unquote

        return unquote(self.target.partition("?")[0].partition("#")[0]) or "/"

    @property
    def query(self) -> str:
        """Raw query string, without the "?"."""
        return self.target.partition("?")[2].partition("#")[0]

    @property
    def query_params(self) -> dict[str, list[str]]:
        """The query string parsed into lists of values."""
        from urllib.parse import parse_qs

        return parse_qs(self.query)

    @property
    def origin(self) -> str | None:
        """The Origin header (browsers send it; check it against cross-site abuse)."""
        return self.headers.get("origin")

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies from the Cookie header(s): name -> value (the last one wins)."""
        out: dict[str, str] = {}
        for header in self.headers.get_all("cookie"):
            for pair in header.split(";"):
                name, eq, value = pair.strip().partition("=")
                if eq and name:
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    out[name.strip()] = value
        return out

    @property
    def subprotocols(self) -> list[str]:
        """Subprotocols the client offers, in its order of preference."""
        out: list[str] = []
        for value in self.headers.get_all("sec-websocket-protocol"):
            out.extend(p.strip() for p in value.split(",") if p.strip())
        return out

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} from {self.remote_address}>"


class Response:
    """A rejection or plain HTTP answer: status, headers and body."""

    __slots__ = ("status", "headers", "body")

    def __init__(
        self,
        status: int,
        body: bytes | str = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        if not 100 <= status <= 599:
            raise ValueError("HTTP status must be 100..599")
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = headers or []

    def header_block(self) -> bytes:
        """Header lines, each ending in CRLF; CR/LF in names or values are refused."""
        lines = []
        for name, value in self.headers:
            if any(c in name + value for c in "\r\n\0") or ":" in name:
                raise ValueError(f"invalid header {name!r}")
            lines.append(f"{name}: {value}\r\n")
        return "".join(lines).encode("latin-1")
