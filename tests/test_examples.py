"""The embedding examples in docs/examples/ run and do what docs/embedding.md says."""

from __future__ import annotations

import json
import signal
import sys

import pytest
from support import ROOT, TWISTD, ServerProcess, free_port, run
from webclient import http_get, raw_handshake, ws_echo
from websockets.asyncio.client import connect

EXAMPLES = ROOT / "docs" / "examples"


@pytest.fixture(scope="module")
def tac():
    site_port, ws_port = free_port(), free_port()
    proc = ServerProcess(["-ny", str(EXAMPLES / "wskit_site.tac"), "--pidfile="], cmd=TWISTD,
                         ready=f"Site starting on {ws_port}",
                         env={"EXAMPLE_SITE_PORT": str(site_port), "EXAMPLE_WS_PORT": str(ws_port)})
    with proc:
        proc.wait_for_log(f"Site starting on {site_port}")
        yield proc, site_port, ws_port


def test_tac_keeps_the_existing_site(tac):
    _proc, site_port, _ws_port = tac
    status, _headers, body = http_get(f"http://127.0.0.1:{site_port}/")
    assert status == 200 and b"<h1>My app</h1>" in body
    status, _headers, body = http_get(f"http://127.0.0.1:{site_port}/api/status")
    assert status == 200 and json.loads(body) == {"ok": True}


def test_tac_mounts_wskit_at_live_ws(tac):
    _proc, site_port, _ws_port = tac
    url = f"ws://127.0.0.1:{site_port}/live/ws"
    assert run(ws_echo(url)) == ("wskit.echo", "hello over the wire")

    async def chat():
        async with connect(url, subprotocols=["wskit.chat.v2.json"], proxy=None) as ws:
            await ws.send(json.dumps({"type": "join", "room": "tac", "nick": "ann"}))
            joined = json.loads(await ws.recv())
            return ws.subprotocol, joined

    subprotocol, joined = run(chat())
    assert subprotocol == "wskit.chat.v2.json"
    assert joined["type"] == "joined" and joined["members"] == ["ann"]


def test_tac_mount_applies_its_own_settings(tac):
    _proc, site_port, _ws_port = tac
    # Only the subprotocols given to this mount are served.
    status, _line, body = run(raw_handshake(site_port, {"Sec-WebSocket-Protocol": "wskit.rpc.v1.json"},
                                            path="/live/ws"))
    assert status == 400, body
    # Its origin list applies.
    for origin, expected in (("https://myapp.example.com", 101), ("http://evil.example.com", 403)):
        status, _line, _body = run(raw_handshake(site_port, {"Origin": origin}, path="/live/ws"))
        assert status == expected, origin


def test_tac_runs_a_standalone_service_beside_the_site(tac):
    _proc, _site_port, ws_port = tac
    status, _headers, body = http_get(f"http://127.0.0.1:{ws_port}/")
    assert status == 200 and b"wskit.chat.v2.json" in body
    assert run(ws_echo(f"ws://127.0.0.1:{ws_port}/ws")) == ("wskit.echo", "hello over the wire")


def test_asyncio_example_serves_and_publishes_and_stops():
    port = free_port()
    proc = ServerProcess(["--port", str(port), "--every", "0.05"], ready="serving",
                         cmd=[sys.executable, str(EXAMPLES / "asyncio_app.py")])

    async def metrics():
        async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["wskit.pubsub.v1.json"], proxy=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "topic": "app.metrics"}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            return [json.loads(await ws.recv()) for _ in range(3)]

    with proc:
        events = run(metrics())
        assert [e["topic"] for e in events] == ["app.metrics"] * 3
        assert all(set(e["data"]) == {"n", "queue_depth"} for e in events)
        assert run(ws_echo(f"ws://127.0.0.1:{port}/ws")) == ("wskit.echo", "hello over the wire")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(10) == 0
