"""The awaitable client: ``wskit.connect()`` and :class:`ClientConnection`.

One API on both backends. On asyncio the methods return asyncio futures; on
Twisted they return Deferreds, which ``await`` works on inside coroutines run
by ``ensureDeferred`` and which ``yield`` works on in ``inlineCallbacks``::

    # asyncio
    async with wskit.connect("ws://127.0.0.1:9000/ws", subprotocols=["wskit.chat.v2.json"]) as conn:
        await conn.send({"type": "join", "room": "lobby", "nick": "ann"})
        async for msg in conn:
            print(msg)

    # Twisted: the same code inside ``defer.ensureDeferred(main())``, or
    @inlineCallbacks
    def main():
        conn = yield wskit.connect(url, subprotocols=["wskit.rpc.v1.msgpack"])
        yield conn.send({"jsonrpc": "2.0", "method": "time", "id": 1})
        print((yield conn.recv()))

Messages are decoded with the negotiated subprotocol's serializer (``.json``
or ``.msgpack``); without one, text arrives as ``str`` and binary as ``bytes``.
This module imports no backend: :func:`connect` imports ``wskit.twisted`` or
``wskit.asyncio`` when called (importing one selects txaio's framework).
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import txaio

from wskit.handler import Handler
from wskit.serializers import DecodeError, Serializer, serializer_for
from wskit.settings import ClientSettings

NORMAL_CLOSE_CODES = (1000, 1001)


class ConnectionClosed(Exception):
    """The connection is closed; ``code`` and ``reason`` are the close frame's (1006: none arrived)."""

    def __init__(self, code: int | None, reason: str | None = None):
        self.code = code if code is not None else 1006
        self.reason = reason or ""
        super().__init__(f"connection closed: code={self.code}" + (f" reason={self.reason}" if self.reason else ""))


class _Pump(Handler):
    """The wskit handler feeding a :class:`ClientConnection`."""

    def __init__(self, protocol: Any, conn: ClientConnection):
        super().__init__(protocol)
        self.conn = conn
        conn.protocol = protocol

    def on_open(self) -> None:
        self.conn._opened(self.connection)

    def on_message(self, payload: bytes, is_binary: bool) -> None:
        self.conn._received(payload, is_binary)

    def on_close(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        self.conn._closed(was_clean, code, reason)


class ClientConnection:
    """An open client connection with an awaitable API (asyncio futures or Deferreds).

    Incoming messages queue until read with :meth:`recv` or ``async for``.
    Iteration ends when the server closes normally (1000/1001); after any
    other close, :meth:`recv` and iteration raise :class:`ConnectionClosed`.
    """

    def __init__(self) -> None:
        self.protocol: Any = None
        self._serializer: Serializer | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.was_clean: bool | None = None
        self._is_closed = False
        self._queue: deque[tuple[Any, BaseException | None]] = deque()
        self._waiters: deque[tuple[Any, bool]] = deque()
        self._close_watchers: list[Any] = []
        # Callables seeing each decoded message first; one returning True consumes it.
        self.interceptors: list[Callable[[Any], bool]] = []
        self.close_hooks: list[Callable[[ConnectionClosed], None]] = []

    def _make_handler(self, protocol: Any) -> _Pump:
        return _Pump(protocol, self)

    # -- what the connection is ----------------------------------------------

    @property
    def serializer(self) -> Serializer | None:
        """The negotiated subprotocol's serializer; None for raw text/binary (``wskit.echo``)."""
        if self._serializer is None and self.protocol is not None:
            self._serializer = serializer_for(self.protocol.subprotocol)
        return self._serializer

    @property
    def subprotocol(self) -> str | None:
        return self.protocol.subprotocol if self.protocol is not None else None

    @property
    def compression(self) -> dict[str, Any] | None:
        return self.protocol.compression if self.protocol is not None else None

    @property
    def is_open(self) -> bool:
        return self.protocol is not None and not self._is_closed and self.protocol.is_connected

    # -- events from the protocol ---------------------------------------------

    def _opened(self, protocol: Any) -> None:
        self.protocol = protocol
        self._serializer = serializer_for(protocol.subprotocol)

    def decode(self, payload: bytes, is_binary: bool) -> Any:
        if self.serializer is None:
            return bytes(payload) if is_binary else payload.decode("utf-8")
        return self.serializer.decode(payload)

    def encode(self, obj: Any) -> tuple[bytes, bool]:
        if self.serializer is not None:
            return self.serializer.encode(obj), self.serializer.binary
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj), True
        if isinstance(obj, str):
            return obj.encode("utf-8"), False
        from wskit.serializers import SERIALIZERS

        return SERIALIZERS["json"].encode(obj), False

    def _received(self, payload: bytes, is_binary: bool) -> None:
        try:
            msg = self.decode(payload, is_binary)
        except (DecodeError, UnicodeDecodeError) as exc:
            self._put(None, exc)
            return
        for intercept in list(self.interceptors):
            if intercept(msg):
                return
        self._put(msg, None)

    def _put(self, msg: Any, error: BaseException | None) -> None:
        if self._waiters:
            future, _iterating = self._waiters.popleft()
            if error is None:
                txaio.resolve(future, msg)
            else:
                txaio.reject(future, error)
        else:
            self._queue.append((msg, error))

    def _closed(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        if self._is_closed:
            return
        self._is_closed = True
        self.was_clean, self.close_code, self.close_reason = was_clean, code, reason
        closed = ConnectionClosed(code, reason)
        while self._waiters:
            future, iterating = self._waiters.popleft()
            txaio.reject(future, self._end_error(iterating))
        for hook in self.close_hooks:
            hook(closed)
        for future in self._close_watchers:
            txaio.resolve(future, self)
        self._close_watchers.clear()

    def _end_error(self, iterating: bool) -> BaseException:
        if iterating and self.close_code in NORMAL_CLOSE_CODES:
            return StopAsyncIteration()
        return ConnectionClosed(self.close_code, self.close_reason)

    # -- the awaitable API ------------------------------------------------------

    def _next(self, iterating: bool) -> Any:
        if self._queue:
            msg, error = self._queue.popleft()
            return txaio.create_future_success(msg) if error is None else txaio.create_future_error(error)
        if self._is_closed:
            return txaio.create_future_error(self._end_error(iterating))
        future = txaio.create_future()
        self._waiters.append((future, iterating))
        return future

    def recv(self) -> Any:
        """A future of the next message (decoded); fails with ConnectionClosed once closed."""
        return self._next(False)

    def send(self, obj: Any) -> Any:
        """Encode ``obj`` with the negotiated serializer and send it; an already-fired future.

        Without a serializer (``wskit.echo``), ``str`` goes as text, ``bytes`` as
        binary and other objects as JSON text.
        """
        if not self.is_open:
            return txaio.create_future_error(ConnectionClosed(self.close_code, self.close_reason))
        try:
            payload, is_binary = self.encode(obj)
        except Exception as exc:
            return txaio.create_future_error(exc)
        self.protocol.sendMessage(payload, is_binary)
        return txaio.create_future_success(None)

    def send_raw(self, payload: str | bytes) -> Any:
        """Send a text (``str``) or binary (``bytes``) message as it is, bypassing the serializer."""
        if not self.is_open:
            return txaio.create_future_error(ConnectionClosed(self.close_code, self.close_reason))
        if isinstance(payload, str):
            self.protocol.sendMessage(payload.encode("utf-8"), False)
        else:
            self.protocol.sendMessage(bytes(payload), True)
        return txaio.create_future_success(None)

    def wait_closed(self) -> Any:
        """A future that fires (with this connection) once the connection is closed."""
        if self._is_closed:
            return txaio.create_future_success(self)
        future = txaio.create_future()
        self._close_watchers.append(future)
        return future

    def close(self, code: int = 1000, reason: str | None = None) -> Any:
        """Start the closing handshake; the future fires once closed."""
        if self.is_open:
            self.protocol.sendClose(code, reason)
        return self.wait_closed()

    def __aiter__(self) -> ClientConnection:
        return self

    def __anext__(self) -> Any:
        return self._next(True)

    def __aenter__(self) -> Any:
        return txaio.create_future_success(self)

    def __aexit__(self, *exc: Any) -> Any:
        return self.close()


def detect_backend() -> str:
    """Which event loop the caller runs: txaio's choice, a running reactor, a running asyncio loop."""
    if txaio.using_twisted:
        return "twisted"
    if txaio.using_asyncio:
        return "asyncio"
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None and getattr(reactor, "running", False):
        return "twisted"
    try:
        asyncio.get_running_loop()
        return "asyncio"
    except RuntimeError:
        pass
    if reactor is not None:
        return "twisted"
    raise RuntimeError("wskit.connect: cannot tell which event loop to use; call it from a running "
                       "asyncio loop or Twisted reactor, or pass backend='asyncio' or backend='twisted'")


def connect(url: str, subprotocols: Sequence[str] = (), *, backend: str | None = None,
            settings: ClientSettings | None = None, reactor: Any = None) -> Any:
    """Open a client connection; await it, or use it as ``async with``.

    ``subprotocols`` are offered in preference order (they replace those in
    ``settings``). ``backend`` is ``"asyncio"`` or ``"twisted"``; by default
    the running environment decides (see :func:`detect_backend`). On Twisted
    the result is a Deferred (also an async context manager) firing with the
    :class:`ClientConnection`; on asyncio an awaitable async context manager.
    Fails with :class:`wskit.HandshakeError` when the server refuses.
    """
    backend = backend or detect_backend()
    settings = settings or ClientSettings()
    if subprotocols:
        if isinstance(subprotocols, str):
            subprotocols = (subprotocols,)
        settings = settings.replace(subprotocols=tuple(subprotocols))
    if backend == "twisted":
        from ._twisted import connect_twisted

        return connect_twisted(url, settings, reactor)
    if backend == "asyncio":
        from ._asyncio import Connecting

        return Connecting(url, settings)
    raise ValueError(f"backend must be 'twisted' or 'asyncio', not {backend!r}")


__all__ = ["ClientConnection", "ConnectionClosed", "connect", "detect_backend"]
