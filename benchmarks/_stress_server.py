"""The server under test for the stress suite: a ``wskit serve`` subprocess,
its log, its memory (sampled VmRSS) and a "still serving" probe.

Adapted from the test helpers (tests/support.py); benchmarks do not import
the test folder. The server runs through a small wrapper that raises its
open-files limit first, so scenarios that hold thousands of connections
measure the server, not ``ulimit -n``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from _stress_wire import TEXT, encode_frame, raw_connect, read_frame, status_of

ROOT = Path(__file__).resolve().parent.parent
_URL_PORT = re.compile(r"wskit: serving .* at wss?://[^\s/]*:(\d+)/")

# Runs `wskit` in-process after raising RLIMIT_NOFILE (the PID stays the server's).
_WRAPPER = (
    "import resource, sys\n"
    "want = int(sys.argv[1])\n"
    "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "if want > soft:\n"
    "    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))\n"
    "import _stress_diag\n"
    "_stress_diag.install()\n"
    "from wskit.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class RSSSampler:
    """Samples a process's VmRSS every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_kib(self.pid)
            if value is None:
                return
            with self._lock:
                self.samples.append((time.monotonic(), value))
            self._stop.wait(self.interval)

    def start(self) -> RSSSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def now(self) -> int | None:
        value = rss_kib(self.pid)
        if value is not None:
            with self._lock:
                self.samples.append((time.monotonic(), value))
        return value

    def peak_since(self, since: float) -> int | None:
        with self._lock:
            values = [v for t, v in self.samples if t >= since]
        return max(values) if values else None

    def series(self, since: float, until: float | None = None) -> list[tuple[float, int]]:
        with self._lock:
            return [(t, v) for t, v in self.samples if t >= since and (until is None or t <= until)]


class ServerProcess:
    """``wskit serve --port 0 ARGS`` in a subprocess (stdout and stderr merged into ``lines``)."""

    def __init__(self, backend: str, args: Sequence[str], nofile: int = 0, start_timeout: float = 30):
        self.backend = backend
        self.args = ["serve", "--backend", backend, "--port", "0", *args]
        self.nofile = nofile
        self.start_timeout = start_timeout
        self.lines: list[str] = []
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()
        self.returncode: int | None = None

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-c", _WRAPPER, str(self.nofile or 0), *self.args]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if not self.port:
                found = _URL_PORT.search(line)
                if found:
                    self.port = int(found.group(1))
                    self._ready.set()
        self._ready.set()

    def start(self) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # The wrapper imports _stress_diag (diagnostics asked for through the environment).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent),
                                                          env.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, cwd=str(ROOT))
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(self.start_timeout) or not self.port:
            self.stop()
            raise RuntimeError(f"server did not start: {' '.join(self.args)}\n" + "\n".join(self.lines[-20:]))
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def count(self, text: str, since: int = 0) -> int:
        return sum(1 for line in self.lines[since:] if text in line)

    def wait_for_count(self, text: str, n: int, timeout: float, since: int = 0) -> int:
        """Wait until ``n`` log lines (from index ``since``) contain ``text``; return the count seen."""
        deadline = time.monotonic() + timeout
        seen = self.count(text, since)
        while seen < n and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = self.count(text, since)
        return seen

    def terminate(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.returncode = self.proc.returncode


def still_serving(port: int, timeout: float = 5) -> tuple[bool, str]:
    """One echo round trip on a fresh connection (the default subprotocol, wskit.echo)."""
    try:
        sock, head = raw_connect(port, timeout=timeout)
    except OSError as exc:
        return False, f"connect: {exc.__class__.__name__}"
    try:
        if status_of(head) != 101:
            first = head.split(b"\r\n", 1)[0].decode("latin-1")
            return False, f"handshake: {first or 'no answer'}"
        token = os.urandom(6).hex().encode()
        sock.sendall(encode_frame(TEXT, token))
        sock.settimeout(timeout)
        opcode, payload = read_frame(sock)
        if (opcode, payload) != (TEXT, token):
            return False, f"echo: got opcode {opcode} {payload[:40]!r}"
        sock.sendall(encode_frame(0x8, b"\x03\xe8"))
        return True, "yes"
    except (OSError, ConnectionError) as exc:
        return False, f"echo: {exc.__class__.__name__}"
    finally:
        try:
            sock.close()
        except OSError:
            pass
