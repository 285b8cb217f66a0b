"""The asyncio in-memory driver: a fake-clock event loop and a fake transport.

This folder runs in its own pytest process (tests/test_memory_tier.py starts
it), so importing :mod:`wskit.asyncio` selects asyncio for txaio here whatever
the other backend's tier does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import txaio

# The shared cases and helpers in tests/memory get pytest's assertion messages too.
pytest.register_assert_rewrite("memory")

import wskit.asyncio as wasyncio
from memory.driver import LogLine, MemoryConnection, Tier


class FakeClockLoop(asyncio.SelectorEventLoop):
    """A selector loop whose clock only moves when a test says so.

    ``settle()`` runs the ready callbacks (and what they schedule) without
    blocking: while callbacks are ready the loop polls its selector with a
    zero timeout, so no real time passes waiting for the fake one.
    """

    def __init__(self):
        super().__init__()
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def settle(self) -> None:
        for _ in range(1000):
            self.run_until_complete(asyncio.sleep(0))
            if not self._ready and not self._due():
                return
        raise AssertionError("callbacks keep scheduling callbacks: the loop never settles")

    def _due(self) -> bool:
        return any(not h.cancelled() and h.when() <= self._now for h in self._scheduled)

    def next_timer(self) -> float | None:
        times = [h.when() for h in self._scheduled if not h.cancelled()]
        return min(times) if times else None

    def jump(self, when: float) -> None:
        self._now = max(self._now, when)
        self.settle()


class FakeTransport(asyncio.Transport):
    """Collects writes; models a socket that stops accepting bytes.

    While ``stalled``, writes stay in the transport's buffer (counted by
    ``get_write_buffer_size()``) as they would when the kernel's send buffer
    is full. ``close()``/``abort()`` report the loss to the protocol on the
    next loop iteration, as asyncio's socket transports do.
    """

    def __init__(self, loop: FakeClockLoop, protocol: Any, peer_port: int):
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.peer_port = peer_port
        self.data = bytearray()
        self.stalled = False
        self.queued = 0
        self.closing = False
        self.aborted = False
        self.lost = False
        self.reading = True
        self.read_calls: list[str] = []
        self.held = False  # the peer reads nothing: close() never completes
        self.writes = 0  # write() calls

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", self.peer_port), "sockname": ("127.0.0.1", 9000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.writes += 1
        if self.closing:
            return
        if self.stalled:
            self.queued += len(data)
        self.data += data

    def get_write_buffer_size(self) -> int:
        return self.queued

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if not self.held:
                self.loop.call_soon(self._lose, None)

    def abort(self) -> None:
        self.aborted = True
        if not self.closing or self.held:
            self.closing = True
            self.loop.call_soon(self._lose, None)

    def _lose(self, exc: Exception | None) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(exc)

    def pause_reading(self) -> None:
        self.reading = False
        self.read_calls.append("pause")

    def resume_reading(self) -> None:
        self.reading = True
        self.read_calls.append("resume")

    def is_reading(self) -> bool:
        return self.reading


class AsyncioConnection(MemoryConnection):
    def __init__(self, tier: AsyncioTier, proto: Any, peer_port: int):
        super().__init__(tier, proto)
        self.transport = FakeTransport(tier.loop, proto, peer_port)
        proto.connection_made(self.transport)
        tier.settle()

    def _feed(self, data: bytes) -> None:
        assert not self.transport.lost, "the connection is gone"
        self.proto.data_received(data)

    def written(self) -> bytes:
        return bytes(self.transport.data)

    @property
    def lost(self) -> bool:
        return self.transport.lost

    @property
    def aborted(self) -> bool:
        return self.transport.aborted

    @property
    def closed_by_us(self) -> bool:
        return self.transport.closing

    def pause_transport(self) -> None:
        # What asyncio's transports do past the high-water mark: the socket
        # takes no more bytes, the buffer fills, the protocol is paused.
        self.transport.stalled = True
        self.proto.pause_writing()

    def resume_transport(self) -> None:
        self.transport.stalled = False
        self.transport.queued = 0
        self.proto.resume_writing()
        self.tier.settle()

    def peer_disconnects(self) -> None:
        self.transport.closing = True
        self.transport._lose(ConnectionResetError("peer went away"))
        self.tier.settle()

    def hold_close(self) -> None:
        self.transport.held = True

    @property
    def reading_paused(self) -> bool:
        return not self.transport.reading


class _Capture(logging.Handler):
    def __init__(self, logs: list[LogLine]):
        super().__init__(logging.DEBUG)
        self.logs = logs

    def emit(self, record: logging.LogRecord) -> None:
        self.logs.append(LogLine(record.levelname.lower(), record.getMessage()))


class AsyncioTier(Tier):
    backend = "asyncio"

    def __init__(self):
        super().__init__()
        self.loop = FakeClockLoop()
        self._ports = iter(range(50000, 60000))
        # txaio's global API (Autobahn's futures, wskit's as_future) uses this loop.
        self._saved_loop, txaio.config.loop = txaio.config.loop, self.loop
        asyncio.set_event_loop(self.loop)
        self._logger = logging.getLogger("wskit")
        self._saved_level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        self._handler = _Capture(self.logs)
        self._logger.addHandler(self._handler)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._saved_level)
        txaio.config.loop = self._saved_loop
        asyncio.set_event_loop(None)
        self.loop.close()

    def server_factory(self, app: Any, protocol: type | None = None) -> Any:
        return wasyncio.ServerFactory(app, protocol=protocol, loop=self.loop)

    def client_factory(self, url: str, settings: Any, handler_factory: Any = None) -> Any:
        return wasyncio.ClientFactory(url, settings, handler_factory, loop=self.loop)

    def connect(self, factory: Any) -> AsyncioConnection:
        return AsyncioConnection(self, factory(), next(self._ports))

    def now(self) -> float:
        return self.loop.time()

    def settle(self) -> None:
        self.loop.settle()

    def _next_timer(self) -> float | None:
        return self.loop.next_timer()

    def _jump(self, when: float) -> None:
        self.loop.jump(when)

    def succeeded(self, value: Any = None) -> Any:
        future = self.loop.create_future()
        future.set_result(value)
        return future

    def failed(self, exc: Exception) -> Any:
        future = self.loop.create_future()
        future.set_exception(exc)
        return future

    def result_of(self, future: Any) -> Any:
        assert future.done(), "the future has not completed"
        return future.result()

    def is_done(self, future: Any) -> bool:
        return future.done()


@pytest.fixture
def tier():
    t = AsyncioTier()
    yield t
    t.close()
