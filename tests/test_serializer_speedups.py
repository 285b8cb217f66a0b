"""The optional orjson decoder (``wskit[speedups]``) gives the standard library path's answers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from wskit import serializers
from wskit.errors import DecodeError

import orjson  # noqa: E402,F401 (in the test extra: a missing orjson fails here rather than skipping)
JSON = serializers.SERIALIZERS["json"]


def both(payload: bytes):
    """(with orjson, with the standard library alone): each a value or ('error', message)."""
    def one():
        try:
            return JSON.decode(payload)
        except DecodeError as exc:
            return ("error", str(exc))
    fast = one()
    saved, serializers._orjson = serializers._orjson, None
    try:
        slow = one()
    finally:
        serializers._orjson = saved
    return fast, slow


EDGES = [b'1e400', b'-1e400', b'[1e-400]', b'"\\ud800"', b'"\\udc00x"', b'"\\ud83d\\ude00"', b'"\xed\xa0\x80"',
         b'\xef\xbb\xbf{"a":1}', b'18446744073709551615', b'18446744073709551616', b'-9223372036854775808',
         b'-9223372036854775809', b'{"a":1,"a":2}', b'NaN', b'-Infinity', b'Infinity', b' [1] ', b'-0', b'-0.0',
         b'1E2', b'[' * 129 + b']' * 129, b'[' * 128 + b']' * 128, b'{"a":' * 130 + b'1' + b'}' * 130,
         b'"\x00"', b'"\\u0000"', b'{"a":1}x', b'', b'\xff', b'"caf\xc3\xa9"', b'1.7976931348623157e309',
         b'{"k":"' + b'9' * 30 + b'"}', b'[0.1234567890123456789]', b'true', b'null', b'"\\/"']


@pytest.mark.parametrize("payload", EDGES)
def test_edges_decode_alike(payload):
    fast, slow = both(payload)
    assert fast == slow and type(fast) is type(slow)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_json_text_decodes_alike(value):
    payload = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    fast, slow = both(payload)
    assert repr(fast) == repr(slow)
