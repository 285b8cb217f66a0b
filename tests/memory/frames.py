"""RFC 6455 bytes by hand, for driving protocols over in-memory transports.

Backend-neutral (no reactor, no event loop, no wskit backend imported): both
backends' in-memory tiers build client frames and upgrade requests with these
helpers and parse what the protocol under test wrote. Masks and handshake keys
are fixed, so every run writes the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from dataclasses import dataclass, field

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's sample nonce
SAMPLE_MASK = b"\x37\xfa\x21\x3d"
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: stripped from each message

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


# -- HTTP ----------------------------------------------------------------------


def upgrade_request(path: str = "/ws", host: str = "127.0.0.1:9000", protocols: tuple[str, ...] = (),
                    origin: str | None = None, extensions: str | None = None, key: str = SAMPLE_KEY,
                    headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A client's opening handshake, as a browser or library would write it."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def plain_get(path: str = "/ws", host: str = "127.0.0.1:9000") -> bytes:
    """An HTTP request without ``Upgrade`` (a browser opening the URL)."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


@dataclass
class HTTPMessage:
    """One parsed HTTP request or response head, its body, and whatever followed it."""

    start_line: str
    headers: dict[str, str]
    body: bytes = b""
    rest: bytes = b""

    @property
    def status(self) -> int:
        return int(self.start_line.split()[1])

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def parse_http(data: bytes) -> HTTPMessage:
    """Split ``data`` into an HTTP head, its body (per Content-Length) and the bytes after it."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no complete HTTP head in {data[:200]!r}")
    start_line, *lines = head.decode("iso-8859-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return HTTPMessage(start_line, headers, rest[:length], rest[length:])


def switching_protocols(request: bytes, protocol: str | None = None, extensions: str | None = None,
                        headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A server's 101 answer to the client's ``request`` (accept key computed from its key)."""
    key = parse_http(request).header("sec-websocket-key")
    assert key, "the request carries no Sec-WebSocket-Key"
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def refusal(status: int, phrase: str, body: bytes = b"") -> bytes:
    """A server's non-101 answer (what a proxy or a refusing server writes)."""
    return (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


# -- frames ----------------------------------------------------------------------


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
          mask: bytes | None = SAMPLE_MASK) -> bytes:
    """One frame; masked (as a client must send) unless ``mask`` is None.

    ``rsv`` is the three RSV bits as a number 0-7 (RSV1 = 4: a compressed message).
    """
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", b0, mask_bit | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", b0, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", b0, mask_bit | 127, n)
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def text(message: str | bytes, fin: bool = True) -> bytes:
    return frame(TEXT, message.encode() if isinstance(message, str) else message, fin)


def binary(data: bytes, fin: bool = True) -> bytes:
    return frame(BINARY, data, fin)


def continuation(data: bytes, fin: bool = True) -> bytes:
    return frame(CONTINUATION, data, fin)


def ping(data: bytes = b"") -> bytes:
    return frame(PING, data)


def pong(data: bytes = b"") -> bytes:
    return frame(PONG, data)


def close(code: int | None = 1000, reason: str = "") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
    return frame(CLOSE, payload)


@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0
    masked: bool = False

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE, f"not a close frame: {self}"
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        assert self.opcode == CLOSE, f"not a close frame: {self}"
        return self.payload[2:].decode("utf-8")

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Every complete frame in ``data`` (unmasking client frames), and the incomplete rest."""
    frames: list[Frame] = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        n, cursor = b1 & 0x7F, pos + 2
        if n == 126:
            if len(data) < cursor + 2:
                break
            n = struct.unpack("!H", data[cursor:cursor + 2])[0]
            cursor += 2
        elif n == 127:
            if len(data) < cursor + 8:
                break
            n = struct.unpack("!Q", data[cursor:cursor + 8])[0]
            cursor += 8
        mask = None
        if b1 & 0x80:
            if len(data) < cursor + 4:
                break
            mask, cursor = data[cursor:cursor + 4], cursor + 4
        if len(data) < cursor + n:
            break
        payload = data[cursor:cursor + n]
        if mask is not None:
            payload = apply_mask(payload, mask)
        frames.append(Frame(b0 & 0x0F, payload, bool(b0 & 0x80), (b0 >> 4) & 7, mask is not None))
        pos = cursor + n
    return frames, data[pos:]


@dataclass
class FrameReader:
    """Reads an endpoint's output incrementally: the HTTP head once, then frames."""

    buffer: bytes = b""
    head: HTTPMessage | None = None
    frames: list[Frame] = field(default_factory=list)

    def feed(self, data: bytes) -> list[Frame]:
        """Add output bytes; return the frames completed by them."""
        self.buffer += data
        if self.head is None:
            if b"\r\n\r\n" not in self.buffer:
                return []
            self.head = parse_http(self.buffer)
            self.buffer = self.head.rest
        new, self.buffer = parse_frames(self.buffer)
        self.frames += new
        return new


# -- permessage-deflate (RFC 7692) ---------------------------------------------


def deflate_message(payload: bytes, window_bits: int = 15) -> bytes:
    """A message body compressed as one permessage-deflate message (no context takeover)."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(DEFLATE_TAIL)
    return data[: -len(DEFLATE_TAIL)]


def inflate_message(data: bytes, window_bits: int = 15) -> bytes:
    """The body of one compressed message (the stripped tail put back)."""
    return zlib.decompressobj(-window_bits).decompress(data + DEFLATE_TAIL)


def deflater(window_bits: int = 15):
    """A peer's compressor that keeps its context across messages: message -> compressed body."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -window_bits)
    return lambda payload: (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-len(DEFLATE_TAIL)]


def inflater(window_bits: int = 15):
    """A peer's decompressor that keeps its context across messages: compressed body -> message."""
    decompressor = zlib.decompressobj(-window_bits)
    return lambda data: decompressor.decompress(data + DEFLATE_TAIL)


def compressed_text(message: str, window_bits: int = 15) -> bytes:
    """A masked text frame with RSV1 set: one compressed message."""
    return frame(TEXT, deflate_message(message.encode(), window_bits), rsv=4)
