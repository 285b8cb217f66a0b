"""asyncio only: the transport's own buffer figure drives the slow-consumer policy."""

from __future__ import annotations

from memory import frames as f
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
