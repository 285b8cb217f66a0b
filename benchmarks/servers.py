"""The servers the benchmarks measure, one per process, each on 127.0.0.1.

    python benchmarks/servers.py wskit --backend twisted [wskit serve options...]
    python benchmarks/servers.py wskit --backend asyncio [--uvloop] [--no-malloc-trim] [wskit serve options...]
    python benchmarks/servers.py websockets [--uvloop] [--no-compress]
    python benchmarks/servers.py autobahn --backend twisted|asyncio [--no-compress]
    python benchmarks/servers.py picows [--uvloop]

Every server listens on ``--port`` (0 by default: a free port), prints one line
``serving ws://127.0.0.1:PORT/ws (what it is)`` once it listens, and serves
until it gets SIGTERM or SIGINT. Each serves, at its library's defaults:

* **echo** to a client that offers no subprotocol: every message comes back
  unchanged, text as text, binary as binary;
* **pub/sub** (all but picows) to a client that offers ``wskit.pubsub.v1.json``:
  ``{"type": "subscribe", "topic": T}`` is answered ``{"type": "subscribed",
  "topic": T}``; ``{"type": "publish", "topic": T, "data": D}`` sends
  ``{"type": "event", "topic": T, "data": D}`` (compact JSON, as wskit writes
  it) to every subscriber of T. wskit serves its own ``wskit.pubsub.v1.json``;
  the peers implement this subset the way an application on that library
  would: python-websockets with its ``broadcast()`` helper, Autobahn with one
  ``PreparedMessage`` sent to each subscriber (framed once; Autobahn compresses
  it per connection for subscribers that negotiated permessage-deflate).

``wskit``: what ``wskit serve`` runs (all shipped subprotocols, the default
settings, one log line per connection), on Twisted's default reactor or on
asyncio; unlike ``wskit serve``, asyncio runs on the default event loop unless
``--uvloop`` is given. ``websockets``: python-websockets (its asyncio
implementation, default compression: window 12 bits, memLevel 5).
``autobahn``: plain Autobahn|Python, accepting permessage-deflate with
Autobahn's defaults (window 15 bits, memLevel 8) the way its examples do.
``picows``: the picows echo server (Cython; no permessage-deflate), the
ceiling: how fast a Python process can echo.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

PUBSUB = "wskit.pubsub.v1.json"


def announce(port: int, what: str) -> None:
    print(f"serving ws://127.0.0.1:{port}/ws ({what})", flush=True)


def compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio default loop"


def run_asyncio(main, use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


class Topics:
    """Subscribers per topic, for the peers' pub/sub subset."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set] = {}

    def subscribe(self, topic: str, conn) -> None:
        self.subscribers.setdefault(topic, set()).add(conn)

    def drop(self, conn) -> None:
        for subs in self.subscribers.values():
            subs.discard(conn)


# -- wskit ----------------------------------------------------------------------------------------

def wskit_server(args: argparse.Namespace) -> None:
    from wskit.cli import start_logging
    from wskit.options import server_settings
    from wskit.runner import run

    settings = server_settings(vars(args))
    if args.no_malloc_trim:
        from wskit import compression

        compression.MALLOC_TRIM._trim = None  # hibernation frees zlib contexts without trimming the heap

    async def main(stopping):
        if args.backend == "twisted":
            from twisted.internet import reactor

            from wskit import twisted as wtwisted

            start_logging("twisted")
            service = wtwisted.WebSocketService(settings, reactor=reactor)
            service.startService()
            port = (await service.when_listening()).getHost().port
            announce(port, f"wskit, Twisted {type(reactor).__name__}")
            await stopping
            await service.stopService()
        else:
            from wskit import asyncio as wasyncio

            start_logging("asyncio")
            server = await wasyncio.serve(settings)
            announce(server.port, f"wskit, {loop_name()}")
            await stopping
            server.close()
            await server.wait_closed()

    run(main, args.backend, use_uvloop=args.uvloop)


# -- python-websockets ----------------------------------------------------------------------------

def websockets_server(args: argparse.Namespace) -> None:
    import websockets
    from websockets.asyncio.server import broadcast, serve

    topics = Topics()

    async def pubsub(ws) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                kind, topic = msg.get("type"), msg.get("topic")
                if kind == "subscribe":
                    topics.subscribe(topic, ws)
                    await ws.send(compact({"type": "subscribed", "topic": topic}))
                elif kind == "publish":
                    broadcast(topics.subscribers.get(topic, ()),
                              compact({"type": "event", "topic": topic, "data": msg["data"]}))
        finally:
            topics.drop(ws)

    def select_subprotocol(ws, offered):
        return PUBSUB if PUBSUB in offered else None  # clients offering nothing get echo

    async def handler(ws) -> None:
        if ws.subprotocol == PUBSUB:
            await pubsub(ws)
            return
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", args.port, select_subprotocol=select_subprotocol,
                         compression=None if args.no_compress else "deflate") as server:
            port = server.sockets[0].getsockname()[1]
            announce(port, f"python-websockets {websockets.__version__}, {loop_name()}")
            await asyncio.Future()

    run_asyncio(main, args.uvloop)


# -- Autobahn|Python ------------------------------------------------------------------------------

def autobahn_protocol(base: type, topics: Topics) -> type:
    """Echo, or the pub/sub subset when the client offers it; on either backend's protocol class."""

    class Server(base):
        def onConnect(self, request):
            return PUBSUB if PUBSUB in request.protocols else None

        def onMessage(self, payload, isBinary):
            if self.websocket_protocol_in_use != PUBSUB:
                self.sendMessage(payload, isBinary)
                return
            msg = json.loads(payload)
            kind, topic = msg.get("type"), msg.get("topic")
            if kind == "subscribe":
                topics.subscribe(topic, self)
                self.sendMessage(compact({"type": "subscribed", "topic": topic}).encode())
            elif kind == "publish":
                event = compact({"type": "event", "topic": topic, "data": msg["data"]}).encode()
                prepared = self.factory.prepareMessage(event)
                for subscriber in topics.subscribers.get(topic, ()):
                    subscriber.sendPreparedMessage(prepared)

        def onClose(self, wasClean, code, reason):
            topics.drop(self)

    return Server


def accept_deflate(offers):
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def autobahn_server(args: argparse.Namespace) -> None:
    import autobahn

    topics = Topics()
    version = f"Autobahn {autobahn.__version__}"
    if args.backend == "twisted":
        from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
        from twisted.internet import reactor

        factory = WebSocketServerFactory()
        factory.protocol = autobahn_protocol(WebSocketServerProtocol, topics)
        if not args.no_compress:
            factory.setProtocolOptions(perMessageCompressionAccept=accept_deflate)
        listening = reactor.listenTCP(args.port, factory, interface="127.0.0.1")
        announce(listening.getHost().port, f"{version}, Twisted {type(reactor).__name__}")
        reactor.run()
        return

    from autobahn.asyncio.websocket import WebSocketServerFactory, WebSocketServerProtocol

    async def main() -> None:
        # Built inside the running loop: an asyncio factory binds the loop it is created on.
        factory = WebSocketServerFactory()
        factory.protocol = autobahn_protocol(WebSocketServerProtocol, topics)
        if not args.no_compress:
            factory.setProtocolOptions(perMessageCompressionAccept=accept_deflate)
        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", args.port)
        announce(server.sockets[0].getsockname()[1], f"{version}, {loop_name()}")
        await asyncio.Future()

    run_asyncio(main, args.uvloop)


# -- picows ---------------------------------------------------------------------------------------

def picows_server(args: argparse.Namespace) -> None:
    import picows
    from picows import WSListener, WSMsgType, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport, frame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                # Whole messages only: the clients here never fragment.
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())

    async def main() -> None:
        server = await ws_create_server(lambda request: Echo(), "127.0.0.1", args.port)
        announce(server.sockets[0].getsockname()[1], f"picows {picows.__version__}, {loop_name()}")
        await asyncio.Future()

    run_asyncio(main, args.uvloop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="library", required=True)

    from wskit.options import add_server_arguments

    wskit = sub.add_parser("wskit", help="wskit with its default settings (takes wskit serve's options)")
    wskit.add_argument("--backend", choices=["twisted", "asyncio"], required=True)
    wskit.add_argument("--uvloop", action="store_true", help="asyncio on uvloop")
    wskit.add_argument("--no-malloc-trim", action="store_true",
                       help="never call malloc_trim after hibernating idle deflate connections (to measure it)")
    add_server_arguments(wskit)
    wskit.set_defaults(port=0, run=wskit_server)

    peers = {"websockets": websockets_server, "autobahn": autobahn_server, "picows": picows_server}
    for name, run in peers.items():
        peer = sub.add_parser(name)
        peer.add_argument("--port", type=int, default=0)
        if name == "autobahn":
            peer.add_argument("--backend", choices=["twisted", "asyncio"], default="twisted")
        if name != "picows":
            peer.add_argument("--no-compress", action="store_true", help="decline permessage-deflate")
        peer.add_argument("--uvloop", action="store_true", help="asyncio on uvloop")
        peer.set_defaults(run=run)

    args = parser.parse_args(argv)
    if args.library == "autobahn" and args.backend == "twisted" and args.uvloop:
        parser.error("--uvloop is for asyncio servers")
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
