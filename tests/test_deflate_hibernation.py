"""Hibernating permessage-deflate contexts: the stream stays exact across hibernation.

A :class:`TunedPerMessageDeflate` that hibernates frees its zlib objects and
keeps the last window of plaintext each way; the next message rebuilds them
primed with that window. Here one end is wskit's extension object (hibernated
at random points, as the idle timer would), the other a plain zlib stream that
never hibernates: a strict inflater of exactly the announced window (so a
back-reference beyond what the peer holds fails) and a continuous compressor
of the window the peer announced. Messages below the threshold bypass the
extension, as Autobahn sends them (RSV1 clear), and must not enter the window.
"""

from __future__ import annotations

import zlib

import pytest
from fuzz_support import fuzz_settings
from hypothesis import given, strategies as st

from wskit.compression import (
    DeflateWindow,
    NegotiatedDeflateOfferAccept,
    NegotiatedDeflateResponseAccept,
    TunedPerMessageDeflate,
    hibernate_delay,
    tune_extension,
)
from wskit.deflate import (
    DeflateParams,
    DeflatePolicy,
    check_response,
    client_offer,
    negotiate_offer,
    zlib_compress_window,
    zlib_inflate_window,
)
from wskit.settings import CompressionSettings, SettingsError

TAIL = b"\x00\x00\xff\xff"
WORDS = [w.encode() for w in (
    "the quick brown fox jumps over lazy dog price tick chat room event message window deflate "
    "context takeover hibernate wake zlib stream bytes topic user join leave hello world 0123456789"
).split()]


def strict_inflate(inflater, data: bytes) -> bytes:
    """Small output steps, so zlib checks every distance against the window held."""
    out, rest = [], data + TAIL
    while rest:
        out.append(inflater.decompress(rest, 64))
        rest = inflater.unconsumed_tail
    return b"".join(out)


class PlainPeer:
    """The other end as a zlib stream that never hibernates."""

    def __init__(self, send_bits: int, send_resets: bool, recv_bits: int, recv_resets: bool):
        self.send_bits, self.send_resets = send_bits, send_resets
        self.recv_bits, self.recv_resets = recv_bits, recv_resets
        self.compressor = self.inflater = None

    def compress(self, payload: bytes) -> bytes:
        if self.compressor is None or self.send_resets:
            wbits, strategy = zlib_compress_window(self.send_bits)
            self.compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits, 8, strategy)
        data = self.compressor.compress(payload) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        return data[:-4]

    def inflate(self, data: bytes) -> bytes:
        if self.inflater is None or self.recv_resets:
            # The window we announced to the other end, exactly (9 for 8: zlib's smallest).
            self.inflater = zlib.decompressobj(-zlib_inflate_window(self.recv_bits))
        return strict_inflate(self.inflater, data)


def negotiated(is_server: bool, server_bits: int, client_bits: int, server_nct: bool, client_nct: bool,
               level: int = 6, mem_level: int = 5):
    """wskit's extension object for one end, as a real negotiation builds it."""
    settings = CompressionSettings(server_max_window_bits=max(server_bits, 9),
                                   client_max_window_bits=max(client_bits, 9),
                                   server_no_context_takeover=server_nct,
                                   client_no_context_takeover=client_nct, level=level, mem_level=mem_level,
                                   hibernate_after=0)
    offer = DeflateParams(server_no_context_takeover=server_nct, client_no_context_takeover=client_nct,
                          server_max_window_bits=server_bits, client_max_window_bits=client_bits)
    agreement = negotiate_offer(offer, DeflatePolicy.from_settings(settings))
    if is_server:
        accept = NegotiatedDeflateOfferAccept(agreement, mem_level)
        pmce = TunedPerMessageDeflate.create_from_offer_accept(True, accept)
    else:
        client_settings = CompressionSettings(server_max_window_bits=15, client_max_window_bits=15,
                                              client_no_context_takeover=client_nct, level=level,
                                              mem_level=mem_level, hibernate_after=0)
        policy = DeflatePolicy.from_settings(client_settings)
        our_offer = client_offer(policy)
        raw = {}
        for name in ("server_no_context_takeover", "client_no_context_takeover"):
            if getattr(agreement.response, name):
                raw[name] = [True]
        for name in ("server_max_window_bits", "client_max_window_bits"):
            if getattr(agreement.response, name) is not None:
                raw[name] = [str(getattr(agreement.response, name))]
        agreement = check_response(our_offer, raw, policy)
        accept = NegotiatedDeflateResponseAccept(agreement, mem_level)
        pmce = TunedPerMessageDeflate.create_from_response_accept(False, accept)
        settings = client_settings
    tune_extension(pmce, settings, agreement)
    return pmce, agreement


def send(pmce, payload: bytes) -> bytes:
    pmce.start_compress_message()
    data = pmce.compress_message_data(payload)
    return data + pmce.end_compress_message()


def receive(pmce, data: bytes) -> bytes:
    pmce.start_decompress_message()
    out = pmce.decompress_message_data(data)
    pmce.end_decompress_message()
    return out


def payloads(draw_size):
    return st.builds(
        lambda seed, size, kind: make_payload(seed, size, kind),
        st.integers(0, 2**32 - 1), draw_size, st.sampled_from(["words", "random", "repeat"]),
    )


def make_payload(seed: int, size: int, kind: str) -> bytes:
    import random

    rnd = random.Random(seed)
    if kind == "random":
        return rnd.randbytes(size)
    if kind == "repeat":
        return (bytes([rnd.randrange(256)]) * size)
    out = bytearray()
    while len(out) < size:
        out += rnd.choice(WORDS) + b" "
    return bytes(out[:size])


SIZES = st.one_of(st.integers(0, 80), st.integers(80, 600), st.integers(600, 9000), st.integers(30000, 70000))
STEP = st.tuples(
    st.sampled_from(["out", "in"]),
    payloads(SIZES),
    st.booleans(),  # compressed (RSV1) or sent as is, bypassing the extension
    st.booleans(),  # hibernate before this step
)


@fuzz_settings(120)
@given(
    is_server=st.booleans(),
    server_bits=st.integers(8, 15),
    client_bits=st.integers(8, 15),
    server_nct=st.booleans(),
    client_nct=st.booleans(),
    steps=st.lists(STEP, min_size=1, max_size=40),
)
def test_a_conversation_with_random_hibernation_decodes_exactly(is_server, server_bits, client_bits,
                                                                 server_nct, client_nct, steps):
    pmce, agreement = negotiated(is_server, server_bits, client_bits, server_nct, client_nct)
    ours_bits = agreement.server_max_window_bits if is_server else agreement.client_max_window_bits
    theirs_bits = agreement.client_max_window_bits if is_server else agreement.server_max_window_bits
    ours_reset = agreement.server_no_context_takeover if is_server else agreement.client_no_context_takeover
    theirs_reset = agreement.client_no_context_takeover if is_server else agreement.server_no_context_takeover
    peer = PlainPeer(send_bits=theirs_bits, send_resets=theirs_reset, recv_bits=ours_bits, recv_resets=ours_reset)
    for direction, payload, compressed, hibernate in steps:
        if hibernate:
            assert pmce.hibernate()
            assert pmce.hibernating
        if not compressed:
            continue  # RSV1 clear: neither end's deflate stream sees it
        if direction == "out":
            assert peer.inflate(send(pmce, payload)) == payload
        else:
            assert receive(pmce, peer.compress(payload)) == payload


@pytest.mark.parametrize("bits", range(8, 16))
@pytest.mark.parametrize("mem_level", [1, 5, 8])
def test_hibernation_leaves_the_compression_ratio_unchanged(bits, mem_level):
    """Hibernating after every message sends within 1% of the bytes of an
    uninterrupted stream (the rebuilt compressor sees the same history)."""
    steady, _ = negotiated(True, bits, bits, False, False, mem_level=mem_level)
    hibernating, _ = negotiated(True, bits, bits, False, False, mem_level=mem_level)
    peer = PlainPeer(bits, False, bits, False)
    total_steady = total_hibernating = 0
    for i in range(200):
        payload = make_payload(i, 100 + (i * 37) % 400, "words")
        total_steady += len(send(steady, payload))
        hibernating.hibernate()
        data = send(hibernating, payload)
        assert peer.inflate(data) == payload
        total_hibernating += len(data)
    assert hibernating.wakeups == 199
    assert total_hibernating <= total_steady * 1.01


def test_hibernate_frees_the_contexts_and_keeps_only_the_windows():
    pmce, _ = negotiated(True, 12, 12, False, False)
    peer = PlainPeer(12, False, 12, False)
    for i in range(20):
        payload = make_payload(i, 700, "words")
        assert peer.inflate(send(pmce, payload)) == payload
        assert receive(pmce, peer.compress(payload)) == payload
    assert not pmce.hibernating
    assert pmce.hibernate()
    assert pmce.hibernating and pmce._compressor is None and pmce._decompressor is None
    # One joined bytes object of exactly the window per direction.
    assert len(pmce._sent.parts) == 1 and len(pmce._sent.parts[0]) == 4096
    assert len(pmce._received.parts) == 1 and len(pmce._received.parts[0]) == 4096
    assert pmce.hibernations == 1


def test_hibernate_refuses_in_the_middle_of_a_message():
    pmce, _ = negotiated(True, 12, 12, False, False)
    peer = PlainPeer(12, False, 12, False)
    pmce.start_compress_message()
    first = pmce.compress_message_data(b"fragment one " * 20)
    assert not pmce.hibernate()
    data = first + pmce.compress_message_data(b"fragment two " * 20) + pmce.end_compress_message()
    assert peer.inflate(data) == b"fragment one " * 20 + b"fragment two " * 20
    assert pmce.hibernate()


def test_without_context_takeover_nothing_is_tracked():
    pmce, _ = negotiated(True, 12, 12, True, True)
    assert pmce._sent is None and pmce._received is None
    peer = PlainPeer(12, True, 12, True)
    assert peer.inflate(send(pmce, b"x" * 500)) == b"x" * 500
    assert pmce.hibernating  # freed after each message already


def test_release_drops_everything():
    pmce, _ = negotiated(True, 12, 12, False, False)
    send(pmce, b"hello " * 50)
    pmce.release()
    assert pmce.hibernating and pmce._sent is None


# -- the window ------------------------------------------------------------------------


@fuzz_settings(200)
@given(size=st.sampled_from([256, 512, 4096]),
       chunks=st.lists(st.binary(min_size=0, max_size=1500), max_size=30))
def test_the_window_is_the_tail_of_everything_appended(size, chunks):
    window = DeflateWindow(size)
    everything = b""
    for chunk in chunks:
        window.append(chunk)
        everything += chunk
        assert window.value() == everything[-size:]
        assert len(window) == len(everything[-size:])
        # Trimmed: the oldest part is needed (dropping it would leave less than a window).
        if window.parts:
            assert window.length - len(window.parts[0]) < size
    assert window.compact() == everything[-size:]
    assert len(window.parts) <= 1


def test_the_window_keeps_references_not_copies():
    window = DeflateWindow(4096)
    payload = b"shared broadcast payload " * 10
    window.append(payload)
    window.append(payload)
    assert all(part is payload for part in window.parts)


def test_the_window_copies_only_the_tail_of_a_long_payload():
    window = DeflateWindow(512)
    payload = bytes(range(256)) * 40
    window.append(payload)
    assert window.value() == payload[-512:] and len(window.parts[0]) == 512


def test_a_mutable_payload_is_copied():
    window = DeflateWindow(512)
    data = bytearray(b"abc")
    window.append(data)
    data[0] = ord("x")
    assert window.value() == b"abc"


# -- shared compression hooks ---------------------------------------------------------


def test_a_connection_can_take_over_a_copied_compressor_with_its_window():
    """What a shared group does when a member leaves it: hand the member a copy
    of the group's compressor and the window it has seen."""
    group = zlib.compressobj(6, zlib.DEFLATED, -12, 5)
    member, _ = negotiated(True, 12, 12, False, False)
    peer = PlainPeer(12, False, 12, False)
    # Before joining, the member sent on its own.
    assert peer.inflate(send(member, b"own message " * 30)) == b"own message " * 30
    window = member.sent_window()
    assert window.endswith(b"own message ")
    # Joining: the group's compressor is primed with the member's window; the member drops its own.
    group = zlib.compressobj(6, zlib.DEFLATED, -12, 5, 0, window)
    member.drop_compressor()
    assert member._compressor is None and member.sent_window() == b""
    group_window = DeflateWindow(4096)
    group_window.append(window)
    for i in range(5):
        payload = make_payload(i, 300, "words")
        data = group.compress(payload) + group.flush(zlib.Z_SYNC_FLUSH)
        group_window.append(payload)
        assert peer.inflate(data[:-4]) == payload
    # Leaving: a copy of the group's compressor and window.
    member.replace_compressor(group.copy(), group_window.value())
    assert member.sent_window() == group_window.value()
    payload = make_payload(99, 300, "words")
    assert peer.inflate(send(member, payload)) == payload
    member.hibernate()
    payload = make_payload(100, 300, "words")
    assert peer.inflate(send(member, payload)) == payload


def test_after_drop_compressor_the_next_own_message_is_still_valid():
    member, _ = negotiated(False, 12, 12, False, False)
    peer = PlainPeer(12, False, 12, False)
    assert peer.inflate(send(member, b"before " * 40)) == b"before " * 40
    member.drop_compressor()
    assert peer.inflate(send(member, b"after " * 40)) == b"after " * 40


# -- the setting ------------------------------------------------------------------------


def test_hibernate_after_is_validated():
    with pytest.raises(SettingsError, match="hibernate_after"):
        CompressionSettings(hibernate_after=-1).validate()
    CompressionSettings(hibernate_after=0).validate()


def test_the_environment_overrides_the_delay(monkeypatch):
    from wskit.compression import HIBERNATE_ENV, HIBERNATE_EVERY_MESSAGE

    settings = CompressionSettings(hibernate_after=7)
    monkeypatch.delenv(HIBERNATE_ENV, raising=False)
    assert hibernate_delay(settings) == 7
    monkeypatch.setenv(HIBERNATE_ENV, "0.5")
    assert hibernate_delay(settings) == 0.5
    monkeypatch.setenv(HIBERNATE_ENV, "message")
    assert hibernate_delay(settings) == HIBERNATE_EVERY_MESSAGE
    monkeypatch.setenv(HIBERNATE_ENV, "soon")
    with pytest.raises(SettingsError, match=HIBERNATE_ENV):
        hibernate_delay(settings)


def test_every_message_mode_hibernates_after_each_message(monkeypatch):
    from wskit.compression import HIBERNATE_ENV

    monkeypatch.setenv(HIBERNATE_ENV, "message")
    pmce, _ = negotiated(True, 12, 12, False, False)
    tune_extension(pmce, CompressionSettings())
    peer = PlainPeer(12, False, 12, False)
    for i in range(10):
        payload = make_payload(i, 200, "words")
        assert peer.inflate(send(pmce, payload)) == payload
        assert pmce.hibernating
        assert receive(pmce, peer.compress(payload)) == payload
        assert pmce.hibernating
    assert pmce.wakeups == 18


def test_many_tiny_payloads_are_joined_not_kept_one_by_one():
    window = DeflateWindow(32768)
    everything = b""
    for i in range(5000):
        chunk = bytes([i % 251]) * (1 + i % 3)
        window.append(chunk)
        everything += chunk
        assert len(window.parts) <= DeflateWindow.MAX_PARTS
    assert window.value() == everything[-32768:]


# -- giving freed memory back ---------------------------------------------------------


class FakeTimer:
    def __init__(self):
        self.calls = []

    def call_later(self, delay, func, *args):
        self.calls.append((delay, func, args))

    def run(self):
        calls, self.calls = self.calls, []
        for _delay, func, args in calls:
            func(*args)


def test_malloc_trim_runs_once_per_megabyte_freed_on_the_timer():
    from wskit.compression import MallocTrim

    trims = []
    trimmer = MallocTrim(min_bytes=1000)
    trimmer._trim = trims.append
    timer = FakeTimer()
    trimmer.note_freed(600, timer)
    assert timer.calls == []  # not enough freed yet
    trimmer.note_freed(600, timer)
    trimmer.note_freed(600, timer)
    assert len(timer.calls) == 1  # one trim per timer bucket, however many hibernations
    timer.run()
    assert trims == [0] and trimmer.freed == 0
    trimmer.note_freed(1500, timer)
    timer.run()
    assert trims == [0, 0]


def test_a_lost_timer_does_not_hold_trims_back():
    import gc

    from wskit.compression import MallocTrim

    trims = []
    trimmer = MallocTrim(min_bytes=1000)
    trimmer._trim = trims.append
    lost = FakeTimer()
    trimmer.note_freed(2000, lost)
    del lost  # its loop is gone: the trim it was given never runs
    gc.collect()
    other = FakeTimer()
    trimmer.note_freed(2000, other)
    other.run()
    assert trims == [0]


def test_malloc_trim_is_a_no_op_without_the_c_function():
    from wskit.compression import MallocTrim

    trimmer = MallocTrim(min_bytes=1)
    trimmer._trim = None
    timer = FakeTimer()
    trimmer.note_freed(10**9, timer)
    assert timer.calls == [] and not trimmer.available
    trimmer.trim()


def test_hibernation_on_the_timer_reports_what_it_freed(monkeypatch):
    from wskit import compression

    noted = []
    monkeypatch.setattr(compression.MALLOC_TRIM, "note_freed", lambda n, timer: noted.append((n, timer)))
    pmce, _ = negotiated(True, 12, 12, False, False)
    timer = FakeTimer()
    pmce.hibernate_after, pmce._timer = 5.0, timer
    peer = PlainPeer(12, False, 12, False)
    assert peer.inflate(send(pmce, b"words " * 50)) == b"words " * 50
    assert receive(pmce, peer.compress(b"other words " * 50)) == b"other words " * 50
    assert len(timer.calls) == 1 and timer.calls[0][0] == 5.0  # the idle check, armed once
    timer.run()  # traffic since it was armed: re-armed
    assert not pmce.hibernating and len(timer.calls) == 1
    timer.run()  # idle for a whole delay: hibernates, not re-armed
    assert pmce.hibernating and timer.calls == []
    assert noted == [(4096 * 4 + 2 ** 14 + 6 * 1024 + 4096 + 7 * 1024, timer)]
