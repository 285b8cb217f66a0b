"""Host and Origin policies against DNS rebinding and cross-site WebSocket hijacking (pure, no I/O).

**Host.** A page on ``http://evil.example:9000`` whose name the attacker
re-points at 127.0.0.1 (DNS rebinding) reaches a server on localhost with
``Host: evil.example:9000`` and a matching ``Origin``: the origin check alone
would call it same-origin. So every request (WebSocket handshake or page) must
name a host the server answers to (:class:`HostPolicy`): a loopback name or
address, the address it is bound to (any IP address when bound to all
interfaces, since rebinding needs a name), or an ``allowed_hosts`` entry.
Anything else gets HTTP 403.

**Origin.** Browsers always send ``Origin``; other clients usually do not. By
default a handshake is allowed when it carries no Origin, when the Origin is
the server's own (same scheme-less host and port as the ``Host`` header, which
the host policy has allowed), or when the Origin's host is a loopback address.
Anything else gets HTTP 403 unless it matches an ``allowed_origins`` entry
(``*`` allows every origin; entries may use ``*`` wildcards, e.g.
``https://*.example.com``). The opaque origin ``null`` (sandboxed frames,
``file:`` pages) is foreign unless ``null`` (or ``*``) is listed.
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
    # isdecimal() alone would let through other scripts' digits ("²" passes isdigit, not int()).
    return host, int(port) if port.isascii() and port.isdecimal() else default_port


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
        try:
            parts = urlsplit(origin)
            origin_port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # a port out of range or not a number, an unclosed IPv6 bracket
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
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
            what = "the opaque origin of a sandboxed frame or a file; " if origin.strip().lower() == "null" else ""
            raise ConnectionDeny(
                403,
                f"origin {origin} not allowed ({what}allow it with --allow-origin {origin})",
            )


# Bind addresses that mean "every interface": the names the machine answers to are unknown.
WILDCARD_BIND = frozenset({"", "0.0.0.0", "::"})


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class HostPolicy:
    """Decides whether a request's ``Host`` names this server (DNS rebinding defence).

    ``bind_host`` is the address the server listens on; None or a wildcard
    (``0.0.0.0``, ``::``) when that is every interface or unknown (an endpoint
    string, a Resource in someone else's Site). Always allowed: loopback names
    and addresses (``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1``) and
    the bind address; with a wildcard bind, any IP address (a rebinding
    attack needs a name it controls). ``allowed`` adds names, with ``*``
    wildcards (``*.example.com``: the subdomains, not example.com itself);
    ``*`` allows any Host. A request without ``Host`` passes here (the
    WebSocket handshake refuses it with 400).

    >>> policy = HostPolicy(bind_host="127.0.0.1")
    >>> policy.allows("localhost:9000"), policy.allows("127.0.0.1:9000"), policy.allows("evil.example:9000")
    (True, True, False)
    >>> HostPolicy(["*.example.com"], bind_host="0.0.0.0").allows("ws.example.com")
    True
    >>> HostPolicy(bind_host="0.0.0.0").allows("192.0.2.7:9000")
    True
    """

    def __init__(self, allowed: Iterable[str] = (), bind_host: str | None = "127.0.0.1"):
        self.allowed = tuple(a.strip().lower().rstrip(".") for a in allowed if a.strip())
        self.allow_all = "*" in self.allowed
        bind = (bind_host or "").strip().strip("[]").lower()
        self.wildcard_bind = bind in WILDCARD_BIND
        self.bind_host = None if self.wildcard_bind else bind
        self._bind_ip = None if self.bind_host is None else _ip(self.bind_host)

    def allows(self, host_header: str | None) -> bool:
        if host_header is None:
            return True
        host, _port = _split_host_port(host_header, None)
        host = host.rstrip(".")  # "localhost." is localhost
        if not host:
            return False
        if self.allow_all or is_loopback_host(host):
            return True
        address = _ip(host)
        if address is not None:
            return self.wildcard_bind or address == self._bind_ip
        if host == self.bind_host:
            return True
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.allowed)

    def reason(self, host_header: str) -> str:
        host, _port = _split_host_port(host_header, None)
        shown = host or "(empty)"
        return (f"host {shown} not allowed: this server answers to loopback names"
                + (f", {self.bind_host}" if self.bind_host and not is_loopback_host(self.bind_host) else "")
                + (f" and {', '.join(self.allowed)}" if self.allowed else "")
                + (f" (allow it with --allow-host {host})" if host else ""))

    def check(self, host_header: str | None) -> None:
        """Raise ``ConnectionDeny(403)`` for a Host this policy refuses."""
        if not self.allows(host_header):
            raise ConnectionDeny(403, self.reason(host_header or ""))

    def with_unknown_bind(self) -> HostPolicy:
        """The same names for a server whose listening address is not known here
        (a Resource mounted in another Site): any IP address then passes."""
        return HostPolicy(self.allowed, bind_host=None)
