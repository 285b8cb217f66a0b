"""The whole-frame paths (wskit.protocol) against Autobahn's general parser and framer.

A connection takes whole, unfragmented, uncompressed data frames itself and
hands anything else to Autobahn from the same byte. Each case here feeds the
same reads to a connection of the backend's own class and to one whose class
overrides an Autobahn per-frame hook (which turns the whole-frame paths off),
and asserts that both write the same bytes, deliver the same messages, count
the same traffic and end the same way; then checks what the case names.
"""

from __future__ import annotations

import random
import struct

import pytest
from autobahn.exception import PayloadExceededError

from memory import frames as f
from memory.driver import memory_settings
from memory.handlers import PausesAndResumesInside, PausesOnFirst, Recorder, registry
from wskit.settings import CompressionSettings, LimitSettings

SUBPROTOCOL = "test.echo.v1"


class EchoRecorder(Recorder):
    """Records every message and echoes it, text as text and binary as binary."""

    def on_message(self, payload, is_binary):
        self.events.append(("message", payload, is_binary))
        self.connection.send_message(payload, is_binary)


def general_class(protocol: type) -> type:
    """``protocol`` with Autobahn's general receive and send paths only."""

    class General(protocol):
        def onMessageBegin(self, isBinary):
            super().onMessageBegin(isBinary)

        def sendFrame(self, *args, **kwargs):
            super().sendFrame(*args, **kwargs)

    return General


def run(tier, chunks, handler=EchoRecorder, general=False, extensions=None, **settings):
    """Open a connection, feed ``chunks`` (one read each); return the connection and what it did."""
    app = tier.app(memory_settings(**settings), registry(("test.echo.v1", handler)))
    factory = tier.server(app=app)
    if general:
        factory.protocol = general_class(factory.protocol)
    conn = tier.connect(factory)
    if extensions is None:
        conn.open(protocols=(SUBPROTOCOL,))
    else:
        conn.open(protocols=(SUBPROTOCOL,), extensions=extensions)
    conn.new_output()
    conn.send(*chunks)
    tier.settle()
    return conn, outcome(conn)


def outcome(conn):
    proto = conn.proto
    events = list(proto.handler.events) if proto.handler is not None else None
    return {
        "written": conn.new_output(),
        "events": events,
        "traffic": proto.trafficStats.__json__(),
        "state": proto.state,
        "closed_by_us": conn.closed_by_us,
        "lost": conn.lost,
    }


def same_as_general(tier, chunks, handler=EchoRecorder, **settings):
    """Run ``chunks`` on both paths, assert the same outcome, return the fast path's connection and frames."""
    conn, fast = run(tier, chunks, handler, **settings)
    _general_conn, general = run(tier, chunks, handler, general=True, **settings)
    if "written" in general and general["written"] != fast["written"]:  # the frames, for a readable diff
        assert f.parse_frames(fast["written"]) == f.parse_frames(general["written"])
    assert fast == general
    frames, rest = f.parse_frames(fast["written"])
    assert rest == b""
    return conn, frames


def echoed(frames):
    return [(fr.opcode, fr.payload) for fr in frames if fr.opcode in (f.TEXT, f.BINARY)]


@pytest.mark.parametrize("general", [False, True])
def test_whole_frames_skip_autobahns_per_frame_calls_unless_a_hook_is_overridden(tier, general):
    factory = tier.server(app=tier.app(memory_settings(), registry(("test.echo.v1", EchoRecorder))))
    if general:
        factory.protocol = general_class(factory.protocol)
    conn = tier.connect(factory)
    conn.open(protocols=(SUBPROTOCOL,))
    calls = []
    parse_frame = conn.proto.onFrameBegin
    conn.proto.onFrameBegin = lambda: (calls.append("frame"), parse_frame())  # this instance only
    conn.send(f.text("a") + f.binary(b"b"), f.ping(b"c"))
    assert calls == (["frame", "frame", "frame"] if general else ["frame"])  # the ping: always Autobahn's
    assert [(fr.opcode, fr.payload) for fr in conn.frames()] == [(f.TEXT, b"a"), (f.BINARY, b"b"), (f.PONG, b"c")]


def test_several_frames_in_one_read(tier):
    chunk = f.text("one") + f.binary(b"\x00\x01\x02") + f.text("tw\u00f6 \u20ac \u65e5") + f.binary(b"x" * 300)
    conn, frames = same_as_general(tier, [chunk])
    assert echoed(frames) == [(f.TEXT, b"one"), (f.BINARY, b"\x00\x01\x02"),
                              (f.TEXT, "tw\u00f6 \u20ac \u65e5".encode()), (f.BINARY, b"x" * 300)]
    traffic = conn.proto.trafficStats
    assert traffic.incomingWebSocketMessages == traffic.incomingWebSocketFrames == 4
    assert traffic.outgoingWebSocketMessages == traffic.outgoingWebSocketFrames == 4
    payload_bytes = sum(len(payload) for _opcode, payload in echoed(frames))
    assert traffic.incomingOctetsAppLevel == traffic.outgoingOctetsAppLevel == payload_bytes == 318
    assert traffic.incomingOctetsWireLevel == len(chunk)


def test_many_small_frames_in_one_read(tier):
    messages = [f"m{i}".encode() for i in range(500)]
    _conn, frames = same_as_general(tier, [b"".join(f.text(m) for m in messages)])
    assert echoed(frames) == [(f.TEXT, m) for m in messages]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 300, 65535, 65536, 70000])
def test_every_length_encoding(tier, size):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    _conn, frames = same_as_general(tier, [f.binary(payload) + f.text("after")])
    assert echoed(frames) == [(f.BINARY, payload), (f.TEXT, b"after")]


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5, 6, 7, 8, 9, 150, 307])
def test_a_frame_split_across_reads(tier, cut):
    frame = f.binary(bytes(300))  # 2 + 2 (length) + 4 (mask) + 300 bytes
    chunks = [f.text("before") + frame[:cut], frame[cut:] + f.text("after")]
    _conn, frames = same_as_general(tier, chunks)
    assert echoed(frames) == [(f.TEXT, b"before"), (f.BINARY, bytes(300)), (f.TEXT, b"after")]


def test_one_byte_per_read(tier):
    data = f.text("slow") + f.binary(b"\x01" * 130) + f.text("")
    _conn, frames = same_as_general(tier, [data[i:i + 1] for i in range(len(data))])
    assert echoed(frames) == [(f.TEXT, b"slow"), (f.BINARY, b"\x01" * 130), (f.TEXT, b"")]


def test_message_size_limit_at_and_one_past(tier):
    limits = LimitSettings(max_message_size=100)
    chunk = f.binary(b"a" * 99) + f.text("b" * 100) + f.binary(b"c" * 101) + f.text("never")
    conn, frames = same_as_general(tier, [chunk], limits=limits)
    assert echoed(frames) == [(f.BINARY, b"a" * 99), (f.TEXT, b"b" * 100)]
    close = [fr for fr in frames if fr.opcode == f.CLOSE]
    assert [fr.close_code for fr in close] == [1009]
    assert "exceeds payload limit of 100 octets" in close[0].close_reason


def test_frame_size_limit_at_and_one_past(tier):
    limits = LimitSettings(max_message_size=1000, max_frame_size=50)
    chunk = f.binary(b"a" * 50) + f.binary(b"b" * 51) + f.binary(b"never")
    _conn, frames = same_as_general(tier, [chunk], limits=limits)
    assert echoed(frames) == [(f.BINARY, b"a" * 50)]
    assert [fr.close_code for fr in frames if fr.opcode == f.CLOSE] == [1009]


@pytest.mark.parametrize("bad", [
    b"\xff",
    b"ok \xc3",  # ends within a code point
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xc0\xaf",  # overlong
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    ("x" * 200).encode() + b"\xe2\x82",
])
def test_invalid_utf8_text_between_valid_messages(tier, bad):
    chunk = f.text("good \u00e9") + f.text(bad) + f.text("never")
    _conn, frames = same_as_general(tier, [chunk])
    assert echoed(frames) == [(f.TEXT, "good \u00e9".encode())]
    close = [fr for fr in frames if fr.opcode == f.CLOSE]
    assert [fr.close_code for fr in close] == [1007]


def test_invalid_utf8_in_binary_is_just_bytes(tier):
    _conn, frames = same_as_general(tier, [f.binary(b"\xff\xfe") + f.text("ok")])
    assert echoed(frames) == [(f.BINARY, b"\xff\xfe"), (f.TEXT, b"ok")]


def test_control_frames_between_data_frames(tier):
    chunk = f.text("a") + f.ping(b"p1") + f.binary(b"b") + f.pong(b"") + f.text("c") + f.ping(b"")
    _conn, frames = same_as_general(tier, [chunk])
    assert [(fr.opcode, fr.payload) for fr in frames] == [
        (f.TEXT, b"a"), (f.PONG, b"p1"), (f.BINARY, b"b"), (f.TEXT, b"c"), (f.PONG, b"")]


def test_a_fragmented_message_between_whole_ones(tier):
    chunk = (f.text("a") + f.binary(b"f1", fin=False) + f.ping(b"x") + f.continuation(b"f2")
             + f.text("b"))
    _conn, frames = same_as_general(tier, [chunk])
    assert [(fr.opcode, fr.payload) for fr in frames] == [
        (f.TEXT, b"a"), (f.PONG, b"x"), (f.BINARY, b"f1f2"), (f.TEXT, b"b")]


def test_a_close_frame_after_data_frames_in_one_read(tier):
    conn, frames = same_as_general(tier, [f.text("a") + f.binary(b"b") + f.close(1000) + f.text("late")])
    assert [(fr.opcode, fr.payload[:2]) for fr in frames] == [
        (f.TEXT, b"a"), (f.BINARY, b"b"), (f.CLOSE, struct.pack("!H", 1000))]
    assert conn.lost


@pytest.mark.parametrize("bad", [
    f.frame(f.TEXT, b"x", rsv=4),  # compressed, none negotiated
    f.frame(f.TEXT, b"x", rsv=2),
    f.frame(3, b"x"),  # reserved opcode
    f.frame(f.TEXT, b"x", mask=None),  # unmasked from a client
    f.frame(f.BINARY, b"0123456789", mask=None),
    f.continuation(b"x"),  # continuation outside a message
    b"\x82\xfe\x00\x05" + f.SAMPLE_MASK + b"12345",  # 16-bit length for 5 bytes
    b"\x82\xff" + (5).to_bytes(8, "big") + f.SAMPLE_MASK + b"12345",  # 64-bit length for 5 bytes
    b"\x82\xff" + (1 << 63).to_bytes(8, "big") + f.SAMPLE_MASK,  # over 2^63 - 1
])
def test_protocol_violations_after_a_good_frame(tier, bad):
    _conn, frames = same_as_general(tier, [f.text("good") + bad + f.text("never")])
    assert echoed(frames) == [(f.TEXT, b"good")]
    assert [fr.close_code for fr in frames if fr.opcode == f.CLOSE] == [1002]


def test_paused_reading_holds_many_frames_of_one_read(tier):
    messages = [f"m{i}".encode() for i in range(50)]
    chunk = b"".join(f.text(m) for m in messages)
    for general in (False, True):
        conn, _ = run(tier, [chunk], PausesOnFirst, general=general)
        assert [e[1] for e in conn.proto.handler.events if e[0] == "message"] == messages[:1]
        assert conn.reading_paused
        conn.proto.resume_reading()
        tier.settle()
        assert [e[1] for e in conn.proto.handler.events if e[0] == "message"] == messages
        assert not conn.reading_paused


def test_pause_and_resume_inside_a_callback_goes_on_with_the_read(tier):
    messages = [f"m{i}".encode() for i in range(20)]
    chunk = b"".join(f.text(m) for m in messages)
    conn, _ = same_as_general(tier, [chunk], PausesAndResumesInside)
    assert [e[1] for e in conn.proto.handler.events if e[0] == "message"] == messages[:1]
    conn.proto.resume_reading()
    tier.settle()
    assert [e[1] for e in conn.proto.handler.events if e[0] == "message"] == messages


def test_a_handler_that_closes_stops_the_whole_frame_loop(tier):
    class ClosesOnSecond(EchoRecorder):
        def on_message(self, payload, is_binary):
            super().on_message(payload, is_binary)
            if len(self.events) == 3:  # open, first, second
                self.connection.close(4000, "enough")

    chunk = f.text("1") + f.text("2") + f.text("3") + f.ping(b"p")
    _conn, frames = same_as_general(tier, [chunk], ClosesOnSecond)
    # Messages after our close frame still reach the handler (Autobahn's rule), but no
    # echo is sent once the connection is closing.
    assert [(fr.opcode, fr.payload[:2]) for fr in frames][:3] == [
        (f.TEXT, b"1"), (f.TEXT, b"2"), (f.CLOSE, struct.pack("!H", 4000))]


def test_a_handler_that_raises_closes_with_1011_and_reads_no_further(tier):
    class RaisesOnFirst(EchoRecorder):
        def on_message(self, payload, is_binary):
            super().on_message(payload, is_binary)
            raise RuntimeError("handler bug")

    _conn, frames = same_as_general(tier, [f.text("1") + f.text("2")], RaisesOnFirst)
    assert [fr.close_code for fr in frames if fr.opcode == f.CLOSE] == [1011]


def test_sends_keep_autobahn_framing_and_counts(tier):
    class Sends(EchoRecorder):
        def on_message(self, payload, is_binary):
            size = int(payload)
            self.connection.send_message(b"b" * size, True)
            self.connection.send_text("\u00e9" * size)

    chunks = [f.text(str(n)) for n in (0, 1, 62, 63, 125, 126, 40000, 70000)]
    _conn, frames = same_as_general(tier, chunks, Sends)
    assert len(frames) == 16
    assert all(fr.fin and not fr.masked and fr.rsv == 0 for fr in frames)


def test_auto_fragment_size_still_fragments(tier):
    conn, frames = run(tier, [], EchoRecorder)
    conn.proto.autoFragmentSize = 10
    conn.proto.send_message(b"x" * 25, True)
    conn.proto.send_message(b"y" * 10, False)
    frames = conn.frames()
    assert [(fr.opcode, fr.fin, len(fr.payload)) for fr in frames] == [
        (f.BINARY, False, 10), (f.CONTINUATION, False, 10), (f.CONTINUATION, True, 5), (f.TEXT, True, 10)]


# -- the client side: unmasked frames in, masked frames out ----------------------------------


def run_client(tier, chunks, general=False):
    from memory.client_cases import URL, client_settings

    factory = tier.client_factory(URL, client_settings(), EchoRecorder)
    if general:
        factory.protocol = general_class(factory.protocol)
    conn = tier.connect(factory)
    request = conn.written()
    conn.head()
    conn.send(f.switching_protocols(request, protocol="wskit.echo"))
    assert tier.is_done(conn.proto.is_open)
    conn.send(*chunks)
    tier.settle()
    written = conn.new_output()
    frames, rest = f.parse_frames(written)
    assert rest == b""
    state = outcome(conn)
    del state["written"]  # masks are random: compare the frames unmasked
    state["frames"] = frames
    return conn, state


def client_same_as_general(tier, chunks):
    conn, fast = run_client(tier, chunks)
    _general_conn, general = run_client(tier, chunks, general=True)
    assert fast == general
    return conn, fast["frames"]


def test_client_takes_several_server_frames_in_one_read_and_split_ones(tier):
    big = f.frame(f.BINARY, bytes(range(256)) * 300, mask=None)
    chunks = [f.frame(f.TEXT, b"a", mask=None) + f.frame(f.BINARY, b"b", mask=None) + big[:100],
              big[100:] + f.frame(f.PING, b"p", mask=None) + f.frame(f.TEXT, "\u00e9".encode(), mask=None)]
    conn, frames = client_same_as_general(tier, chunks)
    assert [(fr.opcode, fr.payload) for fr in frames] == [
        (f.TEXT, b"a"), (f.BINARY, b"b"), (f.BINARY, bytes(range(256)) * 300), (f.PONG, b"p"),
        (f.TEXT, "\u00e9".encode())]
    assert all(fr.masked for fr in frames)


def test_client_fails_a_masked_frame_from_the_server(tier):
    _conn, frames = client_same_as_general(tier, [f.frame(f.TEXT, b"ok", mask=None) + f.text("masked")])
    assert [(fr.opcode, fr.payload[:2]) for fr in frames] == [
        (f.TEXT, b"ok"), (f.CLOSE, struct.pack("!H", 1002))]


def test_client_fails_invalid_utf8_from_the_server(tier):
    _conn, frames = client_same_as_general(tier, [f.frame(f.TEXT, b"\xed\xa0\x80", mask=None)])
    assert [fr.close_code for fr in frames if fr.opcode == f.CLOSE] == [1007]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_client_masks_what_it_sends(tier, size):
    conn, _ = run_client(tier, [])
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert conn.proto.send_message(payload, True)
    assert conn.proto.send_text("x" * size)
    frames = conn.frames()
    assert [(fr.opcode, fr.payload, fr.masked, fr.fin) for fr in frames] == [
        (f.BINARY, payload, True, True), (f.TEXT, b"x" * size, True, True)]
    traffic = conn.proto.trafficStats
    assert traffic.outgoingWebSocketMessages == traffic.outgoingWebSocketFrames == 2
    assert traffic.outgoingOctetsAppLevel == traffic.outgoingOctetsWebSocketLevel == 2 * size


# -- compressed messages (permessage-deflate) ------------------------------------------------------

DEFLATE = "permessage-deflate; client_max_window_bits"


class Deflater:
    """Compressed frames as a client sends them (15-bit window): with context takeover, or each
    message compressed alone."""

    def __init__(self, no_context_takeover: bool = False):
        self.body = f.deflate_message if no_context_takeover else f.deflater()

    def text(self, message: str | bytes) -> bytes:
        return f.frame(f.TEXT, self.body(message.encode() if isinstance(message, str) else message), rsv=4)

    def binary(self, data: bytes) -> bytes:
        return f.frame(f.BINARY, self.body(data), rsv=4)


def deflate_settings(**fields):
    return CompressionSettings(**{"server_max_window_bits": 12, "threshold": 16, **fields})


def inflated(frames, window_bits=12):
    """The messages in the server's frames, inflated as a peer does (context takeover)."""
    inflate = f.inflater(window_bits)
    out = []
    for fr in frames:
        if fr.opcode in (f.TEXT, f.BINARY):
            payload = inflate(fr.payload) if fr.rsv == 4 else fr.payload
            out.append((fr.opcode, payload))
    return out


def test_compressed_messages_in_one_read(tier):
    d = Deflater()
    texts = ["hello " * 20, "h\u00e9llo \u20ac \u65e5\u672c " * 10, "hello " * 20]
    chunk = (d.text(texts[0]) + d.binary(bytes(range(256)) * 4) + f.text("plain, uncompressed")
             + d.text(texts[1]) + f.ping(b"p") + d.text(texts[2]) + d.text(""))
    conn, frames = same_as_general(tier, [chunk], extensions=DEFLATE, compression=deflate_settings())
    assert inflated(frames) == [(f.TEXT, texts[0].encode()), (f.BINARY, bytes(range(256)) * 4),
                                (f.TEXT, b"plain, uncompressed"), (f.TEXT, texts[1].encode()),
                                (f.TEXT, texts[2].encode()), (f.TEXT, b"")]
    assert [fr.rsv for fr in frames if fr.opcode != f.PONG] == [4, 4, 4, 4, 4, 0]  # "" is under the threshold
    traffic = conn.proto.trafficStats
    assert traffic.incomingWebSocketMessages == traffic.incomingWebSocketFrames == 6
    assert traffic.incomingOctetsAppLevel == sum(len(t.encode()) for t in texts) + 1024 + 19
    assert traffic.incomingOctetsWebSocketLevel < traffic.incomingOctetsAppLevel


@pytest.mark.parametrize("cut", [1, 2, 5, 6, 7, 20, -1])
def test_a_compressed_frame_split_across_reads(tier, cut):
    d = Deflater()
    first, second, third = d.text("before " * 30), d.binary(bytes(300)), d.text("after " * 30)
    chunks = [first + second[:cut], second[cut:] + third]
    _conn, frames = same_as_general(tier, chunks, extensions=DEFLATE, compression=deflate_settings())
    assert inflated(frames) == [(f.TEXT, b"before " * 30), (f.BINARY, bytes(300)), (f.TEXT, b"after " * 30)]


@pytest.mark.parametrize("fields", [{}, {"server_no_context_takeover": True},
                                    {"client_no_context_takeover": True}, {"server_max_window_bits": 9}])
def test_compressed_messages_with_each_context_option(tier, fields):
    no_takeover = bool(fields.get("client_no_context_takeover"))
    d = Deflater(no_context_takeover=no_takeover)
    messages = [f"message {i} ".encode() * 12 for i in range(6)]
    offer = DEFLATE + ("; client_no_context_takeover" if no_takeover else "")
    _conn, frames = same_as_general(tier, [b"".join(d.text(m) for m in messages[:3]), d.text(messages[3]),
                                           d.text(messages[4]) + d.text(messages[5])],
                                    extensions=offer, compression=deflate_settings(**fields))
    bits = fields.get("server_max_window_bits", 12)
    if fields.get("server_no_context_takeover"):
        got = [(fr.opcode, f.inflate_message(fr.payload, bits)) for fr in frames]
    else:
        got = inflated(frames, bits)
    assert got == [(f.TEXT, m) for m in messages]


def test_a_large_compressed_message_and_limits_at_and_one_past(tier):
    big = bytes(200_000)
    d = Deflater()
    _conn, frames = same_as_general(tier, [d.text(big)], extensions=DEFLATE, compression=deflate_settings())
    assert inflated(frames) == [(f.TEXT, big)]
    for limit, code in ((len(big), None), (len(big) - 1, 1009)):
        limits = LimitSettings(max_message_size=limit)
        _conn, frames = same_as_general(tier, [Deflater().text(big) + f.text("next")], extensions=DEFLATE,
                                       compression=deflate_settings(), limits=limits)
        closes = [fr.close_code for fr in frames if fr.opcode == f.CLOSE]
        assert closes == ([] if code is None else [code])


@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b"\x00\x05\x00\xfa\xffabc", b"\x07\x00junk"])
def test_corrupt_compressed_data_fails_with_1007(tier, body):
    d = Deflater()
    chunk = d.text("fine " * 10) + f.frame(f.TEXT, body, rsv=4) + d.text("never")
    _conn, frames = same_as_general(tier, [chunk], extensions=DEFLATE, compression=deflate_settings())
    assert [fr.close_code for fr in frames if fr.opcode == f.CLOSE] == [1007]
    assert inflated([fr for fr in frames if fr.opcode == f.TEXT]) == [(f.TEXT, b"fine " * 10)]


@pytest.mark.parametrize("bad", [b"valid \xff then invalid" * 3, b"ends inside a character \xe2\x82" * 1,
                                 "\u00e9t\u00e9 ".encode() * 10 + b"\xed\xa0\x80"])
def test_invalid_utf8_inside_a_compressed_text_fails_with_1007(tier, bad):
    d = Deflater()
    chunk = d.text("good " * 10) + d.text(bad) + d.text("never")
    _conn, frames = same_as_general(tier, [chunk], extensions=DEFLATE, compression=deflate_settings())
    assert [fr.close_code for fr in frames if fr.opcode == f.CLOSE] == [1007]
    assert inflated([fr for fr in frames if fr.opcode == f.TEXT]) == [(f.TEXT, b"good " * 10)]  # "never" is not


def test_invalid_utf8_in_a_compressed_binary_is_just_bytes(tier):
    d = Deflater()
    _conn, frames = same_as_general(tier, [d.binary(b"\xff\xfe" * 40)], extensions=DEFLATE,
                                    compression=deflate_settings())
    assert inflated(frames) == [(f.BINARY, b"\xff\xfe" * 40)]


def test_rsv1_without_permessage_deflate_is_a_protocol_error(tier):
    _conn, frames = same_as_general(tier, [Deflater().text("x" * 50)])
    assert [fr.close_code for fr in frames if fr.opcode == f.CLOSE] == [1002]


def test_compressed_messages_with_hibernation_after_every_message(tier, monkeypatch):
    monkeypatch.setenv("WSKIT_COMPRESS_HIBERNATE_AFTER", "message")
    d = Deflater()
    messages = [f"wake up {i} ".encode() * 15 for i in range(4)]
    conn, frames = same_as_general(tier, [d.text(messages[0]) + d.text(messages[1]), d.text(messages[2]),
                                          d.text(messages[3])], extensions=DEFLATE, compression=deflate_settings())
    assert inflated(frames) == [(f.TEXT, m) for m in messages]
    assert conn.proto._perMessageCompress.wakeups > 0


def test_compressed_sends_keep_autobahn_framing_and_fragmenting(tier):
    text = random.Random(3).randbytes(600).hex().encode()  # compresses to about 700 bytes
    other = random.Random(4).randbytes(600).hex().encode()
    written = {}
    for general in (False, True):
        conn, _ = run(tier, [], EchoRecorder, general=general, extensions=DEFLATE, compression=deflate_settings())
        conn.proto.send_message(text, False)
        conn.proto.send_message(b"z" * 500, True)
        conn.proto.autoFragmentSize = 100  # by the compressed length, as Autobahn does
        conn.proto.send_message(other, False)
        written[general] = (conn.new_output(), conn.proto.trafficStats.__json__())
    assert written[False] == written[True]
    frames, _rest = f.parse_frames(written[False][0])
    assert [(fr.opcode, fr.rsv, fr.fin) for fr in frames[:2]] == [(f.TEXT, 4, True), (f.BINARY, 4, True)]
    assert len(frames) > 4 and frames[2].rsv == 4 and all(fr.rsv == 0 for fr in frames[3:])
    inflate = f.inflater(12)
    whole = [frames[0].payload, frames[1].payload, b"".join(fr.payload for fr in frames[2:])]
    assert [inflate(p) for p in whole] == [text, b"z" * 500, other]


@pytest.mark.parametrize("general", [False, True])
def test_whole_compressed_frames_skip_autobahns_per_frame_calls(tier, general):
    app = tier.app(memory_settings(compression=deflate_settings()), registry(("test.echo.v1", EchoRecorder)))
    factory = tier.server(app=app)
    if general:
        factory.protocol = general_class(factory.protocol)
    conn = tier.connect(factory)
    conn.open(protocols=(SUBPROTOCOL,), extensions=DEFLATE)
    calls = []
    parse_frame, compress = conn.proto.onFrameBegin, conn.proto.sendFrame
    conn.proto.onFrameBegin = lambda: (calls.append("parse"), parse_frame())  # this instance only
    conn.proto.sendFrame = lambda *a, **k: (calls.append("frame"), compress(*a, **k))
    d = Deflater()
    conn.send(d.text("a" * 100) + d.binary(b"b" * 100))
    assert calls == (["parse", "frame", "parse", "frame"] if general else [])
    assert inflated(conn.frames()) == [(f.TEXT, b"a" * 100), (f.BINARY, b"b" * 100)]


def test_a_text_ending_inside_a_character_then_the_peers_close_in_one_read(tier):
    # Autobahn fails the connection (1007) and reads on: the peer's close frame
    # that came with it completes the closing handshake at once.
    chunk = Deflater().text(b"ends inside a character \xe2\x82") + f.close(1000)
    conn, frames = same_as_general(tier, [chunk], extensions=DEFLATE, compression=deflate_settings())
    assert [fr.close_code for fr in frames if fr.opcode == f.CLOSE] == [1007]
    assert conn.lost


def test_an_extension_that_does_not_bound_its_output_is_held_to_the_limit(tier):
    # Autobahn checks the inflated size after each frame too (other extensions than
    # wskit's may ignore max_output_len); the whole-frame path does the same.
    outcomes = []
    for general in (False, True):
        conn, _ = run(tier, [], EchoRecorder, general=general, extensions=DEFLATE, compression=deflate_settings(),
                      limits=LimitSettings(max_message_size=1000))
        pmce = conn.proto._perMessageCompress
        pmce.decompress_message_data = lambda data, max_output_len=None, pmce=pmce: pmce._decompressor.decompress(data)
        conn.send(Deflater().text("x" * 1001))
        outcomes.append(outcome(conn))
        assert [fr.close_code for fr in f.parse_frames(outcomes[-1]["written"])[0]] == [1009]
    assert outcomes[0] == outcomes[1]


def test_a_compressed_send_over_the_message_limit_raises_as_autobahn_does(tier):
    noise = random.Random(5).randbytes(998)  # compresses to a few bytes more than it is
    results = []
    for general in (False, True):
        conn, _ = run(tier, [], EchoRecorder, general=general, extensions=DEFLATE, compression=deflate_settings(),
                      limits=LimitSettings(max_message_size=1000))
        with pytest.raises(PayloadExceededError, match="exceeding payload limit of 1000 octets"):
            conn.proto.sendMessage(noise, isBinary=True)
        results.append((conn.new_output(), conn.proto.trafficStats.__json__()))
    assert results[0] == results[1]
    assert results[0][0] == b""
