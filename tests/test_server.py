"""wskit servers on both backends, probed by an independent client (python-websockets) and raw sockets."""

from __future__ import annotations

import socket
import struct
import sys
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from support import (
    BACKENDS,
    ROOT,
    ServerProcess,
    close_code,
    encode_frame,
    raw_connect,
    read_frame,
    run,
    serve,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=BACKENDS)
def default_server(request):
    """`wskit serve` on its defaults (but a free port), one per backend per module."""
    proc, port = serve(request.param)
    with proc:
        yield request.param, port, proc


def ws_url(port: int, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{port}{path}"


# -- negotiation -------------------------------------------------------------------


def test_offer_with_unknown_first_gets_echo_and_deflate(default_server):
    _, port, _ = default_server

    async def go():
        async with connect(ws_url(port), subprotocols=["bogus.v9", "wskit.echo"]) as ws:
            assert ws.subprotocol == "wskit.echo"
            assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xffbin")
            assert await ws.recv() == b"\x00\xffbin"

    run(go())


def test_only_unknown_offered_is_400_with_supported_list(default_server):
    _, port, _ = default_server

    async def go():
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(port), subprotocols=["bogus.v9"]):
                pass
        response = info.value.response
        assert response.status_code == 400
        assert b"wskit.echo" in response.body and b"bogus.v9" in response.body

    run(go())


def test_no_offer_is_served_by_default_echo(default_server):
    _, port, proc = default_server

    async def go():
        async with connect(ws_url(port)) as ws:
            assert ws.subprotocol is None
            await ws.send("plain")
            assert await ws.recv() == "plain"

    run(go())
    proc.wait_for_log("subprotocol=wskit.echo(default)")


def test_wrong_path_is_404(default_server):
    _, port, _ = default_server

    async def go():
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(port, "/nope"), subprotocols=["wskit.echo"]):
                pass
        assert info.value.response.status_code == 404

    run(go())


def test_one_log_line_per_open_and_close(default_server):
    _, port, proc = default_server

    async def go():
        async with connect(ws_url(port), subprotocols=["wskit.echo"]) as ws:
            local = ws.local_address[1]
            await ws.send("x")
            await ws.recv()
        return local

    local = run(go())
    opened = proc.wait_for_log(f"open peer=tcp4:127.0.0.1:{local} ")
    closed = proc.wait_for_log(f"close peer=tcp4:127.0.0.1:{local} ")
    assert "subprotocol=wskit.echo extensions=permessage-deflate" in opened
    assert "code=1000" in closed


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "prefer, offered, expected",
    [
        ("server", ["test.beta", "test.alpha"], "test.alpha"),
        ("client", ["test.beta", "test.alpha"], "test.beta"),
        ("server", ["bogus", "test.beta"], "test.beta"),
        ("client", [], None),
    ],
)
def test_negotiation_matrix(backend, prefer, offered, expected):
    cmd = [sys.executable, str(ROOT / "tests" / "apps" / "tagged_server.py"), backend, "0", prefer]
    with ServerProcess([], cmd=cmd) as proc:
        port = proc.port

        async def go():
            async with connect(ws_url(port), subprotocols=offered or None) as ws:
                assert ws.subprotocol == expected
                await ws.send("m")
                reply = await ws.recv()
                assert reply == (f"{expected}:m" if expected else "m")

        run(go())


# -- compression ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_default_compression_parameters(backend):
    proc, port = serve(
        backend,
        "--server-max-window-bits", "10",
        "--client-max-window-bits", "9",
        "--server-no-context-takeover",
        "--client-no-context-takeover",
        "--compress-threshold", "0",
    )
    with proc:

        async def go():
            deflate = ClientPerMessageDeflateFactory(server_max_window_bits=11, client_max_window_bits=True)
            async with connect(ws_url(port), subprotocols=["wskit.echo"], extensions=[deflate]) as ws:
                header = ws.response.headers["Sec-WebSocket-Extensions"]
                params = {p.strip() for p in header.split(";")}
                assert params == {
                    "permessage-deflate",
                    "server_no_context_takeover",
                    "server_max_window_bits=10",
                    "client_no_context_takeover",
                    "client_max_window_bits=9",
                }
                text = "compress me " * 500
                for _ in range(3):  # no context takeover: every message stands alone
                    await ws.send(text)
                    assert await ws.recv() == text

        run(go())


@pytest.mark.parametrize("backend", BACKENDS)
def test_compression_off_on_server(backend):
    proc, port = serve(backend, "--no-compress")
    with proc:

        async def go():
            async with connect(ws_url(port), subprotocols=["wskit.echo"]) as ws:
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
                await ws.send("a" * 1000)
                assert await ws.recv() == "a" * 1000

        run(go())


def test_compression_off_on_client(default_server):
    _, port, _ = default_server

    async def go():
        async with connect(ws_url(port), subprotocols=["wskit.echo"], compression=None) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send("a" * 1000)
            assert await ws.recv() == "a" * 1000

    run(go())


# -- limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_oversized_message_closes_1009(backend):
    proc, port = serve(backend, "--max-message-size", "65536")
    with proc:

        async def go():
            async with connect(ws_url(port), subprotocols=["wskit.echo"], max_size=None) as ws:
                await ws.send("y" * 65536)  # exactly the limit passes
                assert len(await ws.recv()) == 65536
                await ws.send("x" * 200_000)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1009

        run(go())


@pytest.mark.parametrize("backend", BACKENDS)
def test_oversized_fragmented_message_closes_1009(backend):
    proc, port = serve(backend, "--max-message-size", "1000", "--no-compress")
    with proc:
        sock, head = raw_connect(port)
        assert b" 101 " in head
        sock.sendall(encode_frame(0x1, b"a" * 600, fin=False))
        sock.sendall(encode_frame(0x0, b"a" * 600, fin=True))
        opcode, payload = read_frame(sock)
        assert opcode == 0x8 and close_code(payload) == 1009
        sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_utf8_closes_1007(backend):
    proc, port = serve(backend, "--no-compress")
    with proc:
        sock, head = raw_connect(port, headers={"Sec-WebSocket-Protocol": "wskit.echo"})
        assert b" 101 " in head
        sock.sendall(encode_frame(0x1, b"ok"))
        assert read_frame(sock) == (0x1, b"ok")
        sock.sendall(encode_frame(0x1, b"bad \xff\xfe utf-8"))
        opcode, payload = read_frame(sock)
        assert opcode == 0x8 and close_code(payload) == 1007
        sock.close()


# -- close frames from the client ---------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def plain_server(request):
    """`wskit serve --no-compress` (frames readable as sent), one per backend per module."""
    proc, port = serve(request.param, "--no-compress", "--ticker-interval", "0", "--ping-interval", "0")
    with proc:
        yield request.param, port


def close_exchange(port: int, payload: bytes) -> tuple[int, bytes, bytes]:
    """Open a connection, send a close frame with ``payload``; return the server's
    answer (opcode, payload) and whatever followed it before the TCP close."""
    sock, head = raw_connect(port)
    assert b" 101 " in head
    with sock:
        sock.sendall(encode_frame(0x8, payload))
        opcode, answer = read_frame(sock)  # a TCP reset here raises ConnectionResetError
        rest = b""
        while chunk := sock.recv(4096):
            rest += chunk
    return opcode, answer, rest


@pytest.mark.parametrize("payload, expected", [
    (b"\x03\xed", 1002),  # 1005: may not be sent
    (b"\x03\xee", 1002),  # 1006: may not be sent
    (b"\x03\xe7", 1002),  # 999
    (b"\x13\x88", 1002),  # 5000
    (b"\x03", 1002),  # one byte: half a code
    (b"\x03\xe8" + b"x" * 124, 1002),  # 126 bytes: over the control frame limit
    (b"\x03\xe8bad \xff\xfe", 1007),  # reason not UTF-8
])
def test_invalid_close_frame_is_answered_with_1002_or_1007_not_a_reset(plain_server, payload, expected):
    _backend, port = plain_server
    opcode, answer, rest = close_exchange(port, payload)
    assert opcode == 0x8 and close_code(answer) == expected
    assert rest == b""  # then a clean TCP close


@pytest.mark.parametrize("code, reason", [(1000, b""), (1001, b""), (3000, b"bye"), (4999, b"")])
def test_a_valid_close_code_is_echoed_over_a_socket(plain_server, code, reason):
    _backend, port = plain_server
    opcode, answer, rest = close_exchange(port, struct.pack("!H", code) + reason)
    assert opcode == 0x8 and close_code(answer) == code and answer[2:] == reason
    assert rest == b""


# -- timeouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_opening_handshake_timeout_drops_silent_client(backend):
    proc, port = serve(backend, "--open-timeout", "1")
    with proc:
        started = time.monotonic()
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
        assert sock.recv(1024) == b""  # dropped, well before the default 10 s
        assert time.monotonic() - started < 6
        sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_ping_drops_peer_that_never_answers(backend):
    proc, port = serve(backend, "--ping-interval", "0.5", "--ping-timeout", "1", "--no-compress")
    with proc:
        sock, head = raw_connect(port, headers={"Sec-WebSocket-Protocol": "wskit.echo"})
        assert b" 101 " in head
        local = sock.getsockname()[1]
        opcode, _ = read_frame(sock)
        assert opcode == 0x9  # the server pinged us; we stay silent
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            while True:
                read_frame(sock)
        assert time.monotonic() - started < 6
        line = proc.wait_for_log(f"close peer=tcp4:127.0.0.1:{local} ")
        assert "clean=False" in line
        sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_ping_keeps_responsive_peer(backend):
    proc, port = serve(backend, "--ping-interval", "0.3", "--ping-timeout", "1", "--no-compress")
    with proc:
        sock, head = raw_connect(port, headers={"Sec-WebSocket-Protocol": "wskit.echo"})
        assert b" 101 " in head
        for _ in range(4):  # answer four pings: well past one ping timeout
            opcode, payload = read_frame(sock)
            assert opcode == 0x9
            sock.sendall(encode_frame(0xA, payload))
        sock.sendall(encode_frame(0x1, b"still here"))
        while (frame := read_frame(sock))[0] == 0x9:
            sock.sendall(encode_frame(0xA, frame[1]))
        assert frame == (0x1, b"still here")
        sock.close()


# -- plain HTTP on the WebSocket port ---------------------------------------------------------


def test_plain_get_on_ws_path_is_426(default_server):
    _, port, _ = default_server
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 426")
    assert b"wskit.echo" in data


@pytest.mark.parametrize("backend", BACKENDS)
def test_shutdown_closes_open_connections_with_1001(backend):
    proc, port = serve(backend)
    with proc:

        async def go():
            async with connect(ws_url(port), subprotocols=["wskit.echo"]) as ws:
                await ws.send("x")
                await ws.recv()
                proc.proc.terminate()
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                return ws.close_code

        assert run(go()) == 1001
