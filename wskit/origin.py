"""Origin policy against cross-site WebSocket hijacking (pure, no I/O).

Browsers always send ``Origin``; other clients usually do not. By default a
handshake is allowed when it carries no Origin, when the Origin is the
server's own (same scheme-less host and port as the ``Host`` header), or when
the Origin's host is a loopback address. Anything else gets HTTP 403 unless it
matches an ``allowed_origins`` entry (``*`` allows every origin; entries may
use ``*`` wildcards, e.g. ``https://*.example.com``).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from autobahn.websocket.types import ConnectionDeny

LOOPBACK_NAMES = {"localhost"}


def _split_host_port(hostport: str, default_port: int | None) -> tuple[str, int | None]:
    hostport = hostport.strip().lower()
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
    else:
        host, port = hostport, ""
    return host, int(port) if port.isdigit() else default_port


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OriginPolicy:
    """Decides whether a handshake's ``Origin`` may connect.

    >>> OriginPolicy().allows("http://evil.example.com", "127.0.0.1:9000")
    False
    >>> OriginPolicy().allows("http://127.0.0.1:9000", "127.0.0.1:9000")
    True
    >>> OriginPolicy(["https://*.example.com"]).allows("https://app.example.com", "ws.example.com")
    True
    """

    def __init__(self, allowed: Iterable[str] = (), allow_loopback: bool = True):
        self.allowed = tuple(a.strip().lower().rstrip("/") for a in allowed)
        self.allow_all = "*" in self.allowed
        self.allow_loopback = allow_loopback

    def allows(self, origin: str | None, host_header: str | None, is_secure: bool = False) -> bool:
        if not origin:
            return True  # not a browser: nothing to hijack
        origin = origin.strip().lower().rstrip("/")
        if self.allow_all:
            return True
        if any(fnmatch.fnmatchcase(origin, pattern) for pattern in self.allowed):
            return True
        if origin == "null":
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        origin_port = parts.port or (443 if parts.scheme == "https" else 80)
        if self.allow_loopback and is_loopback_host(parts.hostname):
            return True
        if host_header:
            host, port = _split_host_port(host_header, 443 if is_secure else 80)
            if host == parts.hostname and port == origin_port:
                return True
        return False

    def check(self, origin: str | None, host_header: str | None, is_secure: bool = False) -> None:
        """Raise ``ConnectionDeny(403)`` for an origin this policy refuses."""
        if not self.allows(origin, host_header, is_secure):
            raise ConnectionDeny(
                403,
                f"origin {origin} not allowed (allow it with --allow-origin {origin})",
            )
