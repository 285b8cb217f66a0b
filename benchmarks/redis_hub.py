"""Broadcast through the Redis hub against the in-process hub: deliveries/s and latency.

Configurations, each with the same subscribers and the same publisher (python-websockets
clients on ``wskit.pubsub.v1.json``, loopback only):

* ``in-process``: one server, ``InProcessHub`` (the baseline);
* ``redis x1``: one server with ``--hub redis://...``: every publish goes to Redis and back;
* ``redis x2``: two servers on one Redis, subscribers split between them, the publisher on
  the first: each publish is one Redis message to each server.

Two measurements per configuration and round:

* throughput: the publisher sends ``-m`` events as fast as it can; deliveries/s until every
  subscriber has every event;
* latency: ``--paced`` events one every ``--gap`` ms (slow enough that no queue builds up),
  each stamped with the client's clock;
  the time from the publisher's send to each subscriber's receipt, p50 and p99 over all
  deliveries (publisher and subscribers share this process's clock).

Servers run on one backend (``--backend``, twisted by default). A redis-server is started on
a free port, without persistence, for the run. Rounds are interleaved; medians are reported,
and the ratio to ``in-process`` is computed within each round.

    python benchmarks/redis_hub.py                 # small: 50 subscribers x 200 events, ~1 minute
    python benchmarks/redis_hub.py --full          # 500 subscribers x 500 events, both backends
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time

from _common import ROOT, Server, machine_note, median, open_clients, raise_fd_limit, running, table

import sys  # noqa: E402  (after _common put the checkout on the path)

sys.path.insert(0, str(ROOT / "tests"))
from redis_support import RedisServer  # noqa: E402

SUBPROTOCOL = "wskit.pubsub.v1.json"
TOPIC = "bench.ticks"


async def subscribe_all(subs) -> None:
    for ws in subs:
        await ws.send(json.dumps({"type": "subscribe", "topic": TOPIC}))
    for ws in subs:
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass


async def measure(urls: list[str], subscribers: int, events: int, paced: int, gap: float) -> tuple[float, float, float]:
    """(deliveries/s, p50 ms, p99 ms) with subscribers spread over ``urls``, publisher on urls[0]."""
    per = [subscribers // len(urls) + (i < subscribers % len(urls)) for i in range(len(urls))]
    subs = [ws for url, n in zip(urls, per) for ws in await open_clients(url, n, subprotocols=[SUBPROTOCOL],
                                                                      compression=None)]
    publisher = (await open_clients(urls[0], 1, subprotocols=[SUBPROTOCOL], compression=None))[0]
    try:
        await subscribe_all(subs)

        async def burst(n: int, pace: float) -> list[float]:
            latencies: list[float] = []

            async def drain(ws):
                for _ in range(n):
                    event = json.loads(await ws.recv())
                    latencies.append(time.perf_counter() - event["data"]["t"])

            readers = [asyncio.create_task(drain(ws)) for ws in subs]
            for i in range(n):
                await publisher.send(json.dumps({"type": "publish", "topic": TOPIC,
                                                 "data": {"i": i, "t": time.perf_counter(), "bid": 1.0841}}))
                if pace:
                    await asyncio.sleep(pace)
            await asyncio.wait_for(asyncio.gather(*readers), 120)
            return latencies

        await burst(5, 0)  # warm-up
        t0 = time.perf_counter()
        await burst(events, 0)
        rate = subscribers * events / (time.perf_counter() - t0)
        latencies = sorted(await burst(paced, gap / 1000))
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        return rate, p50, p99
    finally:
        await asyncio.gather(*(ws.close() for ws in [*subs, publisher]))


def main() -> None:
    parser = argparse.ArgumentParser(description="broadcast through the Redis hub vs the in-process hub")
    parser.add_argument("-n", "--subscribers", type=int, default=50)
    parser.add_argument("-m", "--events", type=int, default=200)
    parser.add_argument("--paced", type=int, default=100, help="events of the latency phase")
    parser.add_argument("--gap", type=float, default=None,
                        help="ms between paced events (default: subscribers / 10, at least 5: "
                             "well under what the servers deliver, so queues stay empty)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("twisted", "asyncio", "both"), default="twisted")
    parser.add_argument("--full", action="store_true", help="500 subscribers x 500 events, both backends")
    args = parser.parse_args()
    if args.full:
        args.subscribers, args.events, args.backend = 500, 500, "both"
    if args.gap is None:
        args.gap = max(5.0, args.subscribers / 10)
    raise_fd_limit(2 * args.subscribers + 200)
    backends = ("twisted", "asyncio") if args.backend == "both" else (args.backend,)

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(tmp).start()
        try:
            hub = ["--hub", redis.url]
            common = ["--protocol", SUBPROTOCOL, "--ticker-interval", "0", "--max-buffered-bytes", "0"]
            rows = []
            for backend in backends:
                alone = Server("in-process", backend, common)
                one = Server("redis x1", backend, common + hub)
                two = [Server("redis x2", backend, common + hub), Server("redis x2 (b)", backend, common + hub)]
                configs = {"in-process": [alone], "redis x1": [one], "redis x2": two}
                results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in configs}
                with running([alone, one, *two]):
                    for r in range(args.rounds):
                        names = list(configs)
                        names = names[r % len(names):] + names[:r % len(names)]  # rotate the order
                        for name in names:
                            urls = [server.url for server in configs[name]]
                            results[name].append(asyncio.run(measure(urls, args.subscribers, args.events,
                                                                     args.paced, args.gap)))
                base = results["in-process"]
                for name, got in results.items():
                    ratio = median([g[0] / b[0] for g, b in zip(got, base)])
                    rows.append([backend, name, f"{median([g[0] for g in got]):,.0f}", f"{ratio:.2f}",
                                 f"{median([g[1] for g in got]):.2f}", f"{median([g[2] for g in got]):.2f}"])
        finally:
            redis.kill()
    print(f"{args.subscribers} subscribers x {args.events} events (latency: {args.paced} events "
          f"{args.gap:g} ms apart), {args.rounds} interleaved rounds, {machine_note()}, "
          f"{time.monotonic() - started:.0f} s\n")
    print(table(["backend", "hub", "deliveries/s", "/ in-process", "latency p50 ms", "p99 ms"], rows))


if __name__ == "__main__":
    main()
