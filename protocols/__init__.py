"""Server-side subprotocols shipped with wskit (installed as ``wskit.protocols``).

:func:`build_registry` returns every shipped subprotocol in the server's
default preference order.
"""

from __future__ import annotations

from typing import Any

from wskit.negotiation import SubprotocolRegistry

from .echo import EchoHandler


def build_registry(app: Any) -> SubprotocolRegistry:
    registry = SubprotocolRegistry()
    registry.register(EchoHandler.subprotocol, EchoHandler, EchoHandler.description)
    return registry


__all__ = ["EchoHandler", "build_registry"]
