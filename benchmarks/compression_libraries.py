"""Faster deflate libraries as drop-ins for wskit's permessage-deflate, in-process.

Compares CPython's zlib with zlib-ng (PyPI ``zlib-ng``, module
``zlib_ng.zlib_ng``) and ISA-L (PyPI ``isal``, module ``isal.isal_zlib``) on
wskit's payloads, used the way a permessage-deflate connection uses them: raw
deflate (negative wbits), wskit's window (12 bits) and memLevel (5), one
context kept across messages (context takeover), each message ended with
Z_SYNC_FLUSH. Reported:

* what each supports of what wskit needs: raw deflate at wbits 9-15 with the
  window honoured (a strict zlib inflater of exactly that window reads the
  output), memLevel, zdict on both sides (hibernation), ``copy()`` (shared
  compression), Z_SYNC_FLUSH, levels, bounded inflate (``max_length`` with
  ``unconsumed_tail``, which Autobahn's size limit relies on);
* compression: wire bytes as % of the payload and CPU per message relative to
  zlib level 6 (wskit's default), per payload kind;
* decompression of the same zlib-compressed stream: CPU relative to zlib;
* heap per context (RSS growth over 500 live contexts that compressed or
  inflated one message), since memory per idle connection is what hibernation
  is about.

CPU is this thread's CPU time, median of --repeat interleaved rounds.

    pip install zlib-ng isal        # neither is a wskit dependency
    python benchmarks/compression_libraries.py
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import random
import time
import zlib

from _common import chat_message, json_document, machine_note, median, pubsub_tick, rss_kib, table, text_blob

WBITS, MEM_LEVEL = 12, 5
TAIL = b"\x00\x00\xff\xff"


def libraries() -> dict[str, object]:
    found: dict[str, object] = {"zlib": zlib}
    for label, module in (("zlib-ng", "zlib_ng.zlib_ng"), ("isal", "isal.isal_zlib")):
        try:
            found[label] = importlib.import_module(module)
        except ImportError:
            pass
    return found


def version(label: str, lib) -> str:
    if label == "zlib":
        return f"zlib {zlib.ZLIB_RUNTIME_VERSION}"
    if label == "zlib-ng":
        return f"zlib-ng {getattr(lib, 'ZLIBNG_VERSION', '?')} (python-zlib-ng {_dist('zlib-ng')})"
    return f"ISA-L (python-isal {_dist('isal')})"


def _dist(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version(name)
    except PackageNotFoundError:
        return "?"


def strict_inflate(wbits: int, data: bytes) -> bytes:
    inflater = zlib.decompressobj(-wbits)
    out, rest = [], data
    while rest:
        out.append(inflater.decompress(rest, 16))
        rest = inflater.unconsumed_tail
    return b"".join(out)


def levels_of(label: str) -> tuple[int, ...]:
    return (0, 1, 2, 3) if label == "isal" else tuple(range(0, 10))


def features(label: str, lib) -> dict[str, str]:
    level = 1 if label == "isal" else 6
    out: dict[str, str] = {}
    ok_bits = []
    block = os.urandom(200)
    for wbits in range(8, 16):
        try:
            good = True
            for gap in (100, 600, 2500, 10000, 40000):
                payload = block + os.urandom(gap) + block + b"words words words " * 20
                c = lib.compressobj(level, lib.DEFLATED, -wbits, MEM_LEVEL)
                data = c.compress(payload) + c.flush(lib.Z_SYNC_FLUSH)
                good &= data.endswith(TAIL) and strict_inflate(wbits, data) == payload
            if good:
                ok_bits.append(wbits)
        except Exception:
            pass
    out["raw deflate wbits (window honoured)"] = f"{min(ok_bits)}-{max(ok_bits)}" if ok_bits else "none"
    try:
        sizes = set()
        for mem in (1, 5, 9):
            c = lib.compressobj(level, lib.DEFLATED, -12, mem)
            sizes.add(len(c.compress(os.urandom(3000) * 3) + c.flush(lib.Z_SYNC_FLUSH)))
        out["memLevel"] = "accepted" + ("" if len(sizes) > 1 else " (no effect on output)")
    except Exception as exc:
        out["memLevel"] = f"no ({exc})"
    out["levels"] = "0-3" if label == "isal" else "0-9"
    history = b"the window of an idle connection " * 10
    try:
        c = lib.compressobj(level, lib.DEFLATED, -12, MEM_LEVEL, 0, history)
        data = c.compress(history[:100]) + c.flush(lib.Z_SYNC_FLUSH)
        compress_zdict = zlib.decompressobj(-12, history).decompress(data) == history[:100] and len(data) < 30
        out["zdict, compressor"] = "yes" if compress_zdict else "accepted, not used"
    except Exception as exc:
        out["zdict, compressor"] = f"no ({type(exc).__name__})"
    try:
        c = zlib.compressobj(6, zlib.DEFLATED, -12, MEM_LEVEL, 0, history)
        data = c.compress(history[:100]) + c.flush(zlib.Z_SYNC_FLUSH)
        out["zdict, decompressor"] = "yes" if lib.decompressobj(-12, history).decompress(data) == history[:100] else "wrong"
    except Exception as exc:
        out["zdict, decompressor"] = f"no ({type(exc).__name__})"
    try:
        c = lib.compressobj(level, lib.DEFLATED, -12, MEM_LEVEL)
        c.compress(b"abc")
        c.copy()
        out["copy()"] = "yes"
    except Exception as exc:
        out["copy()"] = f"no ({type(exc).__name__})"
    big = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = big.compress(b"a" * 100000) + big.flush(zlib.Z_SYNC_FLUSH)
    d = lib.decompressobj(-15)
    first = d.decompress(data, 100)
    out["bounded inflate"] = ("yes" if len(first) == 100 and d.unconsumed_tail else
                              f"output bounded, unconsumed_tail {len(d.unconsumed_tail)} B")
    return out


def payload_sets() -> dict[str, list[bytes]]:
    rng = random.Random(42)
    return {
        "chat JSON 100-300 B": [chat_message(rng, i) for i in range(600)],
        "pubsub tick ~150 B": [pubsub_tick(rng, i) for i in range(600)],
        "JSON doc 2-8 KiB": [json_document(rng, i, rng.randint(2048, 8192)) for i in range(60)],
        "text 64 KiB": [text_blob(rng, i, 65536) for i in range(6)],
    }


def compress_stream(lib, level: int, messages: list[bytes]) -> tuple[float, int, list[bytes]]:
    c = lib.compressobj(level, lib.DEFLATED, -WBITS, MEM_LEVEL)
    flush = lib.Z_SYNC_FLUSH
    out = []
    t0 = time.thread_time()
    for m in messages:
        out.append((c.compress(m) + c.flush(flush))[:-4])
    return time.thread_time() - t0, sum(len(x) for x in out), out


def decompress_stream(lib, stream: list[bytes]) -> float:
    d = lib.decompressobj(-WBITS)
    t0 = time.thread_time()
    for data in stream:
        d.decompress(data + TAIL)
    return time.thread_time() - t0


def context_heap(lib, level: int, n: int = 500) -> tuple[float, float]:
    """KiB of RSS per live compressor and per live decompressor (one message through each)."""
    payload = b"".join(chat_message(random.Random(1), i) for i in range(20))
    stream = zlib.compressobj(6, zlib.DEFLATED, -WBITS, MEM_LEVEL)
    data = stream.compress(payload) + stream.flush(zlib.Z_SYNC_FLUSH)
    gc.collect()
    base = rss_kib(os.getpid())
    comps = []
    for _ in range(n):
        c = lib.compressobj(level, lib.DEFLATED, -WBITS, MEM_LEVEL)
        c.compress(payload)
        c.flush(lib.Z_SYNC_FLUSH)
        comps.append(c)
    mid = rss_kib(os.getpid())
    decs = []
    for _ in range(n):
        d = lib.decompressobj(-WBITS)
        d.decompress(data)
        decs.append(d)
    end = rss_kib(os.getpid())
    del comps, decs
    return (mid - base) / n, (end - mid) / n


def main() -> None:
    parser = argparse.ArgumentParser(description="zlib vs zlib-ng vs ISA-L for permessage-deflate")
    parser.add_argument("--repeat", type=int, default=9, help="interleaved rounds (median reported)")
    args = parser.parse_args()
    started = time.monotonic()
    libs = libraries()
    print(machine_note())
    print("Libraries: " + ", ".join(version(k, v) for k, v in libs.items()))

    feats = {label: features(label, lib) for label, lib in libs.items()}
    names = list(next(iter(feats.values())))
    print(f"\n### What wskit needs (window {WBITS}, memLevel {MEM_LEVEL})\n")
    print(table(["", *libs], [[n, *(feats[label][n] for label in libs)] for n in names]))

    compressors = [("zlib", 6), ("zlib", 1)]
    if "zlib-ng" in libs:
        compressors += [("zlib-ng", 6), ("zlib-ng", 1)]
    if "isal" in libs:
        compressors += [("isal", 3), ("isal", 1)]
    rows_c, rows_d = [], []
    for name, messages in payload_sets().items():
        raw = sum(len(m) for m in messages)
        cpu: dict[tuple, list[float]] = {c: [] for c in compressors}
        dcpu: dict[str, list[float]] = {label: [] for label in libs}
        wire: dict[tuple, int] = {}
        for _ in range(args.repeat):
            reference = None
            for label, level in compressors:
                t, size, stream = compress_stream(libs[label], level, messages)
                cpu[(label, level)].append(t)
                wire[(label, level)] = size
                if (label, level) == ("zlib", 6):
                    reference = stream
            for label, lib in libs.items():
                dcpu[label].append(decompress_stream(lib, reference))
        ref = median(cpu[("zlib", 6)])
        rows_c.append([name, *(f"{100 * wire[c] / raw:.1f}% / {median(cpu[c]) / ref:.2f}" for c in compressors)])
        dref = median(dcpu["zlib"])
        rows_d.append([name, f"{1e6 * dref / len(messages):.1f}",
                       *(f"{median(dcpu[label]) / dref:.2f}" for label in libs)])
    print(f"\n### Compression, context takeover, window {WBITS}, memLevel {MEM_LEVEL}\n")
    print("Cells: compressed bytes as % of the payload / CPU per message relative to zlib level 6.\n")
    print(table(["payload", *(f"{label} level {level}" for label, level in compressors)], rows_c))
    print("\n### Decompression of the same zlib level-6 stream\n")
    print(table(["payload", "zlib us/msg", *(f"{label} (relative)" for label in libs)], rows_d))

    rows_m = []
    for label, level in compressors:
        comp, dec = context_heap(libs[label], level)
        rows_m.append([f"{label} level {level}", f"{comp:.1f}", f"{dec:.1f}"])
    print(f"\n### Heap per live context (KiB of RSS), window {WBITS}, memLevel {MEM_LEVEL}\n")
    print(table(["library", "compressor", "decompressor"], rows_m))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
