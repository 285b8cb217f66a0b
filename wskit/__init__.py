"""wskit: real-time WebSocket servers and clients on Autobahn|Python.

The public surface is named here; backend classes live in :mod:`wskit.twisted`
and :mod:`wskit.asyncio` (import the one you run on: importing selects the
event loop for txaio). Shipped subprotocols are in :mod:`wskit.protocols`,
clients in :mod:`wskit.clients`.
"""

from __future__ import annotations

import os as _os

# In a source checkout protocols/ and clients/ sit beside wskit/ (an install
# maps them to wskit.protocols and wskit.clients); make the checkout behave
# the same so `python -m autobahn_suite` and the tests run from the repo root.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "pyproject.toml")) and _os.path.isfile(
    _os.path.join(_checkout, "protocols", "echo.py")
):
    __path__.append(_checkout)  # type: ignore[name-defined]  # noqa: F821

from .app import WebSocketApp  # noqa: E402
from .broadcast import Broadcast  # noqa: E402
from .clients import (  # noqa: E402
    ChatClient,
    ClientConnection,
    ConnectionClosed,
    PubSubClient,
    RequestError,
    RPCClient,
    connect,
)
from .handler import Connection, Handler  # noqa: E402
from .hub import Hub, InProcessHub  # noqa: E402
from .jsonrpc import InvalidParams, RPCError, RPCService  # noqa: E402
from .negotiation import (  # noqa: E402
    NegotiationError,
    NoCommonSubprotocol,
    SubprotocolRegistry,
    UnexpectedSubprotocol,
    negotiate_subprotocol,
)
from .origin import OriginPolicy  # noqa: E402
from .protocol import HandshakeError  # noqa: E402
from .serializers import DecodeError, Serializer, get_serializer  # noqa: E402
from .settings import (  # noqa: E402
    AppSettings,
    ClientSettings,
    CompressionSettings,
    LimitSettings,
    ServerSettings,
    SettingsError,
    TimeoutSettings,
    TLSSettings,
)

__version__ = "0.1.0"

__all__ = [
    "AppSettings",
    "Broadcast",
    "ChatClient",
    "ClientConnection",
    "ClientSettings",
    "CompressionSettings",
    "Connection",
    "ConnectionClosed",
    "DecodeError",
    "Handler",
    "HandshakeError",
    "Hub",
    "InProcessHub",
    "InvalidParams",
    "LimitSettings",
    "NegotiationError",
    "NoCommonSubprotocol",
    "OriginPolicy",
    "PubSubClient",
    "RPCClient",
    "RPCError",
    "RPCService",
    "RequestError",
    "Serializer",
    "ServerSettings",
    "SettingsError",
    "SubprotocolRegistry",
    "TLSSettings",
    "TimeoutSettings",
    "UnexpectedSubprotocol",
    "WebSocketApp",
    "connect",
    "get_serializer",
    "negotiate_subprotocol",
]
