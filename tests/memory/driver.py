"""What both backends' in-memory drivers offer the shared test cases.

A *tier* (one per backend, built by that backend folder's conftest) owns a fake
clock and makes factories; a :class:`MemoryConnection` wraps one protocol
instance on an in-memory transport. Tests feed bytes in, advance the clock and
read what the protocol wrote, never touching a socket or the wall clock. The
backend subclasses only say how bytes reach the protocol and how the
transport's flow-control signals are given; everything a test asserts on is
computed here the same way for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memory import frames as f


@dataclass
class LogLine:
    """One log event of wskit's loggers: level name, formatted text and the
    structured ``wskit_event`` key where the backend's logger keeps it (Twisted)."""

    level: str
    text: str
    event: str | None = None


class MemoryConnection:
    """One protocol instance on an in-memory transport."""

    def __init__(self, tier: Any, proto: Any):
        self.tier = tier
        self.proto = proto
        self.reader = f.FrameReader()
        self._read = 0

    # -- backend hooks ---------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        raise NotImplementedError

    def written(self) -> bytes:
        """Every byte the protocol has written to its transport."""
        raise NotImplementedError

    @property
    def lost(self) -> bool:
        """The protocol has been told the connection is gone (connectionLost/connection_lost)."""
        raise NotImplementedError

    @property
    def aborted(self) -> bool:
        """The protocol dropped the TCP connection without waiting for pending writes."""
        raise NotImplementedError

    @property
    def closed_by_us(self) -> bool:
        """The protocol closed (or aborted) its transport."""
        raise NotImplementedError

    def pause_transport(self) -> None:
        """The transport reports its write buffer over the high-water mark; later writes stay queued."""
        raise NotImplementedError

    def resume_transport(self) -> None:
        """The transport's write buffer has drained."""
        raise NotImplementedError

    def peer_disconnects(self) -> None:
        """The peer closes TCP without a closing handshake."""
        raise NotImplementedError

    def hold_close(self) -> None:
        """The peer stops reading: from now on a graceful close never completes (the
        transport waits to write what it holds), only an abort ends the connection."""
        raise NotImplementedError

    @property
    def reading_paused(self) -> bool:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------

    def send(self, *chunks: bytes) -> None:
        """Deliver bytes from the peer, one read per chunk, then let due callbacks run."""
        for chunk in chunks:
            self._feed(chunk)
            self.tier.settle()

    def new_output(self) -> bytes:
        data = self.written()
        new, self._read = data[self._read:], len(data)
        return new

    def head(self) -> f.HTTPMessage | None:
        """The HTTP head the protocol wrote (response on a server, request on a client)."""
        self.frames()
        return self.reader.head

    def frames(self) -> list[f.Frame]:
        """Frames written since the last call."""
        return self.reader.feed(self.new_output())

    def all_frames(self) -> list[f.Frame]:
        self.frames()
        return list(self.reader.frames)

    def handshake(self, **request: Any) -> f.HTTPMessage:
        """Send an upgrade request; return the response head (any status)."""
        self.send(f.upgrade_request(**request))
        head = self.head()
        assert head is not None, f"no HTTP response; wrote {self.written()[:300]!r}"
        return head

    def open(self, **request: Any) -> f.HTTPMessage:
        """Complete the opening handshake; fail unless the answer is 101."""
        head = self.handshake(**request)
        assert head.status == 101, f"handshake refused: {head.start_line} {head.body!r}"
        assert head.header("sec-websocket-accept") == f.accept_key(request.get("key", f.SAMPLE_KEY))
        return head

    def close_frame(self) -> f.Frame:
        """The close frame the protocol has written (reading new output first)."""
        self.frames()
        closes = [fr for fr in self.reader.frames if fr.opcode == f.CLOSE]
        assert closes, f"no close frame written; frames: {self.reader.frames}"
        assert len(closes) == 1, f"more than one close frame: {closes}"
        return closes[0]

    def data_frames(self) -> list[f.Frame]:
        """Text, binary and continuation frames written since the last call."""
        return [fr for fr in self.frames() if fr.opcode in (f.TEXT, f.BINARY, f.CONTINUATION)]


def memory_settings(**changes: Any) -> Any:
    """Server settings for in-memory tests: no compression (frames readable as
    written), no demo ticker (no background timer), no static files (a plain
    GET gets 426); ``changes`` override any field."""
    from wskit.settings import CompressionSettings, ServerSettings

    base = dict(compression=CompressionSettings(enabled=False), ticker_interval=0, serve_static=False)
    base.update(changes)
    return ServerSettings(**base)


class Tier:
    """One backend's fake clock and factories (see the backend folders' conftest)."""

    backend = ""

    def __init__(self):
        self.logs: list[LogLine] = []

    # -- backend hooks ---------------------------------------------------------

    def server_factory(self, app: Any, protocol: type | None = None) -> Any:
        raise NotImplementedError

    def client_factory(self, url: str, settings: Any, handler_factory: Any = None) -> Any:
        raise NotImplementedError

    def connect(self, factory: Any) -> MemoryConnection:
        """A new connection of ``factory``'s protocol on an in-memory transport."""
        raise NotImplementedError

    def now(self) -> float:
        raise NotImplementedError

    def settle(self) -> None:
        """Run whatever is due now (no clock movement)."""
        raise NotImplementedError

    def _next_timer(self) -> float | None:
        raise NotImplementedError

    def _jump(self, when: float) -> None:
        """Move the clock to ``when`` and run what is due."""
        raise NotImplementedError

    def succeeded(self, value: Any = None) -> Any:
        raise NotImplementedError

    def failed(self, exc: Exception) -> Any:
        """A future (Deferred) that has already failed with ``exc``."""
        raise NotImplementedError

    def result_of(self, future: Any) -> Any:
        raise NotImplementedError

    def is_done(self, future: Any) -> bool:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------

    def app(self, settings: Any = None, registry: Any = None) -> Any:
        from wskit.app import WebSocketApp

        return WebSocketApp(settings if settings is not None else memory_settings(), registry=registry)

    def server(self, settings: Any = None, registry: Any = None, app: Any = None,
               protocol: type | None = None) -> Any:
        return self.server_factory(app if app is not None else self.app(settings, registry), protocol)

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing each timer at its own time, in order."""
        target = self.now() + seconds
        self.settle()
        while True:
            when = self._next_timer()
            if when is None or when > target:
                break
            self._jump(max(when, self.now()))
        self._jump(target)

    # Twisted's loggers keep the ``wskit_event`` key of a log event; txaio's
    # asyncio loggers pass only the formatted text to the logging module.
    structured_logs = False

    def log_lines(self, containing: str) -> list[LogLine]:
        return [line for line in self.logs if containing in line.text]
