"""What hibernating an idle permessage-deflate connection costs when it wakes up, in-process.

A hibernated connection (wskit.compression.TunedPerMessageDeflate.hibernate)
has freed its zlib compressor and decompressor and kept the last window of
plaintext each way; its next message rebuilds the context it needs, primed
with that window as zdict. This measures, per payload kind and window/memLevel:

* steady: CPU to compress + decompress one message on a connection that keeps
  its contexts (what every message costs without hibernation), and the same
  without the window tracking hibernation needs ("untracked": Autobahn's own
  path), so the tracking's own cost shows;
* woken: the same when both ends hibernated just before the message (the
  hibernate() call included), i.e. the first message after an idle period;
* hibernate() alone, and a bare zlib context creation for scale;
* wire bytes of the woken stream relative to the steady one (the ratio must
  not change: the rebuilt contexts see the same history).

CPU is this thread's CPU time (time.thread_time), median of --repeat
interleaved rounds; the ratios are within a round.

    python benchmarks/compression_hibernation.py             # ~1 minute
    python benchmarks/compression_hibernation.py --repeat 15
"""

from __future__ import annotations

import argparse
import random
import time
import zlib

from _common import chat_message, json_document, machine_note, median, pubsub_tick, table, text_blob

from wskit.compression import TunedPerMessageDeflate

CONFIGS = ((12, 5), (15, 8), (10, 4))  # window bits, memLevel; the first is wskit's default
MODES = ("untracked", "steady", "woken")


def payload_sets() -> dict[str, list[bytes]]:
    rng = random.Random(42)
    return {
        "chat JSON 100-300 B": [chat_message(rng, i) for i in range(400)],
        "pubsub tick ~150 B": [pubsub_tick(rng, i) for i in range(400)],
        "JSON doc 2-8 KiB": [json_document(rng, i, rng.randint(2048, 8192)) for i in range(60)],
        "text 64 KiB": [text_blob(rng, i, 65536) for i in range(4)],
    }


def pair(window: int, mem_level: int, tracked: bool):
    def make(is_server: bool):
        ext = TunedPerMessageDeflate(is_server, False, False, window, window, mem_level)
        ext.level = 6
        if tracked:
            ext.track_windows()
        return ext
    return make(True), make(False)


def run_stream(window: int, mem_level: int, mode: str, messages: list[bytes]) -> tuple[float, int]:
    """Seconds of CPU for the whole stream (compress + decompress), and deflated bytes."""
    sender, receiver = pair(window, mem_level, mode != "untracked")
    woken = mode == "woken"
    wire = 0
    # Warm both contexts and windows first: the first message of a connection is not the subject.
    for payload in messages[:2]:
        sender.start_compress_message()
        data = sender.compress_message_data(payload) + sender.end_compress_message()
        receiver.start_decompress_message()
        receiver.decompress_message_data(data)
        receiver.end_decompress_message()
    t0 = time.thread_time()
    for payload in messages[2:]:
        if woken:
            sender.hibernate()
            receiver.hibernate()
        sender.start_compress_message()
        data = sender.compress_message_data(payload) + sender.end_compress_message()
        receiver.start_decompress_message()
        out = receiver.decompress_message_data(data)
        receiver.end_decompress_message()
        wire += len(data)
    elapsed = time.thread_time() - t0
    assert out == messages[-1]
    return elapsed, wire


def hibernate_only(window: int, mem_level: int, messages: list[bytes], n: int = 300) -> float:
    """CPU seconds per hibernate() of a pair of awake ends (contexts and full windows)."""
    ends = []
    for _ in range(n):
        sender, receiver = pair(window, mem_level, True)
        for payload in messages[:3]:
            sender.start_compress_message()
            data = sender.compress_message_data(payload) + sender.end_compress_message()
            receiver.start_decompress_message()
            receiver.decompress_message_data(data)
            receiver.end_decompress_message()
        ends += [sender, receiver]
    t0 = time.thread_time()
    for end in ends:
        end.hibernate()
    return (time.thread_time() - t0) / n


def bare_contexts(window: int, mem_level: int, n: int = 2000) -> float:
    """CPU seconds to create (and free) one compressor + one decompressor, no dictionary."""
    t0 = time.thread_time()
    for _ in range(n):
        c = zlib.compressobj(6, zlib.DEFLATED, -window, mem_level)
        d = zlib.decompressobj(-window)
        c.compress(b"x")
        del c, d
    return (time.thread_time() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description="wake-up cost of hibernated deflate contexts")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds (median reported)")
    args = parser.parse_args()
    started = time.monotonic()
    print(machine_note())
    sets = payload_sets()
    rows = []
    for window, mem_level in CONFIGS:
        for name, messages in sets.items():
            n = len(messages) - 2
            times: dict[str, list[float]] = {m: [] for m in MODES}
            ratios_track, ratios_woken, extra = [], [], []
            wires: dict[str, int] = {}
            for _ in range(args.repeat):
                got = {m: run_stream(window, mem_level, m, messages) for m in MODES}
                for m in MODES:
                    times[m].append(got[m][0] / n)
                    wires[m] = got[m][1]
                ratios_track.append(got["steady"][0] / got["untracked"][0])
                ratios_woken.append(got["woken"][0] / got["steady"][0])
                extra.append((got["woken"][0] - got["steady"][0]) / n)
            rows.append([f"{window}/{mem_level}", name, f"{1e6 * median(times['steady']):.1f}",
                         f"{median(ratios_track):.2f}", f"{1e6 * median(times['woken']):.1f}",
                         f"{1e6 * median(extra):.1f}", f"{median(ratios_woken):.2f}",
                         f"{wires['woken'] / wires['steady']:.3f}"])
        hib = median([hibernate_only(window, mem_level, sets["chat JSON 100-300 B"]) for _ in range(3)])
        bare = median([bare_contexts(window, mem_level) for _ in range(3)])
        rows.append([f"{window}/{mem_level}", "hibernate() of both ends / bare zlib contexts",
                     f"{1e6 * hib:.1f}", "", f"{1e6 * bare:.1f}", "", "", ""])
    print("\nCPU per message, compress + decompress (us); woken = both ends hibernated just before the "
          "message (hibernate() included). tracking = steady with window tracking / without it "
          "(Autobahn's path). extra = woken - steady. wire = deflated bytes woken / steady.\n")
    print(table(["window/memLevel", "payload", "steady us", "tracking", "woken us", "extra us",
                 "woken / steady", "wire woken / steady"], rows))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
