"""Diagnostics inside a stress-suite server, asked for through the environment.

The stress runner's server wrapper calls :func:`install` before ``wskit serve``
starts. With none of these variables set it does nothing.

``WSKIT_STRESS_PROBE=SECONDS``
    every SECONDS, one ``stress-probe:`` line on stderr: VmRSS, glibc's heap
    (``mallinfo2``: bytes in use, free in the heap, mmapped), pymalloc's
    allocated blocks, the gc-tracked objects, the server's live connections,
    the zlib contexts they hold, and the timers pending on the event loop.
``WSKIT_STRESS_PROBE_LIGHT=1``
    the probe without its census of objects (which allocates lists large
    enough to move glibc's mmap threshold): RSS by kind of mapping, glibc's
    heap and pymalloc's blocks only.
``WSKIT_STRESS_GC=SECONDS``
    every SECONDS, a full ``gc.collect()`` (no census: the probe's own large
    lists move glibc's mmap threshold, so measure RSS without the probe).
``WSKIT_STRESS_CYCLES=1``
    with the probe: collect with ``gc.DEBUG_SAVEALL`` and report what keeps
    closed connections in reference cycles (what refers to them in the garbage).
``WSKIT_STRESS_REFERRERS=1``
    with the probe: what refers to one closed connection still alive.
``WSKIT_STRESS_RECV_SIZE=BYTES``
    asyncio's socket transports read at most BYTES at a time (256 KiB by default).
``WSKIT_STRESS_KEEP_ZLIB=1``
    a closed connection keeps its zlib contexts until it is collected (to
    measure what freeing them at the close changes).
``WSKIT_STRESS_TRIM=SECONDS``
    every SECONDS, glibc's ``malloc_trim(0)`` (give free heap pages back to the
    system), to tell memory the allocator keeps from memory still in use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
import threading
import time


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _mallinfo(libc) -> str:
    fn = getattr(libc, "mallinfo2", None) if libc is not None else None
    if fn is None:
        return "mallinfo2 n/a"
    fn.restype = _MallInfo2
    m = fn()
    return (f"heap={m.arena >> 10}K used={m.uordblks >> 10}K free={m.fordblks >> 10}K "
            f"mmap={m.hblkhd >> 10}K")


def _pending_timers() -> str:
    parts = []
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None and hasattr(reactor, "getDelayedCalls"):
        try:
            parts.append(f"delayed_calls={len(reactor.getDelayedCalls())}")
        except Exception:  # read from another thread: a diagnostic, not exact
            pass
    import asyncio

    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop):
            parts.append(f"loop_scheduled={len(getattr(obj, '_scheduled', ()))} "
                         f"loop_ready={len(getattr(obj, '_ready', ()))}")
    return " ".join(parts)


def _connections() -> str:
    from collections import Counter

    kinds: Counter[str] = Counter()
    compressors = decompressors = pmce = closed = 0
    closed_example = None
    for obj in gc.get_objects():
        cls = type(obj)
        mod = cls.__dict__.get("__module__") if isinstance(cls.__dict__.get("__module__"), str) else ""
        if not (mod.startswith("wskit") or mod.startswith("autobahn")):
            continue
        name = cls.__name__
        if name.endswith("Protocol") or "PerMessageDeflate" in name or name in ("Connection", "Room"):
            kinds[name] += 1
        if name.endswith("Protocol") and getattr(obj, "state", None) == 0:  # Autobahn's STATE_CLOSED
            closed += 1
            closed_example = obj
        if "PerMessageDeflate" in name and hasattr(obj, "_compressor"):
            pmce += 1
            compressors += getattr(obj, "_compressor", None) is not None
            decompressors += getattr(obj, "_decompressor", None) is not None
    top = " ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
    text = f"{top} closed_protocols={closed} zlib_compressors={compressors} zlib_decompressors={decompressors}"
    if closed_example is not None and os.environ.get("WSKIT_STRESS_REFERRERS"):
        text += " referrers=" + _referrers(closed_example)
    del closed_example
    return text


def _referrers(obj: object) -> str:
    """What refers to ``obj`` (types; for a dict, which keys hold it and what owns the dict)."""
    out = []
    for ref in gc.get_referrers(obj):
        if isinstance(ref, dict):
            keys = [k for k, v in ref.items() if v is obj][:3]
            owners = [type(o).__name__ for o in gc.get_referrers(ref) if hasattr(o, "__dict__") and
                      getattr(o, "__dict__", None) is ref][:2]
            out.append(f"dict{keys}of{owners}")
        elif isinstance(ref, list) and len(ref) > 1000:
            continue  # gc.get_objects() itself
        else:
            out.append(type(ref).__name__)
    return ",".join(out[:12])


def _edge(src: object, dst: object) -> str:
    d = getattr(src, "__dict__", None)
    if isinstance(d, dict):
        for k, v in d.items():
            if v is dst:
                return f".{k}"
    if isinstance(src, dict):
        for k, v in src.items():
            if v is dst:
                return f"[{k!r}]"
    return ""


def _cycles() -> str:
    """Collect with DEBUG_SAVEALL; for closed protocols in the garbage, one path back to itself."""
    from collections import Counter, deque

    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    ids = {id(o) for o in garbage}
    protos = [o for o in garbage if type(o).__name__.endswith("Protocol") and hasattr(o, "state")]
    types = Counter(type(o).__name__ for o in garbage)
    text = f"garbage={len(garbage)} dead_protocols={len(protos)} top={types.most_common(8)}"
    seen_paths = Counter()
    for proto in protos:
        # BFS over references inside the garbage, back to proto.
        prev = {id(proto): None}
        objs = {id(proto): proto}
        queue = deque([proto])
        found = None
        while queue and found is None:
            cur = queue.popleft()
            for ref in gc.get_referents(cur):
                if ref is proto:
                    found = cur
                    break
                if id(ref) in ids and id(ref) not in prev:
                    prev[id(ref)] = cur
                    objs[id(ref)] = ref
                    queue.append(ref)
        if found is None:
            continue
        chain = [proto]
        node = found
        while node is not proto:
            chain.append(node)
            node = prev[id(node)]
        chain.append(proto)
        chain = [proto] + list(reversed(chain[1:-1])) + [proto]
        desc = type(proto).__name__
        for a, b in zip(chain, chain[1:]):
            desc += f" -{_edge(a, b)}-> {type(b).__name__}"
        seen_paths[desc] += 1
    back = Counter()
    for proto in protos:
        for ref in gc.get_referrers(proto):
            if id(ref) in ids:
                label = type(ref).__name__ + _edge(ref, proto)
                if isinstance(ref, dict):
                    owner = next((o for o in gc.get_referrers(ref) if getattr(o, "__dict__", None) is ref), None)
                    label = f"{type(owner).__name__}.__dict__{_edge(ref, proto)}"
                elif type(ref).__name__ == "cell":
                    fns = [f for f in gc.get_referrers(ref) if type(f).__name__ == "function"]
                    label = "cell of " + ",".join(getattr(f, "__qualname__", "?") for f in fns[:2])
                elif type(ref).__name__ == "method":
                    label = "method " + getattr(ref, "__qualname__", "?")
                back[label] += 1
    text += " || holders in garbage: " + "; ".join(f"{k} x{n}" for k, n in back.most_common(20))
    for desc, n in seen_paths.most_common(6):
        text += f" || cycle x{n}: {desc}"
    del garbage, protos
    return text


def _smaps() -> str:
    """Resident KiB by kind of mapping: the brk heap, anonymous mappings (pymalloc's
    arenas, large mallocs, other threads' malloc arenas), files."""
    heap = anon = files = 0
    kind = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 6)
            if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
                name = head[5].strip() if len(head) > 5 else ""
                kind = "heap" if name == "[heap]" else ("anon" if not name or name.startswith("[anon") else "file")
            elif line.startswith("Rss:"):
                kib = int(line.split()[1])
                if kind == "heap":
                    heap += kib
                elif kind == "anon":
                    anon += kib
                else:
                    files += kib
    return f"rss_heap={heap}K rss_anon={anon}K rss_files={files}K"


def _probe_loop(seconds: float, libc) -> None:
    start = time.monotonic()
    while True:
        time.sleep(seconds)
        try:
            if os.environ.get("WSKIT_STRESS_CYCLES"):
                print("stress-probe: cycles " + _cycles(), file=sys.stderr, flush=True)
            line = (f"stress-probe: t={time.monotonic() - start:.0f} rss={_rss_kib()}K {_smaps()} {_mallinfo(libc)} "
                    f"pyblocks={sys.getallocatedblocks()} gc_count={gc.get_count()}")
            if not os.environ.get("WSKIT_STRESS_PROBE_LIGHT"):  # the census allocates large lists
                line += f" gc_objects={len(gc.get_objects())} {_connections()} {_pending_timers()}"
        except Exception as exc:  # a diagnostic must not take the server down
            line = f"stress-probe: failed: {exc!r}"
        print(line, file=sys.stderr, flush=True)


def _collect_loop(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        gc.collect()


def _trim_loop(seconds: float, libc) -> None:
    trim = libc.malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    while True:
        time.sleep(seconds)
        trim(0)


def install() -> None:
    if os.environ.get("WSKIT_STRESS_KEEP_ZLIB"):  # as before closed connections freed them
        from wskit.protocol import ConnectionMixin

        ConnectionMixin._release_compression = lambda self: None
    recv = int(os.environ.get("WSKIT_STRESS_RECV_SIZE") or 0)
    if recv > 0:  # asyncio's socket transports read up to 256 KiB at a time
        import asyncio.selector_events

        asyncio.selector_events._SelectorSocketTransport.max_size = recv
    probe = float(os.environ.get("WSKIT_STRESS_PROBE") or 0)
    trim = float(os.environ.get("WSKIT_STRESS_TRIM") or 0)
    libc = _libc() if (probe or trim) else None
    if probe > 0:
        threading.Thread(target=_probe_loop, args=(probe, libc), daemon=True, name="stress-probe").start()
    collect = float(os.environ.get("WSKIT_STRESS_GC") or 0)
    if collect > 0:
        threading.Thread(target=_collect_loop, args=(collect,), daemon=True, name="stress-gc").start()
    if trim > 0 and libc is not None and hasattr(libc, "malloc_trim"):
        threading.Thread(target=_trim_loop, args=(trim, libc), daemon=True, name="stress-trim").start()
