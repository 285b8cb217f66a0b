"""A server whose application code publishes through app.services["pubsub"] (the server-side API).

Usage: python tests/ticker_server.py BACKEND PORT

Publishes {"n": i} to ``ticks.demo`` every 50 ms and writes
``published n=<i> reached=<count>`` on stderr; ``serving at URL`` once listening.
Also registers an RPC method ``later_double`` answering through the backend's
own future type (a Deferred on Twisted, an asyncio Future on asyncio).
"""

from __future__ import annotations

import sys

import txaio

import wskit
from wskit import ServerSettings, WebSocketApp


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def make_app(port: int) -> WebSocketApp:
    return WebSocketApp(ServerSettings(port=port, serve_static=False))


def tick(app: WebSocketApp, state: dict) -> None:
    reached = app.services["pubsub"].publish("ticks.demo", {"n": state["n"]})
    log(f"published n={state['n']} reached={reached}")
    state["n"] += 1


def main(backend: str, port: int) -> None:
    async def serve(stopping) -> None:
        app = make_app(port)
        state = {"n": 0}
        if backend == "twisted":
            from twisted.internet import reactor, task

            from wskit import twisted as wtwisted

            @app.services["rpc"].register("later_double")
            def later_double(x):
                return task.deferLater(reactor, 0.01, lambda: x * 2)

            svc = await wtwisted.listen(app=app, reactor=reactor)
            bound, close = svc.port.getHost().port, svc.stopService
        else:
            import asyncio

            from wskit import asyncio as wasyncio

            loop = asyncio.get_running_loop()

            @app.services["rpc"].register("later_double")
            def later_double(x):
                future = loop.create_future()
                loop.call_later(0.01, future.set_result, x * 2)
                return future

            server = await wasyncio.serve(app=app)
            bound, close = server.port, server.close
        log(f"serving at ws://127.0.0.1:{bound}/ws")
        while not txaio.is_called(stopping):
            tick(app, state)
            await txaio.sleep(0.05)
        close()

    wskit.run(serve, backend)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
