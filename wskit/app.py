"""A server's shared state: settings, subprotocol registry, hub, live connections.

One :class:`WebSocketApp` backs one listening endpoint (or one mounted
Resource) on either backend; handlers reach it as ``connection.app``.
"""

from __future__ import annotations

import importlib
from typing import Any

import txaio

from .compression import check_codecs
from .errors import HubUnavailable
from .guard import ServerGuard
from .hub import Hub, InProcessHub
from .negotiation import SubprotocolRegistry
from .origin import HostPolicy, OriginPolicy
from .settings import ServerSettings, SettingsError

# What a WebSocketApp serves when given no registry: the shipped subprotocols.
SHIPPED_APPLICATIONS = "wskit.protocols"


class WebSocketApp:
    """Everything connections of one server share.

    The hub is ``hub`` if given, else a :class:`wskit.redis_hub.RedisHub` when
    ``settings.hub`` names Redis, else an :class:`~wskit.hub.InProcessHub`; it
    starts and stops with the server.

    ``registry`` holds the subprotocols served; without one, the app serves
    the shipped subprotocols (``wskit.protocols``, looked up when the app is
    created: the core imports no application). ``services`` holds the apps'
    shared state by name; a service with ``start()``/``stop()`` methods (the
    demo ticker, say) runs while the server listens.

    >>> app = WebSocketApp(ServerSettings(subprotocols=("wskit.echo",)))
    >>> app.registry.names
    ('wskit.echo',)
    """

    def __init__(
        self,
        settings: ServerSettings | None = None,
        registry: SubprotocolRegistry | None = None,
        hub: Hub | None = None,
    ):
        self.settings = (settings or ServerSettings()).validate()
        if self.settings.workers != 1:
            raise SettingsError(
                f"workers={self.settings.workers}: worker processes are started by a supervisor "
                "(wskit serve --workers, twistd wskit --workers, wskit.workers); a server in this "
                "process is one worker"
            )
        if self.settings.compression.enabled:
            check_codecs(self.settings.compression)
        if hub is None and self.settings.hub:
            from .redis_hub import RedisHub

            hub = RedisHub(self.settings.hub)
        self.hub: Hub = hub if hub is not None else InProcessHub()
        self.services: dict[str, Any] = {}
        if registry is None:
            registry = importlib.import_module(SHIPPED_APPLICATIONS).build_registry(self)
        if self.settings.subprotocols:
            registry = registry.restricted(self.settings.subprotocols)
        default = self.settings.default_subprotocol
        if default is not None and default not in registry:
            # Serving a subset without the default: clients must name a subprotocol.
            self.settings = self.settings.replace(default_subprotocol=None)
        self.registry = registry
        self.origin_policy = OriginPolicy(self.settings.allowed_origins)
        # Tokens, permissions, per-address and rate limits (reads key files: SettingsError here).
        self.guard = ServerGuard(self.settings)
        self.authorizer = self.guard.authorizer
        # An endpoint string may listen anywhere: then the bind address is unknown.
        bind = None if self.settings.endpoint else self.settings.host
        self.host_policy = HostPolicy(self.settings.allowed_hosts, bind_host=bind)
        self.connections: set[Any] = set()
        self._started = False

    def start(self) -> None:
        """Start the services' background work; the server calls this once listening."""
        if not self._started:
            self._started = True
            self._announce_auth()
            start_hub = getattr(self.hub, "start", None)
            if callable(start_hub):
                start_hub()
            for svc in self.services.values():
                start = getattr(svc, "start", None)
                if callable(start):
                    start()

    async def hub_ready(self, shutdown: Any) -> None:
        """Wait until a hub shared across processes is connected. If its first
        attempt fails, ``await shutdown()`` and raise :class:`~wskit.errors.HubUnavailable`
        (a server announces it is serving only once its hub is)."""
        if getattr(self.hub, "shared", False):
            try:
                await self.hub.ready()
            except HubUnavailable:
                await shutdown()
                raise

    def _announce_auth(self) -> None:
        verifier = self.guard.verifier
        if verifier is None:
            return
        log = txaio.make_logger()
        log.info("wskit: authentication on: tokens signed with {algorithms} required",
                 algorithms=", ".join(verifier.algorithms), wskit_event="auth")
        if verifier.short_secret:
            log.warn("wskit: the auth secret is shorter than 32 bytes: anyone who sees one token can "
                     "guess it offline; use a long random secret (--auth-secret-file)", wskit_event="auth")

    def stop(self) -> None:
        """Stop the services' background work; the server calls this on shutdown."""
        if self._started:
            self._started = False
            for svc in self.services.values():
                stop = getattr(svc, "stop", None)
                if callable(stop):
                    stop()
            stop_hub = getattr(self.hub, "stop", None)
            if callable(stop_hub):
                stop_hub()

    def connection_opened(self, connection: Any) -> None:
        self.connections.add(connection)

    def connection_closed(self, connection: Any) -> None:
        self.connections.discard(connection)

    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> list[Any]:
        """Start the closing handshake on every open connection.

        Returns one future per connection the app still tracks (open, or
        closing and not yet gone), each firing once that connection is gone
        and its close line is logged, so a caller can wait (bounded by
        :func:`wskit.protocol.closing_deadline`, then :meth:`abort_all`)
        before the loop stops.
        """
        gone = []
        for connection in list(self.connections):
            if connection.is_connected:
                connection.close(code, reason)
            gone.append(connection.is_gone)
        return gone

    def abort_all(self) -> int:
        """Drop every connection still tracked without waiting (the end of a shutdown's
        grace period); returns how many were aborted. Each is logged once its
        transport reports the loss."""
        connections = list(self.connections)
        for connection in connections:
            connection.abort()
        return len(connections)
