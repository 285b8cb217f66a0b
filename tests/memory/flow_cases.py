"""Broadcast frames held for the end of a loop turn (wskit.protocol.WriteBatch), on every backend.

Imported by each backend's flow tests; the ``tier`` fixture supplies the backend.
"""

from __future__ import annotations

from memory import frames as f
from memory.driver import memory_settings
from memory.server_cases import open_echo


def server_text(message: str) -> bytes:
    return f.frame(f.TEXT, message.encode(), mask=None)


def texts(conn) -> list[str]:
    return [fr.text for fr in conn.frames() if fr.opcode == f.TEXT]


def count_writes(conn) -> list[bytes]:
    """Record every write the connection makes on its transport from now on."""
    writes, write = [], conn.transport.write

    def counting(data: bytes) -> None:
        writes.append(data)
        write(data)

    conn.transport.write = counting
    return writes


def test_broadcast_frames_of_one_loop_turn_go_out_in_one_write(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    writes = count_writes(conn)
    wire = conn.proto.trafficStats.outgoingOctetsWireLevel
    for i in range(5):
        assert conn.proto.send_frame(server_text(f"event {i}"), 7)
    assert writes == []  # held until the loop turn ends
    assert conn.proto.buffered_amount == 5 * len(server_text("event 0"))
    tier.settle()
    assert len(writes) == 1
    assert texts(conn) == [f"event {i}" for i in range(5)]
    assert conn.proto.trafficStats.outgoingOctetsWireLevel == wire + 5 * len(server_text("event 0"))
    assert conn.proto.buffered_amount == 0


def test_a_direct_message_after_held_frames_keeps_its_place(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    conn.proto.send_frame(server_text("first"), 5)
    conn.proto.send_text("second")  # the whole-frame send path
    conn.proto.send_frame(server_text("third"), 5)
    conn.proto.sendMessage(b"fourth", isBinary=False, fragmentSize=3)  # Autobahn's path
    tier.settle()
    frames = conn.frames()
    assert [fr.payload for fr in frames if fr.opcode != f.CONTINUATION] == [b"first", b"second", b"third", b"fou"]
    assert b"".join(fr.payload for fr in frames[3:]) == b"fourth"


def test_held_frames_are_written_before_the_close_frame(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    conn.proto.send_frame(server_text("last words"), 10)
    conn.proto.close(1001, "going away")
    frames = conn.frames()
    assert [(fr.opcode, fr.payload) for fr in frames] == [(f.TEXT, b"last words"), (f.CLOSE, b"\x03\xe9going away")]


def test_held_frames_are_written_when_the_connection_is_dropped_gracefully(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    conn.proto.send_frame(server_text("before the drop"), 15)
    conn.proto.dropConnection(abort=False)
    assert texts(conn) == ["before the drop"]
    tier.settle()
    assert conn.lost


def test_an_abort_discards_held_frames(tier):
    _factory, conn = open_echo(tier)
    conn.frames()
    written = conn.written()
    conn.proto.send_frame(server_text("never"), 5)
    conn.proto.abort()
    tier.settle()
    assert conn.aborted and conn.lost
    assert conn.written() == written
    assert conn.proto._corked is None and conn.proto._transport_write is None  # nothing refers back to it


def test_a_transport_failing_to_write_held_frames_drops_only_its_connection(tier):
    factory = tier.server(memory_settings())
    broken, fine = tier.connect(factory), tier.connect(factory)
    for conn in (broken, fine):
        conn.open()
        conn.frames()

    def refuse(data):
        raise RuntimeError("transport refuses")

    broken.transport.write = refuse
    assert broken.proto.send_frame(server_text("lost"), 4)
    assert fine.proto.send_frame(server_text("delivered"), 9)
    tier.settle()
    assert texts(fine) == ["delivered"]
    assert broken.aborted and broken.lost
    assert tier.log_lines("writing its held frames failed")
    assert fine.proto.send_frame(server_text("and later"), 9)  # the batch still runs
    tier.settle()
    assert texts(fine) == ["and later"]
