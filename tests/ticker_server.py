"""A server whose application code publishes through app.services["pubsub"] (the server-side API).

Usage: python tests/ticker_server.py BACKEND PORT

Publishes {"n": i} to ``ticks.demo`` every 50 ms and writes
``published n=<i> reached=<count>`` on stderr; ``serving`` once listening.
Also registers an RPC method ``later_double`` answering through the backend's
own future type (a Deferred on Twisted, an asyncio Future on asyncio).
"""

from __future__ import annotations

import sys

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


def run_twisted(port: int) -> None:
    from twisted.internet import reactor, task

    from wskit import twisted as wtwisted

    app = make_app(port)
    state = {"n": 0}

    @app.services["rpc"].register("later_double")
    def later_double(x):
        return task.deferLater(reactor, 0.01, lambda: x * 2)

    def listening(_svc) -> None:
        log(f"serving on {port}")
        task.LoopingCall(tick, app, state).start(0.05)

    wtwisted.listen(app=app, reactor=reactor).addCallback(listening)
    reactor.run()


def run_asyncio(port: int) -> None:
    import asyncio

    from wskit import asyncio as wasyncio

    async def main() -> None:
        app = make_app(port)
        loop = asyncio.get_running_loop()

        @app.services["rpc"].register("later_double")
        def later_double(x):
            future = loop.create_future()
            loop.call_later(0.01, future.set_result, x * 2)
            return future

        server = await wasyncio.serve(app=app)
        log(f"serving on {server.port}")
        state = {"n": 0}
        while True:
            tick(app, state)
            await asyncio.sleep(0.05)

    asyncio.run(main())


if __name__ == "__main__":
    backend, port = sys.argv[1], int(sys.argv[2])
    run_twisted(port) if backend == "twisted" else run_asyncio(port)
