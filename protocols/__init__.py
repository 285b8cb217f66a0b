"""Server-side subprotocols shipped with wskit (installed as ``wskit.protocols``).

:func:`build_registry` returns every shipped subprotocol in the server's
default preference order: for each app its newest version first and, within a
version, msgpack before json (see docs/protocols.md, "Preference order"), then
``wskit.echo`` last: it serves clients that offer nothing, and a client that
offers echo beside a real app protocol means the app protocol.
"""

from __future__ import annotations

from typing import Any

from wskit.negotiation import SubprotocolRegistry
from wskit.serializers import APP_VERSIONS, SERIALIZERS

from .base import SerializedHandler, handler_factory
from .chat import ChatHandler, ChatService
from .echo import EchoHandler
from .pubsub import PubSubHandler, PubSubService
from .rpc import RPCHandler, create_service
from .ticker import demo_ticker_for

SERIALIZER_PREFERENCE = ("msgpack", "json")

DESCRIPTIONS = {
    "chat": "chat rooms: join/leave/say, presence{extra}",
    "pubsub": "publish/subscribe on topics and topic patterns",
    "rpc": "JSON-RPC 2.0: requests, notifications, batches, rpc.discover",
}


def create_services(app: Any) -> dict[str, Any]:
    """The shared state of the shipped apps, created once per app (kept if already there)."""
    settings = app.settings.apps
    services = app.services
    services.setdefault("chat", ChatService(app.hub, settings))
    services.setdefault("pubsub", PubSubService(app.hub, settings))
    services.setdefault("rpc", create_service(settings.max_batch_size))
    if "ticker" not in services:
        ticker = demo_ticker_for(app)
        if ticker is not None:
            services["ticker"] = ticker
    return services


def build_registry(app: Any) -> SubprotocolRegistry:
    registry = SubprotocolRegistry()
    services = create_services(app)
    handlers: dict[str, type[SerializedHandler]] = {"chat": ChatHandler, "pubsub": PubSubHandler,
                                                    "rpc": RPCHandler}
    for name, handler in handlers.items():
        for version in APP_VERSIONS[name]:
            for serializer in SERIALIZER_PREFERENCE:
                extra = ", message ids and history" if version >= 2 else ""
                registry.register(
                    f"wskit.{name}.v{version}.{serializer}",
                    handler_factory(handler, services[name], version, SERIALIZERS[serializer],
                                    app.settings.apps),
                    f"{DESCRIPTIONS[name].format(extra=extra)} ({serializer})",
                )
    registry.register(EchoHandler.subprotocol, EchoHandler, EchoHandler.description)
    return registry


__all__ = [
    "ChatHandler",
    "ChatService",
    "EchoHandler",
    "PubSubHandler",
    "PubSubService",
    "RPCHandler",
    "build_registry",
    "create_services",
]
