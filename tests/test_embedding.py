"""Embedding wskit: native Autobahn-style subclasses, the Resource in a foreign Site, client checks."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import BACKENDS, ROOT, ServerProcess, python_env, run, serve

pytestmark = pytest.mark.timeout(60)
APP = str(ROOT / "tests" / "apps" / "embedded_server.py")


@pytest.mark.parametrize("backend", BACKENDS)
def test_native_style_subclass_keeps_negotiation_compression_limits(backend):
    with ServerProcess([], cmd=[sys.executable, APP, "native", backend, "0"]) as proc:
        port = proc.port

        async def go():
            async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["nope", "wskit.echo"]) as ws:
                assert ws.subprotocol == "wskit.echo"
                assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
                await ws.send("abc")
                assert await ws.recv() == "cba"
                await ws.send("x" * 2000)  # over the 1000-byte limit set in settings
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1009
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["nope"]):
                    pass
            assert info.value.response.status_code == 400

        run(go())


def test_resource_mounted_in_own_site_at_any_path():
    with ServerProcess([], cmd=[sys.executable, APP, "resource", "twisted", "0"]) as proc:
        port = proc.port

        async def go():
            async with connect(f"ws://127.0.0.1:{port}/live/socket", subprotocols=["wskit.echo"]) as ws:
                assert ws.subprotocol == "wskit.echo"
                await ws.send("mounted")
                assert await ws.recv() == "mounted"
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"ws://127.0.0.1:{port}/ws"):
                    pass
            assert info.value.response.status_code == 404

        run(go())


def fake_server(answer_subprotocol: str) -> tuple[int, threading.Thread]:
    """A server that completes the handshake but names a subprotocol nobody offered."""
    import base64
    import hashlib

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve_once():
        conn, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n"
                     b"Sec-WebSocket-Protocol: " + answer_subprotocol.encode() + b"\r\n\r\n")
        try:
            conn.recv(1024)  # the client drops us
        except ConnectionError:
            pass
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_refuses_subprotocol_it_did_not_offer(backend):
    port, thread = fake_server("evil.v1")
    result = subprocess.run([sys.executable, "-m", "wskit", "connect", f"ws://127.0.0.1:{port}/",
                             "-s", "wskit.echo", "--backend", backend],
                            capture_output=True, timeout=30, env=python_env(), cwd=str(ROOT))
    thread.join(10)
    err = result.stderr.decode()
    assert result.returncode == 1
    assert "Traceback" not in err
    assert "evil.v1" in err and "not in subprotocol list" in err, err


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_compression_codec_can_be_enabled(backend):
    proc, port = serve(backend, "--compression", "permessage-bzip2", "--compression", "permessage-deflate")
    with proc:
        result = subprocess.run([sys.executable, "-m", "wskit", "connect", f"ws://127.0.0.1:{port}/ws",
                                 "--compression", "permessage-bzip2", "--backend", backend],
                                input=b"squeeze " * 100 + b"\n", capture_output=True, timeout=30,
                                env=python_env(), cwd=str(ROOT))
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert '"extension": "permessage-bzip2"' in out.splitlines()[0]
    assert "< " + "squeeze " * 100 in out
