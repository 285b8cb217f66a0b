"""CPU per message and compression ratio of permessage-deflate, in-process.

Drives Autobahn's PerMessageDeflate (through wskit's TunedPerMessageDeflate,
which adds the zlib level and the window tracking hibernation needs; level 6 is
Autobahn's own default) with no
sockets and no event loop: a server-side object compresses a stream of
distinct realistic messages, a client-side object decompresses them.

Part 1, for chat JSON (100-300 B), pubsub ticks (~150 B), 2-8 KiB JSON
documents and 64 KiB prose, one dimension at a time around wskit's defaults
(level 6, window 12, memLevel 5, context takeover on): window 15/12/10/9 x
memLevel 8/5/4/1 at level 6; zlib level 1/3/6/9 at 12/5 and at 15/8; context
takeover on/off at 15/8, 12/5 and 10/5 (--full: the whole level x window x
memLevel x takeover grid, one table per payload). CPU is reported as a ratio to
the defaults measured in the same run, median of --repeat interleaved rounds. Times are this thread's CPU time
(time.thread_time), which other work on a busy machine disturbs less than
wall-clock time does.

Part 2 (threshold): for message sizes 8..512 B, the bytes a message costs on
the wire (frame header included) uncompressed and compressed, with a fresh
context (no takeover, or the first message) and a warm one (takeover, after a
stream of similar messages), and the CPU to compress + decompress it.

    python benchmarks/compression_cpu.py              # under a minute
    python benchmarks/compression_cpu.py --repeat 25  # steadier medians
    python benchmarks/compression_cpu.py --full       # every combination (several minutes)
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

from _common import (
    chat_message,
    json_document,
    machine_note,
    median,
    pubsub_tick,
    sized_messages,
    table,
    text_blob,
)

from wskit.compression import TunedPerMessageDeflate

LEVELS = (1, 3, 6, 9)
WINDOWS = (15, 12, 10, 9)
MEM_LEVELS = (8, 5, 4, 1)
DEFAULT = (6, 12, 5, True)  # level, window, memLevel, context takeover


def payload_sets() -> dict[str, list[bytes]]:
    rng = random.Random(42)
    return {
        "chat JSON 100-300 B": [chat_message(rng, i) for i in range(600)],
        "pubsub tick ~150 B": [pubsub_tick(rng, i) for i in range(600)],
        "JSON doc 2-8 KiB": [json_document(rng, i, rng.randint(2048, 8192)) for i in range(60)],
        "text 64 KiB": [text_blob(rng, i, 65536) for i in range(6)],
    }


def pair(level: int, window: int, mem_level: int, takeover: bool):
    """A connected (server compressor, client decompressor) pair."""
    def make(is_server: bool):
        ext = TunedPerMessageDeflate(is_server, not takeover, not takeover, window, window, mem_level)
        ext.level = level
        ext.track_windows()  # as on a connection: the plaintext windows hibernation resumes from
        return ext
    return make(True), make(False)


def compress(ext, payload: bytes) -> bytes:
    ext.start_compress_message()
    data = ext.compress_message_data(payload)
    return data + ext.end_compress_message()


def decompress(ext, data: bytes) -> bytes:
    ext.start_decompress_message()
    out = ext.decompress_message_data(data)
    ext.end_decompress_message()
    return out


def frame_size(payload_len: int, masked: bool = False) -> int:
    """Bytes on the wire for one frame carrying ``payload_len`` bytes (RFC 6455 5.2)."""
    header = 2 if payload_len < 126 else 4 if payload_len < 65536 else 10
    return header + (4 if masked else 0) + payload_len


def run_stream(config, messages: list[bytes]) -> tuple[float, float, int, int]:
    """Compress then decompress every message; (s compressing, s decompressing, raw wire, deflated wire)."""
    sender, receiver = pair(*config)
    t0 = time.thread_time()
    compressed = [compress(sender, m) for m in messages]
    t1 = time.thread_time()
    for c in compressed:
        decompress(receiver, c)
    t2 = time.thread_time()
    raw = sum(frame_size(len(m)) for m in messages)
    deflated = sum(frame_size(len(c)) for c in compressed)
    return t1 - t0, t2 - t1, raw, deflated


def measure(configs: list[tuple], repeat: int) -> dict[str, dict[tuple, tuple[float, float, float]]]:
    """payload name -> config -> (wire %, CPU ratio to DEFAULT, CPU us/msg), medians of interleaved rounds."""
    results = {}
    for name, messages in payload_sets().items():
        timings: dict[tuple, list[float]] = {c: [] for c in configs}
        sizes: dict[tuple, float] = {}
        for _ in range(repeat):
            for config in configs:  # interleaved: noise hits every configuration alike
                tc, td, raw, deflated = run_stream(config, messages)
                timings[config].append(tc + td)
                sizes[config] = 100 * deflated / raw
        ref = median(timings[DEFAULT])
        results[name] = {c: (sizes[c], median(timings[c]) / ref, 1e6 * median(timings[c]) / len(messages))
                         for c in configs}
    return results


def cell(result: tuple[float, float, float]) -> str:
    return f"{result[0]:.0f}% / {result[1]:.2f}"


def print_table(title: str, results, rows: list[tuple[str, tuple]]) -> None:
    names = list(results)
    print(f"\n### {title}\n")
    print(table(["", *names], [[label, *(cell(results[n][config]) for n in names)] for label, config in rows]))


def around_defaults(repeat: int) -> None:
    level, window, mem, takeover = DEFAULT
    grid_rows = [(f"window {w}, memLevel {m}", (level, w, m, True)) for w in WINDOWS for m in MEM_LEVELS]
    level_rows = [(f"level {lv}, {w}/{m}", (lv, w, m, True)) for w, m in ((12, 5), (15, 8)) for lv in LEVELS]
    takeover_rows = [(f"{w}/{m}, takeover {'on' if t else 'off'}", (level, w, m, t))
                     for w, m in ((15, 8), (12, 5), (10, 5)) for t in (True, False)]
    configs = list(dict.fromkeys(c for _, c in grid_rows + level_rows + takeover_rows))
    results = measure(configs, repeat)
    print("\nCells: wire bytes compressed, as % of uncompressed (frame headers included) / CPU to compress "
          "and decompress, relative to wskit's defaults (level 6, window 12, memLevel 5, takeover on), "
          "which take " + ", ".join(f"{results[n][DEFAULT][2]:.1f} us ({n})" for n in results) + " per message.")
    print_table("Window and memLevel (level 6, context takeover)", results, grid_rows)
    print_table("zlib level", results, level_rows)
    print_table("Context takeover (level 6)", results, takeover_rows)


def full_grid(repeat: int) -> None:
    configs = list(itertools.product(LEVELS, WINDOWS, MEM_LEVELS, (True, False)))
    results = measure(configs, repeat)
    for name, by_config in results.items():
        rows = []
        for window, mem, takeover in itertools.product(WINDOWS, MEM_LEVELS, (True, False)):
            rows.append([f"{window}/{mem}", "on" if takeover else "off",
                         *(cell(by_config[(level, window, mem, takeover)]) for level in LEVELS)])
        print(f"\n### {name}: wire % / CPU relative to the default "
              f"({by_config[DEFAULT][2]:.1f} us per message)\n")
        print(table(["window/memLevel", "takeover"] + [f"level {lv}" for lv in LEVELS], rows))


def threshold(repeat: int) -> None:
    sizes = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
    rng = random.Random(5)
    level, window, mem, _ = DEFAULT
    rows = []
    for size in sizes:
        messages = sized_messages(rng, size, 400)
        warm_c, fresh_c, cpu = [], [], []
        for _ in range(repeat):
            tc, td, raw, warm = run_stream((level, window, mem, True), messages)
            cpu.append((tc + td) / len(messages))
            _, _, _, fresh = run_stream((level, window, mem, False), messages)
            warm_c.append(warm)
            fresh_c.append(fresh)
        n = len(messages)
        raw_per = raw / n
        warm_per, fresh_per = median(warm_c) / n, median(fresh_c) / n
        rows.append([size, f"{raw_per:.0f}", f"{fresh_per:.1f}", f"{raw_per - fresh_per:+.1f}",
                     f"{warm_per:.1f}", f"{raw_per - warm_per:+.1f}", f"{1e6 * median(cpu):.1f}"])
    print(f"\n### Threshold: wire bytes per server-to-client message (frame header included), "
          f"level {level}, window {window}, memLevel {mem}\n")
    print("fresh = no context takeover (every message alone); warm = context takeover, stream of "
          "400 similar distinct messages. Saved = uncompressed - compressed (negative: deflate adds bytes). "
          "CPU = compress + decompress per message, warm.\n")
    print(table(["size B", "plain", "fresh", "saved fresh", "warm", "saved warm", "CPU us/msg"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description="permessage-deflate CPU and ratio, in-process")
    parser.add_argument("--repeat", type=int, default=9, help="interleaved rounds (median reported)")
    parser.add_argument("--part", choices=["grid", "threshold", "all"], default="all")
    parser.add_argument("--full", action="store_true", help="every level x window x memLevel x takeover")
    args = parser.parse_args()
    started = time.monotonic()
    print(machine_note())
    if args.part in ("grid", "all"):
        (full_grid if args.full else around_defaults)(args.repeat)
    if args.part in ("threshold", "all"):
        threshold(args.repeat)
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
