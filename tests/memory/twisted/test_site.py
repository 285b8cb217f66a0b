"""Twisted only: wskit's twisted.web Site (``build_site``: WebSocketService, ``wskit serve``, twistd).

twisted.web reads the request before the WebSocket protocol takes the transport
over, so the limits, the Host check and the opening-handshake deadline must
hold in that phase too, and answer exactly as the protocol does on its own.
"""

from __future__ import annotations

import pytest
from twisted.internet import defer

import wskit.twisted as wtwisted
from memory import frames as f
from memory.driver import memory_settings
from memory.server_cases import REFUSED_REQUESTS, assert_refused
from wskit.settings import CompressionSettings, LimitSettings, TimeoutSettings


def test_refused_requests_answer_as_the_protocol_does(tier):
    site = tier.site()
    for name, request, status, text, headers in REFUSED_REQUESTS:
        conn = tier.connect_site(site)
        conn.send(request)
        head = conn.head()
        assert head is not None, f"{name}: no answer"
        assert_refused(head, status, text, headers)
        tier.settle()
        assert conn.closed_by_us and conn.lost, name
        assert conn.websocket is None or conn.websocket.handler is None, name
    assert len(tier.log_lines("wskit: refused")) == len(REFUSED_REQUESTS)


def test_an_endless_header_line_is_refused_at_the_limit(tier):
    site = tier.site(memory_settings(limits=LimitSettings(max_request_size=1024)))
    conn = tier.connect_site(site)
    conn.send(b"GET /ws HTTP/1.1\r\nX-Endless: ")
    for _ in range(10):
        conn.send(b"a" * 100)
    head = conn.head()
    assert head.status == 431 and "request head larger than 1024 bytes" in head.body.decode()
    tier.settle()
    assert conn.lost


def test_larger_limits_apply_to_twisted_web_too(tier):
    # twisted.web's own limits (16 KiB lines, 500 headers) follow wskit's settings.
    site = tier.site(memory_settings(limits=LimitSettings(max_request_size=64 * 1024, max_headers=600)))
    conn = tier.connect_site(site)
    conn.send(f.upgrade_request(headers=(("X-Long", "a" * 40_000),) + tuple((f"X-{i}", "v") for i in range(550))))
    assert conn.head().status == 101


def test_a_handshake_through_the_site_is_served(tier):
    conn = tier.connect_site(tier.site())
    conn.send(f.upgrade_request())
    assert conn.head().status == 101
    conn.send(f.text("through the site"))
    assert [fr.payload for fr in conn.frames()] == [b"through the site"]


def counting_requests(site):
    """``site`` with a count of the requests twisted.web builds."""
    built = []
    factory = site.requestFactory

    def request(*args, **kwargs):
        built.append(args)
        return factory(*args, **kwargs)

    site.requestFactory = request
    return built


def accept_fields(head):
    return (head.status, head.header("sec-websocket-accept"), head.header("sec-websocket-protocol"),
            head.header("sec-websocket-extensions"))


@pytest.mark.parametrize("path", ["/ws", "/ws?token=abc"])
def test_a_handshake_read_at_once_goes_to_the_protocol_without_twisted_web(tier, path):
    site = tier.site(memory_settings(timeouts=TimeoutSettings(open_handshake=3, auto_ping_interval=0)))
    built = counting_requests(site)
    conn = tier.connect_site(site)
    conn.send(f.upgrade_request(path=path, protocols=("wskit.echo",)))
    head = conn.head()
    assert head.status == 101 and head.header("sec-websocket-protocol") == "wskit.echo"
    assert built == []
    # The transport's producer is the connection's flow control, not the HTTP channel.
    assert conn.transport.producer.connection is conn.websocket
    # Neither twisted.web's idle timeout nor the request deadline outlives the hand-over.
    tier.advance(10)
    assert conn.websocket.is_connected and not conn.closed_by_us
    conn.send(f.text("direct"))
    assert [fr.payload for fr in conn.frames()] == [b"direct"]


def test_the_same_handshake_read_in_pieces_goes_through_twisted_web_and_gets_the_same_answer(tier):
    site = tier.site(memory_settings(compression=CompressionSettings()))
    built = counting_requests(site)
    request = f.upgrade_request(protocols=("wskit.chat.v2.json",), extensions="permessage-deflate")
    direct = tier.connect_site(site)
    direct.send(request)
    assert built == []
    pieces = tier.connect_site(site)
    pieces.send(request[:30])
    pieces.send(request[30:])
    assert len(built) == 1
    assert accept_fields(pieces.head()) == accept_fields(direct.head())
    assert accept_fields(direct.head())[0] == 101 and accept_fields(direct.head())[3].startswith("permessage-deflate")


@pytest.mark.parametrize("request_line, extra, status", [
    ("GET /ws/ HTTP/1.1", b"", None),  # another path: twisted.web's routing decides
    ("GET /other HTTP/1.1", b"", 404),
    ("GET /ws HTTP/1.1", b"Content-Length: 3\r\n", None),  # a body: twisted.web reads it
])
def test_other_handshakes_still_go_through_twisted_web(tier, request_line, extra, status):
    site = tier.site()
    built = counting_requests(site)
    conn = tier.connect_site(site)
    request = f.upgrade_request().replace(b"GET /ws HTTP/1.1", request_line.encode(), 1)
    conn.send(request[:-2] + extra + b"\r\n" + (b"abc" if extra else b""))
    head = conn.head()
    assert head is not None and (status is None or head.status == status), head
    assert len(built) == 1


def test_a_trickled_request_is_dropped_at_the_open_timeout(tier):
    # twisted.web's idle timeout restarts on every byte: only an absolute deadline ends this.
    conn = tier.connect_site(tier.site(memory_settings(timeouts=TimeoutSettings(open_handshake=3))))
    request = f.upgrade_request()
    sent = 0
    while not conn.lost and sent < 20:
        conn.send(request[sent:sent + 1])
        sent += 1
        tier.advance(0.5)
    assert conn.lost and not conn.aborted, f"still connected after {tier.now()} s"
    assert 3 <= tier.now() <= 3.5
    (line,) = tier.log_lines("opening handshake timeout")
    assert "dropping connection to peer tcp4:127.0.0.1:" in line.text


def test_a_refusal_the_client_never_reads_is_aborted_at_the_deadline(tier):
    conn = tier.connect_site(tier.site(memory_settings(timeouts=TimeoutSettings(open_handshake=3))))
    conn.hold_close()
    conn.send(f.upgrade_request(host="evil.example"))
    assert conn.head().status == 403
    assert conn.closed_by_us and not conn.lost
    tier.advance(3.1)
    assert conn.aborted and conn.lost


def test_a_silent_client_is_dropped_at_the_open_timeout(tier):
    conn = tier.connect_site(tier.site(memory_settings(timeouts=TimeoutSettings(open_handshake=3))))
    tier.advance(2.9)
    assert not conn.closed_by_us
    tier.advance(0.2)
    assert conn.lost and conn.written() == b""


def test_the_deadline_is_only_for_the_handshake(tier):
    timeouts = TimeoutSettings(open_handshake=3, auto_ping_interval=0)
    conn = tier.connect_site(tier.site(memory_settings(timeouts=timeouts)))
    request = f.upgrade_request()
    conn.send(request[:20])
    tier.advance(2.5)
    conn.send(request[20:])
    assert conn.head().status == 101
    tier.advance(10)
    assert conn.websocket.is_connected and not conn.closed_by_us


class NeverAccepts(wtwisted.ServerProtocol):
    """Decides about the handshake asynchronously, and never does."""

    def onConnect(self, request):
        return defer.Deferred()


def test_the_websocket_protocol_gets_what_is_left_of_the_deadline(tier):
    site = tier.site(memory_settings(timeouts=TimeoutSettings(open_handshake=3)), protocol=NeverAccepts)
    conn = tier.connect_site(site)
    tier.advance(2)
    conn.send(f.upgrade_request())
    assert conn.websocket is not None  # taken over, waiting for onConnect
    tier.advance(0.9)
    assert not conn.closed_by_us
    tier.advance(0.5)  # 3 s after connecting (plus at most one timer bucket), not 3 s after the takeover
    assert conn.lost
    assert conn.websocket.wasOpenHandshakeTimeout


# Pages here are rendered at once (twisted.web's 404 page): a static file would stream
# through twisted's global cooperator, which runs on the global reactor.


def test_a_page_request_ends_the_deadline_and_the_next_request_gets_its_own(tier):
    settings = memory_settings(timeouts=TimeoutSettings(open_handshake=3))
    conn = tier.connect_site(tier.site(settings))
    conn.send(b"GET /page HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n")
    assert conn.head().status == 404  # a page, served
    tier.advance(2.5)
    assert not conn.closed_by_us  # served: kept alive
    conn.send(b"GET / HTTP/1.1\r\nHo")  # the next request, trickled from here on
    for _ in range(6):
        if conn.lost:
            break
        conn.send(b"s")
        tier.advance(0.6)
    assert conn.lost, "a trickled second request outlived the deadline"


@pytest.mark.parametrize("path, status", [("/page", 404), ("/ws", 426)])
def test_http_1_0_requests_that_are_not_handshakes_are_still_answered(tier, path, status):
    conn = tier.connect_site(tier.site())
    conn.send(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:9000\r\n\r\n".encode())
    assert conn.head().status == status


@pytest.mark.parametrize("host, status", [("evil.example:9000", 403), ("localhost:9000", 404)])
def test_pages_are_refused_under_a_foreign_host(tier, host, status):
    conn = tier.connect_site(tier.site())
    conn.send(f"GET /page HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = conn.head()
    assert head.status == status
    if status == 403:
        assert "host evil.example not allowed" in head.body.decode()
        assert "--allow-host evil.example" in head.body.decode()


def test_a_mounted_resource_answers_to_any_ip_address_but_only_listed_names(tier):
    from twisted.web import resource, server

    root = resource.Resource()
    settings = memory_settings(allowed_hosts=("chat.example.com",))
    root.putChild(b"live", wtwisted.websocket_resource(settings=settings, reactor=tier.reactor))
    site = server.Site(root, reactor=tier.reactor)
    for host, status in (("192.0.2.7:8080", 101), ("chat.example.com", 101), ("evil.example", 403)):
        conn = tier.connect_site(site)
        conn.send(f.upgrade_request(path="/live", host=host))
        assert conn.head().status == status, host


@pytest.mark.parametrize("headers, status", [
    ("Content-Length: 100000\r\n", 413),
    ("Transfer-Encoding: chunked\r\n", 411),
    ("Content-Length: 5\r\n", 404),  # a small body is read; the page answers
])
def test_request_bodies_count_against_the_request_limit(tier, headers, status):
    conn = tier.connect_site(tier.site())
    conn.send(f"POST /page HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n{headers}\r\n".encode())
    if status == 404:
        conn.send(b"hello")
    head = conn.head()
    assert head is not None and head.status == status, head
