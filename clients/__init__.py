"""Client side of wskit (installed as ``wskit.clients``).

:func:`connect` opens an awaitable :class:`ClientConnection` on either backend
(``async for conn in connect(...)``: a new one after each loss, see :class:`Reconnecting`);
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
from .reconnect import Reconnecting
from .rpc import RPCClient

__all__ = [
    "AppClient",
    "ChatClient",
    "ClientConnection",
    "ConnectionClosed",
    "EchoClientHandler",
    "PubSubClient",
    "RPCClient",
    "Reconnecting",
    "RequestError",
    "connect",
    "detect_backend",
]
