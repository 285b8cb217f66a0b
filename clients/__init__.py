"""Client side of wskit (installed as ``wskit.clients``).

:func:`connect` opens an awaitable :class:`ClientConnection` on either backend;
:class:`ChatClient`, :class:`PubSubClient` and :class:`RPCClient` speak the
shipped subprotocols over one. :class:`EchoClientHandler` is the Autobahn
TestSuite's client-side testee.
"""

from __future__ import annotations

from .base import AppClient, RequestError
from .chat import ChatClient
from .connect import connect, detect_backend
from .connection import ClientConnection, ConnectionClosed
from .echo import EchoClientHandler
from .pubsub import PubSubClient
from .rpc import RPCClient

__all__ = [
    "AppClient",
    "ChatClient",
    "ClientConnection",
    "ConnectionClosed",
    "EchoClientHandler",
    "PubSubClient",
    "RPCClient",
    "RequestError",
    "connect",
    "detect_backend",
]
