"""The backend-neutral API a subprotocol is written against.

A :class:`Handler` is created per connection once its subprotocol has been
negotiated. It talks to the peer through ``self.connection`` (a
:class:`Connection`) and never imports a reactor or an event loop, so the same
class runs on Twisted and on asyncio. Timers and futures go through txaio.

Example::

    class Shout(Handler):
        subprotocol = "example.shout"

        def on_message(self, payload, is_binary):
            if is_binary:
                self.connection.close(1003, "text only")
            else:
                self.connection.send_text(payload.decode().upper())
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Connection(Protocol):
    """What a handler can see and do; wskit's protocol classes implement it."""

    @property
    def peer(self) -> str: ...

    @property
    def subprotocol(self) -> str | None: ...

    @property
    def extensions(self) -> list[str]: ...

    @property
    def compression(self) -> dict[str, Any] | None: ...

    @property
    def served_subprotocol(self) -> str | None: ...

    @property
    def app(self) -> Any: ...

    @property
    def is_connected(self) -> bool: ...

    def send_text(self, text: str) -> None: ...

    def send_binary(self, data: bytes) -> None: ...

    def send_prepared(self, prepared: Any) -> None: ...

    def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Handler:
    """Base class for one connection of one subprotocol.

    Override what you need; every method may return a coroutine or a Deferred.
    An exception (or failed future) closes the connection with 1011.
    """

    subprotocol: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, connection: Connection):
        self.connection = connection

    def on_open(self) -> Any:
        """The handshake completed."""

    def on_message(self, payload: bytes, is_binary: bool) -> Any:
        """A whole message arrived (Autobahn has reassembled fragments and checked UTF-8)."""

    def on_close(self, was_clean: bool, code: int | None, reason: str | None) -> Any:
        """The connection is gone."""
