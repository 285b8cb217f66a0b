# ruff: noqa: F401
"""wskit: real-time WebSocket servers and clients on Autobahn|Python.

The public surface is named here and imported on first use, so ``import
wskit`` imports no backend, no client and no shipped subprotocol. Backend
classes live in :mod:`wskit.twisted` and :mod:`wskit.asyncio` (import the one
you run on: importing selects the event loop for txaio); shipped subprotocols
in :mod:`wskit.protocols`, clients in :mod:`wskit.clients`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "WebSocketApp": "wskit.app",
    "Broadcast": "wskit.broadcast",
    "Connection": "wskit.handler",
    "Handler": "wskit.handler",
    "ServerConnection": "wskit.handler",
    "Hub": "wskit.hub",
    "InProcessHub": "wskit.hub",
    "RedisHub": "wskit.redis_hub",
    "RPCService": "wskit.jsonrpc",
    "SubprotocolRegistry": "wskit.negotiation",
    "negotiate_subprotocol": "wskit.negotiation",
    "OriginPolicy": "wskit.origin",
    "Serializer": "wskit.serializers",
    "get_serializer": "wskit.serializers",
    "run": "wskit.runner",
    "AppSettings": "wskit.settings",
    "AuthSettings": "wskit.settings",
    "RateLimitSettings": "wskit.settings",
    "Identity": "wskit.auth",
    "issue_token": "wskit.auth",
    "ClientSettings": "wskit.settings",
    "CompressionSettings": "wskit.settings",
    "LimitSettings": "wskit.settings",
    "ReconnectSettings": "wskit.settings",
    "MetricsSettings": "wskit.settings",
    "ServerSettings": "wskit.settings",
    "TimeoutSettings": "wskit.settings",
    "TLSSettings": "wskit.settings",
    # errors
    "WskitError": "wskit.errors",
    "ConnectionClosed": "wskit.errors",
    "DecodeError": "wskit.errors",
    "HandshakeError": "wskit.errors",
    "HubUnavailable": "wskit.errors",
    "ListenError": "wskit.errors",
    "NegotiationError": "wskit.errors",
    "NoCommonSubprotocol": "wskit.errors",
    "RequestError": "wskit.errors",
    "SettingsError": "wskit.errors",
    "RPCError": "wskit.jsonrpc",
    "InvalidParams": "wskit.jsonrpc",
    # clients (the app layer)
    "connect": "wskit.clients",
    "ClientConnection": "wskit.clients",
    "ChatClient": "wskit.clients",
    "PubSubClient": "wskit.clients",
    "RPCClient": "wskit.clients",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wskit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover  # noqa: F401
    from .app import WebSocketApp
    from .auth import Identity, issue_token
    from .broadcast import Broadcast
    from .clients import ChatClient, ClientConnection, PubSubClient, RPCClient, connect
    from .errors import (
        ConnectionClosed,
        DecodeError,
        HandshakeError,
        HubUnavailable,
        ListenError,
        NegotiationError,
        NoCommonSubprotocol,
        RequestError,
        SettingsError,
        WskitError,
    )
    from .handler import Connection, Handler, ServerConnection
    from .hub import Hub, InProcessHub
    from .redis_hub import RedisHub
    from .jsonrpc import InvalidParams, RPCError, RPCService
    from .negotiation import SubprotocolRegistry, negotiate_subprotocol
    from .origin import OriginPolicy
    from .runner import run
    from .serializers import Serializer, get_serializer
    from .settings import (
        AppSettings,
        AuthSettings,
        ClientSettings,
        CompressionSettings,
        LimitSettings,
        RateLimitSettings,
        ReconnectSettings,
        MetricsSettings,
        ServerSettings,
        TimeoutSettings,
        TLSSettings,
    )
