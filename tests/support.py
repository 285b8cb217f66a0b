"""Shared test helpers: real server subprocesses on 127.0.0.1, free ports, asyncio runner.

One process runs one backend (importing wskit.twisted or wskit.asyncio selects
txaio's framework for the whole process), so servers under test run as
subprocesses and the pytest process talks to them with independent clients
(python-websockets, raw sockets).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_URL_PORT = re.compile(r"wss?://[^\s/]*:(\d+)")
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

    Waits for the readiness line on its output (stdout and stderr merged) instead of sleeping; keeps the
    whole log in ``self.lines`` for assertions.
    """

    def __init__(self, args: Sequence[str], ready: str = "serving", cmd: Sequence[str] | None = None,
                 timeout: float = 20, cwd: str | None = None, env: dict[str, str] | None = None):
        self.cmd = list(cmd or [sys.executable, "-m", "wskit", "serve"]) + list(args)
        self.env = {**python_env(), **(env or {})}
        self.ready = ready
        self.timeout = timeout
        self.cwd = cwd
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc: subprocess.Popen | None = None

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self.ready in line:
                self._ready.set()
        self._ready.set()

    def start(self) -> ServerProcess:
        """Start the process (once) and wait for its readiness line; ``port`` is then the one it serves on."""
        if self.proc is not None:
            return self
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.cwd or str(ROOT))
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        if not self._ready.wait(self.timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"server did not start: {self.cmd}\n" + "\n".join(self.lines))
        return self

    @property
    def port(self) -> int:
        """The port from the readiness line's URL (servers bind port 0 and report it)."""
        for line in self.lines:
            if self.ready in line:
                found = _URL_PORT.search(line)
                if found:
                    return int(found.group(1))
        raise AssertionError("no ws:// URL with a port in the readiness line:\n" + "\n".join(self.lines))

    def __enter__(self) -> ServerProcess:
        return self.start()

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"log line containing {text!r} not seen:\n" + "\n".join(self.lines))

    def wait_exit(self, timeout: float = 30) -> int:
        """Wait for the process to end and for all it wrote to be in ``lines``; its exit status."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._pump_thread.join(timeout)
        return code

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


def serve(backend: str, *args: str, port: int = 0) -> tuple[ServerProcess, int]:
    """``wskit serve --backend B --port 0 ARGS``, started; the port is the one it reports."""
    proc = ServerProcess(["--backend", backend, "--port", str(port), *args]).start()
    return proc, proc.port


# Run from the checkout root, so an editable install's twistd finds twisted/plugins/wskit_plugin.py.
TWISTD = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


def twistd(*args: str, port: int = 0) -> tuple[ServerProcess, int]:
    """``twistd -n wskit --port 0 ARGS`` (no pid file), started; the port is the one it reports."""
    proc = ServerProcess(["-n", "--pidfile=", "wskit", "--port", str(port), *args], ready="wskit: serving",
                         cmd=TWISTD).start()
    return proc, proc.port


# -- raw RFC 6455 client for what libraries refuse to send --------------------------------------


def upgrade_request(host_header: str, path: str = "/ws", headers: dict[str, str] | None = None) -> bytes:
    """A WebSocket upgrade request written by hand, with any extra headers a test wants."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def raw_connect(port: int, path: str = "/ws", headers: dict[str, str] | None = None,
                timeout: float = 10) -> tuple[socket.socket, bytes]:
    """TCP connect and complete a handshake by hand; returns (socket, response head)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(upgrade_request(f"127.0.0.1:{port}", path, headers))
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: frames may follow at once
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return sock, head


def encode_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Read one unmasked server frame: (opcode, payload)."""
    b0, b1 = _recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", _recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _recv_exact(sock, 8))[0]
    return b0 & 0x0F, _recv_exact(sock, n)


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
