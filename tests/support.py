"""Shared test helpers: real server subprocesses on 127.0.0.1, free ports, asyncio runner.

One process runs one backend (importing wskit.twisted or wskit.asyncio selects
txaio's framework for the whole process), so servers under test run as
subprocesses and the pytest process talks to them with independent clients
(python-websockets, raw sockets).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("twisted", "asyncio")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """``wskit serve`` (or any command printing 'serving') in a subprocess.

    Waits for the readiness line on stderr instead of sleeping; keeps the
    whole log in ``self.lines`` for assertions.
    """

    def __init__(self, args: Sequence[str], ready: str = "serving", cmd: Sequence[str] | None = None,
                 timeout: float = 20, cwd: str | None = None, merge_stdout: bool = False,
                 env: dict[str, str] | None = None):
        self.cmd = list(cmd or [sys.executable, "-m", "wskit", "serve"]) + list(args)
        # twistd logs to stdout: read both streams as one log.
        self.merge_stdout = merge_stdout
        self.env = {**python_env(), **(env or {})}
        self.ready = ready
        self.timeout = timeout
        self.cwd = cwd
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc: subprocess.Popen | None = None

    def _pump(self, stream) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self.ready in line:
                self._ready.set()
        self._ready.set()

    def __enter__(self) -> ServerProcess:
        stdout = subprocess.PIPE if self.merge_stdout else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.cmd, stdout=stdout, stderr=subprocess.PIPE,
                                     env=self.env, cwd=self.cwd or str(ROOT))
        assert self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stderr,), daemon=True).start()
        if self.merge_stdout:
            threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        if not self._ready.wait(self.timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"server did not start: {self.cmd}\n" + "\n".join(self.lines))
        return self

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"log line containing {text!r} not seen:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(backend: str, *args: str, port: int | None = None) -> tuple[ServerProcess, int]:
    port = port or free_port()
    return ServerProcess(["--backend", backend, "--port", str(port), *args]), port


# Run from the checkout root, so an editable install's twistd finds twisted/plugins/wskit_plugin.py.
TWISTD = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


def twistd(*args: str, port: int | None = None, ready: str = "wskit: serving") -> tuple[ServerProcess, int]:
    """``twistd -n wskit --port P ARGS`` (logs on stdout, no pid file)."""
    port = port or free_port()
    return ServerProcess(["-n", "--pidfile=", "wskit", "--port", str(port), *args], ready=ready,
                         cmd=TWISTD, merge_stdout=True), port
