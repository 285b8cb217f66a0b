"""A server's shared state: settings, subprotocol registry, hub, live connections.

One :class:`WebSocketApp` backs one listening endpoint (or one mounted
Resource) on either backend; handlers reach it as ``connection.app``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .compression import check_codecs
from .hub import Hub, InProcessHub
from .negotiation import SubprotocolRegistry
from .origin import OriginPolicy
from .settings import ServerSettings, SettingsError

# What a WebSocketApp serves when given no registry: the shipped subprotocols.
SHIPPED_APPLICATIONS = "wskit.protocols"


class WebSocketApp:
    """Everything connections of one server share.

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
        self.connections: set[Any] = set()
        self._started = False

    def start(self) -> None:
        """Start the services' background work; the server calls this once listening."""
        if not self._started:
            self._started = True
            for svc in self.services.values():
                start = getattr(svc, "start", None)
                if callable(start):
                    start()

    def stop(self) -> None:
        """Stop the services' background work; the server calls this on shutdown."""
        if self._started:
            self._started = False
            for svc in self.services.values():
                stop = getattr(svc, "stop", None)
                if callable(stop):
                    stop()

    def connection_opened(self, connection: Any) -> None:
        self.connections.add(connection)

    def connection_closed(self, connection: Any) -> None:
        self.connections.discard(connection)

    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> list[Any]:
        """Start the closing handshake on every open connection.

        Returns the connections' ``is_closed`` futures, so a caller can wait
        (bounded by the close-handshake timeout) before the loop stops.
        """
        closing = []
        for connection in list(self.connections):
            if connection.is_connected:
                connection.close(code, reason)
                closing.append(connection.is_closed)
        return closing
