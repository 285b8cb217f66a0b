"""Who may connect and how fast they may talk: the server's admission and rate-limit policy.

One :class:`ServerGuard` per app (``app.guard``) holds the token verifier,
the authorizer the subprotocols ask, and the count of open connections per
peer address. Each server connection gets a :class:`ConnectionGuard` when
TCP connects; the protocol mixin calls it at three points only:

- the handshake (:meth:`ConnectionGuard.admit`): per-address connection
  limit (503; the connection counts against its address from then on), then
  the token (401); returns the connection's identity;
- every message (:meth:`ConnectionGuard.message`): the rate limits;
- the end of the connection (:meth:`ConnectionGuard.detach`).

Backend-neutral: timers run on the factory's own reactor or loop
(``factory._timer_clock()``), so the in-memory tier drives them on a fake clock.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

from autobahn.websocket.types import ConnectionDeny

from .auth import Authorizer, Identity, InvalidToken, TokenVerifier, token_from_request
from .ratelimit import CLOSE, THROTTLE, Throttle
from .settings import ServerSettings

CLOSE_POLICY_VIOLATION = 1008
REALM = "wskit"


class Unauthorized(ConnectionDeny):
    """A handshake refused with 401 and a ``WWW-Authenticate`` challenge (RFC 6750 section 3)."""

    def __init__(self, reason: str, error: str | None = "invalid_token"):
        super().__init__(401, reason)
        challenge = f'Bearer realm="{REALM}"'
        if error:
            # RFC 6750 3.1: no error code when the request carried no token at all.
            description = reason.replace('"', "'").replace("\\", "/")
            challenge += f', error="{error}", error_description="{description}"'
        self.headers = (("WWW-Authenticate", challenge),)


def peer_address(peer: str) -> str | None:
    """The IP address of an Autobahn peer string (``tcp4:1.2.3.4:5678``), None for other transports.

    >>> peer_address("tcp4:127.0.0.1:50312"), peer_address("tcp6:::1:50312"), peer_address("unix:/tmp/s")
    ('127.0.0.1', '::1', None)
    """
    kind, _, rest = (peer or "").partition(":")
    if kind not in ("tcp4", "tcp6"):
        return None
    host = rest.rpartition(":")[0].strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:1.2.3.4 is 1.2.3.4
    return str(mapped or address)


class ServerGuard:
    """The app-wide part: verifier, authorizer, open connections per address."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        auth = settings.auth
        self.verifier: TokenVerifier | None = TokenVerifier(auth) if auth.enabled else None
        self.authorizer = Authorizer(auth)
        self.max_per_address = settings.limits.max_connections_per_ip
        self.rate_limits = settings.rate_limits
        self.per_address: dict[str, int] = {}

    @property
    def short_secret(self) -> bool:
        """True when the HMAC secret is shorter than RFC 7518 asks (worth a warning at startup)."""
        return bool(self.verifier and self.verifier.short_secret)

    def attach(self, connection: Any, clock: tuple[Callable[[], float], Callable[..., Any]]) -> ConnectionGuard:
        return ConnectionGuard(self, connection, clock)


class ConnectionGuard:
    """One connection's admission, rate limits and token expiry."""

    def __init__(self, server: ServerGuard, connection: Any,
                 clock: tuple[Callable[[], float], Callable[..., Any]]):
        self.server = server
        self.connection = connection
        self.seconds, self.call_later = clock
        self.address = peer_address(connection.peer)
        self.counted = False  # admitted, so counted against its address
        limits = server.rate_limits
        self.throttle = Throttle(limits, self.seconds()) if limits.enabled else None
        self.throttled_once = False
        self.refused = False  # closing for the rate limit: further messages are not handled
        self._resume_call: Any = None
        self._expiry_call: Any = None
        self._detached = False

    # -- the handshake ------------------------------------------------------------------

    def admit(self, request: Any) -> Identity | None:
        """Raise ConnectionDeny (503, 401) or return the identity (None with authentication off)."""
        server = self.server
        cap = server.max_per_address
        if cap and self.address is not None:
            # Counts connections past this check, whose handshake goes on or has completed
            # (connections still sending their request are bounded by the open timeout).
            if server.per_address.get(self.address, 0) >= cap:
                raise ConnectionDeny(503, f"too many connections from {self.address} (at most {cap} per address)")
            server.per_address[self.address] = server.per_address.get(self.address, 0) + 1
            self.counted = True
        verifier = server.verifier
        if verifier is None:
            return None
        token = token_from_request(request.headers, request.params, server.settings.auth.query_token)
        if token is None:
            where = "Authorization: Bearer <token>"
            if server.settings.auth.query_token:
                where += " or ?token=<token>"
            raise Unauthorized(f"authentication required: send {where}", error=None)
        try:
            identity = verifier.verify(token)
        except InvalidToken as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        if server.settings.auth.close_on_expiry and identity.expires is not None:
            # exp is wall-clock time; the timer runs on the factory's clock.
            delay = identity.expires + server.settings.auth.leeway - time.time()
            self._expiry_call = self.call_later(max(0.0, delay), self._expired)
        return identity

    def _expired(self) -> None:
        self._expiry_call = None
        connection = self.connection
        if connection.is_connected:
            connection.log.info("wskit: closing peer={peer}: token expired", peer=connection.peer,
                                wskit_event="token-expired")
            connection.close(CLOSE_POLICY_VIOLATION, "token expired")

    # -- messages -----------------------------------------------------------------------

    def message(self, payload: bytes, is_binary: bool, deliver: Callable[[bytes, bool], None]) -> None:
        """Hand a message on to ``deliver`` unless the rate limit refuses it."""
        throttle = self.throttle
        if throttle is None:
            deliver(payload, is_binary)
            return
        if self.refused:
            return
        connection = self.connection
        verdict = throttle.admit(len(payload), self.seconds())
        if verdict.action == CLOSE:
            self.refused = True
            connection.log.warn(
                "wskit: closing peer={peer}: more than a burst over the {limit} rate limit (1008)",
                peer=connection.peer, limit=verdict.limit, wskit_event="rate-limit",
            )
            connection.close(CLOSE_POLICY_VIOLATION, f"{verdict.limit} rate limit exceeded")
            return
        deliver(payload, is_binary)
        if verdict.action == THROTTLE and connection.is_connected:
            self._pause(verdict.wait, verdict.limit)

    def _pause(self, wait: float, limit: str) -> None:
        connection = self.connection
        if not self.throttled_once:
            self.throttled_once = True
            connection.log.info(
                "wskit: throttling peer={peer}: over the {limit} rate limit, reading paused for {wait:.2f} s",
                peer=connection.peer, limit=limit, wait=wait, wskit_event="throttled",
            )
        connection.pause_reading()
        if self._resume_call is None:
            self._resume_call = self.call_later(wait, self._resume)

    def _resume(self) -> None:
        self._resume_call = None
        if self._detached or not self.connection.is_connected:
            return
        wait = self.throttle.wait(self.seconds()) if self.throttle is not None else 0.0
        if wait > 0:  # float rounding, or a later message deepened the debt
            self._resume_call = self.call_later(wait, self._resume)
            return
        self.connection.resume_reading()

    # -- the end --------------------------------------------------------------------------

    def detach(self) -> None:
        if self._detached:
            return
        self._detached = True
        if self.counted:
            self.counted = False
            counts = self.server.per_address
            left = counts.get(self.address, 0) - 1
            if left > 0:
                counts[self.address] = left
            else:
                counts.pop(self.address, None)
        for call in (self._resume_call, self._expiry_call):
            if call is not None:
                try:
                    call.cancel()
                except Exception:  # a Twisted DelayedCall that already ran
                    pass
        self._resume_call = self._expiry_call = None


__all__ = ["ConnectionGuard", "ServerGuard", "Unauthorized", "peer_address"]
