"""wskit.frames: masking and frame headers, against Autobahn's own masker and a by-hand reading."""

from __future__ import annotations

import os
import struct

import pytest
from autobahn.websocket.xormasker import create_xor_masker

from wskit import frames

LENGTHS = [0, 1, 2, 3, 4, 5, 7, 8, 63, 64, 65, 127, 128, 129, 130, 1023, 1024, 1025, 65536 + 3]


@pytest.mark.parametrize("length", LENGTHS)
def test_unmask_matches_autobahns_masker(length):
    payload, mask = os.urandom(length), os.urandom(4)
    expected = create_xor_masker(mask, length).process(payload) if length else b""
    assert frames.unmask(payload, mask) == expected
    assert frames.unmask(memoryview(payload), mask) == expected
    assert frames._unmask_int(payload, mask) == expected
    if frames._lib is not None and length:
        assert frames._unmask_nvx(payload, mask) == expected


def test_unmask_returns_bytes():
    assert type(frames.unmask(b"x" * 500, b"abcd")) is bytes
    assert type(frames.unmask(b"x" * 5, b"abcd")) is bytes
    assert frames.unmask(b"", b"abcd") == b""


def read_header(header: bytes) -> tuple[int, int, bytes | None]:
    """(first byte, payload length, mask) of a frame header, read by hand."""
    first, second = header[0], header[1]
    length, rest = second & 0x7F, header[2:]
    if length == 126:
        length, rest = struct.unpack("!H", rest[:2])[0], rest[2:]
    elif length == 127:
        length, rest = struct.unpack("!Q", rest[:8])[0], rest[8:]
    mask = None
    if second & 0x80:
        mask, rest = rest[:4], rest[4:]
    assert rest == b"", f"header longer than it says: {header!r}"
    return first, length, mask


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 1 << 40])
@pytest.mark.parametrize("mask", [None, b"\x01\x02\x03\x04"])
@pytest.mark.parametrize("first", [frames.FIN_TEXT, frames.FIN_BINARY])
def test_frame_header_uses_the_minimal_length_encoding(first, length, mask):
    header = frames.frame_header(first, length, mask)
    assert read_header(header) == (first, length, mask)
    extended = 0 if length <= 125 else 2 if length <= 0xFFFF else 8
    assert len(header) == 2 + extended + (4 if mask else 0)


def test_new_mask_is_four_bytes():
    masks = {frames.new_mask() for _ in range(20)}
    assert all(len(m) == 4 for m in masks) and len(masks) > 1
