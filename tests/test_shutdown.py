"""Graceful shutdown of a real server with many connections: every peer gets 1001, every
connection's close line is written before the process exits.

Runs ``wskit serve`` on both backends and ``twistd -n wskit``, each as a subprocess sent SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest
from support import BACKENDS, close_code, encode_frame, raw_connect, read_frame, serve, twistd

pytestmark = pytest.mark.timeout(120)

SERVERS = (*BACKENDS, "twistd")
CONNECTIONS = 200
CLOSE_TIMEOUT = 1.0


def start(kind: str, *args: str):
    if kind == "twistd":
        return twistd(*args)
    return serve(kind, *args)


def open_connections(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock, head = raw_connect(port)
        assert b" 101 " in head, head
        socks.append(sock)
    return socks


@pytest.mark.parametrize("peers", ["silent", "responsive"])
@pytest.mark.parametrize("kind", SERVERS)
def test_sigterm_closes_every_connection_with_1001_and_logs_each_close(kind, peers):
    proc, port = start(kind, "--no-compress", "--ticker-interval", "0", "--ping-interval", "0",
                       "--close-timeout", str(CLOSE_TIMEOUT))
    with proc:
        socks = open_connections(port, CONNECTIONS)
        try:
            # Every connection is open (and logged so) before the signal.
            deadline = time.monotonic() + 20
            while sum("wskit: open " in line for line in proc.lines) < CONNECTIONS:
                assert time.monotonic() < deadline, "not every connection was logged as open"
                time.sleep(0.05)
            started = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            if peers == "responsive":
                for sock in socks:  # read the server's close and answer it
                    opcode, payload = read_frame(sock)
                    assert (opcode, close_code(payload)) == (0x8, 1001)
                    sock.sendall(encode_frame(0x8, payload[:2]))
            # twistd ends by re-raising the signal it stopped on, as Twisted's twistd does.
            assert proc.wait_exit(30) == (-signal.SIGTERM if kind == "twistd" else 0)
            elapsed = time.monotonic() - started
            if peers == "silent":  # nobody answered: the server read nothing from us
                for sock in socks:
                    opcode, payload = read_frame(sock)
                    assert (opcode, close_code(payload)) == (0x8, 1001)
        finally:
            for sock in socks:
                sock.close()
    closes = [line for line in proc.lines if "wskit: close " in line]
    assert len(closes) == CONNECTIONS, "\n".join(proc.lines[-30:])
    if peers == "silent":
        # Dropped at the close-handshake timeout, not before, and logged as such.
        assert all("clean=False" in line for line in closes)
        assert elapsed >= CLOSE_TIMEOUT
    else:
        assert all("code=1001 clean=True" in line for line in closes)
    assert elapsed < CLOSE_TIMEOUT + 10
