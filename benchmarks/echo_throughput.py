"""Echo round trips per second: wskit (both backends) against its peers, side by side.

One python-websockets client (the same for every server) runs in this process;
the servers run as subprocesses, all started up front:

* wskit serve --backend twisted   (default settings: permessage-deflate 12/5, threshold 64 B)
* wskit serve --backend asyncio   (same settings)
* a plain Autobahn|Python Twisted echo server (permessage-deflate at Autobahn's defaults)
* a python-websockets echo server (its default compression)

Scenarios: sequential round trips of a small (chat JSON, ~200 B) and a medium
(4 KiB JSON document) message on one connection, and small messages on a batch
of concurrent connections; each with the client offering permessage-deflate
and without it. Rounds are interleaved (every server and scenario once per
round, server order rotated) and the medians over rounds are reported, as
messages/s and as the server's CPU time per message (from
/proc/PID/task/*/schedstat, which other work on a busy machine disturbs less
than wall-clock throughput), with wskit's ratio to each peer computed within
each round.

    python benchmarks/echo_throughput.py                # ~1.5 minutes
    python benchmarks/echo_throughput.py --rounds 9 --scale 2
    python benchmarks/echo_throughput.py --threshold    # wskit with the 64 B threshold vs compressing all

``--threshold`` instead compares two wskit Twisted servers with the client
offering permessage-deflate: default settings (messages under 64 B go out
uncompressed) and --compress-threshold 0 (everything compressed), on tiny
(32 B) and 48 B messages.

``--metrics`` instead measures what Prometheus metrics cost per message, on
each backend: a server whose metrics hooks are removed (wskit as it was
before them), the default server (hooks in place, metrics off) and
``--metrics-port`` (metrics recorded), on small messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import threading
import time

from _common import (
    ROOT,
    SERVERS as SERVERS_SCRIPT,
    Server,
    chat_message,
    json_document,
    machine_note,
    median,
    open_clients,
    raise_fd_limit,
    running,
    server_cpu_ns,
    sized_messages,
    table,
)

SERVERS = (
    ("wskit twisted", "twisted"),
    ("wskit asyncio", "asyncio"),
    ("Autobahn", "autobahn"),
    ("python-websockets", "websockets"),
)
COMPARISONS = (
    ("wskit twisted", "Autobahn"),
    ("wskit twisted", "python-websockets"),
    ("wskit asyncio", "python-websockets"),
)
THRESHOLD_SERVERS = (
    ("wskit twisted, threshold 64", "twisted", []),
    ("wskit twisted, threshold 0", "twisted", ["--compress-threshold", "0"]),
)
# The server protocol's metrics hooks (wskit.protocol.ServerProtocolMixin): removed, a server
# runs as wskit did before it counted anything.
METRICS_HOOKS = ("_onOpen", "_onClose", "_connectionLost", "sendPreparedMessage", "failHandshake")
UNMETERED = (
    "import runpy, sys; from wskit.protocol import ServerProtocolMixin as m\n"
    f"for name in {METRICS_HOOKS!r}: delattr(m, name)\n"
    "sys.argv[0] = sys.argv.pop(1); runpy.run_path(sys.argv[0], run_name='__main__')"
)


class UnmeteredServer(Server):
    """servers.py's wskit server without the metrics hooks."""

    def launch(self) -> Server:
        self.proc = subprocess.Popen([sys.executable, "-c", UNMETERED, str(SERVERS_SCRIPT), *self.command],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(ROOT), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._pump, daemon=True).start()
        return self


def metrics_servers() -> list[Server]:
    servers: list[Server] = []
    for backend in ("twisted", "asyncio"):
        servers += [UnmeteredServer(f"{backend}: no hooks", backend),
                    Server(f"{backend}: metrics off", backend),
                    Server(f"{backend}: metrics on", backend, ["--metrics-port", "0"])]
    return servers


METRICS_COMPARISONS = tuple((f"{b}: {variant}", f"{b}: no hooks") for b in ("twisted", "asyncio")
                            for variant in ("metrics off", "metrics on"))


async def round_trips(ws, messages: list[str], count: int) -> None:
    for i in range(count):
        await ws.send(messages[i % len(messages)])
        await ws.recv()


async def scenario(url: str, pid: int, messages: list[str], count: int, connections: int,
                   compress: bool) -> tuple[float, float]:
    """(messages/s, server CPU us per message) for ``count`` round trips over ``connections``."""
    conns = await open_clients(url, connections, compression="deflate" if compress else None)
    try:
        await asyncio.gather(*(round_trips(ws, messages, 20) for ws in conns))  # warm-up
        per_conn = count // connections
        cpu0, t0 = server_cpu_ns(pid), time.perf_counter()
        await asyncio.gather(*(round_trips(ws, messages[i:] + messages[:i], per_conn)
                               for i, ws in enumerate(conns)))
        elapsed, cpu = time.perf_counter() - t0, server_cpu_ns(pid) - cpu0
        done = per_conn * connections
        return done / elapsed, cpu / 1000 / done
    finally:
        await asyncio.gather(*(ws.close() for ws in conns))


def ratio_label(a: str, b: str) -> str:
    common = len(os.path.commonprefix([a, b]))
    return f"{a[common:]} / {b[common:]}" if common else f"{a} / {b}"


def main() -> None:
    parser = argparse.ArgumentParser(description="echo round trips: wskit vs Autobahn vs python-websockets")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians reported)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the round-trip counts")
    parser.add_argument("--connections", type=int, default=50, help="size of the concurrent batch")
    parser.add_argument("--threshold", action="store_true", help="wskit threshold 64 vs 0 on tiny messages")
    parser.add_argument("--metrics", action="store_true", help="cost of the metrics hooks and of recording")
    args = parser.parse_args()
    raise_fd_limit(4 * args.connections + 100)

    rng = random.Random(3)
    small = [chat_message(rng, i).decode() for i in range(200)]
    medium = [json_document(rng, i, 4096).decode() for i in range(50)]
    scenarios = [
        ("small ~200 B, 1 conn", small, int(1500 * args.scale), 1),
        ("medium 4 KiB, 1 conn", medium, int(500 * args.scale), 1),
        (f"small, {args.connections} conns", small, int(3000 * args.scale), args.connections),
    ]
    servers = [Server(label, kind) for label, kind in SERVERS]
    comparisons, modes = COMPARISONS, (True, False)
    if args.threshold:
        scenarios = [(f"{size} B, 1 conn", [m.decode() for m in sized_messages(rng, size, 300)],
                      int(1500 * args.scale), 1) for size in (32, 48)]
        servers = [Server(label, kind, extra) for label, kind, extra in THRESHOLD_SERVERS]
        comparisons, modes = ((servers[1].label, servers[0].label),), (True,)
    if args.metrics:
        scenarios = scenarios[:1] + scenarios[2:]
        servers, comparisons = metrics_servers(), METRICS_COMPARISONS
    rates: dict[tuple, list[float]] = {}
    cpus: dict[tuple, list[float]] = {}
    started = time.monotonic()
    with running(servers):
        for r in range(args.rounds):
            order = servers[r % len(servers):] + servers[:r % len(servers)]
            for name, messages, count, conns in scenarios:
                for compress in modes:
                    for server in order:
                        rate, cpu = asyncio.run(scenario(server.url, server.pid, messages, count, conns, compress))
                        key = (name, compress, server.label)
                        rates.setdefault(key, []).append(rate)
                        cpus.setdefault(key, []).append(cpu)

    print(f"{args.rounds} interleaved rounds, {machine_note()}, {time.monotonic() - started:.0f} s")
    for title, data, unit, better in (("Round trips per second (median)", rates, "msg/s", "higher"),
                                      ("Server CPU per round trip, us (median)", cpus, "us", "lower")):
        rows = []
        for name, _, _, _ in scenarios:
            for compress in modes:
                row = [name, "on" if compress else "off"]
                row += [f"{median(data[(name, compress, s.label)]):.0f}" if unit == "msg/s"
                        else f"{median(data[(name, compress, s.label)]):.1f}" for s in servers]
                for a, b in comparisons:
                    ratios = [x / y for x, y in zip(data[(name, compress, a)], data[(name, compress, b)])]
                    row.append(f"{median(ratios):.2f}")
                rows.append(row)
        print(f"\n### {title}; ratios: {better} is better for wskit\n")
        print(table(["scenario", "deflate"] + [s.label for s in servers] +
                    [ratio_label(a, b) for a, b in comparisons], rows))


if __name__ == "__main__":
    main()
