"""What the serializers refuse at the door: lone surrogates, deep nesting, msgpack extensions.

Everything that decodes must encode again with both serializers (replies, and
broadcasts to peers that negotiated the other serializer).
"""

from __future__ import annotations

import json
import sys

import msgpack
import pytest

from wskit.serializers import MAX_DEPTH, SERIALIZERS, DecodeError

JSON, MSGPACK = SERIALIZERS["json"], SERIALIZERS["msgpack"]


@pytest.mark.parametrize("payload, escape", [
    (rb'{"type":"say","room":"lobby","text":"\ud800"}', "ud800"),        # value
    (rb'{"type":"say","room":"lobby","text":"\uD800"}', "ud800"),        # upper-case hex
    (rb'{"\udc00":1}', "udc00"),                                          # key
    (rb'{"a":[1,{"b":["ok","x\uDbFf"]}]}', "udbff"),                     # nested, mixed case
    (rb'{"a":{"\uDFFF":null}}', "udfff"),                                # nested key
    (rb'"\ud83d"', "ud83d"),                                              # top-level str
    (rb'"\ude00\ud83d"', "ude00"),                                        # a pair in the wrong order
    (rb'"\ud83d x \ude00"', "ud83d"),                                     # halves apart
])
def test_json_lone_surrogate_is_a_decode_error(payload, escape):
    json.loads(payload)  # valid JSON all the same
    with pytest.raises(DecodeError) as err:
        JSON.decode(payload)
    assert str(err.value) == f"invalid JSON: lone surrogate \\{escape} in a string (not a Unicode character)"


def test_json_surrogate_pairs_and_look_alikes_decode():
    assert JSON.decode(rb'{"t":"\ud83d\ude00"}') == {"t": "\U0001F600"}
    assert JSON.decode(rb'{"t":"\uD83D\uDE00"}') == {"t": "\U0001F600"}
    assert JSON.decode(rb'{"\ud83d\ude00":"\ud83d\ude00"}') == {"\U0001F600": "\U0001F600"}
    assert JSON.decode(rb'"\\ud800"') == "\\ud800"          # an escaped backslash, then text
    assert JSON.decode(rb'"\ud7ff\ue000"') == "\ud7ff\ue000"  # just outside the surrogate range
    assert JSON.decode('"\U0001F600"'.encode()) == "\U0001F600"  # raw UTF-8
    for obj in (JSON.decode(rb'{"t":"\ud83d\ude00"}'),):
        assert JSON.decode(JSON.encode(obj)) == obj and MSGPACK.decode(MSGPACK.encode(obj)) == obj


def test_json_encoded_surrogates_and_other_bad_utf8_are_decode_errors():
    for payload in (b'"\xed\xa0\x80"', b'"\xff"', b'{"a":"\xc3"}'):
        with pytest.raises(DecodeError, match="not UTF-8"):
            JSON.decode(payload)


def test_json_accepts_str_and_a_byte_order_mark():
    assert JSON.decode('{"a":1}') == {"a": 1}
    assert JSON.decode(b'\xef\xbb\xbf{"a":1}') == {"a": 1}
    with pytest.raises(DecodeError):
        JSON.decode('"\\ud800"')


def test_msgpack_strings_are_strict_utf8():
    bad = b"\xa3" + "\ud800".encode("utf-8", "surrogatepass")
    with pytest.raises(DecodeError, match="not UTF-8"):
        MSGPACK.decode(bad)
    with pytest.raises(DecodeError, match="not UTF-8"):
        MSGPACK.decode(b"\x81" + bad + b"\x01")  # as a map key
    assert MSGPACK.decode(msgpack.packb({"t": "\U0001F600"})) == {"t": "\U0001F600"}


def nested_json(depth: int) -> bytes:
    return b'{"a":' * (depth // 2) + b"[" * (depth - depth // 2) + b"]" * (depth - depth // 2) + b"}" * (depth // 2)


def nested(depth: int) -> object:
    obj: object = []
    for i in range(depth - 1):
        obj = [obj] if i % 2 else {"a": obj}
    return obj


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_json_deeper_than_max_depth_is_a_decode_error(depth):
    for payload in (b"[" * depth + b"]" * depth, nested_json(depth)):
        with pytest.raises(DecodeError) as err:
            JSON.decode(payload)
        assert str(err.value) == f"invalid JSON: nested deeper than {MAX_DEPTH} levels"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_msgpack_deeper_than_max_depth_is_a_decode_error(depth):
    for payload in (b"\x91" * depth + b"\xc0", b"\x81\xa1a" * depth + b"\xc0"):
        with pytest.raises(DecodeError) as err:
            MSGPACK.decode(payload)
        assert str(err.value) == f"invalid msgpack: nested deeper than {MAX_DEPTH} levels"


def test_max_depth_decodes_and_encodes_again_even_from_a_deep_stack():
    for s, payload in ((JSON, b"[" * MAX_DEPTH + b"]" * MAX_DEPTH), (JSON, nested_json(MAX_DEPTH)),
                       (MSGPACK, b"\x91" * (MAX_DEPTH - 1) + b"\x90"), (MSGPACK, MSGPACK.encode(nested(MAX_DEPTH)))):
        obj = s.decode(payload)

        def encode_at(frames: int) -> None:  # replies are encoded well inside a reactor's stack
            if frames:
                return encode_at(frames - 1)
            for other in (JSON, MSGPACK):
                assert other.decode(other.encode(obj)) == obj

        encode_at(sys.getrecursionlimit() // 2)


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = "[" * 1000 + "{" * 1000
    assert JSON.decode(json.dumps({"t": text}).encode()) == {"t": text}
    assert MSGPACK.decode(msgpack.packb({"t": text.encode(), "u": bytes(range(256)) * 8})) == {
        "t": text.encode(), "u": bytes(range(256)) * 8}
    wide = [{"a": [i]} for i in range(5000)]  # many containers, shallow
    assert JSON.decode(JSON.encode(wide)) == wide and MSGPACK.decode(MSGPACK.encode(wide)) == wide


def test_msgpack_extension_types_are_refused_and_timestamps_become_seconds():
    with pytest.raises(DecodeError, match="extension type 5 is not supported"):
        MSGPACK.decode(msgpack.packb({"data": msgpack.ExtType(5, b"x")}))
    assert MSGPACK.decode(msgpack.packb({"ts": msgpack.Timestamp(1, 500_000_000)})) == {"ts": 1.5}


def test_garbage_messages_say_what_is_wrong():
    with pytest.raises(DecodeError) as err:
        MSGPACK.decode(b"\xc1")
    assert str(err.value).startswith("invalid msgpack: ") and len(str(err.value)) > len("invalid msgpack: ")
