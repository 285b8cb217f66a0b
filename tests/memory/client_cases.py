"""Client behaviours every backend must show, against a server played by hand.

The test reads the upgrade request the client wrote and answers it with a
crafted response: a 101 whose accept key is computed from the client's key,
or a refusal.
"""

from __future__ import annotations

import base64

import pytest

from memory import frames as f
from memory.handlers import PausesAndResumesInside, PausesOnFirst, Recorder
from wskit.errors import HandshakeError
from wskit.settings import ClientSettings, CompressionSettings, TimeoutSettings

URL = "ws://127.0.0.1:9000/ws"


def client_settings(**changes):
    base = dict(subprotocols=("wskit.echo",), compression=CompressionSettings(enabled=False),
                timeouts=TimeoutSettings(auto_ping_interval=0))
    base.update(changes)
    return ClientSettings(**base)


def start_client(tier, handler_factory=Recorder, **settings):
    """A client connection that has written its upgrade request; returns (conn, request bytes)."""
    conn = tier.connect(tier.client_factory(URL, client_settings(**settings), handler_factory))
    request = conn.written()
    assert request.endswith(b"\r\n\r\n"), f"no complete upgrade request: {request!r}"
    assert conn.head() is not None  # the request: from here on the reader reads frames
    return conn, request


def open_client(tier, **settings):
    conn, request = start_client(tier, **settings)
    conn.send(f.switching_protocols(request, protocol="wskit.echo"))
    assert tier.is_done(conn.proto.is_open)
    return conn


def handshake_error(tier, future) -> HandshakeError:
    assert tier.is_done(future), "is_open has not completed"
    with pytest.raises(HandshakeError) as raised:
        tier.result_of(future)
    return raised.value


def test_every_autobahn_option_reaches_the_client_connection(tier):
    from autobahn.websocket.protocol import WebSocketClientProtocol

    conn = open_client(tier)
    factory = conn.proto.factory
    options = WebSocketClientProtocol.CONFIG_ATTRS
    assert len(options) > 20
    for name in options:
        assert getattr(conn.proto, name) == getattr(factory, name), name
    assert conn.proto.CONFIG_ATTRS == ()  # Autobahn's debug dump of them has nothing to format


def test_client_writes_a_valid_upgrade_request(tier):
    _conn, raw = start_client(tier, subprotocols=("wskit.chat.v2.json", "wskit.echo"),
                              origin="http://127.0.0.1:9000", headers=(("X-Trace", "abc"),))
    request = f.parse_http(raw)
    assert request.start_line == "GET /ws HTTP/1.1"
    assert request.header("host") == "127.0.0.1:9000"
    assert request.header("upgrade").lower() == "websocket"
    assert "upgrade" in request.header("connection").lower()
    assert request.header("sec-websocket-version") == "13"
    assert len(base64.b64decode(request.header("sec-websocket-key"))) == 16
    offered = [name.strip() for name in request.header("sec-websocket-protocol").split(",")]
    assert offered == ["wskit.chat.v2.json", "wskit.echo"]
    assert request.header("origin") == "http://127.0.0.1:9000"
    assert request.header("x-trace") == "abc"
    assert request.header("user-agent") == "wskit"
    assert request.header("sec-websocket-extensions") is None  # compression off


def test_client_offers_deflate_when_enabled(tier):
    _conn, raw = start_client(tier, compression=CompressionSettings())
    offer = f.parse_http(raw).header("sec-websocket-extensions")
    assert offer.startswith("permessage-deflate")
    assert "client_max_window_bits" in offer


def test_client_opens_against_a_crafted_101_and_its_handler_gets_messages(tier):
    conn, request = start_client(tier)
    assert not tier.is_done(conn.proto.is_open)
    conn.send(f.switching_protocols(request, protocol="wskit.echo"))
    assert tier.is_done(conn.proto.is_open)
    tier.result_of(conn.proto.is_open)  # fired, not failed
    proto = conn.proto
    assert proto.is_connected and proto.subprotocol == "wskit.echo"
    handler = proto.handler
    assert isinstance(handler, Recorder)
    assert handler.events == [("open", "wskit.echo", None)]

    conn.send(f.frame(f.TEXT, b"from server", mask=None), f.frame(f.BINARY, b"\x01\x02", mask=None))
    assert handler.events[1:] == [("message", b"from server", False), ("message", b"\x01\x02", True)]
    (line,) = tier.log_lines("wskit: open ")
    assert "subprotocol=wskit.echo" in line.text


def test_client_frames_are_masked(tier):
    conn = open_client(tier)
    assert conn.proto.send_text("hello") is True
    conn.proto.send_binary(b"\x00" * 10)
    out = conn.frames()
    assert [(fr.opcode, fr.payload, fr.masked) for fr in out] == [
        (f.TEXT, b"hello", True), (f.BINARY, b"\x00" * 10, True)]


def test_client_answers_a_server_ping(tier):
    conn = open_client(tier)
    conn.send(f.frame(f.PING, b"ping?", mask=None))
    assert [(fr.opcode, fr.payload) for fr in conn.frames()] == [(f.PONG, b"ping?")]


def test_refusal_fails_is_open_with_the_status(tier):
    conn, _request = start_client(tier)
    conn.send(f.refusal(403, "Forbidden", b"origin http://evil.example.com not allowed\n"))
    error = handshake_error(tier, conn.proto.is_open)
    assert error.status == 403
    assert error.reason == "Forbidden"
    assert "HTTP 403 Forbidden" in str(error)
    tier.settle()
    assert conn.closed_by_us


def test_wrong_accept_key_is_a_handshake_error(tier):
    conn, request = start_client(tier)
    response = f.switching_protocols(request).replace(
        f.accept_key(f.parse_http(request).header("sec-websocket-key")).encode(), f.accept_key("wrong").encode())
    conn.send(response)
    error = handshake_error(tier, conn.proto.is_open)
    assert error.status is None
    assert "Sec-WebSocket-Accept" in error.reason


def test_server_picking_an_unoffered_subprotocol_is_a_handshake_error(tier):
    conn, request = start_client(tier)
    conn.send(f.switching_protocols(request, protocol="wskit.chat.v2.json"))
    error = handshake_error(tier, conn.proto.is_open)
    assert error.status is None


def test_client_opening_handshake_timeout(tier):
    conn, _request = start_client(tier, timeouts=TimeoutSettings(open_handshake=3, auto_ping_interval=0))
    tier.advance(2)
    assert not tier.is_done(conn.proto.is_open)
    tier.advance(2)
    error = handshake_error(tier, conn.proto.is_open)
    assert error.status is None
    assert conn.closed_by_us


def test_pause_and_resume_reading_reach_the_transport(tier):
    conn = open_client(tier)
    assert not conn.reading_paused
    conn.proto.pause_reading()
    assert conn.reading_paused
    conn.proto.resume_reading()
    assert not conn.reading_paused


def test_paused_reading_holds_messages_already_read(tier):
    # Three messages arrive in one read: a pause at the first delivers none of the
    # others until resume_reading(), then both, in order.
    conn, request = start_client(tier, handler_factory=PausesOnFirst)
    conn.send(f.switching_protocols(request, protocol="wskit.echo"))
    handler = conn.proto.handler
    conn.send(b"".join(f.frame(f.TEXT, text, mask=None) for text in (b"one", b"two", b"three")))
    assert [e[1] for e in handler.events if e[0] == "message"] == [b"one"]
    assert conn.reading_paused
    conn.proto.resume_reading()
    assert [e[1] for e in handler.events if e[0] == "message"] == [b"one", b"two", b"three"]
    assert not conn.reading_paused


def test_resume_inside_a_message_callback_keeps_parsing_in_order(tier):
    conn, request = start_client(tier, handler_factory=PausesAndResumesInside)
    conn.send(f.switching_protocols(request, protocol="wskit.echo"))
    handler = conn.proto.handler
    conn.send(b"".join(f.frame(f.TEXT, text, mask=None) for text in (b"a", b"b", b"c", b"d")))
    conn.proto.resume_reading()  # after "a"; "b" pauses and resumes inside its own callback
    assert [e[1] for e in handler.events if e[0] == "message"] == [b"a", b"b", b"c", b"d"]


def test_paused_reading_holds_the_close_frame_too(tier):
    conn, request = start_client(tier, handler_factory=PausesOnFirst)
    conn.send(f.switching_protocols(request, protocol="wskit.echo"))
    handler = conn.proto.handler
    conn.send(f.frame(f.TEXT, b"one", mask=None) + f.frame(f.CLOSE, b"\x03\xe9", mask=None))
    assert conn.proto.is_connected and conn.frames() == []  # the close frame is not read yet
    conn.proto.resume_reading()
    assert conn.close_frame().masked  # the reply to the server's close, written once it was read
    assert [e[1] for e in handler.events if e[0] == "message"] == [b"one"]


def test_client_close_handshake(tier):
    conn = open_client(tier)
    handler = conn.proto.handler
    conn.proto.close(1000, "done")
    close = conn.close_frame()
    assert (close.close_code, close.close_reason, close.masked) == (1000, "done", True)
    conn.send(f.frame(f.CLOSE, close.payload[:2], mask=None))
    conn.peer_disconnects()  # the server drops TCP after the closing handshake
    assert handler.events[-1] == ("close", True, 1000)
    assert tier.is_done(conn.proto.is_closed)


def test_client_drops_a_server_that_keeps_tcp_open_after_the_close_handshake(tier):
    conn = open_client(tier)
    conn.proto.close(1000)
    conn.close_frame()
    conn.send(f.frame(f.CLOSE, b"\x03\xe8", mask=None))
    assert not conn.closed_by_us
    tier.advance(conn.proto.serverConnectionDropTimeout + 1)
    assert conn.closed_by_us and conn.lost
    assert conn.proto.wasServerConnectionDropTimeout and not conn.proto.wasClean


def test_client_auto_ping(tier):
    conn = open_client(tier, timeouts=TimeoutSettings(auto_ping_interval=5, auto_ping_timeout=3))
    tier.advance(6)
    (ping,) = conn.frames()
    assert ping.opcode == f.PING and ping.masked
    tier.advance(4)
    assert conn.aborted and conn.lost


def test_client_writability_follows_the_transport(tier):
    conn = open_client(tier)
    conn.pause_transport()
    assert not conn.proto.writable
    conn.proto.send_text("x" * 100)
    assert conn.proto.buffered_amount >= 100
    conn.resume_transport()
    assert conn.proto.writable


def test_masked_frame_from_the_server_closes_with_1002(tier):
    conn = open_client(tier)
    conn.send(f.frame(f.TEXT, b"masked", mask=f.SAMPLE_MASK))
    assert conn.close_frame().close_code == 1002
    assert conn.proto.handler.events[1:] == []


def test_client_handler_exception_closes_with_1011(tier):
    from memory.handlers import Raises

    conn, request = start_client(tier, handler_factory=Raises)
    conn.send(f.switching_protocols(request, protocol="wskit.echo"))
    conn.send(f.frame(f.TEXT, b"boom", mask=None))
    assert conn.close_frame().close_code == 1011


def test_client_deflate_negotiated_compresses_and_inflates(tier):
    conn, request = start_client(tier, compression=CompressionSettings(threshold=16))
    conn.send(f.switching_protocols(request, protocol="wskit.echo",
                                    extensions="permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"))
    proto = conn.proto
    assert proto.extensions == ["permessage-deflate"]
    assert proto.compression["client_max_window_bits"] == 10
    message = "client side compression " * 8
    proto.send_text(message)
    proto.send_text("short")  # under the threshold: sent as is
    big, small = conn.frames()
    assert big.rsv == 4 and big.masked and f.inflate_message(big.payload, 10) == message.encode()
    assert small.rsv == 0 and small.payload == b"short"

    conn.send(f.frame(f.TEXT, f.deflate_message(b"from the server " * 8), rsv=4, mask=None))
    assert proto.handler.events[-1] == ("message", b"from the server " * 8, False)

    # Once the connection is gone, its zlib contexts are freed (it may wait for the
    # collector in a reference cycle).
    pmce = proto._perMessageCompress
    assert pmce._compressor is not None and pmce._decompressor is not None
    conn.peer_disconnects()
    assert pmce._compressor is None and pmce._decompressor is None
    assert proto.extensions == ["permessage-deflate"]


def test_client_deflate_idle_connection_hibernates_and_resumes_its_streams(tier):
    import zlib

    conn, request = start_client(tier, compression=CompressionSettings(threshold=16, hibernate_after=2))
    conn.send(f.switching_protocols(request, protocol="wskit.echo",
                                    extensions="permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"))
    proto = conn.proto
    pmce = proto._perMessageCompress
    inflater = zlib.decompressobj(-10)  # the server's: exactly the window it asked of the client
    compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
    outgoing = "the client says the same thing again " * 3
    incoming = b"the server says the same thing again " * 3
    sizes = []
    for round_ in range(3):
        proto.send_text(outgoing)
        (sent,) = conn.frames()
        assert sent.rsv == 4 and inflater.decompress(sent.payload + f.DEFLATE_TAIL) == outgoing.encode()
        sizes.append(len(sent.payload))
        data = (compressor.compress(incoming) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        conn.send(f.frame(f.TEXT, data, rsv=4, mask=None))
        assert proto.handler.events[-1] == ("message", incoming, False)
        tier.advance(4.5)
        assert pmce.hibernating, f"round {round_}: zlib contexts still held"
    assert sizes[1] < sizes[0] and sizes[2] == sizes[1]
    assert pmce.hibernations == 3 and pmce.wakeups == 4
