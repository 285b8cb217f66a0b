"""Peer echo servers the benchmarks compare wskit with, each at its library's defaults.

    python benchmarks/peers.py autobahn --port 9001 [--no-compress]
    python benchmarks/peers.py websockets --port 9002 [--no-compress]

``autobahn``: a plain Autobahn|Python Twisted echo server that accepts
permessage-deflate with Autobahn's defaults (window 15 bits, memLevel 8,
client window left at 15) the way Autobahn's examples do.
``websockets``: a python-websockets echo server with its default compression
(server and client window 12 bits, memLevel 5).
Each prints a line containing "serving" once it listens.
"""

from __future__ import annotations

import argparse
import sys


def autobahn_server(port: int, compress: bool) -> None:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

    from wskit.runner import run

    class Echo(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    def accept(offers):
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                return PerMessageDeflateOfferAccept(offer)
        return None

    async def main(stopping):
        from twisted.internet import reactor

        factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}")
        factory.protocol = Echo
        if compress:
            factory.setProtocolOptions(perMessageCompressionAccept=accept)
        listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
        print(f"autobahn echo serving on {port}", flush=True)
        await stopping
        await listening.stopListening()

    run(main, "twisted")


def websockets_server(port: int, compress: bool) -> None:
    import asyncio

    from websockets.asyncio.server import serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def main():
        async with serve(echo, "127.0.0.1", port, compression="deflate" if compress else None):
            print(f"websockets echo serving on {port}", flush=True)
            await asyncio.Future()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", choices=["autobahn", "websockets"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-compress", action="store_true")
    args = parser.parse_args(argv)
    run = autobahn_server if args.library == "autobahn" else websockets_server
    try:
        run(args.port, not args.no_compress)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
