"""Broadcast fan-out: what permessage-deflate costs a server that publishes to many subscribers.

A wskit server runs ``wskit.pubsub.v1.json`` (Twisted and asyncio backends);
N python-websockets subscribers subscribe to one topic, one more connection
publishes M events to it, and the run ends when every subscriber has every
event. Events: a tiny one (~50 B: under wskit's 64 B compression threshold,
so it is never compressed), a price tick (~150 B) and a 2 KiB JSON document.
Subscribers either offer permessage-deflate (so each delivery is
compressed again with that connection's own compressor: contexts differ per
connection, compressed bytes cannot be shared) or do not (the event is framed
once and the same bytes go to everyone).

Reported: the server's CPU time per delivered event (from
/proc/PID/task/*/schedstat) and deliveries per second, medians of interleaved
rounds, and the ratio compression on / off within each round.

    python benchmarks/broadcast_fanout.py                       # ~1 minute
    python benchmarks/broadcast_fanout.py -n 1000 -m 100 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from _common import (
    Server,
    json_document,
    machine_note,
    median,
    open_clients,
    pubsub_tick,
    raise_fd_limit,
    running,
    server_cpu_ns,
    table,
)

SUBPROTOCOL = "wskit.pubsub.v1.json"
TOPIC = "ticks.EURUSD"


async def fanout(server: Server, subscribers: int, events: list[dict], compress: bool) -> tuple[float, float]:
    """(deliveries/s, server CPU us per delivery)."""
    options = {"compression": "deflate" if compress else None, "subprotocols": [SUBPROTOCOL]}
    subs = await open_clients(server.url, subscribers, **options)
    publisher = (await open_clients(server.url, 1, **options))[0]
    try:
        for ws in subs:
            await ws.send(json.dumps({"type": "subscribe", "topic": TOPIC}))
        for ws in subs:
            assert json.loads(await ws.recv())["type"] == "subscribed"

        async def publish_and_drain(batch: list[dict]) -> None:
            async def drain(ws):
                for _ in batch:
                    await ws.recv()
            readers = [asyncio.create_task(drain(ws)) for ws in subs]
            for data in batch:
                await publisher.send(json.dumps({"type": "publish", "topic": TOPIC, "data": data}))
            await asyncio.gather(*readers)

        await publish_and_drain(events[:5])  # warm-up: compressors exist, code paths run
        cpu0, t0 = server_cpu_ns(server.pid), time.perf_counter()
        await publish_and_drain(events)
        elapsed, cpu = time.perf_counter() - t0, server_cpu_ns(server.pid) - cpu0
        deliveries = subscribers * len(events)
        return deliveries / elapsed, cpu / 1000 / deliveries
    finally:
        await asyncio.gather(*(ws.close() for ws in [*subs, publisher]))


def main() -> None:
    parser = argparse.ArgumentParser(description="pubsub fan-out with and without permessage-deflate")
    parser.add_argument("-n", "--subscribers", type=int, default=200)
    parser.add_argument("-m", "--events", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    raise_fd_limit(2 * args.subscribers + 100)

    rng = random.Random(11)
    ticks = [json.loads(pubsub_tick(rng, i))["data"] for i in range(args.events)]
    docs = [json.loads(json_document(rng, i, 2048)) for i in range(args.events)]
    tiny = [rng.randrange(10000, 99999) for _ in range(args.events)]
    payloads = [("tiny event ~50 B", tiny), ("tick ~150 B", ticks), ("document 2 KiB", docs)]
    servers = [Server(f"wskit {b}", b, ["--protocol", SUBPROTOCOL]) for b in ("twisted", "asyncio")]
    rate: dict[tuple, list[float]] = {}
    cpu: dict[tuple, list[float]] = {}
    started = time.monotonic()
    with running(servers):
        for r in range(args.rounds):
            for name, events in payloads:
                for compress in (r % 2 == 0, r % 2 == 1):  # alternate which goes first
                    for server in servers:
                        key = (server.label, name, compress)
                        got_rate, got_cpu = asyncio.run(fanout(server, args.subscribers, events, compress))
                        rate.setdefault(key, []).append(got_rate)
                        cpu.setdefault(key, []).append(got_cpu)

    rows = []
    for server in servers:
        for name, _ in payloads:
            on, off = (server.label, name, True), (server.label, name, False)
            cpu_ratio = median([a / b for a, b in zip(cpu[on], cpu[off])])
            rate_ratio = median([a / b for a, b in zip(rate[on], rate[off])])
            rows.append([server.label, name, f"{median(cpu[off]):.1f}", f"{median(cpu[on]):.1f}",
                         f"{cpu_ratio:.2f}", f"{median(rate[off]):.0f}", f"{median(rate[on]):.0f}",
                         f"{rate_ratio:.2f}"])
    print(f"{args.subscribers} subscribers x {args.events} events, {args.rounds} interleaved rounds, "
          f"{machine_note()}, {time.monotonic() - started:.0f} s\n")
    print(table(["server", "event", "CPU us/delivery, plain", "deflate", "deflate / plain",
                 "deliveries/s, plain", "deflate", "deflate / plain"], rows))


if __name__ == "__main__":
    main()
