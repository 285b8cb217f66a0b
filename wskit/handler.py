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
    """The one door between application code and a connection, on both sides and both backends.

    wskit's protocol classes implement it once (``wskit.protocol.ConnectionMixin``);
    handlers, broadcasts, hub subscribers and clients use nothing else.

    Sending returns False when nothing was sent: the connection is not open,
    or its peer was dropped for having more than ``max_buffered_bytes`` unsent
    (a slow consumer; logged). ``writable``/``buffered_amount``/``when_writable()``
    come from the transport's own flow-control signals, so a producer can wait
    for the peer instead of queueing without bound.
    """

    @property
    def peer(self) -> str: ...

    @property
    def subprotocol(self) -> str | None: ...

    @property
    def extensions(self) -> list[str]: ...

    @property
    def compression(self) -> dict[str, Any] | None: ...

    @property
    def compress_threshold(self) -> int: ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def writable(self) -> bool: ...

    @property
    def buffered_amount(self) -> int: ...

    def send_message(self, payload: bytes, is_binary: bool) -> bool: ...

    def send_text(self, text: str) -> bool: ...

    def send_binary(self, data: bytes) -> bool: ...

    def send_prepared(self, prepared: Any) -> bool: ...

    def send_frame(self, frame: bytes, payload_length: int) -> bool: ...

    def close(self, code: int = 1000, reason: str | None = None) -> None: ...

    def abort(self) -> None: ...

    def when_writable(self) -> Any: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@runtime_checkable
class ServerConnection(Connection, Protocol):
    """A server-side connection also knows its server (``app``), what it serves
    and who it belongs to (``identity``: the verified claims of the client's
    token, a :class:`wskit.auth.Identity`; None with authentication off)."""

    @property
    def app(self) -> Any: ...

    @property
    def served_subprotocol(self) -> str | None: ...

    @property
    def identity(self) -> Any: ...


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
