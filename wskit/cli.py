"""The ``wskit`` command: ``serve``, ``connect`` and ``protocols``.

Errors a user can cause (bad option, bad URL, port in use, refused connection,
rejected handshake) print one line on stderr and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from .allocator import fix_mmap_threshold
from .app import WebSocketApp
from .errors import HandshakeError, HubUnavailable, ListenError
from .options import add_server_arguments, server_settings
from .protocol import split_ws_url
from .runner import run
from .settings import (
    BACKENDS,
    ClientSettings,
    CompressionSettings,
    LimitSettings,
    ReconnectSettings,
    ServerSettings,
    SettingsError,
)

EXIT_USAGE = 2
EXIT_FAILURE = 1


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    sys.stderr.write(f"wskit: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def describe_connect_error(exc: BaseException, url: str) -> str:
    text = str(exc)
    # ssl.SSLCertVerificationError is a ValueError: test for it before "bad URL".
    if "certificate verify failed" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        detail = getattr(exc, "verify_message", None)
        why = f"certificate verify failed: {detail}" if detail else "certificate verify failed"
        return (f"TLS certificate of {url} is not trusted ({why}); "
                f"pass --ca-file with the server's certificate or its CA")
    if isinstance(exc, HandshakeError):
        if exc.status:
            return f"handshake rejected by {url}: HTTP {exc.status} {exc.reason}".rstrip()
        return f"handshake with {url} failed: {exc.reason}"
    if isinstance(exc, ValueError):
        return f"bad URL: {exc}"
    name = type(exc).__name__
    if "ConnectionRefused" in name or isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {url} (is a server listening there?)"
    if "DNSLookup" in name or "gaierror" in name:
        return f"cannot resolve host in {url}"
    if "Timeout" in name:
        return f"timed out connecting to {url}"
    text = text.strip() or name
    return f"cannot connect to {url}: {text}"


# -- serve ---------------------------------------------------------------------


def start_logging(backend: str) -> None:
    """One line per event on stderr; our own error lines stay plain (no stdio capture)."""
    import txaio

    if backend == "twisted":
        from twisted.logger import globalLogBeginner, textFileLogObserver

        txaio.set_global_log_level("info")
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    else:
        txaio.start_logging(out=sys.stderr, level="info")


async def _serve(settings: ServerSettings, backend: str, stopping: Any) -> int:
    """Listen, announce, serve until SIGINT/SIGTERM, then close every connection with 1001."""
    if backend == "twisted":
        from twisted.internet import reactor

        from . import twisted as wtwisted

        start_logging(backend)
        svc = wtwisted.WebSocketService(settings, reactor=reactor)
        svc.startService()
        port = (await svc.when_listening()).getHost().port
        app, names, shutdown = svc.app, svc.app.registry.names, svc.stopService
    else:
        from . import asyncio as wasyncio

        start_logging(backend)
        server = await wasyncio.serve(settings)
        app, port, names = server.app, server.port, server.app.registry.names

        async def shutdown() -> None:
            server.close()
            await server.wait_closed()

    await app.hub_ready(shutdown)

    if settings.metrics.enabled:
        from .metrics_http import listening_port, metrics_url

        metrics_port = listening_port(svc.metrics_port) if backend == "twisted" else server.metrics_port
        sys.stderr.write(f"wskit: metrics at {metrics_url(settings.metrics, metrics_port)}\n")
    sys.stderr.write(f"wskit: serving {', '.join(names)} at {settings.url_for(port)} ({backend})\n")
    sys.stderr.flush()
    await stopping
    await shutdown()
    return 0


async def _supervise(settings: ServerSettings, backend: str, stopping: Any) -> int:
    """--workers N: a supervisor and N worker processes on one port (wskit.workers)."""
    from .workers import supervise

    def announce(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    start_logging(backend)
    return await supervise(settings, backend, stopping, announce=announce)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = server_settings(vars(args))
        if settings.endpoint and args.backend == "asyncio":
            raise SettingsError("--endpoint takes a Twisted endpoint string: use --backend twisted")
        if settings.hub:
            from .redis_hub import require_client

            require_client(args.backend)
        if settings.metrics.enabled:
            from .metrics import check_available

            check_available()
        # Validates subprotocol names and compression codecs up front.
        WebSocketApp(settings.replace(workers=1))
    except (SettingsError, KeyError) as exc:
        fail(str(exc).strip('"'), EXIT_USAGE)
    fix_mmap_threshold()  # a long-running server: see wskit/allocator.py
    try:
        if settings.workers > 1:
            return run(lambda stopping: _supervise(settings, args.backend, stopping), args.backend)
        return run(lambda stopping: _serve(settings, args.backend, stopping), args.backend, use_uvloop=True)
    except (ListenError, HubUnavailable) as exc:
        fail(str(exc))


def cmd_worker(args: argparse.Namespace) -> int:
    from .workers import worker_main

    fix_mmap_threshold()  # each worker is a long-running server: see wskit/allocator.py
    return worker_main()


# -- connect -------------------------------------------------------------------


def client_settings_from_args(args: argparse.Namespace) -> ClientSettings:
    return ClientSettings(
        subprotocols=tuple(args.subprotocol or ()),
        compression=CompressionSettings(
            enabled=not args.no_compress,
            server_max_window_bits=args.server_max_window_bits,
            client_max_window_bits=args.client_max_window_bits,
            server_no_context_takeover=args.server_no_context_takeover,
            client_no_context_takeover=args.client_no_context_takeover,
            hibernate_after=args.compress_hibernate_after,
            codecs=tuple(args.compression or CompressionSettings().codecs),
        ),
        origin=args.origin,
        ca_file=args.ca_file,
        limits=LimitSettings(max_message_size=args.max_message_size),
        reconnect=ReconnectSettings(
            initial_delay=args.reconnect_delay,
            max_delay=args.reconnect_max_delay,
            max_attempts=args.reconnect_attempts,
        ),
    ).validate()


def read_token_file(path: str, what: str = "token file") -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror or exc}", EXIT_USAGE)
    if not token:
        fail(f"{what} {path} is empty", EXIT_USAGE)
    return token


def cmd_connect(args: argparse.Namespace) -> int:
    from .clients.connect import with_token
    from .clients.interactive import run_interactive

    try:
        settings = client_settings_from_args(args)
        if args.token and args.token_file:
            raise SettingsError("give the token once: --token or --token-file, not both")
        token = read_token_file(args.token_file) if args.token_file else args.token
        if token is not None:
            settings = with_token(settings, token)
    except (SettingsError, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        split_ws_url(args.url)
    except SettingsError as exc:
        fail(f"bad URL: {exc}", EXIT_USAGE)
    try:
        return run_interactive(args.url, settings, backend=args.backend, linger=args.linger,
                               reconnect=args.reconnect, describe=lambda exc: describe_connect_error(exc, args.url))
    except Exception as exc:
        fail(describe_connect_error(exc, args.url))


# -- token -----------------------------------------------------------------------


def cmd_token(args: argparse.Namespace) -> int:
    """Print a signed token (JWT) for a server started with --auth-secret or --auth-public-key."""
    from .auth import ACTIONS, MIN_SECRET_BYTES, issue_token, private_key_algorithm

    keys = [k for k in (args.secret, args.secret_file, args.private_key) if k]
    if len(keys) != 1:
        fail("give exactly one key: --secret, --secret-file or --private-key", EXIT_USAGE)
    if args.ttl < 0:
        fail(f"--ttl must be >= 0 seconds, not {args.ttl:g}", EXIT_USAGE)
    try:
        if args.private_key:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            with open(args.private_key, "rb") as f:
                key = load_pem_private_key(f.read(), password=None)
            algorithm = args.algorithm or private_key_algorithm(key)
        else:
            key = args.secret if args.secret else read_token_file(args.secret_file, "secret file")
            algorithm = args.algorithm or "HS256"
            if len(key.encode("utf-8")) < MIN_SECRET_BYTES:
                sys.stderr.write(f"wskit: warning: the secret is shorter than {MIN_SECRET_BYTES} bytes; "
                                 "fine for a demo, guessable for anything else\n")
        permissions = {action: tuple(getattr(args, action) or ()) for action in ACTIONS}
        token = issue_token(key, args.sub, name=args.name, ttl=args.ttl, permissions=permissions,
                            algorithm=algorithm, audience=args.audience, issuer=args.issuer)
    except OSError as exc:
        fail(f"cannot read {args.private_key}: {exc.strerror or exc}", EXIT_USAGE)
    except (ValueError, TypeError, SettingsError) as exc:
        fail(f"cannot sign a token: {exc}", EXIT_USAGE)
    print(token)
    return 0


def cmd_protocols(args: argparse.Namespace) -> int:
    app = WebSocketApp(ServerSettings())
    for entry in app.registry:
        marker = " (default)" if entry.name == app.settings.default_subprotocol else ""
        print(f"{entry.name}{marker}  {entry.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wskit",
        description="Real-time WebSocket toolkit on Autobahn|Python (Twisted or asyncio).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="serve the shipped subprotocols (and the demo page)")
    serve.add_argument("--backend", choices=BACKENDS, default="twisted", help="event loop (default: twisted)")
    add_server_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    connect = sub.add_parser("connect", help="interactive client: stdin lines out, messages printed")
    connect.add_argument("url", help="ws:// or wss:// URL")
    connect.add_argument("--subprotocol", "-s", action="append", metavar="NAME",
                         help="offer this subprotocol (repeatable, in preference order)")
    connect.add_argument("--no-compress", action="store_true", help="do not offer permessage-deflate")
    connect.add_argument("--server-max-window-bits", type=int, default=15, metavar="BITS",
                         help="ask the server to compress with at most this window, 9-15 (15: don't ask)")
    connect.add_argument("--client-max-window-bits", type=int, default=CompressionSettings().client_max_window_bits,
                         metavar="BITS", help="window this client compresses with, 9-15")
    connect.add_argument("--server-no-context-takeover", action="store_true",
                         help="ask the server to reset its compressor after each message")
    connect.add_argument("--client-no-context-takeover", action="store_true",
                         help="reset this client's compressor after each message")
    connect.add_argument("--compress-hibernate-after", type=float, default=CompressionSettings().hibernate_after,
                         metavar="SECONDS", help="free the idle connection's zlib contexts after this many "
                         "seconds, keeping only its last window of text (0 = never)")
    connect.add_argument("--compression", action="append", metavar="EXT",
                         help="offer this compression extension (repeatable; default permessage-deflate)")
    connect.add_argument("--origin", help="send this Origin header")
    connect.add_argument("--ca-file", metavar="FILE", help="trust this PEM CA/certificate for wss://")
    connect.add_argument("--max-message-size", type=int, default=16 * 1024 * 1024, metavar="BYTES")
    connect.add_argument("--linger", type=float, default=0.5, metavar="SECONDS",
                         help="after end of input, close once nothing has arrived for this long")
    connect.add_argument("--token", metavar="TOKEN",
                         help="send this token (JWT) as Authorization: Bearer TOKEN")
    connect.add_argument("--token-file", metavar="FILE", help="read the token from FILE")
    defaults = ReconnectSettings()
    connect.add_argument("--reconnect", action="store_true",
                         help="keep the session across server restarts and network failures: reconnect "
                              "with backoff after a close with 1001/1006/1011/1012/1013/1014 or a failed "
                              "attempt; lines typed while disconnected are not sent")
    connect.add_argument("--reconnect-delay", type=float, default=defaults.initial_delay, metavar="SECONDS",
                         help="first wait before reconnecting, drawn at random up to this (default: %(default)s)")
    connect.add_argument("--reconnect-max-delay", type=float, default=defaults.max_delay, metavar="SECONDS",
                         help="longest wait between attempts; each failure waits 1.618x longer (default: %(default)s)")
    connect.add_argument("--reconnect-attempts", type=int, default=defaults.max_attempts, metavar="N",
                         help="give up after N failed attempts in a row (default: 0, never)")
    connect.add_argument("--backend", choices=BACKENDS, default="twisted")
    connect.set_defaults(func=cmd_connect)

    token = sub.add_parser("token", help="print a signed token (JWT) for a server with authentication on",
                           description="Print a signed token for `wskit serve --auth-secret` (HS256) or "
                                       "--auth-public-key (sign with the private key). Patterns: '*' "
                                       "matches any characters; an action not given is denied.")
    token.add_argument("--secret", metavar="SECRET", help="HMAC secret (the server's --auth-secret)")
    token.add_argument("--secret-file", metavar="FILE", help="read the HMAC secret from FILE")
    token.add_argument("--private-key", metavar="FILE", help="PEM private key (RSA, EC or Ed25519)")
    token.add_argument("--algorithm", metavar="ALG",
                       help="signing algorithm (default: HS256, or the private key's own)")
    token.add_argument("--sub", required=True, help="the user's id (the 'sub' claim)")
    token.add_argument("--name", help="display name; the chat nick when authentication is on")
    for action, what in (("join", "chat rooms"), ("subscribe", "pub/sub topics and patterns"),
                         ("publish", "pub/sub topics"), ("call", "JSON-RPC methods")):
        token.add_argument(f"--{action}", action="append", metavar="PATTERN",
                           help=f"{what} the token allows to {action} (repeatable)")
    token.add_argument("--ttl", type=float, default=3600, metavar="SECONDS",
                       help="seconds until the token expires (default: 3600; 0: no exp claim, which servers refuse unless told otherwise)")
    token.add_argument("--audience", help="the 'aud' claim (the server's --auth-audience)")
    token.add_argument("--issuer", help="the 'iss' claim (the server's --auth-issuer)")
    token.set_defaults(func=cmd_token)

    protocols = sub.add_parser("protocols", help="list the shipped subprotocols")
    protocols.set_defaults(func=cmd_protocols)

    # Internal: one worker process of `serve --workers N`, started by the supervisor
    # (wskit.workers), which hands it its settings and listening socket. The options
    # only make the process list readable.
    worker = sub.add_parser("_worker")
    worker.add_argument("--worker", type=int)
    worker.add_argument("--backend", choices=BACKENDS)
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

