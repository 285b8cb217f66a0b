"""HTTP and WebSocket on one port: the demo page at /, the endpoint at /ws.

Runs against ``wskit serve`` on both backends and against ``twistd -n wskit``.
"""

from __future__ import annotations

import pytest
from support import BACKENDS, run, serve, twistd
from webclient import http_get, ws_echo

SERVERS = (*BACKENDS, "twistd")


def start(kind: str, *args: str):
    if kind == "twistd":
        return twistd(*args)
    return serve(kind, *args)


@pytest.fixture(scope="module", params=SERVERS)
def server(request):
    proc, port = start(request.param, "--ticker-interval", "0")
    with proc:
        yield proc, port


def test_demo_page_and_websocket_share_one_port(server):
    proc, port = server
    status, headers, body = http_get(f"http://127.0.0.1:{port}/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "wskit.chat.v2.json" in page and "app.js" in page
    subprotocol, reply = run(ws_echo(f"ws://127.0.0.1:{port}/ws"))
    assert subprotocol == "wskit.echo"
    assert reply == "hello over the wire"


@pytest.mark.parametrize("path, kind, needle", [
    ("/app.js", "javascript", b"wskit.pubsub.v1.json"),
    ("/style.css", "text/css", b"--accent"),
])
def test_demo_assets_are_served_with_their_content_type(server, path, kind, needle):
    _proc, port = server
    status, headers, body = http_get(f"http://127.0.0.1:{port}{path}")
    assert status == 200
    assert kind in headers["Content-Type"]
    assert needle in body


def test_demo_page_loads_nothing_from_other_hosts(server):
    _proc, port = server
    for path in ("/", "/app.js", "/style.css"):
        _status, _headers, body = http_get(f"http://127.0.0.1:{port}{path}")
        text = body.decode()
        # No CDN, no web fonts: the page must work offline.
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_missing_file_is_404_and_plain_get_on_ws_path_is_426(server):
    _proc, port = server
    status, _headers, _body = http_get(f"http://127.0.0.1:{port}/no-such-file.txt")
    assert status == 404
    status, headers, body = http_get(f"http://127.0.0.1:{port}/ws")
    assert status == 426
    assert b"WebSocket endpoint" in body


def test_static_files_cannot_escape_the_static_folder(server):
    _proc, port = server
    for path in ("/../../pyproject.toml", "/%2e%2e/%2e%2e/pyproject.toml", "/..%2f..%2fpyproject.toml"):
        status, _headers, body = http_get(f"http://127.0.0.1:{port}{path}")
        assert status in (400, 404), path
        assert b"[project]" not in body


@pytest.mark.parametrize("kind", SERVERS)
def test_no_static_serves_only_the_websocket(kind):
    proc, port = start(kind, "--no-static", "--ticker-interval", "0")
    with proc:
        status, _headers, _body = http_get(f"http://127.0.0.1:{port}/")
        assert status in (404, 426)
        subprotocol, _reply = run(ws_echo(f"ws://127.0.0.1:{port}/ws"))
        assert subprotocol == "wskit.echo"
