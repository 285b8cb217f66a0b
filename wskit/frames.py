"""RFC 6455 framing for the common case: whole, unfragmented data frames.

The protocol mixin (:mod:`wskit.protocol`) reads and writes such frames itself
(compressed ones through the connection's permessage-deflate object, as
Autobahn does) and leaves everything else (control frames, fragments, frames
split across reads, any anomaly) to Autobahn's general parser and framer.
What is here is pure and stateless: masking and frame headers.

Masking uses Autobahn's native XOR masker when it was built (the ``nvx``
extension), called directly: one C call per frame instead of a masker object
per frame. Without it, the payload is XORed as one big integer.
"""

from __future__ import annotations

import random
import struct

try:  # Autobahn's optional C extension (built when a compiler was at hand)
    from _nvx_xormasker import ffi as _ffi, lib as _lib
except ImportError:  # pragma: no cover - depends on how Autobahn was installed
    _ffi = _lib = None
else:
    _masker_new, _masker_process, _masker_free = _lib.nvx_xormask_new, _lib.nvx_xormask_process, _lib.nvx_xormask_free
    _from_buffer = _ffi.from_buffer

# First header byte of a whole (FIN), uncompressed (RSV 0) frame.
FIN_TEXT = 0x81
FIN_BINARY = 0x82
# The same with RSV1 set: a whole compressed message (RFC 7692 6).
FIN_RSV1_TEXT = 0xC1
FIN_RSV1_BINARY = 0xC2
MASK_BIT = 0x80
# Payload lengths beyond these take a 16-bit / 64-bit extended length (RFC 6455 5.2).
MAX_SHORT_LENGTH = 125
MAX_MEDIUM_LENGTH = 0xFFFF
MAX_LONG_LENGTH = 0x7FFFFFFFFFFFFFFF

_pack_medium = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack
_pack_mask = struct.Struct("!I").pack


def _unmask_nvx(payload, mask: bytes) -> bytes:
    buf = bytearray(payload)
    masker = _masker_new(mask)
    _masker_process(masker, _from_buffer(buf), len(buf))
    _masker_free(masker)
    return bytes(buf)


def _unmask_int(payload, mask: bytes) -> bytes:
    n = len(payload)
    # The mask repeated over a whole number of words, then cut to the payload's length.
    key = int.from_bytes(mask * ((n + 3) >> 2), "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes((n + 3) & ~3, "little")[:n]


def unmask(payload, mask: bytes) -> bytes:
    """XOR ``payload`` (bytes-like) with the 4-byte ``mask`` (RFC 6455 5.3); masking is its own inverse.

    >>> unmask(unmask(b"hello", b"abcd"), b"abcd")
    b'hello'
    """
    if not payload:
        return b""
    if _lib is not None and len(payload) > 128:
        return _unmask_nvx(payload, mask)
    return _unmask_int(payload, mask)


def frame_header(first: int, length: int, mask: bytes | None = None) -> bytes:
    """The header of one frame: ``first`` is FIN/RSV/opcode; ``mask`` (4 bytes) for a client's frame.

    >>> frame_header(FIN_TEXT, 5)
    b'\\x81\\x05'
    >>> frame_header(FIN_BINARY, 300)
    b'\\x82~\\x01,'
    """
    if mask is None:
        if length <= MAX_SHORT_LENGTH:
            return bytes((first, length))
        if length <= MAX_MEDIUM_LENGTH:
            return _pack_medium(first, 126, length)
        return _pack_long(first, 127, length)
    if length <= MAX_SHORT_LENGTH:
        return bytes((first, MASK_BIT | length)) + mask
    if length <= MAX_MEDIUM_LENGTH:
        return _pack_medium(first, MASK_BIT | 126, length) + mask
    return _pack_long(first, MASK_BIT | 127, length) + mask


def new_mask() -> bytes:
    """A frame mask, drawn as Autobahn draws its own (``random.getrandbits``)."""
    return _pack_mask(random.getrandbits(32))


__all__ = ["FIN_BINARY", "FIN_RSV1_BINARY", "FIN_RSV1_TEXT", "FIN_TEXT", "MASK_BIT", "frame_header", "new_mask",
           "unmask"]
