"""Wire serializers for the shipped subprotocols: pure functions, no I/O.

A subprotocol name ``wskit.<app>.v<N>.<serializer>`` says how its messages
are encoded: ``json`` travels in text frames, ``msgpack`` in binary frames.

>>> parse_subprotocol("wskit.chat.v2.msgpack")
SubprotocolName(app='chat', version=2, serializer='msgpack')
>>> get_serializer("json").encode({"type": "join"})
b'{"type":"join"}'
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, NamedTuple

import msgpack

from .errors import DecodeError




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

    def decode(self, payload: bytes) -> Any:
        try:
            return json.loads(payload)
        except (ValueError, TypeError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
            raise DecodeError(f"invalid JSON: {exc}") from None


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
            # strict_map_key=False: JSON-RPC ids and data may be any scalar.
            return msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated exception types
            raise DecodeError(f"invalid msgpack: {exc}") from None


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
