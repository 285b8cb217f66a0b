"""Origin checks against cross-site WebSocket hijacking, on both backends.

A page on any site can open a WebSocket to any server, and the browser sends
the user's cookies along; the Origin header is the server's only way to tell
a hostile page from its own.
"""

from __future__ import annotations

import pytest
from support import BACKENDS, run, serve
from webclient import raw_handshake, ws_echo
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

EVIL = "http://evil.example.com"
ALLOWED = ("https://app.example.org", "https://*.example.com")


@pytest.fixture(scope="module", params=BACKENDS)
def default_server(request):
    proc, port = serve(request.param, "--ticker-interval", "0")
    with proc:
        yield proc, port


@pytest.fixture(scope="module", params=BACKENDS)
def listed_server(request):
    args = [a for origin in ALLOWED for a in ("--allow-origin", origin)]
    proc, port = serve(request.param, "--ticker-interval", "0", *args)
    with proc:
        yield proc, port


def handshake(port: int, **headers: str) -> tuple[int, str, bytes]:
    return run(raw_handshake(port, dict(headers)))


def test_foreign_origin_gets_403_with_the_reason(default_server):
    proc, port = default_server
    status, status_line, body = handshake(port, Origin=EVIL)
    assert status == 403
    text = body.decode()
    assert f"origin {EVIL} not allowed" in text
    assert "--allow-origin" in text  # tells the operator how to allow it
    line = proc.wait_for_log(f"origin={EVIL}")
    assert "refused" in line and "status=403" in line


def test_foreign_origin_is_refused_for_a_real_client_too(default_server):
    _proc, port = default_server

    async def attempt():
        async with connect(f"ws://127.0.0.1:{port}/ws", origin=EVIL, subprotocols=["wskit.echo"], proxy=None):
            pass

    with pytest.raises(InvalidStatus) as info:
        run(attempt())
    assert info.value.response.status_code == 403
    assert b"not allowed" in info.value.response.body


def test_no_origin_is_allowed(default_server):
    _proc, port = default_server
    status, _line, _body = handshake(port)
    assert status == 101


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_servers_own_origin_is_allowed_under_a_name_it_answers_to(backend):
    proc, port = serve(backend, "--ticker-interval", "0", "--allow-host", "chat.example.net")
    with proc:
        # A page served by this server under its public name: Origin matches Host.
        status, _line, _body = handshake(port, Host=f"chat.example.net:{port}",
                                         Origin=f"http://chat.example.net:{port}")
        assert status == 101
        # Same name, another port: another origin.
        status, _line, _body = handshake(port, Host=f"chat.example.net:{port}", Origin="http://chat.example.net:1")
        assert status == 403


def test_a_matching_origin_under_a_foreign_host_is_refused(default_server):
    # DNS rebinding: evil.example re-pointed at this server; its page's Origin matches the Host it sends.
    _proc, port = default_server
    status, _line, body = handshake(port, Host=f"evil.example:{port}", Origin=f"http://evil.example:{port}")
    assert status == 403
    assert b"host evil.example not allowed" in body and b"--allow-host evil.example" in body


@pytest.mark.parametrize("origin", ["http://127.0.0.1:3000", "http://localhost:8080", "http://[::1]:5173",
                                    "https://dev.localhost"])
def test_loopback_origins_are_allowed(default_server, origin):
    _proc, port = default_server
    status, _line, _body = handshake(port, Origin=origin)
    assert status == 101


@pytest.mark.parametrize("origin", ["null", "file://", "http://127.0.0.1.evil.example.com"])
def test_opaque_and_lookalike_origins_are_refused(default_server, origin):
    _proc, port = default_server
    status, _line, body = handshake(port, Origin=origin)
    assert status == 403
    assert f"origin {origin} not allowed".encode() in body and b"--allow-origin" in body


@pytest.mark.parametrize("origin, expected", [
    ("https://app.example.org", 101),  # listed exactly
    ("https://APP.example.org/", 101),  # case and trailing slash do not matter
    ("https://shop.example.com", 101),  # wildcard
    ("https://a.b.example.com", 101),  # wildcard spans dots
    ("http://shop.example.com", 403),  # wildcard names the scheme
    ("https://example.com", 403),  # *.example.com needs a subdomain
    ("https://app.example.org.evil.net", 403),
    (EVIL, 403),
])
def test_allow_origin_is_repeatable_and_takes_wildcards(listed_server, origin, expected):
    _proc, port = listed_server
    status, _line, _body = handshake(port, Origin=origin)
    assert status == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_allow_origin_star_allows_every_origin(backend):
    proc, port = serve(backend, "--ticker-interval", "0", "--allow-origin", "*")
    with proc:
        status, _line, _body = handshake(port, Origin=EVIL)
        assert status == 101
        subprotocol, reply = run(ws_echo(f"ws://127.0.0.1:{port}/ws"))
        assert (subprotocol, reply) == ("wskit.echo", "hello over the wire")
