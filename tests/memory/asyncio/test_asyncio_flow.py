"""asyncio only: the transport's own buffer figure drives the slow-consumer policy."""

from __future__ import annotations

from memory import frames as f
from memory.flow_cases import *  # noqa: F401,F403  (the per-turn batching, on both backends)
from memory.flow_cases import server_text as _server_text
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


