"""Embedding styles, one process per backend.

python tests/apps/embedded_server.py native BACKEND PORT
    a ServerProtocol subclass in Autobahn's native style (onConnect/onMessage)
python tests/apps/embedded_server.py resource twisted PORT
    wskit's Resource mounted at /live/socket of the application's own Site
Prints "serving" on stderr once bound.
"""

import sys

import wskit
from wskit import ServerSettings


def ready(port):
    sys.stderr.write(f"serving at ws://127.0.0.1:{port}/\n")
    sys.stderr.flush()


def native_protocol(base):
    class Reverse(base):
        """Replies reversed text; negotiation, compression and limits still come from wskit."""

        def onConnect(self, request):
            self.chosen = super().onConnect(request)
            return self.chosen

        def onMessage(self, payload, isBinary):
            self.sendMessage(payload[::-1], isBinary)

    return Reverse


def main():
    style, backend, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = ServerSettings(port=port, limits=ServerSettings().limits.__class__(max_message_size=1000))

    async def serve(stopping):
        if backend == "asyncio":
            from wskit import asyncio as wasyncio

            server = await wasyncio.serve(settings, protocol=native_protocol(wasyncio.ServerProtocol))
            ready(server.port)
            await stopping
            server.close()
            await server.wait_closed()
            return
        from twisted.internet import reactor
        from twisted.web import resource, server

        from wskit import twisted as wtwisted

        if style == "native":
            svc = await wtwisted.listen(settings, reactor=reactor, protocol=native_protocol(wtwisted.ServerProtocol))
            ready(svc.port.getHost().port)
            await stopping
            await svc.stopService()
        else:
            root = resource.Resource()
            root.putChild(b"", resource.Resource())
            live = resource.Resource()
            root.putChild(b"live", live)
            live.putChild(b"socket", wtwisted.websocket_resource(settings=settings, reactor=reactor))
            listening = reactor.listenTCP(port, server.Site(root), interface="127.0.0.1")
            ready(listening.getHost().port)
            await stopping
            await listening.stopListening()

    wskit.run(serve, backend)


if __name__ == "__main__":
    main()
