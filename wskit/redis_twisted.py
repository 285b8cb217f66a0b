"""The Redis connection of :class:`wskit.redis_hub.RedisHub` on Twisted.

Two TCP connections (commands, pipelined; subscriptions) over a small
Twisted protocol. Replies are parsed by ``hiredis.Reader`` and commands
encoded by ``hiredis.pack_command``: no RESP code of our own. The reactor is
passed in (nothing here imports ``twisted.internet.reactor``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from twisted.internet import defer, endpoints, protocol

from .redis_hub import LinkLost, RedisAddress, ReplyError

CONNECT_TIMEOUT = 5


class _RespProtocol(protocol.Protocol):
    """One Redis connection: replies answer the commands in order; pushes go to ``on_push``."""

    def __init__(self, on_push: Callable[..., None] | None, on_lost: Callable[[Any], None]):
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._pending: deque[defer.Deferred] = deque()
        self._on_push = on_push
        self._on_lost = on_lost
        self.open = False

    def connectionMade(self) -> None:
        self.open = True

    def send(self, args: tuple) -> defer.Deferred:
        if not self.open:
            return defer.fail(LinkLost("not connected"))
        d: defer.Deferred = defer.Deferred()
        self._pending.append(d)
        self.transport.write(hiredis.pack_command(args))
        return d

    def push(self, args: tuple) -> None:
        if self.open:
            self.transport.write(hiredis.pack_command(args))

    def dataReceived(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            reply = self._reader.gets()
            if reply is False:
                return
            if self._on_push is not None and isinstance(reply, list) and reply:
                self._on_push(*reply)
            elif self._pending:
                d = self._pending.popleft()
                if isinstance(reply, ReplyError):
                    d.errback(reply)
                else:
                    d.callback(reply)

    def connectionLost(self, reason: Any = None) -> None:
        self.open = False
        pending, self._pending = self._pending, deque()
        for d in pending:
            d.errback(LinkLost(reason.getErrorMessage() if reason is not None else "connection lost"))
        self._on_lost(reason.value if reason is not None else LinkLost("connection lost"))


class _OneConnection(protocol.Factory):
    noisy = False  # no "Starting factory" line per connection

    def __init__(self, proto: _RespProtocol):
        self.proto = proto

    def buildProtocol(self, addr: Any) -> _RespProtocol:
        return self.proto


class _Timer:
    def __init__(self, call: Any):
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class TwistedRedisLink:
    """What :class:`~wskit.redis_hub.RedisHub` needs of Redis, on a Twisted reactor."""

    def __init__(self, address: RedisAddress, on_push: Callable[..., None],
                 on_lost: Callable[[Any, Any], None], reactor: Any):
        self.address = address
        self.reactor = reactor
        self._on_lost = on_lost
        self._commands = _RespProtocol(None, self._lost)
        self._subscriber = _RespProtocol(on_push, self._lost)
        self._closed = False

    def _lost(self, reason: Any) -> None:
        if not self._closed:
            self._on_lost(self, reason)

    @defer.inlineCallbacks
    def _open(self, proto: _RespProtocol, select: bool) -> Any:
        address = self.address
        endpoint = endpoints.HostnameEndpoint(self.reactor, address.host, address.port, timeout=CONNECT_TIMEOUT)
        yield endpoint.connect(_OneConnection(proto))
        if address.password is not None:
            auth = ("AUTH", address.username, address.password) if address.username else ("AUTH", address.password)
            yield proto.send(auth)
        if select and address.db:
            yield proto.send(("SELECT", address.db))

    def connect(self) -> defer.Deferred:
        d = defer.gatherResults([self._open(self._commands, True), self._open(self._subscriber, False)],
                                consumeErrors=True)
        d.addErrback(lambda fail: fail.value.subFailure if isinstance(fail.value, defer.FirstError) else fail)
        return d

    def command(self, *args: Any) -> defer.Deferred:
        return self._commands.send(args)

    def pubsub(self, *args: Any) -> None:
        """SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE or PUNSUBSCRIBE (confirmations arrive as pushes)."""
        self._subscriber.push(args)

    def close(self) -> None:
        self._closed = True
        for proto in (self._commands, self._subscriber):
            if proto.transport is not None and proto.open:
                proto.transport.loseConnection()

    def now(self) -> float:
        return self.reactor.seconds()

    def call_later(self, delay: float, fn: Callable[[], Any]) -> _Timer:
        return _Timer(self.reactor.callLater(delay, fn))


__all__ = ["TwistedRedisLink"]
