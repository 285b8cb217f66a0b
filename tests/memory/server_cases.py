"""Server behaviours every backend must show, driven in memory on a fake clock.

Each backend folder's test module imports these test functions; the ``tier``
fixture of that folder's conftest supplies the backend (reactor or loop,
transport, futures). Nothing here knows which backend runs it.
"""

from __future__ import annotations

import json

import msgpack
import pytest

from memory import frames as f
from memory.driver import memory_settings
from memory.handlers import AwaitRaises, Raises, Recorder, registry, returns_failed
from wskit.settings import AppSettings, CompressionSettings, LimitSettings, TimeoutSettings

SHOUT = "test.recorder.v1"


def open_echo(tier, **settings):
    """A server with the shipped registry and one open connection served by wskit.echo."""
    factory = tier.server(memory_settings(**settings))
    conn = tier.connect(factory)
    conn.open()
    return factory, conn


def finish_close(tier, conn, code=1000):
    """Answer the server's close frame as a client does; the server then drops TCP."""
    conn.send(f.close(code))
    tier.settle()
    assert conn.lost


# -- 1. handshake ----------------------------------------------------------------------


def test_server_preference_picks_the_subprotocol(tier):
    factory = tier.server(registry=registry(("a.v2", Recorder), ("a.v1", Recorder)),
                          settings=memory_settings(default_subprotocol=None))
    conn = tier.connect(factory)
    head = conn.open(protocols=("a.v1", "a.v2"))
    assert head.header("sec-websocket-protocol") == "a.v2"
    assert conn.proto.subprotocol == "a.v2"
    assert conn.proto.handler.events == [("open", "a.v2", "a.v2")]


def test_client_preference_when_configured(tier):
    factory = tier.server(registry=registry(("a.v2", Recorder), ("a.v1", Recorder)),
                          settings=memory_settings(prefer="client"))
    conn = tier.connect(factory)
    assert conn.open(protocols=("a.v1", "a.v2")).header("sec-websocket-protocol") == "a.v1"


def test_shipped_registry_prefers_the_newest_version(tier):
    conn = tier.connect(tier.server())
    head = conn.open(protocols=("wskit.chat.v1.json", "wskit.chat.v2.json", "wskit.echo"))
    assert head.header("sec-websocket-protocol") == "wskit.chat.v2.json"


def test_no_offer_is_served_by_the_default_without_naming_it(tier):
    _factory, conn = open_echo(tier)
    assert conn.head().header("sec-websocket-protocol") is None
    assert conn.proto.subprotocol is None
    assert conn.proto.served_subprotocol == "wskit.echo"
    (line,) = tier.log_lines("wskit: open ")
    assert "subprotocol=wskit.echo(default)" in line.text and "extensions=none" in line.text


def test_unknown_subprotocol_only_is_refused_with_400_listing_the_supported(tier):
    factory = tier.server(registry=registry((SHOUT, Recorder), ("wskit.echo", Recorder)))
    conn = tier.connect(factory)
    head = conn.handshake(protocols=("bogus.v9",))
    assert head.status == 400
    body = head.body.decode()
    assert "no supported subprotocol offered" in body
    assert "offered: bogus.v9" in body and f"supported: {SHOUT}, wskit.echo" in body
    assert head.header("content-type").startswith("text/plain")
    tier.settle()
    assert conn.closed_by_us and conn.lost
    assert conn.proto.handler is None


def test_no_offer_without_a_default_is_refused_with_400(tier):
    factory = tier.server(registry=registry((SHOUT, Recorder)), settings=memory_settings(default_subprotocol=None))
    conn = tier.connect(factory)
    head = conn.handshake()
    assert head.status == 400
    assert f"a subprotocol is required (supported: {SHOUT})" in head.body.decode()


def test_foreign_origin_is_refused_with_403_saying_why(tier):
    conn = tier.connect(tier.server())
    head = conn.handshake(origin="http://evil.example.com")
    assert head.status == 403
    assert "origin http://evil.example.com not allowed" in head.body.decode()
    (line,) = tier.log_lines("wskit: refused")
    assert "status=403" in line.text and "origin=http://evil.example.com" in line.text
    tier.settle()
    assert conn.lost


def test_same_origin_and_allowed_origin_are_accepted(tier):
    factory = tier.server(memory_settings(allowed_origins=("https://*.example.com",)))
    assert tier.connect(factory).handshake(origin="http://127.0.0.1:9000").status == 101
    assert tier.connect(factory).handshake(origin="https://app.example.com").status == 101
    assert tier.connect(factory).handshake(origin="https://example.org").status == 403


def test_wrong_path_is_refused_with_404(tier):
    conn = tier.connect(tier.server())
    head = conn.handshake(path="/nope")
    assert head.status == 404
    assert "no WebSocket endpoint at /nope (try /ws)" in head.body.decode()


def test_every_autobahn_option_reaches_the_connection_without_the_debug_dump(tier, monkeypatch):
    # wskit copies the factory's options itself: Autobahn's copy pretty-prints them
    # all for a debug line on every connection, whether debug logging is on or not.
    from autobahn.websocket import protocol as autobahn_protocol

    dumped = []
    real = autobahn_protocol.pformat
    monkeypatch.setattr(autobahn_protocol, "pformat", lambda obj: dumped.append(obj) or real(obj))
    factory = tier.server(memory_settings(limits=LimitSettings(max_message_size=12345)))
    conn = tier.connect(factory)  # connected: the options are copied (the handshake changes some)
    options = autobahn_protocol.WebSocketServerProtocol.CONFIG_ATTRS
    assert len(options) > 20
    for name in options:
        assert getattr(conn.proto, name) == getattr(factory, name), name
    assert conn.proto.maxMessagePayloadSize == 12345
    conn.open()
    assert not [obj for obj in dumped if obj], f"options pretty-printed: {dumped!r}"


def test_plain_get_without_upgrade_gets_426(tier):
    conn = tier.connect(tier.server(registry=registry((SHOUT, Recorder), ("wskit.echo", Recorder))))
    conn.send(f.plain_get("/ws"))
    head = conn.head()
    assert head.status == 426
    assert head.header("upgrade") == "websocket"
    assert f"subprotocols: {SHOUT}, wskit.echo" in head.body.decode()
    tier.settle()
    assert conn.lost


# -- 1b. the request itself: limits, syntax, versions, Host ---------------------------------

KEY = f.SAMPLE_KEY


def raw_request(request_line="GET /ws HTTP/1.1", host="127.0.0.1:9000", version="13", extra=()) -> bytes:
    """An upgrade request with full control over every line (``extra``: raw header lines)."""
    lines = [request_line, *(([f"Host: {host}"]) if host is not None else []), "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}"]
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode("latin-1")


# (name, request bytes, status, text the body must contain, headers the answer must carry)
REFUSED_REQUESTS = [
    ("head over 16 KiB", raw_request(extra=[f"X-Long: {'a' * 17000}"]), 431,
     "request head larger than 16384 bytes", {}),
    ("101 headers", raw_request(extra=[f"X-{i}: v" for i in range(101 - 5)]), 431,
     "more than 100 header fields", {}),
    ("NUL in a value", raw_request(extra=["X-A: a\x00b"]), 400, "control character in header field X-A", {}),
    ("control character in a value", raw_request(extra=["X-A: a\x01b"]), 400,
     "control character in header field X-A", {}),
    ("DEL in a value", raw_request(extra=["X-A: a\x7fb"]), 400, "control character", {}),
    ("NUL in a name", raw_request(extra=["X-\x00A: b"]), 400, "malformed header field", {}),
    ("space before the colon", raw_request(extra=["X-A : b"]), 400, "malformed header field", {}),
    ("a line without a colon", raw_request(extra=["just words"]), 400, "malformed header field", {}),
    ("obsolete line folding", raw_request(extra=["X-A: a", " folded"]), 400, "obsolete line folding", {}),
    ("malformed request line", raw_request("GET /ws  HTTP/1.1"), 400, "malformed request line", {}),
    ("HTTP/1.0", raw_request("GET /ws HTTP/1.0"), 505, "a WebSocket handshake needs HTTP/1.1, not HTTP/1.0", {}),
    ("WebSocket version 8", raw_request(version="8"), 426, "unsupported WebSocket version 8 (this server speaks 13)",
     {"sec-websocket-version": "13"}),
    ("WebSocket version 14", raw_request(version="14"), 426, "unsupported WebSocket version 14",
     {"sec-websocket-version": "13"}),
    ("DNS rebinding", raw_request(host="evil.example:9000", extra=["Origin: http://evil.example:9000"]), 403,
     "host evil.example not allowed", {}),
    ("foreign Host, no Origin", raw_request(host="evil.example"), 403, "--allow-host evil.example", {}),
    ("two Host headers", raw_request(extra=["Host: 127.0.0.1:9000"]), 400, "more than one Host header", {}),
    ("Origin: null", raw_request(extra=["Origin: null"]), 403, "origin null not allowed", {}),
]


def assert_refused(head, status, text, headers):
    assert head.status == status, (head.start_line, head.body)
    body = head.body.decode()
    assert text in body, body
    assert text in head.start_line  # the reason is in the status line too
    assert head.header("content-type").startswith("text/plain")
    for name, value in headers.items():
        assert head.header(name) == value, head.headers


def test_refused_requests_get_their_status_and_a_body(tier):
    factory = tier.server()
    for name, request, status, text, headers in REFUSED_REQUESTS:
        conn = tier.connect(factory)
        conn.send(request)
        head = conn.head()
        assert head is not None, f"{name}: no answer"
        assert_refused(head, status, text, headers)
        tier.settle()
        assert conn.closed_by_us and conn.lost, name
        assert conn.proto.handler is None, name
    refused = tier.log_lines("wskit: refused")
    assert len(refused) == len(REFUSED_REQUESTS)
    if tier.structured_logs:
        assert {line.event for line in refused} == {"refused"}


def test_an_endless_header_line_is_refused_at_the_limit_without_buffering_more(tier):
    factory = tier.server(memory_settings(limits=LimitSettings(max_request_size=1024)))
    conn = tier.connect(factory)
    conn.send(b"GET /ws HTTP/1.1\r\nX-Endless: ")
    for _ in range(10):
        conn.send(b"a" * 100)
    head = conn.head()
    assert head.status == 431 and "request head larger than 1024 bytes" in head.body.decode()
    assert len(conn.proto.data) <= 1024 + 100  # the limit, plus the read that passed it
    tier.settle()
    assert conn.lost


def test_requests_at_the_limits_are_accepted(tier):
    factory = tier.server(memory_settings(limits=LimitSettings(max_request_size=1024, max_headers=10)))
    request = raw_request(extra=[f"X-{i}: v" for i in range(10 - 5)])  # Host, Upgrade, ... : 10 in all
    conn = tier.connect(factory)
    conn.send(request)
    assert conn.head().status == 101
    padding = 1024 - len(raw_request(extra=["X-Pad: "]))
    exact = raw_request(extra=["X-Pad: " + "p" * padding])
    assert len(exact) == 1024
    conn = tier.connect(factory)
    conn.send(exact)
    assert conn.head().status == 101
    conn = tier.connect(factory)
    conn.send(raw_request(extra=["X-Pad: " + "p" * (padding + 1)]))
    assert conn.head().status == 431
    conn = tier.connect(factory)
    conn.send(raw_request(extra=[f"X-{i}: v" for i in range(11 - 5)]))
    assert conn.head().status == 431


def test_the_limits_can_be_lifted(tier):
    factory = tier.server(memory_settings(limits=LimitSettings(max_request_size=0, max_headers=0)))
    conn = tier.connect(factory)
    conn.send(raw_request(extra=[f"X-{i}: {'v' * 100}" for i in range(300)]))
    assert conn.head().status == 101


def test_many_offered_subprotocols_are_refused_with_a_bounded_answer(tier):
    offered = [f"proto{i}" for i in range(10_000)]
    factory = tier.server(memory_settings(limits=LimitSettings(max_request_size=1024 * 1024)))
    conn = tier.connect(factory)
    head = conn.handshake(protocols=tuple(offered))
    assert head.status == 400
    assert len(head.start_line) <= len("HTTP/1.1 400 ") + 512
    body = head.body.decode()
    assert "offered: proto0, proto1, " in body and "proto10" not in body
    assert "proto9 and 9,990 more; supported: wskit." in body
    assert len(body) <= 4097


def test_a_refusal_quoting_a_huge_name_is_bounded(tier):
    factory = tier.server(memory_settings(limits=LimitSettings(max_request_size=1024 * 1024)))
    head = tier.connect(factory).handshake(protocols=("x" * 100_000,))
    assert head.status == 400
    assert len(head.start_line) <= len("HTTP/1.1 400 ") + 512 and head.start_line.endswith("...")
    assert len(head.body) <= 4097 and head.body.endswith(b"...\n")


def test_origin_null_is_allowed_when_listed(tier):
    factory = tier.server(memory_settings(allowed_origins=("null",)))
    assert tier.connect(factory).handshake(origin="null").status == 101
    assert tier.connect(factory).handshake(origin="http://evil.example.com").status == 403


def test_file_origin_is_refused_with_403(tier):
    head = tier.connect(tier.server()).handshake(origin="file://")
    assert head.status == 403 and "origin file:// not allowed" in head.body.decode()


def test_hosts_the_server_answers_to(tier):
    factory = tier.server()  # bound to 127.0.0.1
    for host in ("127.0.0.1:9000", "localhost:9000", "LOCALHOST", "localhost.", "app.localhost:9000",
                 "127.0.0.2", "[::1]:9000"):
        assert tier.connect(factory).handshake(host=host).status == 101, host
    for host in ("evil.example:9000", "127.0.0.1.evil.example", "10.0.0.1:9000", "[2001:db8::1]:9000", ""):
        assert tier.connect(factory).handshake(host=host).status == 403, host


def test_allow_host_adds_names_and_wildcards(tier):
    factory = tier.server(memory_settings(allowed_hosts=("chat.example.com", "*.example.org")))
    for host, status in (("chat.example.com:9000", 101), ("CHAT.example.com", 101), ("a.example.org", 101),
                         ("a.b.example.org", 101), ("example.org", 403), ("evil.example.com", 403)):
        assert tier.connect(factory).handshake(host=host).status == status, host
    anything = tier.server(memory_settings(allowed_hosts=("*",)))
    assert tier.connect(anything).handshake(host="evil.example").status == 101


def test_a_server_bound_to_every_interface_answers_to_any_ip_address(tier):
    factory = tier.server(memory_settings(host="0.0.0.0"))
    for host, status in (("192.0.2.7:9000", 101), ("[2001:db8::1]:9000", 101), ("localhost", 101),
                         ("my-laptop.lan:9000", 403)):
        assert tier.connect(factory).handshake(host=host).status == status, host


def test_a_server_bound_to_a_name_answers_to_it(tier):
    factory = tier.server(memory_settings(host="ws.example.net"))
    assert tier.connect(factory).handshake(host="ws.example.net:9000").status == 101
    assert tier.connect(factory).handshake(host="other.example.net:9000").status == 403


def test_the_own_origin_is_same_origin_only_under_an_allowed_host(tier):
    rebinding = dict(host="evil.example:9000", origin="http://evil.example:9000")
    assert tier.connect(tier.server()).handshake(**rebinding).status == 403
    listed = tier.server(memory_settings(allowed_hosts=("evil.example",)))
    assert tier.connect(listed).handshake(**rebinding).status == 101


def test_a_plain_get_with_a_foreign_host_is_refused_too(tier):
    conn = tier.connect(tier.server())
    conn.send(f.plain_get("/ws", host="evil.example:9000"))
    head = conn.head()
    assert head.status == 403 and "--allow-host evil.example" in head.body.decode()


def test_a_trickled_request_is_dropped_at_the_open_timeout(tier):
    conn = tier.connect(tier.server(memory_settings(timeouts=TimeoutSettings(open_handshake=3))))
    request = f.upgrade_request()
    for i in range(5):  # a byte every half second, never finishing in time
        conn.send(request[i:i + 1])
        tier.advance(0.5)
    assert not conn.closed_by_us
    for i in range(5, 10):
        if conn.lost:
            break
        conn.send(request[i:i + 1])
        tier.advance(0.5)
    assert conn.closed_by_us and conn.lost
    assert 3 <= tier.now() <= 3.5


# -- 2. routing and echo -------------------------------------------------------------------


def test_messages_reach_the_negotiated_handler(tier):
    factory = tier.server(registry=registry((SHOUT, Recorder), ("wskit.echo", Recorder)))
    conn = tier.connect(factory)
    conn.open(protocols=(SHOUT,))
    handler = conn.proto.handler
    assert isinstance(handler, Recorder)
    conn.send(f.text("shout:hi"), f.binary(b"\x00\x01"))
    assert handler.events[1:] == [("message", b"shout:hi", False), ("message", b"\x00\x01", True)]
    assert [(fr.opcode, fr.payload) for fr in conn.frames()] == [(f.TEXT, b"HI")]
    assert factory.app.connections == {conn.proto}

    conn.send(f.close(1000, "bye"))
    assert conn.close_frame().close_code == 1000  # the closing handshake's answer
    tier.settle()
    assert conn.lost
    assert handler.events[-1] == ("close", True, 1000)
    assert factory.app.connections == set()
    (line,) = tier.log_lines("wskit: close ")
    assert f"subprotocol={SHOUT}" in line.text and "code=1000 clean=True" in line.text


def test_echo_text_binary_and_fragmented(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.text("héllo"), f.binary(bytes(range(256))))
    conn.send(f.text("frag", fin=False), f.ping(b"p"), f.continuation(b"men", fin=False), f.continuation(b"ted"))
    out = conn.frames()
    assert [(fr.opcode, fr.payload) for fr in out] == [
        (f.TEXT, "héllo".encode()),
        (f.BINARY, bytes(range(256))),
        (f.PONG, b"p"),  # a control frame may come between fragments
        (f.TEXT, b"fragmented"),
    ]
    assert all(fr.fin and not fr.masked and fr.rsv == 0 for fr in out)


def test_echo_of_a_large_message_uses_the_16_bit_length(tier):
    _factory, conn = open_echo(tier)
    payload = b"x" * 70000
    conn.send(f.binary(payload))
    (echo,) = conn.frames()
    assert echo.opcode == f.BINARY and echo.payload == payload


def test_ping_is_answered_with_its_payload(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.ping(b"are you there"))
    assert [(fr.opcode, fr.payload) for fr in conn.frames()] == [(f.PONG, b"are you there")]


# -- 3. handler errors close with 1011 -------------------------------------------------------


def _expect_internal_error(tier, handler_factory, method="on_message"):
    factory = tier.server(registry=registry(("t.v1", handler_factory)))
    conn = tier.connect(factory)
    conn.open(protocols=("t.v1",))
    conn.send(f.text("boom"))
    close = conn.close_frame()
    assert (close.close_code, close.close_reason) == (1011, "internal error")
    (line,) = tier.log_lines(f"t.v1 {method} failed")
    assert "bug" in line.text
    finish_close(tier, conn, 1011)


def test_handler_exception_closes_with_1011(tier):
    _expect_internal_error(tier, Raises)


def test_handler_failed_future_closes_with_1011(tier):
    _expect_internal_error(tier, returns_failed(tier.failed))


def test_handler_coroutine_raising_closes_with_1011(tier):
    _expect_internal_error(tier, AwaitRaises)


# -- 4. close codes for bad input ---------------------------------------------------------


def test_message_over_max_message_size_closes_with_1009(tier):
    _factory, conn = open_echo(tier, limits=LimitSettings(max_message_size=100))
    conn.send(f.text("x" * 100))
    assert [fr.payload for fr in conn.data_frames()] == [b"x" * 100]  # at the limit: fine
    conn.send(f.text("x" * 101))
    assert conn.close_frame().close_code == 1009
    assert conn.data_frames() == []
    finish_close(tier, conn, 1009)


def test_fragmented_message_over_max_message_size_closes_with_1009(tier):
    _factory, conn = open_echo(tier, limits=LimitSettings(max_message_size=100))
    conn.send(f.binary(b"a" * 40, fin=False), f.continuation(b"b" * 40, fin=False))
    assert not conn.frames()
    conn.send(f.continuation(b"c" * 40))
    assert conn.close_frame().close_code == 1009
    assert conn.data_frames() == []


def test_frame_over_max_frame_size_closes_with_1009(tier):
    _factory, conn = open_echo(tier, limits=LimitSettings(max_message_size=1000, max_frame_size=50))
    conn.send(f.binary(b"a" * 50, fin=False), f.continuation(b"b" * 50))
    assert [fr.payload for fr in conn.data_frames()] == [b"a" * 50 + b"b" * 50]
    conn.send(f.binary(b"a" * 51))
    assert conn.close_frame().close_code == 1009


def _inflating_past_the_limit(tier, shape="whole", **timeouts):
    """A deflate connection limited to 1000-byte messages, and a message inflating past it:
    one whole frame (taken whole and refused), or two fragments (refused half-way through
    the second, whose rest Autobahn's parser then cannot get past)."""
    settings = memory_settings(compression=CompressionSettings(), limits=LimitSettings(max_message_size=1000),
                               timeouts=TimeoutSettings(auto_ping_interval=0, **timeouts))
    conn = tier.connect(tier.server(settings))
    conn.open(extensions="permessage-deflate")
    body = f.deflate_message(b"a" * 5000)
    if shape == "whole":
        return conn, f.frame(f.BINARY, body, rsv=4)
    return conn, f.frame(f.BINARY, body[:4], fin=False, rsv=4) + f.frame(f.CONTINUATION, body[4:])


@pytest.mark.parametrize("shape", ["whole", "fragmented"])
def test_input_after_an_inflate_failure_is_dropped_after_the_1009_close_frame(tier, shape):
    # The failure and the drop of a peer that keeps sending come in the same read: the
    # 1009 close frame is still queued then (Twisted writes on the next turn), and an
    # abort would throw it away, leaving the peer a TCP reset instead of a close frame.
    from wskit.protocol import MAX_BYTES_AFTER_FAILURE

    conn, bomb = _inflating_past_the_limit(tier, shape, close_handshake=2)
    conn.send(bomb + f.binary(b"x" * 1000) * (MAX_BYTES_AFTER_FAILURE // 1000 + 2))
    assert conn.close_frame().close_code == 1009
    assert conn.closed_by_us and conn.lost and not conn.aborted
    assert conn.proto.data == b""  # nothing of what followed kept
    assert len(tier.log_lines("received after the connection was failed")) == 1


@pytest.mark.parametrize("shape", ["whole", "fragmented"])
def test_input_after_an_inflate_failure_from_a_peer_that_never_reads_is_aborted(tier, shape):
    # Bytes read after the failure count whether the parser could get past the refused
    # frame (and discards what follows) or not (and buffers it).
    from wskit.protocol import MAX_BYTES_AFTER_FAILURE

    conn, bomb = _inflating_past_the_limit(tier, shape, close_handshake=2)
    conn.hold_close()  # our close frame is queued behind bytes the peer never reads
    conn.send(bomb)
    assert conn.close_frame().close_code == 1009
    assert not conn.closed_by_us  # waiting for the peer's close frame
    sent = 0
    while not conn.closed_by_us and sent <= 2 * MAX_BYTES_AFTER_FAILURE:
        chunk = f.binary(b"x" * 1000)
        conn.send(chunk)
        sent += len(chunk)
    assert MAX_BYTES_AFTER_FAILURE < sent <= MAX_BYTES_AFTER_FAILURE + len(chunk)
    assert conn.closed_by_us and not conn.lost
    assert conn.proto.data == b""
    tier.advance(2.5)
    assert conn.aborted and conn.lost


def test_after_a_whole_message_inflating_past_the_limit_the_peers_close_completes_the_handshake(tier):
    conn, bomb = _inflating_past_the_limit(tier, "whole", close_handshake=2)
    conn.send(bomb, f.binary(b"ignored"))
    assert conn.close_frame().close_code == 1009
    assert not conn.lost
    conn.send(f.close(1009))
    tier.settle()
    assert conn.lost and not conn.aborted
    assert not tier.log_lines("received after the connection was failed")


def test_invalid_utf8_text_closes_with_1007(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.text(b"ok \xff\xfe"))
    close = conn.close_frame()
    assert close.close_code == 1007 and "invalid UTF-8" in close.close_reason
    assert conn.reader.frames == [close]  # nothing echoed
    # Autobahn fails the message's end too; failing twice while closing drops TCP.
    tier.settle()
    assert conn.closed_by_us and conn.lost


def test_invalid_utf8_across_fragments_closes_with_1007(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.text("é".encode()[:1], fin=False), f.continuation(b"x"))
    assert conn.close_frame().close_code == 1007


def test_binary_frame_on_a_json_subprotocol_closes_with_1003(tier):
    conn = tier.connect(tier.server())
    conn.open(protocols=("wskit.chat.v2.json",))
    conn.send(f.binary(b'{"type": "join"}'))
    close = conn.close_frame()
    assert close.close_code == 1003
    assert close.close_reason == "wskit.chat.v2.json takes text frames, not binary"


def test_text_frame_on_a_msgpack_subprotocol_closes_with_1003(tier):
    conn = tier.connect(tier.server())
    conn.open(protocols=("wskit.pubsub.v1.msgpack",))
    conn.send(f.text("{}"))
    assert conn.close_frame().close_code == 1003


def test_more_bad_messages_than_the_error_budget_closes_with_1008(tier):
    conn = tier.connect(tier.server(memory_settings(apps=AppSettings(error_budget=2))))
    conn.open(protocols=("wskit.chat.v2.json",))
    conn.send(f.text("not json"), f.text(json.dumps({"type": "dance"})))
    errors = [json.loads(fr.payload) for fr in conn.frames()]
    assert [(e["type"], e["code"]) for e in errors] == [("error", "bad-payload"), ("error", "unknown-type")]
    conn.send(f.text(json.dumps({"type": "join", "room": ""})))
    close = conn.close_frame()
    assert (close.close_code, close.close_reason) == (1008, "more than 2 bad messages")
    assert all(fr.opcode == f.CLOSE for fr in conn.reader.frames[2:])


def test_unknown_opcode_closes_with_1002(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.frame(0x3, b"?"))
    assert conn.close_frame().close_code == 1002


def test_rsv_bits_without_an_extension_close_with_1002(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.frame(f.TEXT, b"hi", rsv=2))
    assert conn.close_frame().close_code == 1002


def test_unmasked_client_frame_closes_with_1002(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.frame(f.TEXT, b"hi", mask=None))
    assert conn.close_frame().close_code == 1002


def test_fragmented_control_frame_closes_with_1002(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.frame(f.PING, b"p", fin=False))
    assert conn.close_frame().close_code == 1002


# -- 4b. close frames from the peer ------------------------------------------------------


def _close_payload(code=None, reason=b""):
    return (b"" if code is None else code.to_bytes(2, "big")) + reason


INVALID_CLOSE_FRAMES = [
    # (what the peer sends as the close payload, the code we answer with)
    *((_close_payload(code), 1002) for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)),
    (b"\x03", 1002),  # a 1-byte payload: half a code
    (_close_payload(1000, b"x" * 124), 1002),  # 126 bytes: over the 125-byte control frame limit
    (_close_payload(1000, b"bad \xff\xfe"), 1007),  # the reason is not UTF-8
    (_close_payload(1000, "é".encode()[:1]), 1007),  # the reason ends mid-character
]


def test_invalid_close_frames_are_answered_with_a_close_frame_then_a_clean_tcp_close(tier):
    for payload, answer in INVALID_CLOSE_FRAMES:
        _factory, conn = open_echo(tier, timeouts=TimeoutSettings(auto_ping_interval=0))
        conn.send(f.frame(f.CLOSE, payload))
        close = conn.close_frame()
        assert close.close_code == answer, (payload, close)
        tier.settle()
        # Closed after our close frame went out: an abort would throw it away unsent
        # (a TCP reset where the peer should read 1002/1007).
        assert conn.closed_by_us and conn.lost, payload
        assert not conn.aborted, f"aborted after the invalid close frame {payload!r}"
        # The close line says how the connection ended: with the code we answered, not 1000.
        line = tier.log_lines("wskit: close ")[-1]
        assert f"code={answer} " in line.text, (payload, line.text)


def test_a_valid_close_code_is_echoed(tier):
    for code, reason in ((1000, ""), (1001, "going away"), (1003, ""), (1011, ""), (1012, ""), (3000, "bye"),
                         (4000, ""), (4999, "last")):
        _factory, conn = open_echo(tier, timeouts=TimeoutSettings(auto_ping_interval=0))
        conn.send(f.close(code, reason))
        close = conn.close_frame()
        assert (close.close_code, close.close_reason) == (code, reason)
        tier.settle()
        assert conn.lost and not conn.aborted and conn.proto.wasClean
    line = tier.log_lines("wskit: close ")[-1]
    assert "code=4999 clean=True" in line.text


def test_a_close_frame_without_a_code_is_answered_without_one(tier):
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(auto_ping_interval=0))
    conn.send(f.close(None))
    assert conn.close_frame().payload == b""  # no code received: none to echo (1005 may not be sent)
    tier.settle()
    assert conn.lost and not conn.aborted


def test_the_answer_to_our_close_ends_with_a_clean_tcp_close(tier):
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(close_handshake=2, auto_ping_interval=0))
    conn.proto.close(1001, "shutting down")
    conn.close_frame()
    conn.send(f.close(1001))
    tier.settle()
    assert conn.lost and not conn.aborted and conn.proto.wasClean


def test_a_peer_that_never_reads_after_the_close_is_aborted_at_the_close_timeout(tier):
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(close_handshake=2, auto_ping_interval=0))
    conn.hold_close()  # our close is queued behind bytes the peer never reads
    conn.send(f.close(1000))
    assert conn.close_frame().close_code == 1000
    assert conn.closed_by_us and not conn.lost
    tier.advance(1)
    assert not conn.lost
    tier.advance(1.5)
    assert conn.aborted and conn.lost


# -- 5. ping/pong and timeouts on the fake clock ------------------------------------------


def _next_ping(tier, conn, within=15):
    """Advance the clock a second at a time until the server pings; return (time, ping frame)."""
    for _ in range(within):
        tier.advance(1)
        out = conn.frames()
        if out:
            (ping,) = out
            assert ping.opcode == f.PING and ping.payload
            return tier.now(), ping
    raise AssertionError(f"no ping within {within} seconds")


def test_auto_ping_then_a_pong_keeps_the_connection(tier):
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(auto_ping_interval=10, auto_ping_timeout=5))
    start = tier.now()
    seen = []
    for _ in range(3):
        when, ping = _next_ping(tier, conn)
        seen.append((when, ping.payload))
        conn.send(f.pong(ping.payload))
        tier.advance(8)  # past when the timeout would have fired
        assert conn.proto.is_connected and not conn.closed_by_us
    # The first ping comes one interval after the handshake, each next one an
    # interval after the pong (answered at once here).
    assert [round(when - start) for when, _ in seen] == [10, 20, 30]
    assert len({payload for _, payload in seen}) == 3


def test_peer_that_never_answers_a_ping_is_dropped(tier):
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(auto_ping_interval=10, auto_ping_timeout=5))
    tier.advance(11)
    assert [fr.opcode for fr in conn.frames()] == [f.PING]
    tier.advance(3)
    assert not conn.closed_by_us
    tier.advance(3)
    assert conn.aborted and conn.lost
    assert conn.proto.wasNotCleanReason.startswith("WebSocket ping timeout")
    (line,) = tier.log_lines("wskit: close ")
    assert "clean=False" in line.text


def test_no_auto_ping_when_disabled(tier):
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(auto_ping_interval=0))
    tier.advance(3600)
    assert conn.frames() == [] and conn.proto.is_connected


def test_opening_handshake_timeout_drops_a_silent_peer(tier):
    conn = tier.connect(tier.server(memory_settings(timeouts=TimeoutSettings(open_handshake=3))))
    tier.advance(2)
    assert not conn.closed_by_us
    tier.advance(2)
    assert conn.closed_by_us and conn.lost
    assert conn.written() == b""


def test_opening_handshake_timeout_drops_half_a_request(tier):
    conn = tier.connect(tier.server(memory_settings(timeouts=TimeoutSettings(open_handshake=3))))
    request = f.upgrade_request()
    conn.send(request[:40])
    tier.advance(2)
    assert not conn.closed_by_us
    tier.advance(2)
    assert conn.closed_by_us and conn.lost


def test_opening_handshake_timeout_spares_a_completed_handshake(tier):
    conn = tier.connect(tier.server(memory_settings(timeouts=TimeoutSettings(open_handshake=3,
                                                                             auto_ping_interval=0))))
    conn.open()
    tier.advance(10)
    assert conn.proto.is_connected and not conn.closed_by_us


def test_close_handshake_timeout_drops_a_peer_that_never_answers(tier):
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(close_handshake=2, auto_ping_interval=0))
    conn.proto.close(1000, "bye")
    close = conn.close_frame()
    assert (close.close_code, close.close_reason) == (1000, "bye")
    tier.advance(1)
    assert not conn.closed_by_us
    tier.advance(2)
    assert conn.aborted and conn.lost
    assert conn.proto.wasClean is False


def test_close_answered_in_time_is_clean(tier):
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(close_handshake=2, auto_ping_interval=0))
    conn.proto.close(4000, "app reason")
    assert conn.close_frame().close_code == 4000
    conn.send(f.close(4000))
    tier.settle()
    assert conn.lost and conn.proto.wasClean
    tier.advance(5)  # the cancelled timeout does nothing
    (line,) = tier.log_lines("wskit: close ")
    assert "code=4000 clean=True" in line.text


# -- 5b. chat history in the join answer --------------------------------------------------------


def _encoded_size(message):
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())


def _room_with_messages(tier, apps, count):
    """A v2 chat room with ``count`` messages of ~230 encoded bytes each; returns (factory, messages)."""
    factory = tier.server(memory_settings(apps=apps))
    poster = tier.connect(factory)
    poster.open(protocols=("wskit.chat.v2.json",))
    poster.send(f.text(json.dumps({"type": "join", "room": "r", "nick": "ann"})))
    for i in range(count):
        poster.send(f.text(json.dumps({"type": "say", "room": "r", "text": f"{i:02d} " + "é" * 50})))
    said = [json.loads(fr.payload) for fr in poster.all_frames()]
    return factory, [m for m in said if m["type"] == "message"]


def _join(tier, factory, protocol="wskit.chat.v2.json", nick="bob"):
    joiner = tier.connect(factory)
    joiner.open(protocols=(protocol,))
    join = {"type": "join", "room": "r", "nick": nick}
    if protocol.endswith(".json"):
        joiner.send(f.text(json.dumps(join)))
        (answer,) = joiner.frames()
        return json.loads(answer.payload)
    joiner.send(f.binary(msgpack.packb(join)))
    (answer,) = joiner.frames()
    return msgpack.unpackb(answer.payload)


def test_the_join_answer_holds_the_newest_history_that_fits_max_history_bytes(tier):
    factory, messages = _room_with_messages(tier, AppSettings(history_size=50, max_history_bytes=1000), 20)
    assert len(messages) == 20
    history = _join(tier, factory)["history"]
    assert history == messages[-len(history):]  # the newest, oldest first, as delivered
    kept = sum(_encoded_size(m) for m in history)
    assert kept <= 1000
    assert kept + _encoded_size(messages[-len(history) - 1]) > 1000  # the next older one does not fit
    assert len(_join(tier, factory, "wskit.chat.v2.msgpack", nick="carl")["history"]) == len(history)


def test_history_bytes_cap_zero_leaves_only_the_message_count(tier):
    factory, messages = _room_with_messages(tier, AppSettings(history_size=15, max_history_bytes=0), 20)
    assert _join(tier, factory)["history"] == messages[-15:]


def test_a_single_message_larger_than_the_cap_is_left_out(tier):
    factory, _messages = _room_with_messages(tier, AppSettings(max_history_bytes=100), 3)
    assert _join(tier, factory)["history"] == []


# -- 6. flow control and the slow-consumer policy --------------------------------------------


def test_paused_transport_makes_the_connection_unwritable(tier):
    _factory, conn = open_echo(tier)
    proto = conn.proto
    assert proto.writable and proto.buffered_amount == 0
    conn.pause_transport()
    assert not proto.writable
    conn.send(f.text("a" * 100))
    first = proto.buffered_amount
    assert first >= 100
    conn.send(f.text("b" * 100))
    assert proto.buffered_amount >= first + 100
    conn.resume_transport()
    assert proto.writable and proto.buffered_amount == 0


def test_when_writable_fires_on_resume(tier):
    _factory, conn = open_echo(tier)
    proto = conn.proto
    assert tier.result_of(proto.when_writable()) is True  # writable now: at once
    conn.pause_transport()
    waiting = [proto.when_writable(), proto.when_writable()]
    tier.settle()
    assert not any(tier.is_done(w) for w in waiting)
    conn.resume_transport()
    tier.settle()
    assert [tier.result_of(w) for w in waiting] == [True, True]


def test_when_writable_gives_false_when_the_connection_goes_first(tier):
    _factory, conn = open_echo(tier)
    conn.pause_transport()
    waiting = conn.proto.when_writable()
    conn.peer_disconnects()
    assert tier.result_of(waiting) is False


def test_direct_reply_over_the_cap_drops_a_slow_consumer(tier):
    _factory, conn = open_echo(tier, limits=LimitSettings(max_buffered_bytes=1000))
    conn.pause_transport()
    conn.send(f.text("a" * 600))  # buffered 0 when sent: admitted
    conn.send(f.text("b" * 600))  # buffered ~600: admitted
    assert conn.proto.buffered_amount > 1000
    assert not conn.closed_by_us
    before = conn.written()
    conn.send(f.text("c" * 10))  # over the cap: dropped, not sent
    assert conn.aborted and conn.lost
    assert conn.written() == before
    (line,) = tier.log_lines("too slow a consumer")
    assert line.level in ("warn", "warning")  # Twisted's and logging's name for it
    assert "more than 1000 bytes unsent" in line.text
    if tier.structured_logs:
        assert line.event == "slow-consumer"


def test_no_cap_means_no_drop(tier):
    _factory, conn = open_echo(tier, limits=LimitSettings(max_buffered_bytes=0))
    conn.pause_transport()
    for _ in range(20):
        conn.send(f.text("a" * 1000))
    assert conn.proto.buffered_amount > 20000 and not conn.closed_by_us


def test_chat_join_answer_over_the_cap_drops_a_slow_consumer(tier):
    conn = tier.connect(tier.server(memory_settings(limits=LimitSettings(max_buffered_bytes=50))))
    conn.open(protocols=("wskit.chat.v2.json",))
    conn.pause_transport()
    conn.send(f.text(json.dumps({"type": "join", "room": "a", "nick": "ann"})))
    (joined,) = conn.frames()
    assert json.loads(joined.payload)["type"] == "joined"
    assert conn.proto.buffered_amount > 50
    conn.send(f.text(json.dumps({"type": "join", "room": "b", "nick": "ann"})))
    assert conn.aborted and conn.lost
    assert conn.frames() == []
    assert tier.log_lines("too slow a consumer")


def test_broadcast_over_the_cap_drops_only_the_slow_consumer(tier):
    factory = tier.server(memory_settings(limits=LimitSettings(max_buffered_bytes=200)))
    fast, slow = tier.connect(factory), tier.connect(factory)
    for conn, nick in ((fast, "fast"), (slow, "slow")):
        conn.open(protocols=("wskit.chat.v1.json",))
        conn.send(f.text(json.dumps({"type": "join", "room": "r", "nick": nick})))
    fast.frames(), slow.frames()
    slow.pause_transport()
    for i in range(5):
        fast.send(f.text(json.dumps({"type": "say", "room": "r", "text": f"message {i} " + "x" * 40})))
    assert len([fr for fr in fast.frames() if b'"message"' in fr.payload]) == 5
    assert slow.aborted and slow.lost
    assert not fast.closed_by_us
    said = [json.loads(fr.payload)["text"] for fr in slow.frames()]
    assert 0 < len(said) < 5  # some went out before the cap was passed
    assert factory.app.services["chat"].members("r") == ["fast"]


# -- 7. graceful shutdown ---------------------------------------------------------------------


def test_close_all_sends_1001_to_every_open_connection(tier):
    factory = tier.server(memory_settings(timeouts=TimeoutSettings(close_handshake=2, auto_ping_interval=0)))
    conns = [tier.connect(factory) for _ in range(3)]
    for conn in conns[:2]:
        conn.open()
    conns[1].send(f.close(1000))  # already closing: not closed again
    assert conns[1].close_frame().close_code == 1000
    tier.settle()
    closing = factory.app.close_all()
    assert len(closing) == 1
    frame = conns[0].close_frame()
    assert (frame.close_code, frame.close_reason) == (1001, "server shutting down")
    assert conns[2].written() == b""  # never opened: nothing to close
    assert not tier.is_done(closing[0])
    conns[0].send(f.close(1001))
    tier.settle()
    assert tier.is_done(closing[0]) and conns[0].lost


def test_close_all_futures_fire_when_peers_never_answer(tier):
    factory = tier.server(memory_settings(timeouts=TimeoutSettings(close_handshake=2, auto_ping_interval=0)))
    conns = [tier.connect(factory) for _ in range(2)]
    for conn in conns:
        conn.open()
    closing = factory.app.close_all()
    assert [c.close_frame().close_code for c in conns] == [1001, 1001]
    tier.advance(3)
    assert all(tier.is_done(c) for c in closing)
    assert all(c.lost for c in conns)


def test_close_all_futures_fire_only_once_the_close_line_is_logged(tier):
    import txaio

    factory = tier.server(memory_settings(timeouts=TimeoutSettings(close_handshake=2, auto_ping_interval=0)))
    answers, silent, unread = (tier.connect(factory) for _ in range(3))
    for conn in (answers, silent, unread):
        conn.open()
    unread.hold_close()
    unread.send(f.close(1000))  # answered and dropped, but the transport still holds our close frame
    assert unread.closed_by_us and not unread.lost
    gone = factory.app.close_all()
    assert len(gone) == 3  # the closing connection is waited for too
    logged_when_fired = []
    for future in gone:
        txaio.add_callbacks(future, lambda _: logged_when_fired.append(len(tier.log_lines("wskit: close "))), None)
    answers.send(f.close(1001))
    tier.settle()
    assert logged_when_fired == [1]
    tier.advance(3)  # the close-handshake timeout drops the silent peer and the one that never reads
    # The k-th future to fire finds at least k close lines (asyncio runs callbacks a turn later).
    assert len(logged_when_fired) == 3
    assert all(logged >= k for k, logged in enumerate(logged_when_fired, 1)), logged_when_fired
    assert all(tier.is_done(future) for future in gone)
    assert factory.app.connections == set()


def test_abort_all_ends_connections_that_outlive_a_shutdown(tier):
    factory = tier.server(memory_settings(timeouts=TimeoutSettings(close_handshake=0, auto_ping_interval=0)))
    silent, unread = tier.connect(factory), tier.connect(factory)
    silent.open()
    unread.open()
    unread.hold_close()
    unread.send(f.close(1000))
    gone = factory.app.close_all()
    tier.advance(60)  # no close timeout: nothing ends them by itself
    assert not any(tier.is_done(future) for future in gone)
    assert factory.app.abort_all() == 2
    tier.settle()
    assert all(tier.is_done(future) for future in gone)
    assert silent.aborted and unread.aborted
    assert len(tier.log_lines("wskit: close ")) == 2


# -- permessage-deflate ---------------------------------------------------------------------


def test_deflate_negotiated_and_compressed_echo(tier):
    settings = memory_settings(compression=CompressionSettings(server_max_window_bits=12, threshold=64))
    conn = tier.connect(tier.server(settings))
    head = conn.open(extensions="permessage-deflate; client_max_window_bits")
    params = [p.strip() for p in head.header("sec-websocket-extensions").split(";")]
    assert params[0] == "permessage-deflate"
    assert "server_max_window_bits=12" in params  # compresses with fewer than 15 bits: always declared
    client_bits = dict(p.split("=") for p in params if "=" in p).get("client_max_window_bits", "15")
    assert conn.proto.extensions == ["permessage-deflate"]
    message = "compress me " * 20
    conn.send(f.compressed_text(message, int(client_bits)))
    (echo,) = conn.frames()
    assert echo.opcode == f.TEXT and echo.rsv == 4  # RSV1: compressed
    assert len(echo.payload) < len(message)
    assert f.inflate_message(echo.payload, 12) == message.encode()

    conn.send(f.text("tiny"))  # uncompressed from the client, under the threshold back
    (small,) = conn.frames()
    assert small.rsv == 0 and small.payload == b"tiny"


def test_closed_connection_frees_its_zlib_contexts(tier):
    # A closed connection waits in a reference cycle for the collector's next full
    # pass (Autobahn resolves is_closed with the protocol); its zlib contexts must not.
    conn = tier.connect(tier.server(memory_settings(compression=CompressionSettings())))
    conn.open(extensions="permessage-deflate")
    message = "compress me " * 20
    conn.send(f.compressed_text(message))
    (echo,) = conn.frames()
    assert echo.rsv == 4
    pmce = conn.proto._perMessageCompress
    assert pmce._compressor is not None and pmce._decompressor is not None
    conn.send(f.close(1000))
    tier.settle()
    assert conn.lost
    assert pmce._compressor is None and pmce._decompressor is None
    assert conn.proto.extensions == ["permessage-deflate"]  # still described
    assert conn.proto._guard is None
    assert tier.is_done(conn.proto.is_gone)
    assert len(tier.log_lines("wskit: close ")) == 1


def test_compressed_frame_without_deflate_negotiated_closes_with_1002(tier):
    _factory, conn = open_echo(tier)
    conn.send(f.compressed_text("hello " * 20))
    assert conn.close_frame().close_code == 1002


# -- odds and ends ----------------------------------------------------------------------------


def test_handshake_and_frames_arriving_a_byte_at_a_time(tier):
    conn = tier.connect(tier.server())
    request = f.upgrade_request(protocols=("wskit.echo",))
    conn.send(*[request[i:i + 1] for i in range(len(request))])
    assert conn.head().status == 101
    message = f.text("split") + f.binary(b"\x00\xff")
    conn.send(*[message[i:i + 1] for i in range(len(message))])
    assert [(fr.opcode, fr.payload) for fr in conn.frames()] == [(f.TEXT, b"split"), (f.BINARY, b"\x00\xff")]


def test_handshake_and_frames_in_one_read(tier):
    conn = tier.connect(tier.server())
    conn.send(f.upgrade_request() + f.text("eager") + f.ping(b"x"))
    assert conn.head().status == 101
    assert [(fr.opcode, fr.payload) for fr in conn.all_frames()] == [(f.TEXT, b"eager"), (f.PONG, b"x")]


def test_handler_on_open_failure_closes_with_1011(tier):
    class OpenFails(Recorder):
        def on_open(self):
            raise RuntimeError("open bug")

    conn = tier.connect(tier.server(registry=registry(("t.v1", OpenFails))))
    conn.open(protocols=("t.v1",))
    assert conn.close_frame().close_code == 1011
    assert tier.log_lines("t.v1 on_open failed")


def test_connections_beyond_max_connections_are_refused_with_503(tier):
    factory = tier.server(memory_settings(limits=LimitSettings(max_connections=1)))
    first = tier.connect(factory)
    first.open()
    head = tier.connect(factory).handshake()
    assert head.status == 503
    first.send(f.close(1000))
    tier.settle()
    assert first.lost
    assert tier.connect(factory).handshake().status == 101


def test_deflate_context_takeover_across_messages(tier):
    settings = memory_settings(compression=CompressionSettings(server_max_window_bits=12))
    conn = tier.connect(tier.server(settings))
    head = conn.open(extensions="permessage-deflate")
    assert "server_no_context_takeover" not in head.header("sec-websocket-extensions")
    inflate = f.inflater(12)
    message = "the same words again and again " * 4
    sizes = []
    for _ in range(2):
        conn.send(f.text(message))
        (echo,) = conn.frames()
        assert echo.rsv == 4 and inflate(echo.payload) == message.encode()
        sizes.append(len(echo.payload))
    assert sizes[1] < sizes[0]  # the second refers back into the first


def test_deflate_server_no_context_takeover_is_announced_and_kept(tier):
    settings = memory_settings(compression=CompressionSettings(server_no_context_takeover=True))
    conn = tier.connect(tier.server(settings))
    head = conn.open(extensions="permessage-deflate")
    assert "server_no_context_takeover" in head.header("sec-websocket-extensions")
    message = "the same words again and again " * 4
    for _ in range(2):
        conn.send(f.text(message))
        (echo,) = conn.frames()
        assert f.inflate_message(echo.payload) == message.encode()  # a fresh decompressor each time
    assert conn.proto._perMessageCompress._compressor is None  # no idle zlib context kept


def test_deflate_idle_connection_hibernates_and_resumes_its_streams(tier):
    settings = memory_settings(compression=CompressionSettings(hibernate_after=2),
                               timeouts=TimeoutSettings(auto_ping_interval=0))
    conn = tier.connect(tier.server(settings))
    head = conn.open(extensions="permessage-deflate; client_max_window_bits")
    assert "client_max_window_bits=12" in head.header("sec-websocket-extensions")
    deflate, inflate = f.deflater(12), f.inflater(12)
    pmce = conn.proto._perMessageCompress
    message = b"hibernate, then take up the same words again " * 3
    sizes = []
    for round_ in range(3):
        conn.send(f.frame(f.TEXT, deflate(message), rsv=4))
        (echo,) = conn.frames()
        assert echo.rsv == 4 and inflate(echo.payload) == message
        sizes.append(len(echo.payload))
        assert not pmce.hibernating
        tier.advance(1.5)
        assert not pmce.hibernating  # not idle long enough yet
        tier.advance(3)  # idle for 2-4 s: the batched idle check has run
        assert pmce.hibernating, f"round {round_}: zlib contexts still held"
    # Every echo after the first referred back across a hibernation.
    assert sizes[1] < sizes[0] and sizes[2] == sizes[1]
    assert pmce.hibernations == 3 and pmce.wakeups == 4


def test_deflate_busy_connection_does_not_hibernate(tier):
    settings = memory_settings(compression=CompressionSettings(hibernate_after=2),
                               timeouts=TimeoutSettings(auto_ping_interval=0))
    conn = tier.connect(tier.server(settings))
    conn.open(extensions="permessage-deflate; client_max_window_bits")
    deflate, inflate = f.deflater(12), f.inflater(12)
    pmce = conn.proto._perMessageCompress
    for i in range(12):
        message = f"message {i} of a busy connection ".encode() * 4
        conn.send(f.frame(f.TEXT, deflate(message), rsv=4))
        (echo,) = conn.frames()
        assert inflate(echo.payload) == message
        assert not pmce.hibernating
        tier.advance(1)
    assert pmce.hibernations == 0


def test_deflate_hibernation_off_keeps_the_contexts(tier):
    settings = memory_settings(compression=CompressionSettings(hibernate_after=0),
                               timeouts=TimeoutSettings(auto_ping_interval=0))
    conn = tier.connect(tier.server(settings))
    conn.open(extensions="permessage-deflate")
    conn.send(f.text("compress me " * 20))
    conn.frames()
    tier.advance(60)
    assert conn.proto._perMessageCompress._compressor is not None


def test_deflate_contexts_are_released_when_the_connection_ends(tier):
    settings = memory_settings(compression=CompressionSettings(hibernate_after=30))
    conn = tier.connect(tier.server(settings))
    conn.open(extensions="permessage-deflate")
    pmce = conn.proto._perMessageCompress
    conn.send(f.text("compress me " * 20))
    assert pmce._hibernate_call is not None
    conn.proto.close(1000)
    finish_close(tier, conn)
    assert pmce.hibernating and pmce._hibernate_call is None and pmce._sent is None


def test_deflate_offer_ignored_when_compression_is_off(tier):
    conn = tier.connect(tier.server())
    head = conn.open(extensions="permessage-deflate; client_max_window_bits")
    assert head.header("sec-websocket-extensions") is None
    assert conn.proto.compression is None


# -- timers at any time of the clock --------------------------------------------------------


def test_timeouts_never_fire_early_at_a_fractional_time(tier):
    tier.advance(0.9)  # connection timers are batched: a timeout must not be cut short by it
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(close_handshake=2, auto_ping_interval=0))
    conn.proto.close(1000)
    tier.advance(1.9)
    assert not conn.closed_by_us, "the close-handshake timeout fired before 2 seconds had passed"
    tier.advance(0.5)  # at most one 0.2 s bucket late
    assert conn.aborted


def test_sub_second_ping_timeout_gives_the_peer_its_time(tier):
    _factory, conn = open_echo(tier, timeouts=TimeoutSettings(auto_ping_interval=2.5, auto_ping_timeout=0.5))
    tier.advance(2.4)
    assert conn.frames() == []
    tier.advance(0.3)
    (ping,) = conn.frames()
    tier.advance(0.4)
    assert not conn.closed_by_us, "the ping timeout fired before 0.5 seconds had passed"
    conn.send(f.pong(ping.payload))
    tier.advance(1)
    assert conn.proto.is_connected


# -- the Connection API ---------------------------------------------------------------------


def test_connection_api_basics(tier):
    factory, conn = open_echo(tier)
    proto = conn.proto
    assert proto.peer.startswith("tcp4:127.0.0.1:")
    assert proto.app is factory.app
    assert proto.is_connected and proto.extensions == [] and proto.compression is None
    assert proto.send_text("é") is True and proto.send_binary(bytearray(b"\x01")) is True
    assert [(fr.opcode, fr.payload) for fr in conn.frames()] == [(f.TEXT, "é".encode()), (f.BINARY, b"\x01")]


def test_close_codes_an_endpoint_may_not_send_are_refused(tier):
    _factory, conn = open_echo(tier)
    for code in (999, 1004, 1005, 1006, 1012, 2999, 5000):
        try:
            conn.proto.close(code)
        except ValueError as exc:
            assert str(code) in str(exc)
        else:
            raise AssertionError(f"close({code}) was accepted")
    assert conn.frames() == [] and conn.proto.is_connected


def test_close_reason_is_truncated_to_fit_a_control_frame(tier):
    _factory, conn = open_echo(tier)
    conn.proto.close(1001, "é" * 100)  # 200 bytes of UTF-8
    close = conn.close_frame()
    assert close.close_code == 1001 and len(close.payload) <= 125
    assert set(close.close_reason) == {"é"}  # cut on a character boundary


def test_sends_after_close_return_false(tier):
    _factory, conn = open_echo(tier)
    conn.proto.close(1000)
    assert conn.proto.send_text("late") is False
    assert conn.proto.send_binary(b"late") is False
    conn.proto.close(1000)  # a second close does nothing
    assert [fr.opcode for fr in conn.all_frames()] == [f.CLOSE]


def test_abort_drops_at_once(tier):
    factory, conn = open_echo(tier)
    conn.proto.abort()
    tier.settle()
    assert conn.aborted and conn.lost
    assert tier.is_done(conn.proto.is_closed)
    assert factory.app.connections == set()
    assert conn.all_frames() == []


def test_handler_factory_that_raises_refuses_the_handshake(tier):
    def broken(connection):
        raise RuntimeError("cannot build handler")

    conn = tier.connect(tier.server(registry=registry(("t.v1", broken))))
    head = conn.handshake(protocols=("t.v1",))
    assert head.status == 500, head
    assert conn.proto.handler is None
