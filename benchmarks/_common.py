"""What the benchmarks share: server subprocesses, RSS readings, payloads, tables.

Servers run as subprocesses (one backend per process); the measuring client
is python-websockets in the benchmark process, the same client for every
server, so differences between rows come from the servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import ServerProcess, free_port  # noqa: E402

PEERS = Path(__file__).resolve().parent / "peers.py"


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit (children inherit it); return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class Server:
    """One echo server under test: a ``wskit serve`` run or a peer from peers.py."""

    def __init__(self, label: str, kind: str, args: Sequence[str] = ()):
        self.label = label
        self.kind = kind  # "twisted", "asyncio" (wskit backends), "autobahn", "websockets" (peers)
        self.args = list(args)
        self.port = free_port()
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.proc is not None
        return self.process.proc.pid

    def start(self) -> Server:
        if self.kind in ("twisted", "asyncio"):
            args = ["--backend", self.kind, "--port", str(self.port), "--no-static", *self.args]
            self.process = ServerProcess(args)
        else:
            cmd = [sys.executable, str(PEERS), self.kind, "--port", str(self.port), *self.args]
            self.process = ServerProcess([], cmd=cmd)
        self.process.__enter__()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def open_clients(url: str, n: int, parallel: int = 50, **options):
    """``n`` python-websockets client connections, at most ``parallel`` handshakes at once
    (stays under the servers' listen backlog)."""
    import asyncio

    from websockets.asyncio.client import connect

    gate = asyncio.Semaphore(parallel)
    options = {"open_timeout": 60, "ping_interval": None, "max_size": 2**24, **options}

    async def one():
        async with gate:
            return await connect(url, **options)

    return await asyncio.gather(*(one() for _ in range(n)))


def server_cpu_ns(pid: int) -> int:
    """CPU time used so far by every thread of ``pid``, in ns."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


@contextlib.contextmanager
def running(servers: Sequence[Server]):
    """Start every server (all stay up for interleaved rounds); stop them all afterwards."""
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- payloads ----------------------------------------------------------------------------------

_PROSE: str | None = None


def prose() -> str:
    """About 450 KiB of real English documentation text (Python's own pydoc topics)."""
    global _PROSE
    if _PROSE is None:
        from pydoc_data.topics import topics
        _PROSE = "\n".join(topics[k] for k in sorted(topics))
    return _PROSE


def words() -> list[str]:
    global _WORDS
    if _WORDS is None:
        _WORDS = prose().split()
    return _WORDS


_WORDS: list[str] | None = None


def sentence(rng: random.Random, n_words: int) -> str:
    w = words()
    start = rng.randrange(len(w) - n_words)
    return " ".join(w[start:start + n_words])


NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
ROOMS = ["general", "random", "dev", "ops", "support"]
SYMBOLS = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "NFLX"]


def chat_message(rng: random.Random, i: int) -> bytes:
    """A chat line as a JSON event, 100-300 bytes."""
    return json.dumps({
        "type": "message", "room": rng.choice(ROOMS), "from": rng.choice(NAMES), "id": 100000 + i,
        "ts": 1764028800.0 + i * 0.731, "text": sentence(rng, rng.randint(6, 30)),
    }).encode()


def pubsub_tick(rng: random.Random, i: int) -> bytes:
    """A market-data style publication, ~150 bytes."""
    price = 100 + rng.random() * 400
    return json.dumps({
        "type": "publish", "topic": "prices." + rng.choice(SYMBOLS), "seq": 5000000 + i,
        "data": {"bid": round(price, 2), "ask": round(price + 0.05, 2), "volume": rng.randint(1, 10**6),
                 "ts": 1764028800123 + i * 17},
    }).encode()


def json_document(rng: random.Random, i: int, size: int = 4096) -> bytes:
    """An API-style JSON document (list of records) of about ``size`` bytes."""
    records = []
    doc = {"type": "result", "id": i, "items": records}
    while len(json.dumps(doc)) < size:
        records.append({"id": rng.randint(1, 10**6), "name": rng.choice(NAMES), "email": rng.choice(NAMES) +
                        "@example.org", "active": rng.random() < 0.5, "score": round(rng.random() * 100, 3),
                        "note": sentence(rng, rng.randint(2, 10))})
    return json.dumps(doc).encode()


def text_blob(rng: random.Random, i: int, size: int = 65536) -> bytes:
    """``size`` bytes of contiguous prose from a random place in the corpus."""
    text = prose().encode()
    start = rng.randrange(len(text) - size)
    return text[start:start + size]


def sized_messages(rng: random.Random, size: int, count: int) -> list[bytes]:
    """Distinct ASCII messages of exactly ``size`` bytes: chat JSON when it fits, else prose."""
    out = []
    for _ in range(count):
        name = rng.choice(NAMES)
        text = sentence(rng, 120).encode("ascii", "ignore").decode().replace('"', "").replace("\\", "")
        room = size - len(json.dumps({"from": name, "text": ""}))
        message = json.dumps({"from": name, "text": text[:room]}) if room >= 4 else text[:size]
        out.append(message.encode())
    return out


# -- statistics and tables ----------------------------------------------------------------------

def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (what docs/performance.md shows)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine_note() -> str:
    import platform
    import zlib
    return (f"Python {platform.python_version()}, zlib {zlib.ZLIB_RUNTIME_VERSION}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
