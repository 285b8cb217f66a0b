"""A plain Autobahn echo server: the baseline the runner compares wskit with.

Autobahn's minimal example (onMessage sends the payload back) plus
permessage-deflate accepted for the client's first deflate offer, with the
same 16 MiB message limit the wskit testee gets. No wskit code is involved::

    python -m autobahn_suite.baseline_server --backend twisted --port 9000
    python -m autobahn_suite server --baseline --backend asyncio
"""

from __future__ import annotations

import argparse
import sys

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


def run_twisted(port: int) -> None:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet import reactor

    class EchoServerProtocol(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}")
    factory.protocol = EchoServerProtocol
    configure(factory)
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    sys.stderr.write(f"baseline: serving at ws://127.0.0.1:{port} (twisted)\n")
    reactor.run()


def run_asyncio(port: int) -> None:
    import asyncio

    from autobahn.asyncio.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class EchoServerProtocol(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    async def main() -> None:
        factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}")
        factory.protocol = EchoServerProtocol
        configure(factory)
        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", port)
        sys.stderr.write(f"baseline: serving at ws://127.0.0.1:{port} (asyncio)\n")
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autobahn_suite.baseline_server")
    parser.add_argument("--backend", choices=("twisted", "asyncio"), default="twisted")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    (run_asyncio if args.backend == "asyncio" else run_twisted)(args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
