"""The peer benchmark: wskit against python-websockets, Autobahn and picows, as ratio tables.

    python benchmarks/bench.py [--size tiny|small|full] [--rounds N] [--only echo,connect,idle,broadcast]
                               [--servers KEY,...] [--clients node,picows] [--subscribers N]
                               [--events M] [--json out.json]

Servers (benchmarks/servers.py, one process each, on 127.0.0.1 port 0, at
their libraries' defaults): wskit on Twisted, wskit on asyncio's default loop,
wskit on uvloop (when installed), python-websockets, plain Autobahn on Twisted
and on asyncio, and picows (echo, connect and idle only: the ceiling).

Clients, independent of every server and the same for all of them:

* echo: picows clients (on uvloop when installed) in this process, closed loop:
  C connections each send a 1 KiB message, wait for the echo, send the next;
  binary, and UTF-8 text (mostly ASCII with some 2- and 3-byte characters).
  Reported: messages/s and the server's CPU time per message.
* connect: picows clients in this process open connections (20 at a time),
  each offering permessage-deflate as browsers do and no subprotocol, and
  close each once open: the client's close frame, the server's answer, the
  server's TCP close. Reported: connections/s and the server's CPU time per
  connection (accept, opening handshake, closing handshake, log lines).
* idle: python-websockets clients in this process open connections offering
  permessage-deflate (``client_max_window_bits``, as browsers do), send one
  ~200 B message each and read the echo; reported: the server's VmRSS above
  its baseline per connection, in a fresh server process each round (after a
  warm-up of a few connections). Then, with the connections left idle past
  wskit's hibernation delay (:data:`IDLE_WAIT`: twice
  ``CompressionSettings.hibernate_after`` plus a second), the RSS again, and
  the wake-up: the server's CPU time per message for one more message on
  every connection (the first after the idle period) and for one after it.
* broadcast: N subscribers on ``wskit.pubsub.v1.json`` and one publisher
  publishing M price ticks (~600 B as delivered) with a bounded number in
  flight, with and without permessage-deflate, after a warm-up of ``warmup``
  ticks, from a client process of its own: Node's ``ws``
  (benchmarks/node/broadcast.js) and picows with Python's zlib
  (benchmarks/broadcast_picows.py, the same run). A Node ``ws`` subscriber
  spends ~35 us of CPU inflating each compressed message, so 500 of them on
  the machine's other core cap a fast server's compressed broadcast; the
  picows subscribers (~4 us) show the server's own rate. ``--clients``
  chooses (default both). Reported: deliveries/s, the server's and the
  client process's CPU time per delivery and the bytes the subscribers'
  sockets read per delivery. wskit compresses a broadcast once
  per topic for subscribers that have joined its shared compressor (its
  default); the columns "fresh" and "per-conn" are wskit with
  ``--broadcast-compression fresh`` (each broadcast compressed once, without
  history) and ``per-connection`` (each subscriber's own compressor, as
  Autobahn and python-websockets do), measured with deflate only.
  ``--subscribers N`` and ``--events M`` override the size's figures.

Every server is measured once per round, the order rotated each round (and
which variant goes first alternated); medians over rounds are reported, and
each server's ratio to python-websockets is computed within each round, then
the median taken. The machine (CPU, load average at start and end, versions)
is printed with the tables. ``--size tiny`` is the CI smoke test: it checks
that every server answers and every client completes, and asserts nothing
about speed. The run exits 1 if any measurement failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from _common import (
    Server,
    chat_message,
    median,
    open_clients,
    raise_fd_limit,
    sentence,
    server_cpu_ns,
    settled_rss,
    table,
)

HERE = Path(__file__).resolve().parent


def _idle_wait() -> float:
    """Seconds the idle section leaves its connections alone: an idle wskit connection
    hibernates between ``hibernate_after`` and twice that after its last message."""
    from wskit.settings import CompressionSettings

    return 2 * CompressionSettings().hibernate_after + 1.0


IDLE_WAIT = _idle_wait()
NODE_DIR = HERE / "node"
NODE_SCRIPT = NODE_DIR / "broadcast.js"
PICOWS_SCRIPT = HERE / "broadcast_picows.py"
BROADCAST_CLIENTS = ("node", "picows")
SECTIONS = ("echo", "connect", "idle", "broadcast")
BASELINE = "websockets"
MESSAGE_SIZE = 1024


def has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


@dataclass(frozen=True)
class Size:
    echo_connections: int
    echo_messages: int  # round trips per measurement, over all connections
    echo_warmup: int  # round trips per connection before measuring
    connections: int  # opened and closed per connect measurement
    idle_connections: int
    subscribers: int
    events: int  # published per measurement; each reaches every subscriber
    window: int  # events in flight at most
    warmup: int  # events published before measuring (a shared compressor's joins happen here)
    rounds: int  # default --rounds
    timeout: float  # seconds, per measurement


SIZES = {
    "tiny": Size(echo_connections=4, echo_messages=400, echo_warmup=5, connections=40, idle_connections=20,
                 subscribers=10, events=20, window=5, warmup=5, rounds=1, timeout=60),
    "small": Size(echo_connections=10, echo_messages=20000, echo_warmup=20, connections=1000, idle_connections=200,
                  subscribers=100, events=100, window=10, warmup=10, rounds=3, timeout=120),
    "full": Size(echo_connections=50, echo_messages=50000, echo_warmup=20, connections=2000, idle_connections=1000,
                 subscribers=500, events=200, window=10, warmup=10, rounds=3, timeout=300),
}


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    command: tuple[str, ...]  # benchmarks/servers.py arguments
    sections: frozenset[str]
    broadcast_modes: tuple[str, ...] = ("plain", "deflate")


def peers() -> list[Peer]:
    everything = frozenset(SECTIONS)
    uv = has_uvloop()
    found = [
        Peer("wskit-twisted", "wskit Twisted", ("wskit", "--backend", "twisted"), everything),
        Peer("wskit-asyncio", "wskit asyncio", ("wskit", "--backend", "asyncio"), everything),
    ]
    if uv:
        found.append(Peer("wskit-uvloop", "wskit uvloop", ("wskit", "--backend", "asyncio", "--uvloop"),
                          everything))
    # The other ways wskit can compress a broadcast (its default shares one compressor per topic).
    for backend in ("twisted", "asyncio"):
        for mode, label in (("fresh", "fresh"), ("per-connection", "per-conn")):
            found.append(Peer(f"wskit-{backend}-{mode}", f"wskit {backend.capitalize()} {label}",
                              ("wskit", "--backend", backend, "--broadcast-compression", mode),
                              frozenset({"broadcast"}), ("deflate",)))
    found += [
        Peer("websockets", "python-websockets", ("websockets",), everything),
        Peer("autobahn-twisted", "Autobahn Twisted", ("autobahn", "--backend", "twisted"), everything),
        Peer("autobahn-asyncio", "Autobahn asyncio", ("autobahn", "--backend", "asyncio"), everything),
        Peer("picows", "picows (ceiling)", ("picows", *(("--uvloop",) if uv else ())),
             frozenset({"echo", "connect", "idle"})),
    ]
    return found


def variant_peers() -> list[Peer]:
    """wskit configurations measured only when named in ``--servers`` (idle section):
    what hibernation and the heap trim after it each contribute."""
    idle = frozenset({"idle"})
    found = []
    for backend, name in (("twisted", "wskit Twisted"), ("asyncio", "wskit asyncio")):
        base = ("wskit", "--backend", backend)
        found += [
            Peer(f"wskit-{backend}-no-hibernate", f"{name}, no hibernation",
                 (*base, "--compress-hibernate-after", "0"), idle),
            Peer(f"wskit-{backend}-no-trim", f"{name}, no malloc_trim", (*base, "--no-malloc-trim"), idle),
        ]
    return found


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    better: str  # "higher" or "lower"
    section: str
    digits: int


METRICS = (
    Metric("echo_binary_rate", "echo binary, msg/s", "higher", "echo", 0),
    Metric("echo_text_rate", "echo text, msg/s", "higher", "echo", 0),
    Metric("echo_binary_cpu", "echo binary, server CPU us/msg", "lower", "echo", 1),
    Metric("echo_text_cpu", "echo text, server CPU us/msg", "lower", "echo", 1),
    Metric("connect_rate", "connect and close, connections/s", "higher", "connect", 0),
    Metric("connect_cpu", "connect and close, server CPU us/connection", "lower", "connect", 1),
    Metric("idle_kib", "idle deflate connection, server KiB", "lower", "idle", 1),
    Metric("idle_hib_kib", f"idle deflate connection after {IDLE_WAIT:g} s idle, server KiB", "lower", "idle", 1),
    Metric("wake_cpu", "first message after the idle period, server CPU us/msg", "lower", "idle", 1),
    Metric("next_cpu", "the message after it, server CPU us/msg", "lower", "idle", 1),
    *(Metric(f"bcast_{client}_{mode}_{what}", f"broadcast to {label}, {title}, {mode_title}", better,
             "broadcast", digits)
      for client, label in (("node", "Node ws"), ("picows", "picows"))
      for what, title, better, digits in (("rate", "deliveries/s", "higher", 0),
                                          ("cpu", "server CPU us/delivery", "lower", 1),
                                          ("client_cpu", "client CPU us/delivery", "lower", 1),
                                          ("bytes", "wire bytes/delivery", "lower", 1))
      for mode, mode_title in (("plain", "no deflate"), ("deflate", "deflate"))),
)


# -- payloads -------------------------------------------------------------------------------------

def binary_message() -> bytes:
    return random.Random(1).randbytes(MESSAGE_SIZE)


def text_message() -> bytes:
    """1 KiB of UTF-8: prose with accented words, a euro sign and some CJK every few words."""
    rng = random.Random(2)
    extras = ["café", "naïve", "Grüße", "€12,50", "日本語", "データ", "Ünïcödé", "señal"]
    words, out = sentence(rng, 400).split(), []
    while len(" ".join(out).encode()) < MESSAGE_SIZE:
        out.append(rng.choice(extras) if rng.random() < 0.2 else rng.choice(words))
    data = " ".join(out).encode()[:MESSAGE_SIZE]
    while True:  # cut on a character boundary, pad with spaces to exactly 1 KiB
        try:
            text = data.decode()
            break
        except UnicodeDecodeError:
            data = data[:-1]
    return (text + " " * (MESSAGE_SIZE - len(data))).encode()


SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "EURGBP", "NZDUSD", "USDCAD"]
VENUES = ["LMAX", "EBS", "CURRENEX", "HOTSPOT"]


def ticks(count: int) -> list[dict]:
    """Market-data ticks; each is about 600 bytes as a delivered pubsub event (compact JSON)."""
    rng = random.Random(5)
    out = []
    for i in range(count):
        mid = round(0.6 + rng.random() * 150, 5)
        step = 10 ** -4 if mid < 10 else 10 ** -2
        out.append({
            "symbol": SYMBOLS[i % len(SYMBOLS)], "quote_currency": SYMBOLS[i % len(SYMBOLS)][3:], "venue": rng.choice(VENUES), "seq": 7_300_000 + i,
            "ts": 1_764_028_800_123 + i * 13, "bid": round(mid - step, 5), "ask": round(mid + step, 5),
            "last": {"price": round(mid + rng.choice((-1, 1)) * step, 5), "size": rng.randint(1, 5_000_000),
                     "side": rng.choice(("buy", "sell"))},
            "bids": [[round(mid - step * (k + 1), 5), rng.randint(100_000, 9_000_000)] for k in range(5)],
            "asks": [[round(mid + step * (k + 1), 5), rng.randint(100_000, 9_000_000)] for k in range(5)],
            "stats": {"open": round(mid * (1 + rng.uniform(-0.01, 0.01)), 5),
                      "high": round(mid * (1 + rng.uniform(0, 0.02)), 5),
                      "low": round(mid * (1 - rng.uniform(0, 0.02)), 5),
                      "vwap": round(mid * (1 + rng.uniform(-0.005, 0.005)), 5),
                      "volume": rng.randint(10**8, 10**10), "trades": rng.randint(10**4, 10**6)},
            "flags": {"indicative": rng.random() < 0.05, "halted": False, "session": "regular"},
        })
    return out


def event_size(data: dict) -> int:
    return len(json.dumps({"type": "event", "topic": "ticks.bench", "data": data},
                          separators=(",", ":"), ensure_ascii=False).encode())


# -- the machine ----------------------------------------------------------------------------------

def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def versions() -> dict[str, str]:
    found = {"python": f"{platform.python_implementation()} {platform.python_version()}",
             "zlib": zlib.ZLIB_RUNTIME_VERSION}
    for dist in ("wskit", "autobahn", "twisted", "txaio", "websockets", "picows", "uvloop"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    node = shutil.which("node")
    if node:
        found["node"] = subprocess.run([node, "--version"], capture_output=True, text=True,
                                       timeout=10).stdout.strip()
    with contextlib.suppress(OSError, ValueError):
        found["ws (node)"] = json.loads((NODE_DIR / "node_modules" / "ws" / "package.json").read_text())["version"]
    return found


def machine() -> dict:
    mem = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory": mem,
            "system": f"{platform.system()} {platform.release()}", "versions": versions()}


# -- measurements ---------------------------------------------------------------------------------

async def echo(server: Server, size: Size, payload: bytes, text: bool) -> dict:
    """Closed-loop echo over ``size.echo_connections`` picows connections."""
    from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

    kind = WSMsgType.TEXT if text else WSMsgType.BINARY
    loop = asyncio.get_running_loop()

    class Client(WSListener):
        def __init__(self) -> None:
            self.transport = None
            self.remaining = 0
            self.done: asyncio.Future | None = None
            self.wrong = 0
            self.last = b""

        def on_ws_connected(self, transport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport, frame) -> None:
            if frame.msg_type == kind:
                if not frame.fin or frame.payload_size != len(payload):
                    self.wrong += 1
                self.remaining -= 1
                if self.remaining > 0:
                    transport.send(kind, payload)
                else:
                    self.last = frame.get_payload_as_bytes()
                    self.finish()
            elif frame.msg_type == WSMsgType.CLOSE:
                self.finish(f"server closed the connection ({frame.get_close_code()})")
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
                self.wrong += 1

        def on_ws_disconnected(self, transport) -> None:
            self.finish("disconnected")

        def finish(self, error: str | None = None) -> None:
            if self.done is not None and not self.done.done():
                if error:
                    self.done.set_exception(ConnectionError(error))
                else:
                    self.done.set_result(None)

        def start(self, count: int) -> asyncio.Future:
            self.remaining, self.done = count, loop.create_future()
            self.transport.send(kind, payload)
            return self.done

    conns = await asyncio.wait_for(
        asyncio.gather(*(ws_connect(Client, server.url) for _ in range(size.echo_connections))), size.timeout)
    clients = [client for _transport, client in conns]
    try:
        per_conn = max(1, size.echo_messages // len(clients))
        await asyncio.wait_for(asyncio.gather(*(c.start(size.echo_warmup) for c in clients)), size.timeout)
        cpu0, t0 = server_cpu_ns(server.pid), time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(c.start(per_conn) for c in clients)), size.timeout)
        elapsed, cpu = time.perf_counter() - t0, server_cpu_ns(server.pid) - cpu0
        for c in clients:
            if c.wrong or c.last != payload:
                raise AssertionError(f"echo differs from what was sent ({c.wrong} wrong frames)")
        total = per_conn * len(clients)
        return {"rate": total / elapsed, "cpu": cpu / 1000 / total}
    finally:
        for transport, _client in conns:
            with contextlib.suppress(Exception):
                transport.send_close(WSCloseCode.OK)
                transport.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(t.wait_disconnected() for t, _ in conns)), 5)


CONNECT_PARALLEL = 20
CONNECT_WARMUP = 20


async def connect(server: Server, size: Size) -> dict:
    """Connections opened and closed (closing handshake included), ``CONNECT_PARALLEL`` at a time."""
    from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

    headers = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    negotiated: list[str] = []  # the first connection's Sec-WebSocket-Extensions answer
    wrong: list[int] = []  # close codes other than 1000 the server answered with

    class Client(WSListener):
        def on_ws_connected(self, transport) -> None:
            transport.send_close(WSCloseCode.OK)

        def on_ws_frame(self, transport, frame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                if frame.get_close_code() != WSCloseCode.OK:
                    wrong.append(frame.get_close_code())
                transport.disconnect()

    async def one() -> None:
        transport, _client = await ws_connect(Client, server.url, extra_headers=headers)
        if not negotiated:
            negotiated.append(transport.response.headers.get("sec-websocket-extensions", ""))
        await transport.wait_disconnected()

    async def churn(count: int) -> None:
        slots = asyncio.Semaphore(CONNECT_PARALLEL)

        async def slot() -> None:
            async with slots:
                await one()

        await asyncio.gather(*(slot() for _ in range(count)))

    async def measure() -> dict:
        await churn(CONNECT_WARMUP)
        cpu0, t0 = server_cpu_ns(server.pid), time.perf_counter()
        await churn(size.connections)
        elapsed, cpu = time.perf_counter() - t0, server_cpu_ns(server.pid) - cpu0
        if wrong:
            raise AssertionError(f"{len(wrong)} connection(s) closed with {wrong[0]}, not 1000")
        return {"rate": size.connections / elapsed, "cpu": cpu / 1000 / size.connections,
                "negotiated": negotiated[0]}

    return await asyncio.wait_for(measure(), size.timeout)


async def idle(server: Server, size: Size) -> dict:
    """Server RSS per idle connection that negotiated permessage-deflate and exchanged one message."""
    rng = random.Random(7)
    messages = [chat_message(rng, i).decode() for i in range(50)]

    async def exchange(ws, message: str) -> None:
        await ws.send(message)
        if await ws.recv() != message:
            raise AssertionError("echo differs from what was sent")

    async def session(n: int):
        conns = await open_clients(server.url, n, compression="deflate")
        await asyncio.gather(*(exchange(ws, messages[i % len(messages)]) for i, ws in enumerate(conns)))
        return conns

    async def close(conns) -> None:
        await asyncio.gather(*(ws.close() for ws in conns))

    async def round_cpu(conns, offset: int) -> float:
        """Server CPU us per message for one message on every connection."""
        before = server_cpu_ns(server.pid)
        await asyncio.gather(*(exchange(ws, messages[(i + offset) % len(messages)]) for i, ws in enumerate(conns)))
        return (server_cpu_ns(server.pid) - before) / 1000 / len(conns)

    async def measure() -> dict:
        # Warm-up: the code paths and allocator arenas a connection needs exist before the baseline.
        await close(await session(min(20, size.idle_connections)))
        base = await settled_rss(server.pid)
        conns = await session(size.idle_connections)
        try:
            after = await settled_rss(server.pid)
            negotiated = conns[0].response.headers.get("Sec-WebSocket-Extensions") or ""
            await asyncio.sleep(IDLE_WAIT)  # past wskit's hibernation delay
            hibernated = await settled_rss(server.pid)
            wake = await round_cpu(conns, 1)
            following = await round_cpu(conns, 2)
        finally:
            await close(conns)
        n = size.idle_connections
        return {"kib": (after - base) / n, "hib_kib": (hibernated - base) / n, "wake_us": wake,
                "next_us": following, "negotiated": negotiated}

    return await asyncio.wait_for(measure(), size.timeout)


def broadcast_client(client: str) -> list[str]:
    """The command that runs a broadcast client: ``node`` (benchmarks/node/broadcast.js)
    or ``picows`` (benchmarks/broadcast_picows.py, in this interpreter)."""
    if client == "picows":
        return [sys.executable, str(PICOWS_SCRIPT)]
    node = shutil.which("node")
    if not node or not (NODE_DIR / "node_modules" / "ws").is_dir():
        raise RuntimeError("needs Node and its ws package: npm ci --prefix benchmarks/node")
    return [node, str(NODE_SCRIPT)]


async def broadcast(server: Server, size: Size, deflate: bool, ticks_path: Path, client: str) -> dict:
    """Subscribers and a publisher in a client process (``client``, see broadcast_client) against one server."""
    cmd = [*broadcast_client(client), "--url", server.url, "--subscribers", str(size.subscribers),
           "--events", str(size.events), "--window", str(size.window), "--ticks", str(ticks_path),
           "--warmup", str(size.warmup), "--timeout", str(size.timeout), *(["--deflate"] if deflate else [])]
    with tempfile.TemporaryFile() as errors:
        proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=errors)

        async def answer(want: str) -> dict:
            line = await asyncio.wait_for(proc.stdout.readline(), size.timeout + 10)
            try:
                got = json.loads(line)
            except ValueError:
                errors.seek(0)
                got = {"error": (line.decode(errors="replace") + errors.read().decode(errors="replace")).strip()
                       or f"exited with {await proc.wait()}"}
            if want not in got:
                raise RuntimeError(f"{client} client: {got.get('error', got)}")
            return got

        try:
            ready = await answer("ready")
            cpu0, client0 = server_cpu_ns(server.pid), server_cpu_ns(proc.pid)
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            done = await answer("done")
            cpu, client_cpu = server_cpu_ns(server.pid) - cpu0, server_cpu_ns(proc.pid) - client0
            if await asyncio.wait_for(proc.wait(), 15) != 0:
                raise RuntimeError(f"{client} client exited with {proc.returncode}")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    deliveries = done["deliveries"]
    return {"rate": deliveries / (done["elapsed_ms"] / 1000), "cpu": cpu / 1000 / deliveries,
            "client_cpu": client_cpu / 1000 / deliveries,
            "bytes": done["wire_bytes"] / deliveries, "negotiated": ready["extensions"]}


# -- the run --------------------------------------------------------------------------------------

class Run:
    """Samples per metric and server (one per round), failures, negotiated extensions."""

    def __init__(self, entries: list[Peer], clients: tuple[str, ...] = BROADCAST_CLIENTS):
        self.entries = entries
        self.clients = clients  # the broadcast clients measured
        self.samples: dict[str, dict[str, dict[int, float]]] = {m.key: {} for m in METRICS}
        self.negotiated: dict[str, dict[str, str]] = {}
        self.failures: list[str] = []
        self.descriptions: dict[str, str] = {}  # what each server said it is

    def add(self, metric: str, server: str, round_: int, value: float) -> None:
        self.samples[metric].setdefault(server, {})[round_] = value

    def attempt(self, what: str, peer: Peer, round_: int, coro_fn) -> dict | None:
        started = time.monotonic()
        try:
            got = asyncio.run(coro_fn())
        except Exception as exc:  # a failed measurement is reported, the others still run
            message = f"round {round_ + 1}, {what}, {peer.label}: {type(exc).__name__}: {exc}".strip()
            self.failures.append(message)
            print(f"  FAILED {message}", file=sys.stderr, flush=True)
            return None
        shown = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v!r}" for k, v in got.items())
        print(f"  round {round_ + 1} {what:<20} {peer.label:<18} {shown} ({time.monotonic() - started:.1f} s)",
              file=sys.stderr, flush=True)
        return got

    def median(self, metric: str, server: str) -> float | None:
        values = list(self.samples[metric].get(server, {}).values())
        return median(values) if values else None

    def ratio(self, metric: str, server: str) -> float | None:
        mine, base = self.samples[metric].get(server, {}), self.samples[metric].get(BASELINE, {})
        ratios = [mine[r] / base[r] for r in mine if r in base and base[r]]
        return median(ratios) if ratios else None


def rotated(items: list, r: int) -> list:
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


def idle_servers(entries: list[Peer]) -> dict[str, Server]:
    """Fresh server processes for one round of idle measurements, launched (not yet ready)."""
    return {p.key: Server(p.label, p.command).launch() for p in entries if "idle" in p.sections}


def measure_round(run: Run, r: int, size: Size, only: set[str], servers: dict[str, Server],
                  ticks_path: Path, fresh: dict[str, Server] | None) -> None:
    order = rotated(run.entries, r)
    if "idle" in only:
        fresh = fresh if fresh is not None else idle_servers(order)
        try:
            for peer in order:
                if peer.key not in fresh:
                    continue
                server = fresh[peer.key]
                try:
                    server.wait_ready()
                except RuntimeError as exc:
                    run.failures.append(f"round {r + 1}, idle, {peer.label}: {exc}")
                    continue
                run.descriptions.setdefault(peer.key, server.description)
                got = run.attempt("idle deflate", peer, r, lambda: idle(server, size))
                server.stop()
                if got:
                    run.add("idle_kib", peer.key, r, got["kib"])
                    run.add("idle_hib_kib", peer.key, r, got["hib_kib"])
                    run.add("wake_cpu", peer.key, r, got["wake_us"])
                    run.add("next_cpu", peer.key, r, got["next_us"])
                    run.negotiated.setdefault("idle", {})[peer.key] = got["negotiated"]
        finally:
            for server in fresh.values():
                server.stop()
    if "echo" in only:
        payloads = {"binary": (binary_message(), False), "text": (text_message(), True)}
        for variant in rotated(["binary", "text"], r):
            payload, text = payloads[variant]
            for peer in order:
                if "echo" in peer.sections:
                    server = servers[peer.key]
                    got = run.attempt(f"echo {variant}", peer, r, lambda: echo(server, size, payload, text))
                    if got:
                        run.add(f"echo_{variant}_rate", peer.key, r, got["rate"])
                        run.add(f"echo_{variant}_cpu", peer.key, r, got["cpu"])
    if "connect" in only:
        for peer in order:
            if "connect" in peer.sections:
                server = servers[peer.key]
                got = run.attempt("connect", peer, r, lambda: connect(server, size))
                if got:
                    run.add("connect_rate", peer.key, r, got["rate"])
                    run.add("connect_cpu", peer.key, r, got["cpu"])
                    run.negotiated.setdefault("connect", {})[peer.key] = got["negotiated"]
    if "broadcast" in only:
        for client, mode in rotated([(c, m) for c in run.clients for m in ("plain", "deflate")], r):
            for peer in order:
                if "broadcast" in peer.sections and mode in peer.broadcast_modes:
                    server = servers[peer.key]
                    got = run.attempt(f"broadcast {client} {mode}", peer, r,
                                      lambda: broadcast(server, size, mode == "deflate", ticks_path, client))
                    if got:
                        for what in ("rate", "cpu", "client_cpu", "bytes"):
                            run.add(f"bcast_{client}_{mode}_{what}", peer.key, r, got[what])
                        run.negotiated.setdefault(f"broadcast {mode}", {})[peer.key] = got["negotiated"]


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def report(run: Run, only: set[str]) -> tuple[str, str]:
    metrics = [m for m in METRICS if m.section in only
               and (m.section != "broadcast" or m.key.split("_")[1] in run.clients)]
    labels = [p.label for p in run.entries]

    def mark(metric: Metric, peer: Peer) -> str:
        # A dagger: the client offered permessage-deflate and this server did not negotiate it.
        section = (metric.section if metric.section in ("idle", "connect") else None) or (
            "broadcast deflate" if "deflate" in metric.key else "")
        offered = run.negotiated.get(section, {}).get(peer.key)
        return " †" if section and offered is not None and "permessage-deflate" not in offered else ""

    values = [[m.title] + [fmt(run.median(m.key, p.key), m.digits) + mark(m, p) for p in run.entries]
              for m in metrics]
    ratios = [[f"{m.title} ({m.better} is better)"] +
              [fmt(run.ratio(m.key, p.key), 2) + mark(m, p) for p in run.entries] for m in metrics]
    return table(["median"] + labels, values), table(["ratio to python-websockets"] + labels, ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: tiny 1, small 3, full 5)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--servers", default="", help="comma-separated server keys (default: all); "
                        + ", ".join(p.key for p in peers()) + "; idle section only, when named: "
                        + ", ".join(p.key for p in variant_peers()))
    parser.add_argument("--subscribers", type=int, help="broadcast subscribers (default: the size's)")
    parser.add_argument("--events", type=int, help="broadcast events per measurement (default: the size's)")
    parser.add_argument("--clients", default=",".join(BROADCAST_CLIENTS),
                        help="comma-separated broadcast clients: node (Node's ws), picows")
    parser.add_argument("--json", metavar="FILE", help="write samples, medians, ratios and the machine here")
    args = parser.parse_args(argv)

    size = SIZES[args.size]
    if args.subscribers or args.events:
        size = dataclasses.replace(size, subscribers=args.subscribers or size.subscribers,
                                   events=args.events or size.events)
    rounds = args.rounds or size.rounds
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - set(SECTIONS):
        parser.error(f"--only takes {', '.join(SECTIONS)}")
    entries = [p for p in peers() if p.sections & only]
    if args.servers:
        wanted = {s.strip() for s in args.servers.split(",")}
        entries += [p for p in variant_peers() if p.key in wanted and p.sections & only]
        unknown = wanted - {p.key for p in entries}
        if unknown:
            parser.error(f"unknown server(s) {', '.join(sorted(unknown))}")
        entries = [p for p in entries if p.key in wanted]

    clients = tuple(c.strip() for c in args.clients.split(",") if c.strip())
    if "broadcast" in only and (not clients or set(clients) - set(BROADCAST_CLIENTS)):
        parser.error(f"--clients takes {', '.join(BROADCAST_CLIENTS)}")
    missing = []
    if only & {"echo", "connect"} and importlib.util.find_spec("picows") is None:
        missing.append("the echo and connect clients need picows: pip install -e '.[test,bench]'")
    if "broadcast" in only and "picows" in clients and importlib.util.find_spec("picows") is None:
        missing.append("the picows broadcast client needs picows: pip install -e '.[test,bench]'")
    if ("broadcast" in only and "node" in clients
            and not (shutil.which("node") and (NODE_DIR / "node_modules" / "ws").is_dir())):
        missing.append("the broadcast clients need Node and ws: npm ci --prefix benchmarks/node")
    if missing:
        parser.error("; ".join(missing))

    raise_fd_limit(2 * max(size.idle_connections, size.subscribers) + 1000)
    if has_uvloop():  # the measuring clients in this process run on uvloop
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    info = machine()
    started, load_start = time.monotonic(), load()
    print(f"{args.size} size, {rounds} round(s): {asdict(size)}", file=sys.stderr, flush=True)
    run = Run(entries, clients)
    with tempfile.TemporaryDirectory() as tmp:
        ticks_path = Path(tmp) / "ticks.json"
        pool = ticks(200)
        ticks_path.write_text(json.dumps(pool))
        persistent = {p.key: Server(p.label, p.command) for p in entries
                      if p.sections & only & {"echo", "connect", "broadcast"}}
        fresh = None
        try:
            for server in persistent.values():
                server.launch()
            if "idle" in only:  # the first round's idle servers start along with the others
                fresh = idle_servers(entries)
            for key, server in list(persistent.items()):
                try:
                    server.wait_ready()
                except RuntimeError as exc:
                    run.failures.append(str(exc))
                    del persistent[key]
            run.entries = [p for p in entries if p.key in persistent or p.sections & only == {"idle"}]
            for key, server in persistent.items():
                run.descriptions[key] = server.description
            for r in range(rounds):
                measure_round(run, r, size, only, persistent, ticks_path, fresh if r == 0 else None)
        finally:
            for server in [*persistent.values(), *(fresh or {}).values()]:
                server.stop()
    elapsed, load_end = time.monotonic() - started, load()

    values, ratios = report(run, only)
    sizes = [event_size(t) for t in pool]
    print(f"## Peer benchmark: size {args.size}, {rounds} interleaved round(s), {elapsed:.0f} s\n")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, {info['system']}; "
          f"load average (1, 5, 15 min) {' '.join(map(str, load_start))} at start, "
          f"{' '.join(map(str, load_end))} at end.")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".")
    print(f"Echo: {size.echo_connections} connections, {size.echo_messages} round trips of {MESSAGE_SIZE} B "
          f"per measurement. Connect: {size.connections} connections opened and closed, "
          f"{CONNECT_PARALLEL} at a time, offering permessage-deflate. Idle: {size.idle_connections} connections offering permessage-deflate, "
          f"measured after one message each way, then after {IDLE_WAIT:g} s without traffic (past wskit's "
          f"hibernation delay), then CPU for one more message each (the wake-up) and one after it. "
          f"Broadcast: {size.subscribers} subscribers x {size.events} ticks "
          f"({min(sizes)}-{max(sizes)} B as delivered), at most {size.window} in flight, "
          f"clients: {', '.join(run.clients)}.")
    for peer in run.entries:
        print(f"- {peer.label}: {run.descriptions.get(peer.key, '')}")
    print(f"\n{values}\n\n{ratios}\n")
    print("† the client offered permessage-deflate and this server did not negotiate it.")
    if run.failures:
        print("\nFAILED measurements:\n" + "\n".join(f"- {f}" for f in run.failures))

    if args.json:
        Path(args.json).write_text(json.dumps({
            "size": args.size, "parameters": asdict(size), "rounds": rounds, "sections": sorted(only),
            "elapsed_s": round(elapsed, 1), "machine": {**info, "load_start": load_start, "load_end": load_end},
            "servers": {p.key: {"label": p.label, "description": run.descriptions.get(p.key, "")}
                        for p in run.entries},
            "samples": {m: {s: [v[r] for r in sorted(v)] for s, v in per.items()} for m, per in run.samples.items()},
            "medians": {m.key: {p.key: run.median(m.key, p.key) for p in run.entries} for m in METRICS},
            "ratios_to_websockets": {m.key: {p.key: run.ratio(m.key, p.key) for p in run.entries}
                                     for m in METRICS},
            "negotiated": run.negotiated, "failures": run.failures,
        }, indent=2))
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
