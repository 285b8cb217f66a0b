"""`wskit serve`, `wskit connect` and `twistd -n wskit` as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import BACKENDS, ROOT, TWISTD, ServerProcess, free_port, python_env, run, serve, twistd

pytestmark = pytest.mark.timeout(90)

WSKIT = [sys.executable, "-m", "wskit"]


def wskit(*args: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(WSKIT + list(args), input=stdin.encode(), capture_output=True,
                          timeout=timeout, env=python_env(), cwd=str(ROOT))


def assert_one_line_error(result: subprocess.CompletedProcess, text: str) -> str:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("wskit: ")]
    assert len(lines) == 1 and text in lines[0], err
    return lines[0]


@pytest.fixture(scope="module", params=BACKENDS)
def echo_server(request):
    proc, port = serve(request.param)
    with proc:
        yield port


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_connect_sends_lines_and_prints_replies(echo_server, client_backend):
    result = wskit("connect", f"ws://127.0.0.1:{echo_server}/ws", "-s", "bogus.v9", "-s", "wskit.echo",
                   "--backend", client_backend, stdin="hello\nwörld\n")
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    first = out.splitlines()[0]
    assert first.startswith("connected: subprotocol=wskit.echo extensions=")
    extension = json.loads(first.split("extensions=", 1)[1])
    assert extension["extension"] == "permessage-deflate"
    assert "< hello\n< wörld\n" in out
    assert "closed: code=1000" in out


def test_connect_without_compression(echo_server):
    result = wskit("connect", f"ws://127.0.0.1:{echo_server}/ws", "--no-compress", stdin="x\n")
    assert result.returncode == 0
    assert "extensions=none" in result.stdout.decode()


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_connect_rejected_handshake_names_status_and_reason(echo_server, client_backend):
    result = wskit("connect", f"ws://127.0.0.1:{echo_server}/ws", "-s", "bogus.v9",
                   "--backend", client_backend)
    line = assert_one_line_error(result, "handshake rejected")
    assert "HTTP 400" in line and "wskit.echo" in line


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_connect_refused(client_backend):
    result = wskit("connect", f"ws://127.0.0.1:{free_port()}/ws", "--backend", client_backend)
    assert_one_line_error(result, "connection refused")


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/ws", "not a url", "ws://"])
def test_connect_bad_url(url):
    assert_one_line_error(wskit("connect", url), "bad URL")


@pytest.mark.parametrize("backend", BACKENDS)
def test_serve_port_in_use(echo_server, backend):
    result = wskit("serve", "--backend", backend, "--port", str(echo_server))
    assert_one_line_error(result, "address already in use")


@pytest.mark.parametrize(
    "args, text",
    [
        (["--server-max-window-bits", "20"], "server_max_window_bits must be between 9 and 15"),
        (["--protocol", "nope.v1"], "unknown subprotocol 'nope.v1'"),
        (["--compression", "permessage-nothing"], "permessage-nothing"),
        (["--backend", "asyncio", "--endpoint", "tcp:0"], "--endpoint"),
    ],
)
def test_serve_bad_options(args, text):
    result = wskit("serve", *args)
    assert result.returncode == 2
    assert_one_line_error(result, text)


def test_twistd_plugin_serves_echo_and_refuses_unknown():
    proc, port = twistd("--max-message-size", "65536", "--client-no-context-takeover")
    with proc:

        async def go():
            url = f"ws://127.0.0.1:{port}/ws"
            async with connect(url, subprotocols=["bogus.v9", "wskit.echo"], max_size=None) as ws:
                assert ws.subprotocol == "wskit.echo"
                extension = ws.response.headers["Sec-WebSocket-Extensions"]
                assert extension.startswith("permessage-deflate")
                assert "client_no_context_takeover" in extension  # flags work under twistd too
                await ws.send("text")
                assert await ws.recv() == "text"
                await ws.send(b"\x01\x02")
                assert await ws.recv() == b"\x01\x02"
                await ws.send("z" * 200_000)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1009
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, subprotocols=["bogus.v9"]):
                    pass
            assert info.value.response.status_code == 400

        run(go())
        proc.wait_for_log("wskit: open peer=")


def test_twistd_rejects_bad_option():
    result = subprocess.run([*TWISTD, "-n", "--pidfile=", "wskit", "--client-max-window-bits", "3"],
                            capture_output=True, timeout=30, env=python_env(), cwd=str(ROOT))
    assert result.returncode != 0
    assert b"client_max_window_bits must be between 9 and 15" in result.stdout + result.stderr


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_wskit_client_compression_parameters_against_wskit(echo_server, client_backend):
    result = wskit("connect", f"ws://127.0.0.1:{echo_server}/ws", "-s", "wskit.echo", "--backend", client_backend,
                   "--server-max-window-bits", "10", "--server-no-context-takeover",
                   "--client-no-context-takeover", stdin="abc " * 100 + "\n")
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    params = json.loads(out.splitlines()[0].split("extensions=", 1)[1])
    assert params["server_max_window_bits"] == 10
    assert params["server_no_context_takeover"] is True
    assert params["client_no_context_takeover"] is True
    assert "< " + "abc " * 100 in out


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_wskit_client_interoperates_with_websockets_server(client_backend):
    port = free_port()
    cmd = [sys.executable, str(ROOT / "tests" / "apps" / "websockets_echo_server.py"), str(port)]
    with ServerProcess([], cmd=cmd):
        result = wskit("connect", f"ws://127.0.0.1:{port}/", "-s", "wskit.echo", "--backend", client_backend,
                       stdin="interop " * 50 + "\nsecond\n")
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    params = json.loads(out.splitlines()[0].split("extensions=", 1)[1])
    assert params["client_max_window_bits"] == 10  # the server asked for it, we honour it
    assert params["server_max_window_bits"] == 11
    assert params["server_no_context_takeover"] is True
    assert "< " + "interop " * 50 in out and "< second" in out
