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
This module imports no backend (see :mod:`wskit.clients.connect`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import txaio

from wskit.errors import ConnectionClosed, DecodeError
from wskit.handler import Handler
from wskit.serializers import SERIALIZERS, Serializer, serializer_for

NORMAL_CLOSE_CODES = (1000, 1001)


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

    Incoming messages queue until read with :meth:`recv` or ``async for``;
    once ``max_queue`` messages wait unread, the connection stops reading from
    the socket (TCP backpressure on the server) until the queue is half
    drained: the queue never holds more than ``max_queue`` messages.
    Iteration ends when the server closes normally (1000/1001); after any
    other close, :meth:`recv` and iteration raise :class:`ConnectionClosed`
    (a connection handed out by ``async for conn in wskit.connect(...)`` ends
    its iteration quietly at any close: the outer loop decides what follows).
    :meth:`send` fires once the transport can take more (the server reads
    slower than we send: the sender waits).
    """

    def __init__(self, max_queue: int = 16) -> None:
        self.max_queue = max_queue
        self._reading_paused = False
        self.protocol: Any = None
        self._serializer: Serializer | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.was_clean: bool | None = None
        self._is_closed = False
        # close() was called here (not the server's or the network's doing).
        self.close_requested = False
        # Iteration ends without raising at any close (set by the reconnecting loop).
        self.ends_quietly = False
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

    @property
    def closed(self) -> bool:
        """True once the connection is gone (``close_code`` then says how it ended)."""
        return self._is_closed

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
            if (self.max_queue and len(self._queue) >= self.max_queue and not self._reading_paused
                    and not self.close_requested):
                self._reading_paused = True
                self.protocol.pause_reading()

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
        if iterating and (self.ends_quietly or self.close_code in NORMAL_CLOSE_CODES):
            return StopAsyncIteration()
        return ConnectionClosed(self.close_code, self.close_reason)

    # -- the awaitable API ------------------------------------------------------

    def _next(self, iterating: bool) -> Any:
        if self._queue:
            msg, error = self._queue.popleft()
            if self._reading_paused and len(self._queue) < self.max_queue // 2 + 1 and not self._is_closed:
                self._reading_paused = False
                self.protocol.resume_reading()
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
        """Encode ``obj`` with the negotiated serializer and send it.

        The future fires once the transport can take more bytes (at once
        unless the server reads slower than we send), and fails with
        :class:`ConnectionClosed` if the connection is (or gets) closed.
        Without a serializer (``wskit.echo``), ``str`` goes as text, ``bytes``
        as binary and other objects as JSON text.
        """
        try:
            payload, is_binary = self.encode(obj)
        except Exception as exc:
            return txaio.create_future_error(exc)
        return self._send(payload, is_binary)

    def send_raw(self, payload: str | bytes) -> Any:
        """Send a text (``str``) or binary (``bytes``) message as it is, bypassing the serializer."""
        if isinstance(payload, str):
            return self._send(payload.encode("utf-8"), False)
        return self._send(bytes(payload), True)

    def _send(self, payload: bytes, is_binary: bool) -> Any:
        if not self.is_open or not self.protocol.send_message(payload, is_binary):
            return txaio.create_future_error(ConnectionClosed(self.close_code, self.close_reason))
        if self.protocol.writable:
            return txaio.create_future_success(None)
        drained = txaio.create_future()

        def writable(still_open: bool) -> None:
            if still_open:
                txaio.resolve(drained, None)
            else:
                txaio.reject(drained, ConnectionClosed(self.close_code, self.close_reason))

        txaio.add_callbacks(self.protocol.when_writable(), writable, None)
        return drained

    def wait_closed(self) -> Any:
        """A future that fires (with this connection) once the connection is closed."""
        if self._is_closed:
            return txaio.create_future_success(self)
        future = txaio.create_future()
        self._close_watchers.append(future)
        return future

    def close(self, code: int = 1000, reason: str | None = None) -> Any:
        """Start the closing handshake; the future fires once closed.

        Reading resumes if the queue had paused it: the server's close frame
        must be read. Messages still arriving are queued beyond ``max_queue``.
        """
        if self.is_open:
            self.close_requested = True
            self.protocol.close(code, reason)
            if self._reading_paused:
                self._reading_paused = False
                self.protocol.resume_reading()
        return self.wait_closed()

    def __aiter__(self) -> ClientConnection:
        return self

    def __anext__(self) -> Any:
        return self._next(True)

    def __aenter__(self) -> Any:
        return txaio.create_future_success(self)

    def __aexit__(self, *exc: Any) -> Any:
        return self.close()


__all__ = ["ClientConnection", "ConnectionClosed"]
