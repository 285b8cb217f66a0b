"""A server built with the embedding API, serving extra subprotocols that tag replies.

python tests/apps/tagged_server.py BACKEND PORT PREFER
Replies to each message with "<subprotocol>:<message>", so a test can see which
handler a connection was routed to. Prints "serving" on stderr once bound.
"""

import sys

import wskit
from wskit import Handler, ServerSettings, SubprotocolRegistry, WebSocketApp
from wskit.protocols import EchoHandler


def tagger(name):
    class Tagged(Handler):
        subprotocol = name

        def on_message(self, payload, is_binary):
            self.connection.send_text(f"{name}:{payload.decode()}")

    return Tagged


def make_app(port, prefer):
    registry = SubprotocolRegistry()
    for name in ("test.alpha", "test.beta"):
        registry.register(name, tagger(name))
    registry.register("wskit.echo", EchoHandler)
    return WebSocketApp(ServerSettings(port=port, prefer=prefer), registry=registry)


def main():
    backend, port, prefer = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    async def serve(stopping):
        if backend == "asyncio":
            from wskit import asyncio as wasyncio

            server = await wasyncio.serve(app=make_app(port, prefer))
            bound, close = server.port, server.close
        else:
            from twisted.internet import reactor

            from wskit import twisted as wtwisted

            svc = await wtwisted.listen(app=make_app(port, prefer), reactor=reactor)
            bound, close = svc.port.getHost().port, svc.stopService
        sys.stderr.write(f"serving at ws://127.0.0.1:{bound}/ws\n")
        sys.stderr.flush()
        await stopping
        close()

    wskit.run(serve, backend)


if __name__ == "__main__":
    main()
