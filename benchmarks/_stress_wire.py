"""RFC 6455 by hand for the stress suite: upgrade requests, frames, raw sockets.

Copied from the test helpers (tests/support.py, tests/memory/frames.py) rather
than imported: benchmarks do not depend on the test folder. Everything here
talks to 127.0.0.1 only and every blocking call has a timeout.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: stripped from each compressed message
HOST = "127.0.0.1"


# -- opening handshake -----------------------------------------------------------------------


def upgrade_request(host_header: str, path: str = "/ws", headers: dict[str, str] | None = None,
                    version: str = "13") -> bytes:
    """A WebSocket upgrade request written by hand, with any extra headers."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: socket.socket, limit: int = 65536) -> bytes:
    """The HTTP response head, read byte by byte (frames may follow at once); b"" if closed first."""
    head = b""
    while not head.endswith(b"\r\n\r\n") and len(head) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return head


def status_of(head: bytes) -> int | None:
    """The status code of an HTTP response head, or None."""
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def header_of(head: bytes, name: str) -> str | None:
    for line in head.decode("iso-8859-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def raw_connect(port: int, path: str = "/ws", headers: dict[str, str] | None = None,
                timeout: float = 10, host_header: str | None = None,
                version: str = "13") -> tuple[socket.socket, bytes]:
    """TCP connect and send an upgrade request; returns (socket, response head)."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.sendall(upgrade_request(host_header or f"{HOST}:{port}", path, headers, version))
    return sock, read_head(sock)


# -- frames ---------------------------------------------------------------------------------


def encode_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False,
                 length: int | None = None) -> bytes:
    """One masked client frame. ``length`` overrides the declared payload length
    (a frame header that lies about what follows)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask = os.urandom(4)
    n = len(payload) if length is None else length
    if n < 126:
        header = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return header + mask + apply_mask(payload, mask)


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return bytes(data)


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Read one unmasked server frame: (opcode, payload)."""
    b0, b1 = recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(sock, 8))[0]
    return b0 & 0x0F, recv_exact(sock, n)


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


@dataclass
class Ending:
    """How a connection ended from the client's side."""

    close_code: int | None = None  # the server's close frame, if one came
    frames_before: int = 0  # data frames read before it
    how: str = ""  # "close frame", "eof", "reset", "timeout"

    def __str__(self) -> str:
        if self.close_code is not None:
            return str(self.close_code)
        return self.how


def read_until_close(sock: socket.socket, timeout: float) -> Ending:
    """Read frames until the server's close frame, EOF, a reset or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    ending = Ending()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            ending.how = "timeout"
            return ending
        sock.settimeout(left)
        try:
            opcode, payload = read_frame(sock)
        except socket.timeout:
            ending.how = "timeout"
            return ending
        except ConnectionResetError:
            ending.how = "reset"
            return ending
        except (ConnectionError, OSError):
            ending.how = "eof"
            return ending
        if opcode == CLOSE:
            ending.close_code = close_code(payload) or 1005
            ending.how = "close frame"
            return ending
        if opcode in (TEXT, BINARY, CONTINUATION):
            ending.frames_before += 1


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a killed process's kernel would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# -- permessage-deflate (RFC 7692) ----------------------------------------------------------


def deflate_stream(chunks, window_bits: int = 15, level: int = 9) -> bytes:
    """One compressed message body from an iterable of byte chunks (tail stripped)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -window_bits)
    out = bytearray()
    for chunk in chunks:
        out += compressor.compress(chunk)
    out += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(DEFLATE_TAIL)
    return bytes(out[: -len(DEFLATE_TAIL)])


def zeros(total: int, chunk: int = 1 << 20):
    """``total`` zero bytes in chunks (a gigabyte never sits in memory at once)."""
    block = bytes(chunk)
    left = total
    while left > 0:
        yield block[: min(chunk, left)]
        left -= chunk
