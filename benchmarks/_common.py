"""What the benchmarks share: server subprocesses, CPU and RSS readings, payloads, tables.

Servers run as subprocesses (one backend per process, see servers.py), on a
port they pick and report; the measuring clients are independent of them, the
same client for every server, so differences between rows come from the
servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVERS = Path(__file__).resolve().parent / "servers.py"
_SERVING = re.compile(r"serving ws://127\.0\.0\.1:(\d+)/")

# Short names the per-topic scripts use for servers.py command lines.
KINDS = {
    "twisted": ("wskit", "--backend", "twisted"),
    "asyncio": ("wskit", "--backend", "asyncio"),
    "autobahn": ("autobahn", "--backend", "twisted"),
    "websockets": ("websockets",),
}


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit (children inherit it); return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class Server:
    """One server under test: ``python benchmarks/servers.py KIND ARGS`` in a subprocess.

    ``kind`` is a key of :data:`KINDS` or a servers.py command line. The server
    binds port 0 and reports its port on its ``serving ws://...`` line; its whole
    output is kept in ``lines`` (shown when it fails).
    """

    def __init__(self, label: str, kind: str | Sequence[str], args: Sequence[str] = ()):
        self.label = label
        self.command = [*(KINDS[kind] if isinstance(kind, str) else kind), *args]
        self.port = 0
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def description(self) -> str:
        """What the server said it is, from its serving line."""
        for line in self.lines:
            if _SERVING.search(line):
                return line.split("(", 1)[-1].rstrip(")")
        return ""

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if len(self.lines) < 5000:  # per-connection log lines: keep the start, bounded
                self.lines.append(line)
            found = _SERVING.search(line)
            if found and not self.port:
                self.port = int(found.group(1))
                self._ready.set()
        self._ready.set()

    def launch(self) -> Server:
        """Start the process; :meth:`wait_ready` waits for its serving line."""
        self.proc = subprocess.Popen([sys.executable, str(SERVERS), *self.command], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT),
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def wait_ready(self, timeout: float = 60) -> Server:
        if not self._ready.wait(timeout) or not self.port or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.label} did not start: {' '.join(self.command)}\n" +
                               "\n".join(self.lines[-30:]))
        return self

    def start(self) -> Server:
        return self.launch().wait_ready()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

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
            server.launch()
        for server in servers:
            server.wait_ready()
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


async def settled_rss(pid: int) -> int:
    """VmRSS in KiB once the server has gone quiet: the median of a few readings."""
    import asyncio

    await asyncio.sleep(0.3)
    readings = []
    for _ in range(3):
        readings.append(rss_kib(pid))
        await asyncio.sleep(0.1)
    return int(median(readings))


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
