"""The opening handshake's HTTP request, checked before anything parses it (pure, no I/O).

Both backends screen the bytes a connection sends first with
:func:`read_request_head`, so a request is measured and refused the same way
on asyncio (before Autobahn's parser, which would buffer without bound) and on
Twisted (before twisted.web's parser, which has other limits and answers
them differently):

======  ============================================================================
status  when
======  ============================================================================
403     a ``Host`` the server does not answer to (:class:`wskit.origin.HostPolicy`)
431     the request head (request line, header lines and the blank line ending
        them) is larger than ``max_request_size`` bytes, or has more than
        ``max_headers`` header lines; never more than that is waited for
400     a malformed head: a request line that is not ``METHOD TARGET HTTP/x.y``, a
        header line without a name and colon, a name that is not an HTTP token,
        a control character (NUL included) in a name or value, obsolete line
        folding
505     a WebSocket handshake over any HTTP version but 1.1 (RFC 6455 4.1)
426     a WebSocket handshake with a ``Sec-WebSocket-Version`` other than 13,
        answered with ``Sec-WebSocket-Version: 13`` (RFC 6455 4.4)
======  ============================================================================

Every refusal is written by :func:`refusal_response`: the reason in the status
line (bounded, one line of printable text) and as a ``text/plain`` body, then
the connection is closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# RFC 6455 4.4: the only version this server speaks.
WEBSOCKET_VERSION = "13"
# A refusal's reason in the status line, and its body, are bounded: a reason
# can quote what the client sent (an origin, offered subprotocols, a Host).
MAX_REASON_CHARACTERS = 512
MAX_BODY_CHARACTERS = 4096

STATUS_PHRASES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    411: "Length Required",
    413: "Content Too Large",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_END_OF_HEAD = b"\r\n\r\n"
# RFC 9110 5.6.2: a header name (and a method) is a token.
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(rb"^HTTP/[0-9]\.[0-9]$")
# Control characters: every byte below 0x20 (HTAB is allowed in values) and DEL.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_TEXT = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Refusal:
    """An HTTP answer that refuses a request: status, reason, extra headers."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RequestHead:
    """A complete, well-formed request head; ``length`` counts its bytes, blank line included."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    length: int

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive); repeated headers joined with ', '."""
        name = name.lower()
        values = [value for key, value in self.headers if key.lower() == name]
        return ", ".join(values) if values else None

    @property
    def is_websocket_upgrade(self) -> bool:
        upgrade = self.header("upgrade") or ""
        return any(token.strip().lower() == "websocket" for token in upgrade.split(","))


def too_large(limit: int) -> Refusal:
    return Refusal(431, f"request head larger than {limit} bytes")


def too_many_headers(limit: int) -> Refusal:
    return Refusal(431, f"more than {limit} header fields")


def read_request_head(data: bytes, max_request_size: int, max_headers: int) -> RequestHead | Refusal | None:
    """Screen the first bytes of a connection (whatever has arrived so far).

    Returns the parsed :class:`RequestHead` once its blank line has arrived, a
    :class:`Refusal` as soon as the bytes so far cannot become an acceptable
    head, and None while the head is incomplete and still within the limits.
    Bytes after the head (a body, frames sent eagerly) are not looked at. A
    limit of 0 means no limit.

    >>> read_request_head(b"GET /ws HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n", 16384, 100).header("host")
    'a'
    >>> read_request_head(b"GET /ws HTTP/1.1\\r\\nHost: a\\r\\n", 16384, 100) is None
    True
    >>> read_request_head(b"GET /ws HTTP/1.1\\r\\nX: " + b"a" * 100, 64, 100)
    Refusal(status=431, reason='request head larger than 64 bytes', headers=())
    """
    if max_request_size:
        end = data.find(_END_OF_HEAD, 0, max_request_size)
        if end < 0 and len(data) >= max_request_size:
            return too_large(max_request_size)
    else:
        end = data.find(_END_OF_HEAD)
    if end < 0:
        # Incomplete: refuse early what is already too many lines.
        if max_headers and data.count(b"\r\n") - 1 > max_headers:
            return too_many_headers(max_headers)
        return None
    return parse_request_head(data[: end + len(_END_OF_HEAD)], max_headers)


def parse_request_head(head: bytes, max_headers: int = 0) -> RequestHead | Refusal:
    """Parse a complete head (ending with the blank line), or say why it is refused."""
    lines = head[: -len(_END_OF_HEAD)].split(b"\r\n")
    if max_headers and len(lines) - 1 > max_headers:
        return too_many_headers(max_headers)
    request_line, header_lines = lines[0], lines[1:]
    parts = request_line.split(b" ")
    if (len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1] or _CONTROL.search(parts[1])
            or not _VERSION.match(parts[2])):
        return Refusal(400, "malformed request line")
    headers = []
    for line in header_lines:
        if line[:1] in (b" ", b"\t"):
            return Refusal(400, "obsolete line folding in a header field")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            return Refusal(400, "malformed header field")
        if _CONTROL.search(value):
            return Refusal(400, f"control character in header field {name.decode('ascii')}")
        headers.append((name.decode("ascii"), value.strip(b" \t").decode("iso-8859-1")))
    method, target, version = (p.decode("iso-8859-1") for p in parts)
    return RequestHead(method, target, version, tuple(headers), len(head))


def websocket_refusal(head: RequestHead) -> Refusal | None:
    """What RFC 6455 requires of a WebSocket handshake's HTTP request, checked
    before Autobahn sees it: HTTP/1.1 (505 otherwise) and version 13 (426).
    Requests that are not WebSocket handshakes pass."""
    if not head.is_websocket_upgrade:
        return None
    if head.version != "HTTP/1.1":
        return Refusal(505, f"a WebSocket handshake needs HTTP/1.1, not {head.version}")
    version = head.header("sec-websocket-version")
    if version is not None and version.strip() != WEBSOCKET_VERSION:
        return Refusal(426, f"unsupported WebSocket version {version.strip()} (this server speaks "
                            f"{WEBSOCKET_VERSION})", (("Sec-WebSocket-Version", WEBSOCKET_VERSION),))
    return None


def request_refusal(head: RequestHead, host_policy: Any = None) -> Refusal | None:
    """Everything a well-formed request is refused for before Autobahn sees it:
    more than one ``Host`` (400), a Host ``host_policy`` does not allow (403,
    see :class:`wskit.origin.HostPolicy`), then :func:`websocket_refusal`."""
    hosts = [value for name, value in head.headers if name.lower() == "host"]
    if len(hosts) > 1:
        return Refusal(400, "more than one Host header")
    if hosts and host_policy is not None and not host_policy.allows(hosts[0]):
        return Refusal(403, host_policy.reason(hosts[0]))
    return websocket_refusal(head)


def body_refusal(head: RequestHead, max_request_size: int) -> Refusal | None:
    """A server that reads request bodies (twisted.web does, before the resource
    answers) refuses one that would take the request past ``max_request_size``
    (413), or whose size is not declared (chunked: 411); nothing wskit serves
    takes a body.

    >>> body_refusal(RequestHead("POST", "/", "HTTP/1.1", (("Content-Length", "99999"),), 40), 16384)
    Refusal(status=413, reason='request body of 99999 bytes: more than the 16384 a request may have', headers=())
    """
    if not max_request_size:
        return None
    if head.header("transfer-encoding") is not None:
        return Refusal(411, "a request body must declare its Content-Length")
    length = (head.header("content-length") or "0").strip()
    if length.isdigit() and head.length + int(length) > max_request_size:
        return Refusal(413, f"request body of {int(length)} bytes: more than the {max_request_size} "
                            "a request may have")
    return None


def one_line(text: str, limit: int) -> str:
    """``text`` as one line of at most ``limit`` characters, control characters replaced.

    >>> one_line("a\\r\\nb  c", 80)
    'a b c'
    >>> one_line("x" * 10, 8)
    'xxxxx...'
    """
    text = " ".join(_CONTROL_TEXT.sub(" ", str(text)).split())
    if len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text


def refusal_response(status: int, reason: str, headers: tuple[tuple[str, str], ...] | list = (),
                     server: str | None = None) -> bytes:
    """The bytes of an HTTP refusal: reason in the status line and in a text body,
    both bounded, ``Connection: close``.

    >>> refusal_response(431, "request head larger than 16384 bytes").split(b"\\r\\n")[0]
    b'HTTP/1.1 431 request head larger than 16384 bytes'
    """
    line = one_line(reason, MAX_REASON_CHARACTERS) or STATUS_PHRASES.get(status, "Refused")
    body = (one_line(reason, MAX_BODY_CHARACTERS) + "\n").encode("utf-8")
    head = f"HTTP/1.1 {status} {line}\r\n"
    if server:
        head += f"Server: {server}\r\n"
    head += (
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
    )
    for name, value in headers or ():
        head += f"{name}: {value}\r\n"
    return head.encode("utf-8") + b"\r\n" + body


__all__ = [
    "body_refusal",
    "MAX_BODY_CHARACTERS",
    "MAX_REASON_CHARACTERS",
    "Refusal",
    "RequestHead",
    "parse_request_head",
    "read_request_head",
    "refusal_response",
    "request_refusal",
    "websocket_refusal",
]
