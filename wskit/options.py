"""Server command-line options, defined once for ``wskit serve`` and ``twistd wskit``.

Both front ends parse into a plain dict and call :func:`server_settings` so an
option means the same thing everywhere.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from .settings import (
    AppSettings,
    AuthSettings,
    CompressionSettings,
    LimitSettings,
    RateLimitSettings,
    MetricsSettings,
    ServerSettings,
    SettingsError,
    TimeoutSettings,
    TLSSettings,
)

_DEFAULT = ServerSettings()
_C = CompressionSettings()
_L = LimitSettings()
_T = TimeoutSettings()
_A = AppSettings()
_AUTH = AuthSettings()
_R = RateLimitSettings()


@dataclass(frozen=True)
class Option:
    name: str  # long option without dashes
    kind: Callable[[str], Any] | None  # None: a flag
    default: Any
    help: str
    repeatable: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


SERVER_OPTIONS: tuple[Option, ...] = (
    Option("host", str, _DEFAULT.host, "interface to listen on", metavar="HOST"),
    Option("port", int, _DEFAULT.port, "TCP port (0 picks a free one)", metavar="PORT"),
    Option("endpoint", str, None, "Twisted server endpoint string, e.g. tcp6:9000 or unix:/tmp/ws.sock "
           "(overrides --host/--port; twisted backend)", metavar="DESCRIPTION"),
    Option("path", str, _DEFAULT.path, "URL path of the WebSocket endpoint", metavar="PATH"),
    Option("protocol", str, None, "serve only this subprotocol (repeatable, in preference order)",
           repeatable=True, metavar="NAME"),
    Option("default-protocol", str, _DEFAULT.default_subprotocol,
           "subprotocol for clients that offer none ('none' refuses them)", metavar="NAME"),
    Option("prefer-client", None, False, "pick the client's first supported subprotocol instead of "
           "the server's"),
    Option("allow-origin", str, None, "allow browser pages from this origin (repeatable; '*' allows all; "
           "wildcards like https://*.example.com)", repeatable=True, metavar="ORIGIN"),
    Option("allow-host", str, None, "answer requests naming this host (repeatable; wildcards like "
           "*.example.com; '*' allows any); loopback names and the --host address are always allowed",
           repeatable=True, metavar="NAME"),
    Option("static-dir", str, None, "serve this folder at / instead of the demo page", metavar="DIR"),
    Option("no-static", None, False, "do not serve the demo page at /"),
    Option("max-message-size", int, _L.max_message_size, "largest message accepted, bytes "
           "(0 = unlimited); larger closes with 1009", metavar="BYTES"),
    Option("max-frame-size", int, _L.max_frame_size, "largest frame accepted, bytes "
           "(0 = max message size)", metavar="BYTES"),
    Option("max-connections", int, _L.max_connections, "refuse handshakes beyond this many "
           "connections with 503 (0 = no limit)", metavar="N"),
    Option("max-request-size", int, _L.max_request_size, "largest HTTP request head, bytes; larger "
           "requests get 431 (0 = no limit)", metavar="BYTES"),
    Option("max-headers", int, _L.max_headers, "most header lines in an HTTP request; more get 431 "
           "(0 = no limit)", metavar="N"),
    Option("open-timeout", float, _T.open_handshake, "seconds from connecting to a completed opening "
           "handshake, however slowly the client sends (0 = no limit)",
           metavar="SECONDS"),
    Option("close-timeout", float, _T.close_handshake, "seconds allowed for the closing handshake",
           metavar="SECONDS"),
    Option("ping-interval", float, _T.auto_ping_interval, "send a ping after this many idle seconds "
           "(0 = never)", metavar="SECONDS"),
    Option("ping-timeout", float, _T.auto_ping_timeout, "drop a peer that has not answered a ping "
           "within this many seconds", metavar="SECONDS"),
    Option("no-compress", None, False, "decline permessage-deflate"),
    Option("compress-level", int, _C.level, "zlib level 0-9 (-1 = zlib default)", metavar="N"),
    Option("compress-mem-level", int, _C.mem_level, "zlib memLevel 1-9", metavar="N"),
    Option("compress-threshold", int, _C.threshold, "send messages shorter than this uncompressed",
           metavar="BYTES"),
    Option("broadcast-compression", str, _C.broadcast_compression, "how broadcasts are compressed: "
           "shared (one compressor per topic, context takeover kept), fresh (once per broadcast, "
           "no history) or per-connection", metavar="MODE"),
    Option("compress-hibernate-after", float, _C.hibernate_after, "free an idle connection's zlib "
           "contexts after this many seconds, keeping only its last window of text (0 = never)",
           metavar="SECONDS"),
    Option("server-max-window-bits", int, _C.server_max_window_bits, "window the server compresses "
           "with, 9-15", metavar="BITS"),
    Option("client-max-window-bits", int, _C.client_max_window_bits, "window the client is asked to "
           "compress with, 9-15", metavar="BITS"),
    Option("server-no-context-takeover", None, False, "server resets its compressor after each message"),
    Option("client-no-context-takeover", None, False, "ask clients to reset their compressor after "
           "each message"),
    Option("compression", str, None, "accept this compression extension (repeatable, e.g. "
           "permessage-deflate, permessage-brotli)", repeatable=True, metavar="EXT"),
    Option("history-size", int, _A.history_size, "chat messages a room keeps for v2 joiners",
           metavar="N"),
    Option("max-history-bytes", int, _A.max_history_bytes, "most bytes of history a v2 chat join "
           "answer carries: the newest messages that fit, oldest dropped first (0 = no byte cap)",
           metavar="BYTES"),
    Option("error-budget", int, _A.error_budget, "bad messages a chat/pubsub/rpc connection may send "
           "before it is closed with 1008 (0 = unlimited)", metavar="N"),
    Option("max-buffered-bytes", int, _L.max_buffered_bytes, "drop a connection whose unsent "
           "bytes (replies and broadcasts) exceed this (0 = no cap)", metavar="BYTES"),
    Option("max-rooms", int, _A.max_rooms, "most chat rooms with members on this server; further "
           "joins of new rooms are refused with too-many (0 = no limit)", metavar="N"),
    Option("max-topics", int, _A.max_topics, "most distinct pubsub topics and patterns subscribed "
           "to; further ones are refused with too-many (0 = no limit)", metavar="N"),
    Option("max-retained-rooms", int, _A.max_retained_rooms, "empty chat rooms whose history is "
           "kept for the next joiner, least recently active dropped first (0 = none)", metavar="N"),
    Option("room-ttl", float, _A.room_ttl, "forget an empty chat room's history this many seconds "
           "after its last activity (0 = keep until --max-retained-rooms pushes it out)",
           metavar="SECONDS"),
    Option("hub", str, None, "share chat rooms (history, presence) and pub/sub topics with every "
           "server on this Redis, e.g. redis://127.0.0.1:6379/0 (needs wskit[redis])", metavar="URL"),
    Option("tls-cert", str, None, "PEM certificate (chain) for wss:// and https://", metavar="FILE"),
    Option("tls-key", str, None, "PEM private key for --tls-cert", metavar="FILE"),
    Option("ticker-interval", float, _DEFAULT.ticker_interval, "publish demo price ticks on pub/sub "
           "topic ticks.demo every SECONDS (0 = off)", metavar="SECONDS"),
    Option("server-only-topic", str, None, "pub/sub topics only the server publishes to (repeatable; "
           "'*' matches any characters); client publishes are refused with forbidden",
           repeatable=True, metavar="PATTERN"),
    # -- authentication (docs/security.md) --
    Option("auth-secret", str, None, "require client tokens (JWT) signed with this HMAC secret (HS256); "
           "prefer --auth-secret-file, command lines are visible to other users", metavar="SECRET"),
    Option("auth-secret-file", str, None, "read the HMAC secret of client tokens from FILE", metavar="FILE"),
    Option("auth-public-key", str, None, "require client tokens signed with the private half of this PEM "
           "public key (RS256, ES256, EdDSA)", metavar="FILE"),
    Option("auth-algorithm", str, None, "accept tokens signed with this algorithm (repeatable; default: "
           "HS256 with a secret, the public key's own)", repeatable=True, metavar="ALG"),
    Option("auth-audience", str, None, "tokens must carry this 'aud' claim", metavar="AUDIENCE"),
    Option("auth-issuer", str, None, "tokens must carry this 'iss' claim", metavar="ISSUER"),
    Option("auth-leeway", float, _AUTH.leeway, "seconds of clock skew allowed on a token's exp and nbf",
           metavar="SECONDS"),
    Option("auth-no-query-token", None, False, "take tokens from the Authorization header only, "
           "not from ?token= (browsers then cannot authenticate)"),
    Option("auth-keep-expired", None, False, "keep connections open after their token expires "
           "(default: close them with 1008)"),
    # -- abuse limits --
    Option("max-connections-per-ip", int, _L.max_connections_per_ip, "refuse handshakes with 503 while "
           "the client's IP address has this many connections open (0 = no limit)", metavar="N"),
    Option("max-message-rate", float, _R.max_message_rate, "messages per second a connection may send; "
           "faster ones are throttled to it by pausing reads (0 = no limit)", metavar="N"),
    Option("max-byte-rate", float, _R.max_byte_rate, "message bytes per second a connection may send "
           "(0 = no limit)", metavar="BYTES"),
    Option("rate-burst", float, _R.burst, "seconds of the rates a quiet connection may send at once",
           metavar="SECONDS"),
    Option("workers", int, _DEFAULT.workers, "worker processes serving the one port (1 = serve in this "
           "process)", metavar="N"),
    Option("metrics-port", int, None, "serve Prometheus metrics at http://METRICS-HOST:PORT/metrics "
           "(0 picks a free port; needs wskit[metrics])", metavar="PORT"),
    Option("metrics-host", str, _DEFAULT.metrics.host, "interface of the metrics endpoint", metavar="HOST"),
)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    for opt in SERVER_OPTIONS:
        flag = f"--{opt.name}"
        if opt.kind is None:
            parser.add_argument(flag, dest=opt.dest, action="store_true", help=opt.help)
        elif opt.repeatable:
            parser.add_argument(flag, dest=opt.dest, action="append", type=opt.kind,
                                metavar=opt.metavar, help=opt.help)
        else:
            shown = f" (default: {opt.default})" if opt.default not in (None, "") else ""
            parser.add_argument(flag, dest=opt.dest, type=opt.kind, default=opt.default,
                                metavar=opt.metavar, help=opt.help + shown)


def server_settings(values: dict[str, Any]) -> ServerSettings:
    """Build validated :class:`ServerSettings` from parsed option values."""

    def get(name: str) -> Any:
        for opt in SERVER_OPTIONS:
            if opt.dest == name:
                value = values.get(name)
                if opt.repeatable:
                    return tuple(value or ())
                if opt.kind is None:  # twistd hands flags over as 0/1
                    return bool(value)
                return opt.default if value is None else value
        raise KeyError(name)

    default_protocol = get("default_protocol")
    codecs = get("compression") or _C.codecs
    settings = ServerSettings(
        host=get("host"),
        port=get("port"),
        endpoint=get("endpoint"),
        path=get("path"),
        subprotocols=get("protocol") or None,
        default_subprotocol=None if default_protocol in (None, "none") else default_protocol,
        prefer="client" if get("prefer_client") else "server",
        allowed_origins=get("allow_origin"),
        allowed_hosts=get("allow_host"),
        static_dir=get("static_dir"),
        serve_static=not get("no_static"),
        compression=CompressionSettings(
            enabled=not get("no_compress"),
            server_max_window_bits=get("server_max_window_bits"),
            client_max_window_bits=get("client_max_window_bits"),
            server_no_context_takeover=get("server_no_context_takeover"),
            client_no_context_takeover=get("client_no_context_takeover"),
            mem_level=get("compress_mem_level"),
            level=get("compress_level"),
            threshold=get("compress_threshold"),
            broadcast_compression=get("broadcast_compression"),
            hibernate_after=get("compress_hibernate_after"),
            codecs=tuple(codecs),
        ),
        limits=LimitSettings(
            max_message_size=get("max_message_size"),
            max_frame_size=get("max_frame_size"),
            max_connections=get("max_connections"),
            max_buffered_bytes=get("max_buffered_bytes"),
            max_connections_per_ip=get("max_connections_per_ip"),
            max_request_size=get("max_request_size"),
            max_headers=get("max_headers"),
        ),
        timeouts=TimeoutSettings(
            open_handshake=get("open_timeout"),
            close_handshake=get("close_timeout"),
            auto_ping_interval=get("ping_interval"),
            auto_ping_timeout=get("ping_timeout"),
        ),
        tls=TLSSettings(cert=get("tls_cert"), key=get("tls_key")),
        ticker_interval=get("ticker_interval"),
        hub=get("hub") or None,
        apps=AppSettings(
            history_size=get("history_size"),
            max_history_bytes=get("max_history_bytes"),
            error_budget=get("error_budget"),
            max_rooms=get("max_rooms"),
            max_topics=get("max_topics"),
            max_retained_rooms=get("max_retained_rooms"),
            room_ttl=get("room_ttl"),
            server_only_topics=get("server_only_topic"),
        ),
        auth=AuthSettings(
            secret=get("auth_secret"),
            secret_file=get("auth_secret_file"),
            public_key_file=get("auth_public_key"),
            algorithms=get("auth_algorithm"),
            audience=get("auth_audience"),
            issuer=get("auth_issuer"),
            leeway=get("auth_leeway"),
            query_token=not get("auth_no_query_token"),
            close_on_expiry=not get("auth_keep_expired"),
        ),
        rate_limits=RateLimitSettings(
            max_message_rate=get("max_message_rate"),
            max_byte_rate=get("max_byte_rate"),
            burst=get("rate_burst"),
        ),
        workers=get("workers"),
        metrics=MetricsSettings(port=get("metrics_port"), host=get("metrics_host")),
    )
    return settings.validate()


__all__ = ["SERVER_OPTIONS", "Option", "SettingsError", "add_server_arguments", "server_settings"]
