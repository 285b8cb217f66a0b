"""A plain Autobahn echo server: the baseline the runner compares wskit with.

Autobahn's minimal example (onMessage sends the payload back) plus
permessage-deflate accepted for the client's first deflate offer, with the
same 16 MiB message limit the wskit testee gets. No wskit protocol code is
involved (``wskit.run`` only runs the event loop)::

    python -m autobahn_suite.baseline_server --backend twisted --port 9000
    python -m autobahn_suite server --baseline --backend asyncio
"""

from __future__ import annotations

import argparse
import importlib
import sys

from wskit.runner import run

from .config import ECHO_MAX_MESSAGE_SIZE


def accept_deflate(offers):
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def configure(factory) -> None:
    factory.setProtocolOptions(perMessageCompressionAccept=accept_deflate,
                               maxMessagePayloadSize=ECHO_MAX_MESSAGE_SIZE,
                               maxFramePayloadSize=ECHO_MAX_MESSAGE_SIZE)


def serve_baseline(backend: str, port: int) -> None:
    """Autobahn's own echo server (no wskit protocol code) on ``backend``, until SIGINT/SIGTERM."""
    websocket = importlib.import_module(f"autobahn.{backend}.websocket")

    class EchoServerProtocol(websocket.WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    async def main(stopping) -> None:
        factory = websocket.WebSocketServerFactory(f"ws://127.0.0.1:{port}")
        factory.protocol = EchoServerProtocol
        configure(factory)
        if backend == "twisted":
            from twisted.internet import reactor

            listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
        else:
            import asyncio

            listening = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", port)
        sys.stderr.write(f"baseline: serving at ws://127.0.0.1:{port} ({backend})\n")
        await stopping
        listening.close() if backend == "asyncio" else listening.stopListening()

    run(main, backend)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autobahn_suite.baseline_server")
    parser.add_argument("--backend", choices=("twisted", "asyncio"), default="twisted")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    serve_baseline(args.backend, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
