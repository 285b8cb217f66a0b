"""A server's shared state: settings, subprotocol registry, hub, live connections.

One :class:`WebSocketApp` backs one listening endpoint (or one mounted
Resource) on either backend; handlers reach it as ``connection.app``.
"""

from __future__ import annotations

from typing import Any

from .compression import check_codecs
from .hub import Hub, InProcessHub
from .negotiation import SubprotocolRegistry
from .origin import OriginPolicy
from .settings import ServerSettings


class WebSocketApp:
    """Everything connections of one server share.

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
        if self.settings.compression.enabled:
            check_codecs(self.settings.compression)
        self.hub: Hub = hub if hub is not None else InProcessHub()
        self.services: dict[str, Any] = {}
        if registry is None:
            from .protocols import build_registry

            registry = build_registry(self)
        if self.settings.subprotocols:
            registry = registry.restricted(self.settings.subprotocols)
        default = self.settings.default_subprotocol
        if default is not None and default not in registry:
            # Serving a subset without the default: clients must name a subprotocol.
            self.settings = self.settings.replace(default_subprotocol=None)
        self.registry = registry
        self.origin_policy = OriginPolicy(self.settings.allowed_origins)
        self.connections: set[Any] = set()
        self._ticker: Any = None

    def start(self) -> None:
        """Start background work (the demo ticker); the server calls this once listening."""
        if self._ticker is None:
            from .ticker import demo_ticker_for

            self._ticker = demo_ticker_for(self)
            if self._ticker is not None:
                self._ticker.start()

    def stop(self) -> None:
        """Stop background work; the server calls this on shutdown."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.stop()

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
