"""Client-side protocols shipped with wskit (installed as ``wskit.clients``)."""

from __future__ import annotations

from .echo import EchoClientHandler

__all__ = ["EchoClientHandler"]
