"""Compressing a broadcast once for many permessage-deflate connections.

With context takeover each connection's compressor refers back into what it
sent before, so a compressed message is normally good for one connection
only. But a back-reference reaches at most one window (``2**wbits`` bytes of
plaintext) back, and the subscribers of one topic receive the same messages:
once a connection's last window of plaintext equals that of a compressor fed
the topic's broadcasts, that compressor's output decodes on the connection
exactly as its own would. A :class:`SharedDeflateGroup` is that compressor,
one per topic, message shape, serializer and set of deflate parameters
(window, memLevel, level, strategy): each broadcast is compressed once and the
same frame written to every member.

The life of a connection (its :class:`~wskit.compression.TunedPerMessageDeflate`
keeps the state, see :class:`ShareState`):

* it starts *private*: broadcasts are compressed by its own compressor, and it
  counts the plaintext of the group's messages it has received in a row,
  since it last compressed anything else (a private message, another topic);
* once that count reaches the group's window it *joins*: its own compressor
  is dropped (the memory goes with it) and it receives the group's frames;
* a member that must compress anything else *splits off* first, with a copy
  of the group's compressor (``zlib.Compress.copy()``) as its own again;
* a member that misses one of the group's messages (excluded from it,
  unsubscribed, closing) leaves at the group's next message and, when it next
  compresses, starts from a compressor primed (``zdict``) with the window it
  actually holds. Messages sent uncompressed do not enter the deflate stream
  and change nothing.

Connections that negotiated ``server_no_context_takeover`` need no group: a
message compressed by a fresh compressor is the same for all of them. The
``fresh`` mode (:attr:`wskit.settings.CompressionSettings.broadcast_compression`)
does that for every connection: each broadcast is compressed once without
history (less CPU than sharing while members are joining, more bytes on the
wire), and a connection's own compressor restarts after it.
"""

from __future__ import annotations

import struct
import weakref
import zlib
from typing import Any

from .deflate import zlib_compress_window

SHARED = "shared"
FRESH = "fresh"
PER_CONNECTION = "per-connection"
MODES = (SHARED, FRESH, PER_CONNECTION)

_TAIL = b"\x00\x00\xff\xff"  # what a sync flush ends with; RFC 7692 7.2.1 leaves it off


def compressed_frame(data: bytes, binary: bool) -> bytes:
    """One unfragmented, unmasked (server) frame with RSV1 set around compressed ``data``."""
    b0 = 0xC2 if binary else 0xC1
    n = len(data)
    if n <= 125:
        return bytes((b0, n)) + data
    if n <= 0xFFFF:
        return struct.pack("!BBH", b0, 126, n) + data
    return struct.pack("!BBQ", b0, 127, n) + data


def deflate_message(compressor: Any, payload: bytes) -> bytes:
    """``payload`` through ``compressor`` as one permessage-deflate message body."""
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(_TAIL) else data


class ShareParams:
    """What a connection's outgoing deflate stream is made with; interned, so
    connections with the same parameters hold the same object."""

    __slots__ = ("mode", "wbits", "mem_level", "level", "strategy", "resets", "__weakref__")

    def __init__(self, mode: str, wbits: int, mem_level: int, level: int, strategy: int, resets: bool):
        self.mode, self.wbits, self.mem_level, self.level = mode, wbits, mem_level, level
        self.strategy, self.resets = strategy, resets

    def compressor(self, zdict: bytes | None = None) -> Any:
        if zdict:
            return zlib.compressobj(self.level, zlib.DEFLATED, -self.wbits, self.mem_level, self.strategy, zdict)
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.wbits, self.mem_level, self.strategy)


_params: dict[tuple, ShareParams] = {}


def share_params(mode: str, bits: int, mem_level: int, level: int, resets: bool) -> ShareParams:
    """The interned :class:`ShareParams` of a connection compressing with an RFC window of ``bits``."""
    wbits, strategy = zlib_compress_window(bits)
    key = (mode, wbits, mem_level, level, strategy, resets)
    found = _params.get(key)
    if found is None:
        found = _params[key] = ShareParams(*key)
    return found


class ShareState:
    """One connection's place relative to the groups (kept on its deflate extension)."""

    __slots__ = ("params", "group", "member", "seq", "count", "mark", "pending")

    def __init__(self, params: ShareParams):
        self.params = params
        self.group: SharedDeflateGroup | None = None  # member of, or counting towards
        self.member = False
        self.seq = -1  # the group's last message this connection received
        self.count = 0  # plaintext bytes of the group received in a row (while private)
        self.mark = -1  # the extension's count of compressed messages after the last one counted
        # Left a group having missed its last message: the window to prime the next compressor with.
        self.pending: bytes | None = None

    def split(self, pmce: Any) -> tuple[Any, bytes] | None:
        """The compressor this connection continues with once it stops taking the
        group's frames, and the window of plaintext it has seen (None: keep its own)."""
        group, pending = self.group, self.pending
        self.pending = None
        if self.member and group is not None:
            self.member = False
            group.members.pop(self, None)
            self.group = None
            if self.seq == group.seq:
                return group.compressor.copy(), group.history
            pending = group.previous  # missed the group's last message
        if pending is not None:
            return self.params.compressor(pending), pending
        return None


class SharedDeflateGroup:
    """One compressor for a topic's broadcasts of one shape and serializer, and the
    connections that take its frames (see the module docstring)."""

    def __init__(self, params: ShareParams):
        self.params = params
        self.compressor = params.compressor()
        self.window = 1 << params.wbits
        self.seq = 0  # messages compressed
        self.history = b""  # the last window of plaintext compressed, through seq
        self.previous = b""  # the same through seq - 1
        self.members: dict[ShareState, None] = {}
        self.compressed = 0  # messages compressed (for tests and metrics)

    def compress(self, payload: bytes, binary: bool) -> bytes:
        """Compress the group's next message; the frame every member gets."""
        seq = self.seq
        missed = [state for state in self.members if state.seq != seq]
        for state in missed:
            # Its peer holds the window before the group's last message: a connection
            # that compresses again starts from that (see ShareState.split).
            state.member = False
            state.group = None
            state.pending = self.previous
            del self.members[state]
        frame = compressed_frame(deflate_message(self.compressor, payload), binary)
        self.previous = self.history
        history = self.history + payload
        self.history = history[-self.window:] if len(history) > self.window else history
        self.seq = seq + 1
        self.compressed += 1
        return frame

    def sent_privately(self, state: ShareState, pmce: Any, length: int, seq: int) -> None:
        """A connection not (yet) a member got the group's message ``seq`` through its own compressor."""
        done = pmce.compressed_messages
        if seq != self.seq:
            # An older message, delivered late (held while a join was answered, say):
            # not the group's latest, so it starts no run.
            state.group, state.count = None, 0
            return
        if state.group is self and state.seq == seq - 1 and state.mark == done - 1:
            state.count += length
        else:
            state.group = self
            state.count = length
        state.seq, state.mark = seq, done
        if state.count >= self.window and len(self.history) >= self.window:
            # Its peer's window now holds exactly the group's: take the group's frames.
            pmce.drop_compressor()
            state.member = True
            state.count = 0
            self.members[state] = None


_groups: weakref.WeakValueDictionary[tuple, SharedDeflateGroup] = weakref.WeakValueDictionary()


def group_for(topic: str, shape: Any, serializer: str, params: ShareParams) -> SharedDeflateGroup:
    """The group of ``topic``'s broadcasts in ``shape`` and ``serializer`` for connections with ``params``.

    Groups live as long as a connection or a broadcast in progress refers to them.
    """
    key = (topic, shape, serializer, params)
    group = _groups.get(key)
    if group is None:
        group = _groups[key] = SharedDeflateGroup(params)
    return group


def groups() -> list[SharedDeflateGroup]:
    """The groups alive now."""
    return list(_groups.values())


__all__ = ["SharedDeflateGroup", "ShareParams", "ShareState", "compressed_frame", "deflate_message",
           "group_for", "share_params", "MODES", "SHARED", "FRESH", "PER_CONNECTION"]
