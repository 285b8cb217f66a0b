"""wskit inside an existing asyncio program.

The program has its own work (here: a loop that publishes its "queue depth"
on pub/sub topic ``app.metrics`` every second); wskit serves the demo page, the
WebSocket endpoint and the demo ticker on one port beside it, and everything
stops together on Ctrl-C or SIGTERM.

Run it with:

    python docs/examples/asyncio_app.py --port 9000

then open http://127.0.0.1:9000/ or subscribe to ``app.metrics`` with
``wskit connect ws://127.0.0.1:9000/ws -s wskit.pubsub.v1.json`` and type
``{"type": "subscribe", "topic": "app.metrics"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal

import txaio

from wskit import ServerSettings, WebSocketApp
from wskit import asyncio as wskit_asyncio  # selects asyncio for txaio: import before using wskit


async def publish_metrics(app: WebSocketApp, every: float) -> None:
    """Your program's own work; it reaches WebSocket clients through app.services."""
    pubsub = app.services["pubsub"]
    for n in itertools.count(1):
        pubsub.publish("app.metrics", {"n": n, "queue_depth": n % 7})
        await asyncio.sleep(every)


async def main(port: int, every: float) -> None:
    txaio.start_logging(level="info")
    settings = ServerSettings(host="127.0.0.1", port=port)
    app = WebSocketApp(settings)
    server = await wskit_asyncio.serve(app=app)  # returns once listening; starts the demo ticker
    print(f"serving {settings.replace(port=server.port).url}", flush=True)

    worker = asyncio.create_task(publish_metrics(app, every))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    worker.cancel()
    server.close()  # stops listening, stops the ticker, closes connections with 1001
    await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between metrics events")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.every))
