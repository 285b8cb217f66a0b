"""The Twisted in-memory driver: ``MemoryReactorClock`` and a ``StringTransport``.

This folder runs in its own pytest process (tests/test_memory_tier.py starts
it): importing :mod:`wskit.twisted` selects Twisted for txaio, which the main
pytest process (asyncio) must not do. Nothing here imports the global
reactor, and every test checks it stayed unimported: every timer of a
connection must run on the reactor its factory was given.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

# The shared cases and helpers in tests/memory get pytest's assertion messages too.
pytest.register_assert_rewrite("memory")

import wskit.twisted as wtwisted
from memory.driver import LogLine, MemoryConnection, Tier

assert "twisted.internet.reactor" not in sys.modules, "something imported the global reactor at import time"


class MemoryTransport(StringTransport):
    """A StringTransport that tells its protocol when the connection is gone.

    Like a real TCP transport it reports the loss later (on the next reactor
    turn), never from inside ``loseConnection``; writes after an abort go
    nowhere; unregistering a producer twice is harmless.
    """

    def __init__(self, reactor: Any, peer_port: int):
        super().__init__(hostAddress=IPv4Address("TCP", "127.0.0.1", 9000),
                         peerAddress=IPv4Address("TCP", "127.0.0.1", peer_port))
        self.reactor = reactor
        self.protocol: Any = None
        self.aborted = False
        self.lost = False
        self.reading = True
        self.held = False  # the peer reads nothing: loseConnection never completes

    def write(self, data: bytes) -> None:
        if not self.aborted and not self.lost:
            super().write(data)

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            if not self.held:
                self.reactor.callLater(0, self._lose, ConnectionDone("closed"))

    def abortConnection(self) -> None:
        if not self.aborted:
            self.aborted = self.disconnecting = True
            self.reactor.callLater(0, self._lose, ConnectionAborted())

    def _lose(self, reason: Exception) -> None:
        if not self.lost:
            self.lost = True
            self.connected = False
            self.protocol.connectionLost(Failure(reason))

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True


class TwistedConnection(MemoryConnection):
    def __init__(self, tier: TwistedTier, proto: Any, peer_port: int):
        super().__init__(tier, proto)
        self.transport = MemoryTransport(tier.reactor, peer_port)
        self.transport.protocol = proto
        proto.makeConnection(self.transport)
        tier.settle()

    def _feed(self, data: bytes) -> None:
        assert not self.transport.lost, "the connection is gone"
        self.proto.dataReceived(data)

    def written(self) -> bytes:
        return self.transport.value()

    @property
    def lost(self) -> bool:
        return self.transport.lost

    @property
    def aborted(self) -> bool:
        return self.transport.aborted

    @property
    def closed_by_us(self) -> bool:
        return self.transport.disconnecting

    def pause_transport(self) -> None:
        # What a Twisted transport does past its high-water mark: pause the
        # streaming producer registered on it.
        assert self.transport.producer is not None, "no producer registered on the transport"
        assert self.transport.streaming, "the producer must be a push (streaming) producer"
        self.transport.producer.pauseProducing()

    def resume_transport(self) -> None:
        self.transport.producer.resumeProducing()

    def peer_disconnects(self) -> None:
        self.transport._lose(ConnectionLost("peer went away"))
        self.tier.settle()

    def hold_close(self) -> None:
        self.transport.held = True

    @property
    def reading_paused(self) -> bool:
        return not self.transport.reading


class SiteConnection(TwistedConnection):
    """A connection to a twisted.web Site; ``proto`` is the HTTP channel."""

    def _feed(self, data: bytes) -> None:
        # As a TCP transport does: to whichever protocol holds the transport now.
        assert not self.transport.lost, "the connection is gone"
        self.transport.protocol.dataReceived(data)

    @property
    def websocket(self) -> Any:
        """The WebSocket protocol that took the transport over, if one did."""
        taken = self.transport.protocol
        return None if taken is self.proto else taken


class TwistedTier(Tier):
    backend = "twisted"
    structured_logs = True

    def __init__(self):
        super().__init__()
        self.reactor = MemoryReactorClock()
        self._ports = iter(range(50000, 60000))
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: dict) -> None:
        namespace = event.get("log_namespace", "")
        if namespace.startswith("wskit"):
            level = event.get("log_level", LogLevel.info)
            self.logs.append(LogLine(level.name, formatEvent(event), event.get("wskit_event")))

    def close(self) -> None:
        globalLogPublisher.removeObserver(self._observe)

    def server_factory(self, app: Any, protocol: type | None = None) -> Any:
        return wtwisted.ServerFactory(app, protocol=protocol, reactor=self.reactor)

    def client_factory(self, url: str, settings: Any, handler_factory: Any = None) -> Any:
        return wtwisted.ClientFactory(url, settings, handler_factory, reactor=self.reactor)

    def connect(self, factory: Any) -> TwistedConnection:
        port = next(self._ports)
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        return TwistedConnection(self, proto, port)

    def site(self, settings: Any = None, protocol: type | None = None) -> Any:
        """wskit's twisted.web Site (demo page and endpoint) on this tier's reactor."""
        return wtwisted.build_site(self.app(settings), protocol=protocol, reactor=self.reactor)

    def connect_site(self, site: Any) -> SiteConnection:
        """A connection to ``site``: twisted.web reads the request; at a WebSocket
        handshake the protocol takes the transport over (``conn.websocket``)."""
        port = next(self._ports)
        return SiteConnection(self, site.buildProtocol(IPv4Address("TCP", "127.0.0.1", port)), port)

    def now(self) -> float:
        return self.reactor.seconds()

    def settle(self) -> None:
        self.reactor.advance(0)

    def _next_timer(self) -> float | None:
        calls = [c.getTime() for c in self.reactor.getDelayedCalls() if c.active()]
        return min(calls) if calls else None

    def _jump(self, when: float) -> None:
        self.reactor.advance(when - self.reactor.seconds())

    def succeeded(self, value: Any = None) -> Any:
        return defer.succeed(value)

    def failed(self, exc: Exception) -> Any:
        return defer.fail(exc)

    def result_of(self, future: Any) -> Any:
        results: list[Any] = []
        future.addBoth(results.append)
        assert results, "the Deferred has not fired"
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def is_done(self, future: Any) -> bool:
        return future.called

    def reactor_imported(self) -> bool:
        return "twisted.internet.reactor" in sys.modules


@pytest.fixture
def tier():
    t = TwistedTier()
    yield t
    t.close()


@pytest.fixture(autouse=True)
def no_global_reactor():
    """Every timer must run on the factory's reactor: none may reach the global one.

    Fails the test during which the global reactor got imported (only that one).
    """
    before = "twisted.internet.reactor" in sys.modules
    yield
    assert before or "twisted.internet.reactor" not in sys.modules, (
        "twisted.internet.reactor was imported: some timer or call is not bound to the factory's reactor"
    )
