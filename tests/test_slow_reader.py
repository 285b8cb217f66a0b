"""A client that stops reading while asking for large direct replies is dropped at --max-buffered-bytes.

Direct replies (an RPC result, an echo, a join answered with history) go through the same
slow-consumer policy as broadcasts: the server's memory stays bounded however much is asked for.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from support import BACKENDS, encode_frame, raw_connect, serve

pytestmark = pytest.mark.timeout(120)

CAP = 1024 * 1024
REPLY = 64 * 1024
REQUESTS = 1500  # ~96 MB of replies asked for: far beyond the cap and any socket buffer


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_that_stops_reading_rpc_replies_is_dropped(backend):
    proc, port = serve(backend, "--max-buffered-bytes", str(CAP), "--no-compress", "--ticker-interval", "0",
                       "--max-message-size", str(4 * REPLY))
    with proc:
        sock, head = raw_connect(port, headers={"Sec-WebSocket-Protocol": "wskit.rpc.v1.json"})
        assert b" 101 " in head
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        before = rss_bytes(proc.proc.pid)
        request = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": ["x" * REPLY], "id": 1}).encode()
        frame = encode_frame(0x1, request)
        sent = 0
        sock.settimeout(5)
        try:
            for _ in range(REQUESTS):
                sock.sendall(frame)  # never read a reply
                sent += 1
        except OSError:
            pass  # dropped by the server while we were still asking: what the test wants
        proc.wait_for_log("too slow a consumer", timeout=30)
        peak = rss_bytes(proc.proc.pid)
        sock.close()
        assert sent > CAP // REPLY  # it asked for more than the cap before being cut off
        assert peak - before < 50 * 1024 * 1024, f"server grew by {(peak - before) >> 20} MiB"
        assert "Traceback" not in "\n".join(proc.lines)


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_after_a_failed_decompression_is_not_buffered(backend):
    """A message refused after inflating past the limit leaves its frame unfinished: what the peer
    sends next cannot be parsed, and the server drops the peer instead of buffering it."""
    import zlib

    proc, port = serve(backend, "--ticker-interval", "0", "--max-message-size", str(1 << 20))
    with proc:
        sock, head = raw_connect(port, headers={"Sec-WebSocket-Protocol": "wskit.echo",
                                                "Sec-WebSocket-Extensions": "permessage-deflate"})
        assert b" 101 " in head and b"permessage-deflate" in head
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = compressor.compress(b"a" * (2 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        sock.sendall(encode_frame(0x2, bomb[:-4], rsv1=True))
        before = rss_bytes(proc.proc.pid)
        more = encode_frame(0x2, b"x" * 65536) * 16
        sent = 0
        sock.settimeout(5)
        try:
            for _ in range(200):  # up to 200 MiB, far more than any buffer should take
                sock.sendall(more)
                sent += len(more)
        except OSError:
            pass  # dropped: what the test wants
        proc.wait_for_log("received after the connection was failed", timeout=30)
        assert rss_bytes(proc.proc.pid) - before < 50 * 1024 * 1024
        assert sent < 100 * len(more)
        sock.close()
