"""asyncio only: the transport's own buffer figure drives the slow-consumer policy."""

from __future__ import annotations

from memory import frames as f
from memory.driver import memory_settings
from memory.server_cases import open_echo
from wskit.settings import LimitSettings


def test_buffered_amount_is_the_transports_figure(tier):
    _factory, conn = open_echo(tier)
    conn.transport.queued = 1234  # bytes the socket has not taken yet, while still writable
    assert conn.proto.writable and conn.proto.buffered_amount == 1234


def test_reply_to_a_peer_whose_transport_is_already_over_the_cap_drops_it(tier):
    # asyncio pauses a protocol once its buffer passes the high-water mark
    # (64 KiB by default): those bytes count against max_buffered_bytes at once.
    _factory, conn = open_echo(tier, limits=LimitSettings(max_buffered_bytes=32 * 1024))
    conn.transport.queued = 64 * 1024
    conn.pause_transport()
    before = conn.written()
    conn.send(f.text("hello"))
    assert conn.aborted and conn.lost
    assert conn.written() == before
    assert tier.log_lines("more than 32768 bytes unsent")


# -- broadcast frames written once per loop turn -----------------------------------------------


def _server_text(message: str) -> bytes:
    return f.frame(f.TEXT, message.encode(), mask=None)


def _texts(conn) -> list[str]:
    return [fr.text for fr in conn.frames() if fr.opcode == f.TEXT]


def test_broadcast_frames_of_one_loop_turn_go_out_in_one_write(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    writes = conn.transport.writes
    wire = conn.proto.trafficStats.outgoingOctetsWireLevel
    for i in range(5):
        assert conn.proto.send_frame(_server_text(f"event {i}"), 7)
    assert conn.transport.writes == writes  # held until the loop turn ends
    assert conn.proto.buffered_amount == 5 * len(_server_text("event 0"))
    tier.settle()
    assert conn.transport.writes == writes + 1
    assert _texts(conn) == [f"event {i}" for i in range(5)]
    assert conn.proto.trafficStats.outgoingOctetsWireLevel == wire + 5 * len(_server_text("event 0"))
    assert conn.proto.buffered_amount == 0


def test_a_direct_message_after_held_frames_keeps_its_place(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    conn.proto.send_frame(_server_text("first"), 5)
    conn.proto.send_text("second")  # the whole-frame send path
    conn.proto.send_frame(_server_text("third"), 5)
    conn.proto.sendMessage(b"fourth", isBinary=False, fragmentSize=3)  # Autobahn's path
    tier.settle()
    frames = conn.frames()
    assert [fr.payload for fr in frames if fr.opcode != f.CONTINUATION] == [b"first", b"second", b"third", b"fou"]
    assert b"".join(fr.payload for fr in frames[3:]) == b"fourth"


def test_held_frames_are_written_before_the_close_frame(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    conn.proto.send_frame(_server_text("last words"), 10)
    conn.proto.close(1001, "going away")
    frames = conn.frames()
    assert [(fr.opcode, fr.payload) for fr in frames] == [(f.TEXT, b"last words"), (f.CLOSE, b"\x03\xe9going away")]


def test_held_frames_are_written_when_the_connection_is_dropped_gracefully(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    conn.proto.send_frame(_server_text("before the drop"), 15)
    conn.proto.dropConnection(abort=False)
    assert _texts(conn) == ["before the drop"]
    tier.settle()
    assert conn.lost


def test_an_abort_discards_held_frames(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    written = conn.written()
    conn.proto.send_frame(_server_text("never"), 5)
    conn.proto.abort()
    tier.settle()
    assert conn.aborted and conn.lost
    assert conn.written() == written
    assert conn.proto._corked is None and conn.proto._transport_write is None  # nothing refers back to it


def test_frames_held_for_a_connection_lost_meanwhile_are_dropped(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    written = conn.written()
    conn.proto.send_frame(_server_text("too late"), 8)
    conn.transport.closing = True
    conn.transport._lose(ConnectionResetError("peer went away"))
    tier.settle()
    assert conn.written() == written


def test_held_bytes_count_against_the_slow_consumer_cap(tier):
    _factory, conn = open_echo(tier, limits=LimitSettings(max_buffered_bytes=32 * 1024))
    conn.frames()
    frame = _server_text("x" * 1000)
    for _ in range(3):
        assert conn.proto.send_frame(frame, 1000)  # held for the end of the turn
    # Before the turn ends the transport asks to pause with 30 KiB of its own:
    # with the ~3 KiB held the connection is past its cap.
    conn.transport.queued = 30 * 1024
    conn.pause_transport()
    assert conn.proto.buffered_amount == 30 * 1024 + 3 * len(frame)
    assert not conn.proto.send_frame(frame, 1000)
    assert conn.aborted
    assert tier.log_lines("more than 32768 bytes unsent")


def test_a_transport_failing_to_write_held_frames_drops_only_its_connection(tier):
    factory = tier.server(memory_settings())
    broken, fine = tier.connect(factory), tier.connect(factory)
    for conn in (broken, fine):
        conn.open()
        conn.frames()

    def refuse(data):
        raise RuntimeError("transport refuses")

    broken.transport.write = refuse
    assert broken.proto.send_frame(_server_text("lost"), 4)
    assert fine.proto.send_frame(_server_text("delivered"), 9)
    tier.settle()
    assert _texts(fine) == ["delivered"]
    assert broken.aborted and broken.lost
    assert tier.log_lines("writing its held frames failed")
    assert fine.proto.send_frame(_server_text("and later"), 9)  # the batch still runs
    tier.settle()
    assert _texts(fine) == ["and later"]
