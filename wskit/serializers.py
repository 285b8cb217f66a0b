"""Wire serializers for the shipped subprotocols: pure functions, no I/O.

A subprotocol name ``wskit.<app>.v<N>.<serializer>`` says how its messages
are encoded: ``json`` travels in text frames, ``msgpack`` in binary frames.

With orjson installed (``pip install 'wskit[speedups]'``) JSON is decoded by
it, about four times faster, with the same results and the same refusals (what
it cannot decide goes through the standard library's ``json``, which is used
alone otherwise). Encoding stays with the standard library: orjson writes some
floats differently (``0.00001`` for ``1e-05``), and a broadcast is encoded
once for all its recipients anyway (docs/performance.md has the measurements).

Decoding is the door for untrusted input, so it refuses (:class:`DecodeError`)
what either serializer could not carry back out: strings holding lone UTF-16
surrogates (valid JSON escapes such as ``"\\ud800"``, but not Unicode text),
containers nested deeper than :data:`MAX_DEPTH`, and msgpack extension types.
Whatever decodes therefore encodes again with both serializers.

>>> parse_subprotocol("wskit.chat.v2.msgpack")
SubprotocolName(app='chat', version=2, serializer='msgpack')
>>> get_serializer("json").encode({"type": "join"})
b'{"type":"join"}'
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any, NamedTuple

import msgpack

from .errors import DecodeError

try:  # the optional speedups extra: pip install 'wskit[speedups]'
    import orjson as _orjson
except ImportError:  # the standard library does it all, a few times slower
    _orjson = None




# Deepest nesting of arrays/objects a decoded message may have. Deeper input is
# almost certainly hostile, and the C JSON encoder recurses once per level, so a
# bound well under Python's recursion limit keeps re-encoding (a reply, a
# broadcast to peers of the other serializer) from raising RecursionError.
# serde_json's default recursion limit is the same.
MAX_DEPTH = 128

# A JSON \u escape of a UTF-16 surrogate (hex digits in either case). A decoded
# str holds a surrogate only through such an escape: valid pairs become one
# astral character, so any surrogate left in a decoded str is a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# 19 digits in a row: a number orjson might turn into a float where the standard
# library path refuses it as out of range (or a long run of digits in a string).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")

# Bytes that start a msgpack array or map (fixmap, fixarray, map16/32, array16/32).
_MSGPACK_CONTAINER_BYTES = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
_NOT_MSGPACK_CONTAINER_BYTES = bytes(b for b in range(256) if b not in _MSGPACK_CONTAINER_BYTES)


def _check_tree(obj: Any, fmt: str, depth: bool, surrogates: bool) -> None:
    """Raise :class:`DecodeError` if ``obj`` nests deeper than :data:`MAX_DEPTH`
    (when ``depth``) or a str in it, key or value, holds a surrogate (when ``surrogates``).

    Level by level, without recursion, so it cannot run out of stack itself.
    Callers run it only when a cheap look at the raw payload says the answer may
    be yes. Decoders only build exact dicts and lists, hence ``type(...) is``.
    """
    if surrogates and type(obj) is str:
        _check_str(obj, fmt)
    level, current = 0, [obj] if type(obj) is dict or type(obj) is list else []
    while current:
        level += 1
        if depth and level > MAX_DEPTH:
            raise DecodeError(f"invalid {fmt}: nested deeper than {MAX_DEPTH} levels")
        below: list[Any] = []
        append = below.append
        for container in current:
            if type(container) is dict:
                if surrogates:
                    for key in container:
                        if type(key) is str:
                            _check_str(key, fmt)
                values: Any = container.values()
            else:
                values = container
            for value in values:
                kind = type(value)
                if kind is dict or kind is list:
                    append(value)
                elif surrogates and kind is str:
                    _check_str(value, fmt)
        current = below


def _check_str(text: str, fmt: str) -> None:
    found = _SURROGATE.search(text)
    if found is not None:
        raise DecodeError(f"invalid {fmt}: lone surrogate \\u{ord(found.group()):04x} in a string "
                          "(not a Unicode character)")


class Serializer:
    """Turns message objects into payloads and back; ``binary`` says which frame type carries them."""

    name: str = ""
    binary: bool = False

    def encode(self, obj: Any) -> bytes:
        raise NotImplementedError

    def decode(self, payload: bytes) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _json_default(value: Any) -> Any:
    # msgpack carries raw bytes; JSON peers get them base64-encoded (documented).
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JSONSerializer(Serializer):
    name = "json"
    binary = False

    def encode(self, obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=_json_default).encode("utf-8")

    def decode(self, payload: bytes | str) -> Any:
        if _orjson is not None and type(payload) is bytes and _LONG_DIGITS.search(payload) is None:
            # orjson refuses what this decoder refuses (invalid UTF-8, lone surrogates, NaN,
            # infinities, trailing data) except deep nesting, checked below, and long integers,
            # kept from it above; whatever it refuses is decoded again below, for the same error.
            try:
                obj = _orjson.loads(payload)
            except _orjson.JSONDecodeError:
                pass
            else:
                if len(payload) > MAX_DEPTH and payload.count(b"[") + payload.count(b"{") > MAX_DEPTH:
                    _check_tree(obj, "JSON", True, False)
                return obj
        if isinstance(payload, str):
            text = payload
        else:
            # Strict UTF-8 (json.loads would let encoded surrogates through and guess UTF-16/32).
            try:
                text = bytes(payload).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
            if text.startswith("\ufeff"):  # RFC 8259 lets a parser ignore a byte order mark
                text = text[1:]
        try:
            obj = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int,
                             parse_float=_finite_float)
        except RecursionError:
            raise DecodeError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
        except DecodeError:
            raise
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise DecodeError(f"invalid JSON: {exc}") from None
        # Cheap looks at the text decide whether the decoded tree needs a walk.
        deep = len(text) > MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH
        surrogates = _SURROGATE_ESCAPE.search(text) is not None
        if deep or surrogates:
            _check_tree(obj, "JSON", deep, surrogates)
        return obj


# What both serializers carry: a decoded message must encode again with either (a reply, or
# a broadcast to subscribers of the other serializer), so numbers JSON cannot write
# (NaN, infinities) and integers msgpack cannot (outside -2**63 .. 2**64-1) are bad input.
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1


def _refuse_constant(name: str) -> Any:
    raise DecodeError(f"invalid JSON: {name} is not a JSON number")


def _bounded_int(text: str) -> int:
    value = int(text)
    if not _MIN_INT <= value <= _MAX_INT:
        raise DecodeError(f"invalid JSON: integer {text[:24]}{'...' if len(text) > 24 else ''} "
                          "is out of range (-2**63 to 2**64-1)")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError(f"invalid JSON: number {text[:24]} is out of range")
    return value


def _check_msgpack_scalars(obj: Any) -> None:
    """Raise :class:`DecodeError` for a float JSON cannot write or a map key JSON cannot carry."""
    stack = [obj]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                raise DecodeError("invalid msgpack: NaN and infinities are not carried (JSON has none)")
        elif kind is dict:
            for key, item in value.items():
                if type(key) is bytes or type(key) is float:
                    raise DecodeError(f"invalid msgpack: a map key may not be {type(key).__name__} "
                                      "(JSON subscribers could not receive it)")
                stack.append(item)
        elif kind is list:
            stack.extend(value)


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not msgpack serializable")


class MsgpackSerializer(Serializer):
    name = "msgpack"
    binary = True

    def encode(self, obj: Any) -> bytes:
        return msgpack.packb(obj, use_bin_type=True, default=_msgpack_default)

    def decode(self, payload: bytes) -> Any:
        try:
            # strict_map_key=False: JSON-RPC ids and data may be any scalar. raw=False
            # decodes str as strict UTF-8, which refuses encoded surrogates.
            # Timestamps become float epoch seconds (a value JSON carries too).
            obj = msgpack.unpackb(payload, raw=False, strict_map_key=False, timestamp=1,
                                  ext_hook=_refuse_ext)
        except DecodeError:
            raise
        except (msgpack.StackError, RecursionError):
            raise DecodeError(f"invalid msgpack: nested deeper than {MAX_DEPTH} levels") from None
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid msgpack: a str is not UTF-8 ({exc.reason})") from None
        except Exception as exc:  # msgpack raises several unrelated exception types
            raise DecodeError(f"invalid msgpack: {str(exc) or type(exc).__name__}") from None
        if len(payload) > MAX_DEPTH and len(
                bytes(payload).translate(None, _NOT_MSGPACK_CONTAINER_BYTES)) > MAX_DEPTH:
            _check_tree(obj, "msgpack", depth=True, surrogates=False)
        # Cheap look first: a float (0xca/0xcb) or bin (0xc4-0xc6) marker byte anywhere.
        raw = bytes(payload)
        if any(marker in raw for marker in (b"\xca", b"\xcb", b"\xc4", b"\xc5", b"\xc6")):
            _check_msgpack_scalars(obj)
        return obj


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"invalid msgpack: extension type {code} is not supported")


SERIALIZERS: dict[str, Serializer] = {s.name: s for s in (JSONSerializer(), MsgpackSerializer())}


def get_serializer(name: str) -> Serializer:
    try:
        return SERIALIZERS[name]
    except KeyError:
        raise KeyError(f"unknown serializer {name!r} (known: {', '.join(SERIALIZERS)})") from None


# The shipped application subprotocols and their versions, newest first: the
# one list the server registry and the clients both read.
APP_VERSIONS: dict[str, tuple[int, ...]] = {"chat": (2, 1), "pubsub": (1,), "rpc": (1,)}


class SubprotocolName(NamedTuple):
    app: str
    version: int
    serializer: str

    def __str__(self) -> str:
        return f"wskit.{self.app}.v{self.version}.{self.serializer}"


_NAME = re.compile(r"^wskit\.([a-z][a-z0-9_]*)\.v([0-9]+)\.([a-z0-9]+)$")


def parse_subprotocol(name: str | None) -> SubprotocolName | None:
    """Split ``wskit.<app>.v<N>.<serializer>``; None for other names (``wskit.echo``)."""
    if not name:
        return None
    match = _NAME.match(name)
    if not match or match.group(3) not in SERIALIZERS:
        return None
    return SubprotocolName(match.group(1), int(match.group(2)), match.group(3))


def serializer_for(subprotocol: str | None) -> Serializer | None:
    """The serializer a subprotocol name implies, or None (raw text/binary)."""
    parsed = parse_subprotocol(subprotocol)
    if parsed is not None:
        return SERIALIZERS[parsed.serializer]
    if subprotocol:
        suffix = subprotocol.rsplit(".", 1)[-1]
        return SERIALIZERS.get(suffix)
    return None


__all__ = [
    "APP_VERSIONS",
    "MAX_DEPTH",
    "DecodeError",
    "JSONSerializer",
    "MsgpackSerializer",
    "SERIALIZERS",
    "Serializer",
    "SubprotocolName",
    "get_serializer",
    "parse_subprotocol",
    "serializer_for",
]
