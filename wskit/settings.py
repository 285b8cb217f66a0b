"""One settings tree for every way of running wskit.

The CLI, the twistd plugin, the IService, the twisted.web Resource and the
asyncio ``serve()`` coroutine all take a :class:`ServerSettings`; clients take a
:class:`ClientSettings`. Nothing here imports a reactor or an event loop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from .errors import SettingsError

Backend = Literal["twisted", "asyncio"]
BACKENDS: tuple[str, ...] = ("twisted", "asyncio")

KiB = 1024
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
    * ``broadcast_compression`` (servers): how a broadcast reaches the
      connections that negotiated permessage-deflate. ``"shared"``: connections
      whose last window of the topic's messages is identical share one
      compressor and one compressed frame per message, keeping context
      takeover (a connection joins after a window's worth of the topic);
      ``"fresh"``: each broadcast is compressed once without history and the
      same frame goes to everyone (the least CPU, more bytes on the wire);
      ``"per-connection"``: every connection compresses every message itself.
      :mod:`wskit.shared_deflate` explains the mechanism, docs/performance.md
      the measurements.
    * ``hibernate_after``: seconds a connection with context takeover may stay
      idle before its zlib contexts are freed, keeping only the last window of
      plaintext in each direction to rebuild them from on the next message
      (0 = never; docs/performance.md has the measurements).
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
    hibernate_after: float = 5.0
    codecs: tuple[str, ...] = ("permessage-deflate",)
    broadcast_compression: str = "shared"

    def validate(self) -> None:
        if self.broadcast_compression not in ("shared", "fresh", "per-connection"):
            raise SettingsError("broadcast_compression must be 'shared', 'fresh' or 'per-connection', "
                                f"not {self.broadcast_compression!r}")
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
        if not self.hibernate_after >= 0:
            raise SettingsError(f"hibernate_after must be >= 0 seconds, not {self.hibernate_after}")
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
    ``max_connections_per_ip`` (servers): refuse a handshake with 503 while
    its peer's IP address already has this many connections open (0 = no limit).
    ``max_request_size`` and ``max_headers`` (servers): an HTTP request whose
    head (request line and header lines) is larger than this many bytes, or
    has more header lines, is refused with 431 as soon as that is known; no
    more than that is buffered (0 = no limit, not recommended).
    """

    max_message_size: int = 1 * MiB
    max_frame_size: int = 0
    max_connections: int = 0
    max_buffered_bytes: int = 4 * MiB
    max_connections_per_ip: int = 0
    max_request_size: int = 16 * KiB
    max_headers: int = 100

    @property
    def effective_frame_size(self) -> int:
        return self.max_frame_size or self.max_message_size

    def validate(self) -> None:
        if self.max_message_size < 0 or self.max_frame_size < 0:
            raise SettingsError("size limits must be >= 0")
        if self.max_connections < 0 or self.max_buffered_bytes < 0:
            raise SettingsError("max_connections and max_buffered_bytes must be >= 0")
        if self.max_connections_per_ip < 0:
            raise SettingsError("max_connections_per_ip must be >= 0")
        if self.max_request_size < 0 or self.max_headers < 0:
            raise SettingsError("max_request_size and max_headers must be >= 0")
        if 0 < self.max_request_size < 256:
            raise SettingsError(f"max_request_size must be 0 (no limit) or at least 256 bytes, "
                                f"not {self.max_request_size}")


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
    * ``max_history_bytes``: the most history a v2 join answer carries: the
      newest messages whose encoded sizes (compact JSON) add up to at most
      this, older ones dropped first (0 = only ``history_size`` bounds it).
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
    * ``server_only_topics``: pubsub topics only the server publishes to
      (patterns where ``*`` matches any characters); a client's publish to
      one is refused with ``forbidden``, with or without authentication.
    """

    history_size: int = 50
    max_history_bytes: int = 256 * KiB
    max_name_length: int = 64
    max_text_length: int = 4096
    error_budget: int = 10
    max_batch_size: int = 100
    max_subscriptions: int = 100
    max_rooms: int = 100_000
    max_topics: int = 100_000
    max_retained_rooms: int = 1000
    room_ttl: float = 0.0
    server_only_topics: tuple[str, ...] = ()

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and value < 0:
                raise SettingsError(f"{f.name} must be >= 0")
        for pattern in self.server_only_topics:
            if not isinstance(pattern, str) or not pattern:
                raise SettingsError(f"server_only_topics must be non-empty strings, not {pattern!r}")
        if self.max_name_length < 1 or self.max_text_length < 1 or self.max_batch_size < 1:
            raise SettingsError("max_name_length, max_text_length and max_batch_size must be >= 1")


# JWS algorithms a token may be verified with: HMAC ones take the shared
# secret, the others the public key. "none" is never accepted.
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
PUBLIC_KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True)
class AuthSettings:
    """Who may connect (a JWT at the handshake) and what they may do.

    Authentication is on once a key is configured: ``secret`` (or
    ``secret_file``) for HMAC tokens (HS256), ``public_key_file`` (PEM) for
    RS256/ES256/EdDSA tokens; both may be given. A handshake without a valid
    token is refused with HTTP 401. docs/security.md has the details.

    * ``algorithms``: accepted JWS algorithms; empty means HS256 with a
      secret plus the public key's own algorithm (RS256 for RSA, ES256/384/512
      by curve, EdDSA). A token's ``alg`` outside this list is refused.
    * ``audience``, ``issuer``: when set, the ``aud``/``iss`` claims must match.
    * ``leeway``: seconds of clock skew allowed on ``exp`` and ``nbf``.
    * ``required_claims``: claims a token must carry.
    * ``query_token``: also take the token from the ``token`` query
      parameter (browsers cannot set headers on a WebSocket).
    * ``close_on_expiry``: close a connection with 1008 when its token's
      ``exp`` passes (plus ``leeway``).
    * ``authorize``: a policy hook ``(identity, action, target)`` returning a
      bool, a Deferred, an asyncio future or a coroutine; it replaces the
      check of the token's ``wskit`` claim (and also runs with no key
      configured: ``identity`` is then None). Actions: ``join``,
      ``subscribe``, ``publish``, ``call``.
    """

    secret: str | None = None
    secret_file: str | None = None
    public_key_file: str | None = None
    algorithms: tuple[str, ...] = ()
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 30.0
    required_claims: tuple[str, ...] = ("exp", "sub")
    query_token: bool = True
    close_on_expiry: bool = True
    authorize: Callable[..., Any] | None = None

    @property
    def enabled(self) -> bool:
        """True when handshakes must carry a valid token."""
        return bool(self.secret or self.secret_file or self.public_key_file)

    def validate(self) -> None:
        if self.secret is not None and self.secret_file is not None:
            raise SettingsError("give the HMAC secret once: --auth-secret or --auth-secret-file, not both")
        if self.secret == "":
            raise SettingsError("the auth secret must not be empty")
        if self.leeway < 0:
            raise SettingsError(f"auth leeway must be >= 0 seconds, not {self.leeway}")
        if self.authorize is not None and not callable(self.authorize):
            raise SettingsError("auth.authorize must be a callable (identity, action, target)")
        has_secret = bool(self.secret or self.secret_file)
        for alg in self.algorithms:
            if alg in HMAC_ALGORITHMS:
                if not has_secret:
                    raise SettingsError(f"algorithm {alg} needs a shared secret (--auth-secret or --auth-secret-file)")
            elif alg in PUBLIC_KEY_ALGORITHMS:
                if not self.public_key_file:
                    raise SettingsError(f"algorithm {alg} needs a public key (--auth-public-key)")
            else:
                raise SettingsError(f"unsupported token algorithm {alg!r} (supported: "
                                    f"{', '.join(HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS)})")
        if self.algorithms and not self.enabled:
            raise SettingsError("token algorithms given without a key: add --auth-secret or --auth-public-key")


@dataclass(frozen=True)
class RateLimitSettings:
    """Per-connection rate limits on what a client sends (token buckets).

    * ``max_message_rate``: messages per second (0 = no limit).
    * ``max_byte_rate``: message payload bytes per second (0 = no limit).
    * ``burst``: seconds of the rate a quiet connection may send at once
      (each bucket holds ``rate * burst``).

    A connection over a rate stops being read until its bucket has refilled
    (backpressure); one that gets more than a whole bucket ahead is closed
    with 1008. docs/security.md explains the choice.
    """

    max_message_rate: float = 0.0
    max_byte_rate: float = 0.0
    burst: float = 2.0

    @property
    def enabled(self) -> bool:
        return bool(self.max_message_rate or self.max_byte_rate)

    def validate(self) -> None:
        if self.max_message_rate < 0 or self.max_byte_rate < 0:
            raise SettingsError("rate limits must be >= 0 (0 = no limit)")
        if self.burst <= 0:
            raise SettingsError(f"rate burst must be > 0 seconds, not {self.burst}")
        if self.max_message_rate and self.max_message_rate * self.burst < 1:
            raise SettingsError("max_message_rate x burst must allow at least one message "
                                f"({self.max_message_rate} x {self.burst} s)")


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
    # Host names (besides loopback and the bind address) this server answers to; see wskit.origin.HostPolicy.
    allowed_hosts: tuple[str, ...] = ()
    static_dir: str | None = None
    serve_static: bool = True
    compression: CompressionSettings = field(default_factory=CompressionSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    apps: AppSettings = field(default_factory=AppSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    server_header: str = "wskit"
    # Seconds between demo ticks on pub/sub topic ticks.demo (0 = no ticker).
    ticker_interval: float = 1.0
    # None: rooms and topics of this process only; "redis://host:port/db": shared with
    # every server on that Redis (wskit.redis_hub.RedisHub).
    hub: str | None = None
    # Worker processes serving the one port (wskit.workers); 1 serves in this process.
    workers: int = 1
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    @property
    def scheme(self) -> str:
        return "wss" if self.tls.enabled else "ws"

    @property
    def url(self) -> str:
        return self.url_for(self.port)

    def url_for(self, port: int | None) -> str:
        """The endpoint's URL on ``port`` (no port in it when None).

        >>> ServerSettings(host="::1").url_for(None)
        'ws://[::1]/ws'
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = host if port is None else f"{host}:{port}"
        return f"{self.scheme}://{where}{self.path}"

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
        if self.hub is not None:
            from .redis_hub import RedisAddress

            RedisAddress.parse(self.hub)
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
        self.auth.validate()
        self.rate_limits.validate()
        byte_bucket = self.rate_limits.max_byte_rate * self.rate_limits.burst
        if self.rate_limits.max_byte_rate and self.limits.max_message_size > byte_bucket:
            raise SettingsError(
                f"max_byte_rate x burst ({byte_bucket:g} bytes) must hold the largest message "
                f"(max_message_size {self.limits.max_message_size}): raise --max-byte-rate or "
                "--rate-burst, or lower --max-message-size")
        self.metrics.validate()
        return self


def _client_compression() -> CompressionSettings:
    # A client does not ask the server for a smaller window by default: a server
    # that does not support server_max_window_bits must decline the whole offer
    # (RFC 7692 7.1.2.1), and a client rarely holds many connections.
    return CompressionSettings(server_max_window_bits=15)


@dataclass(frozen=True)
class ReconnectSettings:
    """When and how ``async for conn in wskit.connect(...)`` opens a new connection.

    Delays grow exponentially: the n-th wait of a reconnection (n = 0, 1, ...)
    is ``min(max_delay, initial_delay * factor ** n)``, shortened by a random
    fraction of up to ``jitter`` (1.0: anywhere between 0 and the full delay,
    so clients dropped together by a restarting server come back spread out,
    as RFC 6455 7.2.3 asks). The defaults follow python-websockets: a first
    wait of 0-5 s, growing by 1.618 up to 90 s.

    * ``max_attempts``: connection attempts in a row that may fail before the
      iteration gives up and raises the last error (0 = never give up).
    * ``give_up_after``: seconds without a connection after which it gives up
      the same way (0 = never); no attempt starts later than that.
    * ``retry_statuses``: HTTP statuses of refused handshakes worth retrying
      (server and proxy trouble); any other refusal (4xx) is raised at once.
    * ``retry_close_codes``: close codes after which a connection is replaced:
      1001 going away (a server restarting), 1006 lost without a close frame
      (a network failure, a dead peer), 1011 internal error, 1012 service
      restart, 1013 try again later, 1014 bad gateway. After 1000 (or a close
      without a code) the iteration ends; after any other code it raises
      :class:`ConnectionClosed`.

    >>> ReconnectSettings().delay(0, rand=0.0), ReconnectSettings().delay(1, rand=0.0)
    (5.0, 8.09)
    >>> ReconnectSettings(jitter=0.5).delay(0, rand=1.0)
    2.5
    >>> ReconnectSettings(initial_delay=1, factor=2, max_delay=4).delay(5, rand=0.0)
    4.0
    """

    initial_delay: float = 5.0
    factor: float = 1.618
    max_delay: float = 90.0
    jitter: float = 1.0
    max_attempts: int = 0
    give_up_after: float = 0.0
    retry_statuses: tuple[int, ...] = (500, 502, 503, 504)
    retry_close_codes: tuple[int, ...] = (1001, 1006, 1011, 1012, 1013, 1014)

    def delay(self, n: int, rand: float) -> float:
        """The n-th wait (from 0) of a reconnection, for a ``rand`` drawn from [0, 1)."""
        nominal = min(self.max_delay, self.initial_delay * self.factor ** min(n, 512))
        return round(nominal * (1.0 - self.jitter * rand), 6)

    def replace(self, **changes: Any) -> ReconnectSettings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0 or self.give_up_after < 0:
            raise SettingsError("reconnect delays and give_up_after must be >= 0 seconds")
        if self.factor < 1:
            raise SettingsError(f"reconnect factor must be >= 1, not {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise SettingsError(f"reconnect jitter must be between 0 and 1, not {self.jitter}")
        if self.max_attempts < 0:
            raise SettingsError(f"reconnect max_attempts must be >= 0, not {self.max_attempts}")


@dataclass(frozen=True)
class ClientSettings:
    """What a wskit client offers and enforces.

    ``max_queue``: received messages an awaitable client (``wskit.connect``)
    holds unread before it stops reading from the socket (0 = no bound).
    ``reconnect``: the backoff and retry rules of ``async for conn in
    wskit.connect(...)`` (see :class:`ReconnectSettings`).
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
    reconnect: ReconnectSettings = field(default_factory=ReconnectSettings)

    def replace(self, **changes: Any) -> ClientSettings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> ClientSettings:
        if self.max_queue < 0:
            raise SettingsError(f"max_queue must be >= 0, not {self.max_queue}")
        self.reconnect.validate()
        self.compression.validate()
        self.limits.validate()
        self.timeouts.validate()
        return self
