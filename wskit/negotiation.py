"""Subprotocol registry and negotiation: pure functions, no I/O.

A server holds a :class:`SubprotocolRegistry` in its own preference order. For
each handshake :func:`negotiate_subprotocol` picks one name from the client's
``Sec-WebSocket-Protocol`` offer, or says why none fits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import NegotiationError, NoCommonSubprotocol, NoDefaultSubprotocol  # noqa: F401  (re-exported)

# RFC 6455 4.1: subprotocol names are HTTP tokens.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def is_valid_subprotocol_name(name: str) -> bool:
    return bool(_TOKEN.match(name))


def negotiate_subprotocol(
    offered: Sequence[str],
    supported: Sequence[str],
    prefer: Literal["server", "client"] = "server",
) -> str | None:
    """Pick the subprotocol to speak.

    Returns ``None`` when the client offered nothing (serve the default), the
    chosen name otherwise; raises :class:`NoCommonSubprotocol` when the client
    offered names and none is supported.

    >>> negotiate_subprotocol(["b", "a"], ["a", "b"])
    'a'
    >>> negotiate_subprotocol(["b", "a"], ["a", "b"], prefer="client")
    'b'
    """
    if not offered:
        return None
    if prefer == "client":
        supported_set = set(supported)
        for name in offered:
            if name in supported_set:
                return name
    else:
        offered_set = set(offered)
        for name in supported:
            if name in offered_set:
                return name
    raise NoCommonSubprotocol(offered, supported)


HandlerFactory = Callable[[Any], Any]


@dataclass(frozen=True)
class Subprotocol:
    """One entry of a registry: a name and what builds its per-connection handler."""

    name: str
    handler: HandlerFactory
    description: str = ""


class SubprotocolRegistry:
    """Subprotocols a server speaks, in its preference order.

    ``handler`` is called with the connection once the subprotocol is chosen
    and returns the object that receives ``on_open``/``on_message``/``on_close``
    (a :class:`wskit.Handler` subclass is the usual choice).
    """

    def __init__(self, entries: Iterable[Subprotocol] = ()):
        self._entries: dict[str, Subprotocol] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: Subprotocol) -> None:
        if not is_valid_subprotocol_name(entry.name):
            raise ValueError(f"invalid subprotocol name {entry.name!r}: must be an HTTP token")
        self._entries[entry.name] = entry

    def register(self, name: str, handler: HandlerFactory, description: str = "") -> None:
        self.add(Subprotocol(name, handler, description))

    def restricted(self, names: Iterable[str]) -> SubprotocolRegistry:
        """A registry of only ``names``, in the order given; unknown names raise KeyError."""
        picked = []
        for name in names:
            if name not in self._entries:
                raise KeyError(
                    f"unknown subprotocol {name!r} (known: {', '.join(self._entries)})"
                )
            picked.append(self._entries[name])
        return SubprotocolRegistry(picked)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> Subprotocol:
        return self._entries[name]

    def __iter__(self) -> Iterator[Subprotocol]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def select(
        self,
        offered: Sequence[str],
        default: str | None,
        prefer: Literal["server", "client"] = "server",
    ) -> tuple[str | None, Subprotocol]:
        """Return ``(name to answer with, entry to serve)`` for a client's offer.

        The answered name is ``None`` when the client offered nothing and the
        default protocol serves it.
        """
        chosen = negotiate_subprotocol(offered, self.names, prefer)
        if chosen is not None:
            return chosen, self._entries[chosen]
        if default is None or default not in self._entries:
            raise NoDefaultSubprotocol(self.names)
        return None, self._entries[default]
