"""What a server does with the HTTP request itself, over real sockets: size and header limits,
malformed requests, HTTP and WebSocket versions, the Host check, the opening-handshake deadline.

Runs against ``wskit serve`` on both backends and against ``twistd -n wskit``: all three answer
every request here with the same status and body (tests/memory has the same table in memory).
"""

from __future__ import annotations

import base64
import os
import socket
import time

import pytest
from support import BACKENDS, serve, twistd

pytestmark = pytest.mark.timeout(90)

SERVERS = (*BACKENDS, "twistd")
KEY = base64.b64encode(os.urandom(16)).decode()


def start(kind: str, *args: str):
    if kind == "twistd":
        return twistd(*args)
    return serve(kind, *args)


@pytest.fixture(scope="module", params=SERVERS)
def server(request):
    proc, port = start(request.param, "--ticker-interval", "0", "--open-timeout", "5")
    with proc:
        yield request.param, port, proc


def request_bytes(port: int, request_line: str = "GET /ws HTTP/1.1", host: str | None = None,
                  version: str | None = "13", extra: tuple[str, ...] = ()) -> bytes:
    lines = [request_line, f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {KEY}"]
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode("latin-1")


def exchange(port: int, data: bytes, chunk: int = 65536) -> tuple[int, str, dict[str, str], bytes]:
    """Send ``data`` (stopping early if the server closes), read the answer until the server closes.

    Returns (status, status line, headers, body); status 0 when nothing came back.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    answer = b""
    with sock:
        try:
            for i in range(0, len(data), chunk):
                sock.sendall(data[i:i + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before we finished: the answer is waiting
        try:
            while True:
                got = sock.recv(65536)
                if not got:
                    break
                answer += got
                if b" 101 " in answer.split(b"\r\n", 1)[0] and b"\r\n\r\n" in answer:
                    break  # accepted: the connection stays open
        except ConnectionResetError:
            pass
    if not answer:
        return 0, "", {}, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), status_line, headers, body


REFUSALS = [
    ("a 20 KB header line", dict(extra=(f"X-Long: {'a' * 20_000}",)), 431, "request head larger than 16384 bytes"),
    ("1,000 headers", dict(extra=tuple(f"X-{i}: v" for i in range(1000))), 431, "more than 100 header fields"),
    ("NUL in a header value", dict(extra=("X-A: a\x00b",)), 400, "control character in header field X-A"),
    ("a control character in a value", dict(extra=("X-A: a\x01b",)), 400, "control character"),
    ("HTTP/1.0 upgrade", dict(request_line="GET /ws HTTP/1.0"), 505, "needs HTTP/1.1, not HTTP/1.0"),
    ("WebSocket version 8", dict(version="8"), 426, "unsupported WebSocket version 8 (this server speaks 13)"),
    ("Origin: null", dict(extra=("Origin: null",)), 403, "origin null not allowed"),
    ("10,000 subprotocol names", dict(extra=("Sec-WebSocket-Protocol: " + ", ".join(f"p{i}" for i in range(10_000)),)),
     431, "request head larger than 16384 bytes"),
]


@pytest.mark.parametrize("name, request_args, status, text", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_requests(server, name, request_args, status, text):
    _kind, port, _proc = server
    got, status_line, headers, body = exchange(port, request_bytes(port, **request_args))
    assert got == status, (status_line, body[:200])
    assert text in status_line and text in body.decode()
    assert headers["content-type"].startswith("text/plain")
    if status == 426:
        assert headers["sec-websocket-version"] == "13"


def test_an_endless_header_line_gets_431_after_the_limit(server):
    _kind, port, _proc = server
    start_line = f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Endless: ".encode()
    # 10 MB that never ends the line: the server answers long before the end and stops reading.
    status, _line, _headers, body = exchange(port, start_line + b"a" * 10_000_000)
    assert status == 431 and b"request head larger than 16384 bytes" in body


def test_dns_rebinding_is_refused_for_handshakes_and_pages(server):
    _kind, port, _proc = server
    evil = f"evil.example:{port}"
    status, _line, _headers, body = exchange(port, request_bytes(port, host=evil,
                                                                 extra=(f"Origin: http://{evil}",)))
    assert status == 403 and b"host evil.example not allowed" in body and b"--allow-host evil.example" in body
    for path in ("/", "/app.js"):
        page = f"GET {path} HTTP/1.1\r\nHost: {evil}\r\nConnection: close\r\n\r\n".encode()
        status, _line, _headers, body = exchange(port, page)
        assert status == 403 and b"--allow-host evil.example" in body, path
    page = f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode()
    assert exchange(port, page)[0] == 200


@pytest.mark.parametrize("kind", SERVERS)
def test_allow_host_lets_a_name_in(kind):
    proc, port = start(kind, "--ticker-interval", "0", "--allow-host", "*.example.net",
                       "--max-request-size", "1048576")
    with proc:
        name = f"chat.example.net:{port}"
        status, *_ = exchange(port, request_bytes(port, host=name, extra=(f"Origin: http://{name}",)))
        assert status == 101  # the server's own origin, under a name it answers to
        status, *_ = exchange(port, request_bytes(port, host=f"evil.example:{port}"))
        assert status == 403
        # A larger request limit; the refusal still quotes only ten of the offered names.
        offered = "Sec-WebSocket-Protocol: " + ", ".join(f"p{i}" for i in range(10_000))
        status, status_line, _headers, body = exchange(port, request_bytes(port, extra=(offered,)))
        assert status == 400
        assert len(status_line) <= len("HTTP/1.1 400 ") + 512 and len(body) <= 4097
        assert b"p9 and 9,990 more" in body


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_trickling_client_is_dropped_at_the_open_timeout(backend):
    proc, port = serve(backend, "--ticker-interval", "0", "--open-timeout", "2")
    with proc:
        data = request_bytes(port)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        started = time.monotonic()
        dropped = None
        with sock:
            for i in range(len(data) - 4):  # never the blank line
                try:
                    sock.sendall(data[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    dropped = time.monotonic() - started
                    break
                sock.settimeout(0.25)
                try:
                    if sock.recv(1024) == b"":
                        dropped = time.monotonic() - started
                        break
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    dropped = time.monotonic() - started
                    break
                if time.monotonic() - started > 8:
                    break
        assert dropped is not None, "a client sending a byte every quarter second was never dropped"
        assert 1.9 <= dropped < 3.5, dropped


def test_a_large_request_body_is_refused_without_being_read(server):
    kind, port, _proc = server
    head = f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000000\r\n\r\n".encode()
    status, _line, _headers, body = exchange(port, head)  # the body never comes: the answer must not wait
    if kind == "asyncio":
        assert status == 405  # Autobahn reads no body and refuses the method
    else:
        # twisted.web would read the body before the page answers: refused up front.
        assert status == 413 and b"more than the 16384 a request may have" in body
