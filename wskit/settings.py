"""One settings tree for every way of running wskit.

The CLI, the twistd plugin, the IService, the twisted.web Resource and the
asyncio ``serve()`` coroutine all take a :class:`ServerSettings`; clients take a
:class:`ClientSettings`. Nothing here imports a reactor or an event loop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import SettingsError

Backend = Literal["twisted", "asyncio"]
BACKENDS: tuple[str, ...] = ("twisted", "asyncio")

MiB = 1024 * 1024




@dataclass(frozen=True)
class CompressionSettings:
    """permessage-deflate (RFC 7692) parameters.

    The server-side fields describe what this endpoint asks of or promises to
    the peer; docs/performance.md has the measurements behind the defaults.

    * ``server_max_window_bits``: LZ77 window the server compresses with (9-15).
    * ``client_max_window_bits``: window the client is asked to compress with,
      when the client offers to accept the parameter (9-15); a smaller value
      the client offers is answered as is (RFC 7692 7.1.2.2).
    * ``server_no_context_takeover`` / ``client_no_context_takeover``: reset the
      compression context after every message in that direction.
    * ``mem_level``: zlib memLevel (1-9) for this endpoint's compressor.
    * ``level``: zlib compression level (0-9, or -1 for zlib's default).
    * ``threshold``: messages shorter than this many bytes go uncompressed.
    * ``codecs``: extensions to offer/accept, in preference order.
      ``permessage-deflate`` always works; ``permessage-bzip2``,
      ``permessage-snappy`` and ``permessage-brotli`` work when Autobahn can
      import their libraries.
    """

    enabled: bool = True
    server_max_window_bits: int = 12
    client_max_window_bits: int = 12
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    mem_level: int = 5
    level: int = 6
    threshold: int = 64
    codecs: tuple[str, ...] = ("permessage-deflate",)

    def validate(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            value = getattr(self, name)
            if not 9 <= value <= 15:
                raise SettingsError(f"{name} must be between 9 and 15, not {value}")
        if not 1 <= self.mem_level <= 9:
            raise SettingsError(f"mem_level must be between 1 and 9, not {self.mem_level}")
        if not -1 <= self.level <= 9:
            raise SettingsError(f"level must be between -1 and 9, not {self.level}")
        if self.threshold < 0:
            raise SettingsError(f"threshold must be >= 0, not {self.threshold}")
        if not self.codecs:
            raise SettingsError("codecs must name at least one compression extension")


@dataclass(frozen=True)
class LimitSettings:
    """Size limits. A message or frame over its limit closes with 1009.

    ``max_frame_size`` of 0 means "same as ``max_message_size``"; a
    ``max_message_size`` of 0 means unlimited (not recommended for servers).
    ``max_buffered_bytes``: a peer whose unsent outgoing bytes exceed this
    when another message is sent to it (a reply or a broadcast) is dropped as
    too slow a consumer (0 = no cap). ``max_connections`` (servers): refuse
    handshakes beyond this many connections with 503 (0 = no limit).
    """

    max_message_size: int = 1 * MiB
    max_frame_size: int = 0
    max_connections: int = 0
    max_buffered_bytes: int = 4 * MiB

    @property
    def effective_frame_size(self) -> int:
        return self.max_frame_size or self.max_message_size

    def validate(self) -> None:
        if self.max_message_size < 0 or self.max_frame_size < 0:
            raise SettingsError("size limits must be >= 0")
        if self.max_connections < 0 or self.max_buffered_bytes < 0:
            raise SettingsError("max_connections and max_buffered_bytes must be >= 0")


@dataclass(frozen=True)
class TimeoutSettings:
    """Timeouts in seconds. ``auto_ping_interval`` of 0 disables keep-alive pings.

    With pings on, a peer that answers no ping within ``auto_ping_timeout`` is
    dropped (close code 1006 on our side): that is how dead peers are found.
    """

    open_handshake: float = 10.0
    close_handshake: float = 5.0
    auto_ping_interval: float = 20.0
    auto_ping_timeout: float = 20.0

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise SettingsError(f"timeout {f.name} must be >= 0")


@dataclass(frozen=True)
class TLSSettings:
    cert: str | None = None
    key: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def validate(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise SettingsError("TLS needs both a certificate (--tls-cert) and a key (--tls-key)")


@dataclass(frozen=True)
class AppSettings:
    """Limits of the shipped application subprotocols (chat, pubsub, rpc).

    * ``history_size``: chat messages a room keeps for v2 joiners (0 keeps none).
    * ``max_name_length``: longest room name, nick or topic, in characters.
    * ``max_text_length``: longest chat message text, in characters.
    * ``error_budget``: bad messages a connection may send (each answered with
      an error); the next one closes it with 1008. 0 means unlimited.
    * ``max_batch_size``: most requests in one JSON-RPC batch.
    * ``max_subscriptions``: most chat rooms, or pubsub topics and patterns, one
      connection may be in at once (0 = no limit).
    * ``max_rooms``: most chat rooms with members on this server; joining one
      more is refused with ``too-many`` (0 = no limit). Retained empty rooms
      do not count: ``max_retained_rooms`` bounds them.
    * ``max_topics``: most distinct pubsub topics and patterns subscribed to on
      this server; subscribing to one more is refused with ``too-many`` (0 = no limit).
    * ``max_retained_rooms``: empty chat rooms whose history is kept for the
      next joiner; beyond this the least recently active is dropped (0 = a
      room's history goes with its last member).
    * ``room_ttl``: seconds an empty room's history is kept after its last
      activity (0 = until ``max_retained_rooms`` pushes it out).
    """

    history_size: int = 50
    max_name_length: int = 64
    max_text_length: int = 4096
    error_budget: int = 10
    max_batch_size: int = 100
    max_subscriptions: int = 100
    max_rooms: int = 100_000
    max_topics: int = 100_000
    max_retained_rooms: int = 1000
    room_ttl: float = 0.0

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise SettingsError(f"{f.name} must be >= 0")
        if self.max_name_length < 1 or self.max_text_length < 1 or self.max_batch_size < 1:
            raise SettingsError("max_name_length, max_text_length and max_batch_size must be >= 1")


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus metrics at ``http://host:port/metrics`` (needs ``wskit[metrics]``).

    ``port`` None (the default) serves no metrics; 0 picks a free port. With
    worker processes the supervisor serves the sum over all workers.
    """

    port: int | None = None
    host: str = "127.0.0.1"

    @property
    def enabled(self) -> bool:
        return self.port is not None

    def validate(self) -> None:
        if self.port is not None and not 0 <= self.port <= 65535:
            raise SettingsError(f"metrics port must be between 0 and 65535, not {self.port}")


@dataclass(frozen=True)
class ServerSettings:
    """Everything a wskit server needs to know.

    >>> ServerSettings(port=0, subprotocols=("wskit.echo",)).url
    'ws://127.0.0.1:0/ws'
    """

    host: str = "127.0.0.1"
    port: int = 9000
    endpoint: str | None = None
    path: str = "/ws"
    subprotocols: tuple[str, ...] | None = None
    default_subprotocol: str | None = "wskit.echo"
    prefer: Literal["server", "client"] = "server"
    allowed_origins: tuple[str, ...] = ()
    static_dir: str | None = None
    serve_static: bool = True
    compression: CompressionSettings = field(default_factory=CompressionSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    apps: AppSettings = field(default_factory=AppSettings)
    server_header: str = "wskit"
    # Seconds between demo ticks on pub/sub topic ticks.demo (0 = no ticker).
    ticker_interval: float = 1.0
    # Worker processes serving the one port (wskit.workers); 1 serves in this process.
    workers: int = 1
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    @property
    def scheme(self) -> str:
        return "wss" if self.tls.enabled else "ws"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def replace(self, **changes: Any) -> ServerSettings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> ServerSettings:
        if self.prefer not in ("server", "client"):
            raise SettingsError(f"prefer must be 'server' or 'client', not {self.prefer!r}")
        if not self.path.startswith("/"):
            raise SettingsError(f"path must start with '/', not {self.path!r}")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be between 0 and 65535, not {self.port}")
        if self.ticker_interval < 0:
            raise SettingsError(f"ticker_interval must be >= 0 seconds, not {self.ticker_interval}")
        if self.endpoint and self.tls.enabled:
            raise SettingsError("give TLS inside the endpoint string or with --tls-cert/--tls-key, not both")
        if self.workers < 1:
            raise SettingsError(f"workers must be >= 1, not {self.workers}")
        if self.workers > 1 and self.endpoint:
            raise SettingsError("worker processes share a TCP port: give --host/--port, not --endpoint")
        self.compression.validate()
        self.limits.validate()
        self.timeouts.validate()
        self.tls.validate()
        self.apps.validate()
        self.metrics.validate()
        return self


def _client_compression() -> CompressionSettings:
    # A client does not ask the server for a smaller window by default: a server
    # that does not support server_max_window_bits must decline the whole offer
    # (RFC 7692 7.1.2.1), and a client rarely holds many connections.
    return CompressionSettings(server_max_window_bits=15)


@dataclass(frozen=True)
class ClientSettings:
    """What a wskit client offers and enforces.

    ``max_queue``: received messages an awaitable client (``wskit.connect``)
    holds unread before it stops reading from the socket (0 = no bound).
    """

    subprotocols: tuple[str, ...] = ()
    compression: CompressionSettings = field(default_factory=_client_compression)
    limits: LimitSettings = field(default_factory=LimitSettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    origin: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    ca_file: str | None = None
    user_agent: str = "wskit"
    max_queue: int = 16

    def replace(self, **changes: Any) -> ClientSettings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> ClientSettings:
        if self.max_queue < 0:
            raise SettingsError(f"max_queue must be >= 0, not {self.max_queue}")
        self.compression.validate()
        self.limits.validate()
        self.timeouts.validate()
        return self
