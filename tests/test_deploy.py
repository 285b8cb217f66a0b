"""Deployment: a server that cannot listen exits with one line; twistd binds privileged ports as root."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from support import BACKENDS, ROOT, TWISTD, ServerProcess, python_env, run
from tlscert import make_self_signed

pytestmark = pytest.mark.timeout(60)

WSKIT_SERVE = [sys.executable, "-m", "wskit", "serve"]


def one_line_failure(cmd: list[str], timeout: float = 20) -> str:
    """Run a server that must fail to listen: it exits non-zero within seconds with one ``wskit:`` line."""
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, timeout=timeout, env=python_env(), cwd=str(ROOT))
    elapsed = time.monotonic() - started
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0, output
    assert elapsed < 15, f"took {elapsed:.1f} s to give up:\n{output}"
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "wskit: cannot listen" in line]
    assert len(lines) == 1, output
    return lines[0]


def serve_cmd(kind: str, *args: str) -> list[str]:
    if kind == "twistd":
        return [*TWISTD, "-n", "--pidfile=", "wskit", *args]
    return [*WSKIT_SERVE, "--backend", kind, *args]


KINDS = [*BACKENDS, "twistd"]


@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("kind", KINDS)
def test_port_in_use(kind, taken_port):
    line = one_line_failure(serve_cmd(kind, "--port", str(taken_port)))
    assert f"127.0.0.1:{taken_port}" in line and "address already in use" in line


@pytest.mark.parametrize("kind", KINDS)
def test_missing_certificate(kind, tmp_path):
    cert, key = make_self_signed(tmp_path)
    missing = str(tmp_path / "nope.pem")
    line = one_line_failure(serve_cmd(kind, "--port", "0", "--tls-cert", missing, "--tls-key", key))
    assert "nope.pem" in line or "TLS" in line, line


@pytest.mark.parametrize("kind", KINDS)
def test_unusable_key(kind, tmp_path):
    cert, _key = make_self_signed(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    line = one_line_failure(serve_cmd(kind, "--port", "0", "--tls-cert", cert, "--tls-key", str(garbage)))
    assert "TLS" in line or "garbage.pem" in line, line


@pytest.mark.parametrize("kind", ["twisted", "twistd"])
def test_bad_endpoint_string(kind):
    line = one_line_failure(serve_cmd(kind, "--endpoint", "nosuchtransport:1234"))
    assert "nosuchtransport:1234" in line


@pytest.mark.parametrize("kind", KINDS)
def test_address_not_on_this_machine(kind):
    # 192.0.2.0/24 is TEST-NET-1: never assigned to a local interface.
    line = one_line_failure(serve_cmd(kind, "--host", "192.0.2.1", "--port", "0"))
    assert "192.0.2.1" in line


def free_privileged_port() -> int:
    for port in (81, 82, 83, 444, 555, 666, 777, 888, 999):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024 on 127.0.0.1")


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])  # real uid
    raise AssertionError(f"no Uid line for pid {pid}")


def test_twistd_binds_a_privileged_port_then_drops_privileges(tmp_path):
    assert os.geteuid() == 0, "this test binds a port below 1024 as root (CI runs as root)"
    port = free_privileged_port()
    # The unprivileged user must be able to read the code it keeps running.
    cmd = [*TWISTD, "-n", "--pidfile=", "-u", "65534", "-g", "65534", "wskit", "--port", str(port),
           "--protocol", "wskit.echo", "--no-static"]
    env = {"PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)}
    with ServerProcess([], cmd=cmd, ready="wskit: serving", env=env) as proc:

        async def echo() -> str:
            async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["wskit.echo"]) as ws:
                await ws.send("unprivileged")
                return await ws.recv()

        # The reactor only runs once twistd has dropped privileges, so an answer
        # means the process serving it is no longer root.
        assert run(echo()) == "unprivileged"
        assert process_uid(proc.proc.pid) == 65534
    assert "Traceback" not in "\n".join(proc.lines)
