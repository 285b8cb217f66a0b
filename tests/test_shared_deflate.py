"""Shared broadcast compression (wskit.shared_deflate): every subscriber decodes every message exactly.

The connections here are in memory: each has a real permessage-deflate
extension (wskit's TunedPerMessageDeflate) and records the frames written to
it; each subscriber's stream is then read with its own zlib decompressor, as
its peer would, and compared with the messages it was sent.
"""

from __future__ import annotations

import random
import zlib

import pytest
from fuzz_support import fuzz_settings
from hypothesis import given, strategies as st

from wskit.broadcast import Broadcast
from wskit.compression import HIBERNATE_EVERY_MESSAGE, TunedPerMessageDeflate
from wskit.deflate import zlib_inflate_window
from wskit.hub import InProcessHub
from wskit.serializers import SERIALIZERS
from wskit.shared_deflate import FRESH, PER_CONNECTION, SHARED, ShareState, compressed_frame, groups, share_params

JSON = SERIALIZERS["json"]


class MemoryConnection:
    """The parts of a wskit server connection a broadcast uses, writing frames to a list."""

    compress_threshold = 16

    def __init__(self, mode: str, bits: int, mem_level: int, no_takeover: bool, level: int = 6,
                 hibernate: bool = False):
        pmce = TunedPerMessageDeflate(True, no_takeover, False, max(bits, 9), 15, mem_level)
        pmce.server_max_window_bits = bits
        pmce.level = level
        pmce.track_windows()
        if hibernate:  # free the zlib contexts after every message, rebuilt from the window
            pmce.hibernate_after = HIBERNATE_EVERY_MESSAGE
        if mode != PER_CONNECTION:
            pmce.share = ShareState(share_params(mode, bits, mem_level, level, no_takeover))
        self._perMessageCompress = pmce
        self.bits, self.no_takeover = bits, no_takeover
        self.open = True
        self.frames: list[bytes] = []
        self.expected: list[bytes] = []

    @property
    def is_connected(self) -> bool:
        return self.open

    def send_frame(self, frame: bytes, payload_length: int) -> bool:
        if not self.open:
            return False
        self.frames.append(frame)
        return True

    def _compress(self, payload: bytes, binary: bool) -> None:
        pmce = self._perMessageCompress
        pmce.start_compress_message()
        data = pmce.compress_message_data(payload) + pmce.end_compress_message()
        self.frames.append(compressed_frame(data, binary))

    def send_prepared(self, prepared) -> bool:
        if not self.open:
            return False
        if prepared.doNotCompress:
            self.frames.append(prepared.payloadHybi)
        else:
            self._compress(prepared.payload, prepared.binary)
        return True

    def send_message(self, payload: bytes, binary: bool) -> bool:
        if not self.open:
            return False
        if len(payload) < self.compress_threshold:
            self.send_frame(compressed_frame(payload, binary)[:0] + _plain_frame(payload, binary), len(payload))
        else:
            self._compress(payload, binary)
        self.expected.append(payload)
        return True

    def decoded(self) -> list[bytes]:
        """Every message in the frames, read as the peer reads them."""
        window = zlib_inflate_window(self.bits)
        inflater = zlib.decompressobj(-window)
        out = []
        for frame in self.frames:
            b0, n = frame[0], frame[1] & 0x7F
            offset = 2 if n < 126 else 4 if n == 126 else 10
            body = frame[offset:]
            assert frame[1] & 0x80 == 0  # server frames are not masked
            if b0 & 0x40:
                if self.no_takeover:
                    inflater = zlib.decompressobj(-window)
                out.append(inflater.decompress(body + b"\x00\x00\xff\xff"))
            else:
                out.append(body)
        return out


def _plain_frame(payload: bytes, binary: bool) -> bytes:
    from autobahn.websocket.protocol import PreparedMessage

    return PreparedMessage(payload, binary, False, True).payloadHybi


class Subscriber:
    def __init__(self, connection: MemoryConnection, hub_id: str, shape=None, serializer=JSON):
        self.connection = connection
        self.hub_id = hub_id
        self.shape, self.serializer = shape, serializer

    held: list | None = None  # while set, deliveries wait here (as chat holds them during a join)

    def deliver(self, topic, event) -> None:
        if event.exclude is not None and event.exclude == self.hub_id:
            return
        if self.held is not None:
            self.held.append(event)
            return
        if event.send(self.connection, self.shape, self.serializer):
            self.connection.expected.append(event.payload(self.shape, self.serializer))

    def release(self) -> None:
        held, self.held = self.held or [], None
        for event in held:
            self.deliver(None, event)


def tick(rng: random.Random, size: int) -> dict:
    # Ticker-like: the same keys every time, some digits change.
    return {"symbol": rng.choice(["EURUSD", "GBPUSD", "USDJPY"]), "bid": round(rng.random() * 100, 5),
            "pad": "x" * rng.randint(0, size), "seq": rng.randint(0, 10**9)}


actions = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(0, 2), st.integers(0, 400), st.integers(-1, 7)),
        st.tuples(st.just("private"), st.integers(0, 7), st.integers(0, 300), st.just(0)),
        st.tuples(st.just("subscribe"), st.integers(0, 7), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("unsubscribe"), st.integers(0, 7), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("close"), st.integers(0, 7), st.just(0), st.just(0)),
        st.tuples(st.just("burst"), st.integers(0, 2), st.integers(5, 40), st.just(0)),
        st.tuples(st.just("hold"), st.integers(0, 7), st.just(0), st.just(0)),
        st.tuples(st.just("release"), st.integers(0, 7), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@fuzz_settings(150)
@given(
    mode=st.sampled_from([SHARED, FRESH, PER_CONNECTION]),
    params=st.lists(st.tuples(st.sampled_from([8, 9, 10, 12, 15]), st.sampled_from([1, 5, 8]), st.booleans(),
                              st.booleans()),
                    min_size=8, max_size=8),
    script=actions,
    seed=st.integers(0, 2**32),
)
def test_every_subscriber_decodes_every_message(mode, params, script, seed):
    rng = random.Random(seed)
    hub = InProcessHub()
    conns = [MemoryConnection(mode, bits, mem, no_takeover, hibernate=hibernate)
             for bits, mem, no_takeover, hibernate in params]
    # Recipients of one broadcast in two shapes and two serializers (as chat's v1/v2 x json/msgpack).
    kinds = [(None, JSON), (2, JSON), (None, SERIALIZERS["msgpack"]), (2, SERIALIZERS["msgpack"])]
    subs = [Subscriber(conn, f"p.{i}", *kinds[(i * 7 + seed) % 4]) for i, conn in enumerate(conns)]
    topics = ["t.a", "t.b", "t.c"]
    for i, sub in enumerate(subs):
        hub.subscribe(topics[i % 2], sub)
    for what, a, b, c in script:
        if what == "publish":
            exclude = subs[c].hub_id if c >= 0 else None
            hub.publish(topics[a], {None: tick(rng, b), 2: {"v2": tick(rng, b)}}, exclude=exclude)
        elif what == "burst":
            for _ in range(b):
                hub.publish(topics[a], {None: tick(rng, 300), 2: {"v2": tick(rng, 300)}})
        elif what == "private":
            conns[a].send_message(JSON.encode({"private": "y" * b, "n": rng.random()}), False)
        elif what == "subscribe":
            hub.subscribe(topics[b], subs[a])
        elif what == "unsubscribe":
            hub.unsubscribe(topics[b], subs[a])
        elif what == "close":
            conns[a].open = False
        elif what == "hold":
            subs[a].held = subs[a].held or []
        elif what == "release":
            subs[a].release()
    for sub in subs:
        sub.release()
    for conn in conns:
        assert conn.decoded() == conn.expected


@pytest.mark.parametrize("bits", [9, 12, 15])
def test_ticker_subscribers_join_and_share_one_frame(bits):
    rng = random.Random(1)
    hub = InProcessHub()
    shared = [MemoryConnection(SHARED, bits, 5, False) for _ in range(20)]
    private = [MemoryConnection(PER_CONNECTION, bits, 5, False) for _ in range(3)]
    for i, conn in enumerate(shared + private):
        hub.subscribe("ticks", Subscriber(conn, f"p.{i}"))
    events = (1 << bits) // 60 + 20  # a window of ticks of 70-170 bytes, and more
    for _ in range(events):
        hub.publish("ticks", {None: tick(rng, 100)})
    for conn in shared + private:
        assert conn.decoded() == conn.expected
    states = [conn._perMessageCompress.share for conn in shared]
    assert all(state.member for state in states)
    assert all(conn._perMessageCompress._compressor is None for conn in shared)  # their memory went
    # After joining, members receive the very frame a per-connection compressor of theirs would have made.
    assert shared[0].frames[-10:] == shared[1].frames[-10:]
    shared_bytes = sum(map(len, shared[0].frames))
    private_bytes = sum(map(len, private[0].frames))
    assert shared_bytes <= private_bytes * 1.15
    group = states[0].group
    assert group in groups() and group.compressed == events


def test_a_member_that_misses_a_message_and_one_that_sends_privately_split_off_exactly():
    rng = random.Random(2)
    hub = InProcessHub()
    conns = [MemoryConnection(SHARED, 9, 5, False) for _ in range(4)]
    subs = [Subscriber(conn, f"p.{i}") for i, conn in enumerate(conns)]
    for sub in subs:
        hub.subscribe("ticks", sub)
    for _ in range(30):
        hub.publish("ticks", {None: tick(rng, 100)})
    assert all(conn._perMessageCompress.share.member for conn in conns)
    hub.publish("ticks", {None: tick(rng, 100)}, exclude=subs[0].hub_id)  # 0 misses one
    conns[1].send_message(JSON.encode({"private": "z" * 100}), False)  # 1 splits off with a copy
    hub.unsubscribe("ticks", subs[2])  # 2 misses the next ones
    hub.publish("ticks", {None: tick(rng, 100)})
    conns[0].send_message(JSON.encode({"private": "after"} | tick(rng, 50)), False)
    conns[2].send_message(JSON.encode({"private": "after"} | tick(rng, 50)), False)
    for _ in range(30):
        hub.publish("ticks", {None: tick(rng, 100)})
    for conn in conns:
        assert conn.decoded() == conn.expected
    assert conns[3]._perMessageCompress.share.member
    assert conns[0]._perMessageCompress.share.member and conns[1]._perMessageCompress.share.member  # rejoined


def test_a_delivery_held_back_is_never_counted_as_the_groups_latest():
    rng = random.Random(4)
    hub = InProcessHub()
    conns = [MemoryConnection(SHARED, 9, 5, False) for _ in range(3)]
    subs = [Subscriber(conn, f"p.{i}") for i, conn in enumerate(conns)]
    for sub in subs:
        hub.subscribe("ticks", sub)
    for _ in range(3):
        hub.publish("ticks", {None: tick(rng, 100)})
    subs[0].held = []  # 0 stops taking deliveries while the others go on and join
    for _ in range(30):
        hub.publish("ticks", {None: tick(rng, 100)})
    subs[0].release()  # thirty old messages, then more current ones
    for _ in range(30):
        hub.publish("ticks", {None: tick(rng, 100)})
        if rng.random() < 0.3:
            subs[1].held = []
            hub.publish("ticks", {None: tick(rng, 100)})
            subs[1].release()
    for conn in conns:
        assert conn.decoded() == conn.expected


def test_fresh_mode_compresses_each_broadcast_once_for_everyone():
    rng = random.Random(3)
    hub = InProcessHub()
    conns = [MemoryConnection(FRESH, 12, 5, False) for _ in range(5)]
    for i, conn in enumerate(conns):
        hub.subscribe("ticks", Subscriber(conn, f"p.{i}"))
    for _ in range(10):
        hub.publish("ticks", {None: tick(rng, 100)})
        conns[0].send_message(JSON.encode(tick(rng, 100)), False)
    for conn in conns:
        assert conn.decoded() == conn.expected
    assert conns[1].frames == conns[2].frames


def test_a_broadcast_without_a_topic_is_compressed_per_connection():
    conn = MemoryConnection(SHARED, 12, 5, False)
    b = Broadcast({None: {"x": "y" * 100}})
    assert b.send(conn, None, JSON)
    conn.expected.append(b.payload(None, JSON))
    assert conn.decoded() == conn.expected and conn._perMessageCompress.share.group is None
