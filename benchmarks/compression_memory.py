"""Server memory per idle connection, with and without permessage-deflate.

Starts each server as a subprocess, opens N connections from one
python-websockets client that offers permessage-deflate with
client_max_window_bits (as browsers do), sends one chat-sized message each way
on every connection (Autobahn creates its compressor and decompressor lazily,
on the first message), and reads the server's VmRSS. Then every connection
sends and receives --fill-kib more KiB in 8 KiB JSON documents (32 KiB by
default: enough to fill a 15-bit window), and
the RSS is read again. Reported: KiB per connection above the server's RSS
before the connections were opened (after a warm-up round of connections that
were opened, used and closed, so code paths and allocator arenas exist).

    python benchmarks/compression_memory.py             # default points, ~1-2 minutes
    python benchmarks/compression_memory.py --full      # whole grid (Twisted; --full both: and asyncio)
    python benchmarks/compression_memory.py -n 1000 --repeat 3
    python benchmarks/compression_memory.py --idle       # also after the hibernation delay

With ``--idle``, each of the two readings is followed by another once the
connections have been left alone past wskit's hibernation delay (twice
``CompressionSettings.hibernate_after`` plus a second): what an idle
connection settles at. The configurations then include wskit without
hibernation (``--compress-hibernate-after 0``) and without the heap trim
after it (``--no-malloc-trim``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import time

from _common import (
    Server,
    chat_message,
    json_document,
    machine_note,
    median,
    open_clients,
    raise_fd_limit,
    settled_rss,
    table,
)

WINDOWS = (15, 12, 10, 9)
MEM_LEVELS = (8, 5, 4, 1)
DEFAULT_POINTS = ((15, 8), (12, 8), (12, 5), (10, 5), (10, 4), (9, 1))


def wskit_args(window: int, mem_level: int, *extra: str) -> list[str]:
    return ["--server-max-window-bits", str(window), "--client-max-window-bits", str(window),
            "--compress-mem-level", str(mem_level), *extra]


def idle_wait() -> float:
    from wskit.settings import CompressionSettings

    return 2 * CompressionSettings().hibernate_after + 1.0


def hibernation_configurations() -> list[Server]:
    servers: list[Server] = []
    for backend in ("twisted", "asyncio"):
        servers += [
            Server(f"wskit {backend}, no compression", backend, ["--no-compress"]),
            Server(f"wskit {backend}, 12/5, hibernation (default)", backend, wskit_args(12, 5)),
            Server(f"wskit {backend}, 12/5, hibernation without malloc_trim", ["wskit", "--backend", backend,
                   "--no-malloc-trim"], wskit_args(12, 5)),
            Server(f"wskit {backend}, 12/5, no hibernation", backend,
                   wskit_args(12, 5, "--compress-hibernate-after", "0")),
        ]
    servers.append(Server("python-websockets, no compression", "websockets", ["--no-compress"]))
    servers.append(Server("python-websockets defaults (12/12, memLevel 5)", "websockets"))
    return servers


def configurations(full: str | None) -> list[Server]:
    servers: list[Server] = []
    for backend in ("twisted", "asyncio") if full == "both" else ("twisted",):
        points = list(itertools.product(WINDOWS, MEM_LEVELS)) if full else DEFAULT_POINTS
        servers.append(Server(f"wskit {backend}, no compression", backend, ["--no-compress"]))
        for window, mem in points:
            servers.append(Server(f"wskit {backend}, window {window}, memLevel {mem}", backend,
                                  wskit_args(window, mem)))
        servers.append(Server(f"wskit {backend}, 12/5, server_no_context_takeover", backend,
                              wskit_args(12, 5, "--server-no-context-takeover")))
    if full != "both":
        servers.append(Server("wskit asyncio, no compression", "asyncio", ["--no-compress"]))
        servers.append(Server("wskit asyncio, window 12, memLevel 5", "asyncio", wskit_args(12, 5)))
    servers.append(Server("Autobahn defaults, no compression", "autobahn", ["--no-compress"]))
    servers.append(Server("Autobahn defaults (15/15, memLevel 8)", "autobahn"))
    servers.append(Server("python-websockets, no compression", "websockets", ["--no-compress"]))
    servers.append(Server("python-websockets defaults (12/12, memLevel 5)", "websockets"))
    return servers


async def exchange(ws, payloads) -> None:
    for payload in payloads:
        await ws.send(payload.decode())
        await ws.recv()


async def open_connections(url: str, n: int, first: list[bytes]):
    conns = await open_clients(url, n, compression="deflate")
    await asyncio.gather(*(exchange(ws, [first[i % len(first)]]) for i, ws in enumerate(conns)))
    return conns


async def fill(conns, docs: list[bytes], kib: int, parallel: int = 50) -> None:
    gate = asyncio.Semaphore(parallel)
    per_conn = max(1, kib * 1024 // len(docs[0]))

    async def one(i: int, ws):
        async with gate:
            await exchange(ws, [docs[(i + k) % len(docs)] for k in range(per_conn)])

    await asyncio.gather(*(one(i, ws) for i, ws in enumerate(conns)))


async def measure(server: Server, n: int, fill_kib: int, idle: float = 0.0) -> dict:
    rng = random.Random(7)
    chats = [chat_message(rng, i) for i in range(200)]
    docs = [json_document(rng, i, 8192) for i in range(16)]
    # Warm-up: the code paths and allocator arenas a connection needs exist before the baseline.
    warm = await open_connections(server.url, 20, chats)
    await fill(warm, docs, fill_kib)
    await asyncio.gather(*(ws.close() for ws in warm))
    base = await settled_rss(server.pid)
    conns = await open_connections(server.url, n, chats)
    negotiated = conns[0].response.headers.get("Sec-WebSocket-Extensions", "-")
    after_one = await settled_rss(server.pid)
    if idle:
        await asyncio.sleep(idle)
        one_idle = await settled_rss(server.pid)
    await fill(conns, docs, fill_kib)
    after_fill = await settled_rss(server.pid)
    if idle:
        await asyncio.sleep(idle)
        fill_idle = await settled_rss(server.pid)
    await asyncio.gather(*(ws.close() for ws in conns))
    got = {"base": base, "one": (after_one - base) / n, "fill": (after_fill - base) / n, "negotiated": negotiated}
    if idle:
        got.update(one_idle=(one_idle - base) / n, fill_idle=(fill_idle - base) / n)
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description="server memory per idle (compressed) connection")
    parser.add_argument("-n", "--connections", type=int, default=500)
    parser.add_argument("--fill-kib", type=int, default=32, help="KiB each way per connection for the "
                        "'window filled' column (default 32 = a 15-bit window)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (median reported)")
    parser.add_argument("--full", nargs="?", const="twisted", choices=["twisted", "both"],
                        help="whole window x memLevel grid on Twisted (or on both backends)")
    parser.add_argument("--only", default="", help="run only configurations whose label contains this")
    parser.add_argument("--idle", action="store_true", help="hibernation: also read the RSS after the "
                        "connections idled past wskit's hibernation delay (its own set of configurations)")
    args = parser.parse_args()
    raise_fd_limit(2 * args.connections + 200)
    wait = idle_wait() if args.idle else 0.0

    servers = [s for s in (hibernation_configurations() if args.idle else configurations(args.full))
               if args.only in s.label]
    results: dict[str, list[dict]] = {s.label: [] for s in servers}
    started = time.monotonic()
    for _ in range(args.repeat):
        for server in servers:
            with server:
                got = asyncio.run(measure(server, args.connections, args.fill_kib, wait))
            results[server.label].append(got)
            print(f"  {server.label}: {got['one']:.1f} / {got['fill']:.1f} KiB per connection",
                  file=sys.stderr, flush=True)
    rows = []
    columns = ("one", "one_idle", "fill", "fill_idle") if wait else ("one", "fill")
    for server in servers:
        runs = results[server.label]
        rows.append([server.label, runs[0]["negotiated"], f"{median([r['base'] for r in runs]) / 1024:.1f}",
                     *(f"{median([r[c] for r in runs]):.1f}" for c in columns)])
    print(f"{args.connections} connections, {machine_note()}, {time.monotonic() - started:.0f} s\n")
    titles = {"one": "KiB/conn after 1 msg", "one_idle": f"then after {wait:g} s idle",
              "fill": f"KiB/conn after {args.fill_kib} KiB", "fill_idle": f"then after {wait:g} s idle"}
    print(table(["server", "negotiated (first connection)", "baseline RSS MiB", *(titles[c] for c in columns)],
                rows))


if __name__ == "__main__":
    main()
