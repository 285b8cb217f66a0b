"""One message to many connections, serialized once per wire format.

A :class:`Broadcast` is the event a subprotocol publishes through the hub. It
holds the message in each *shape* its recipients may need (chat v1 and v2
differ, say) and encodes a shape for a serializer the first time a recipient
asks for that pair, then frames it once as an Autobahn ``PreparedMessage``.
Every further recipient of the same shape and serializer gets the same bytes.

Prepared messages and permessage-deflate: Autobahn sends a prepared message's
pre-framed bytes as they are on connections without compression, and on a
compressed connection compresses the payload again with that connection's
own compressor (its context differs per connection, so it cannot be shared).
Payloads shorter than the connection's compression threshold are prepared
with ``doNotCompress`` so they go out pre-framed everywhere (an uncompressed
message is legal on a deflate connection).

Slow consumers: sending only appends to the connection's transport buffer, so
one peer that does not read cannot stall delivery to the others. To keep such
a peer from growing the server's memory without bound, a recipient whose
unsent bytes already exceed ``max_buffered_bytes`` is dropped (TCP abort: its
close frame could never get through the backlog).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import txaio
from autobahn.websocket.protocol import PreparedMessage

from .serializers import Serializer




def buffered_bytes(connection: Any) -> int:
    """Bytes queued on ``connection``'s transport and not yet written to the socket.

    asyncio transports report it (``get_write_buffer_size``); Twisted's TCP
    transports keep ``dataBuffer``/``_tempDataLen``. A wrapping transport (TLS)
    is looked through. Unknown transports count as 0.
    """
    transport = getattr(connection, "transport", None)
    for _ in range(3):
        if transport is None:
            return 0
        size = getattr(transport, "get_write_buffer_size", None)
        if callable(size):
            try:
                return int(size())
            except Exception:
                return 0
        data = getattr(transport, "dataBuffer", None)
        if data is not None:
            return len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)
        transport = getattr(transport, "transport", None)
    return 0


class Broadcast:
    """A message in one or more shapes, encoded lazily and at most once per (shape, serializer).

    ``shapes`` maps a shape key (chat uses the protocol version) to the message
    object; the key ``None`` is the shape for recipients whose key is absent.

    >>> from wskit.serializers import SERIALIZERS
    >>> b = Broadcast({"v1": {"type": "event"}})
    >>> b.payload("v1", SERIALIZERS["json"])
    b'{"type":"event"}'
    >>> b.encodings
    1
    """

    def __init__(self, shapes: Mapping[Hashable, Any], exclude: Any = None,
                 max_buffered_bytes: int = 0):
        self.shapes = shapes
        # A subscriber (e.g. the sender of a presence change) that must not receive it.
        self.exclude = exclude
        self.max_buffered_bytes = max_buffered_bytes
        self.encodings = 0
        self._payloads: dict[tuple[Hashable, str], bytes] = {}
        self._prepared: dict[tuple[Hashable, str, bool], PreparedMessage] = {}

    def payload(self, shape: Hashable, serializer: Serializer) -> bytes:
        if shape not in self.shapes:
            shape = None  # the shape every recipient gets unless it has its own
        key = (shape, serializer.name)
        payload = self._payloads.get(key)
        if payload is None:
            payload = self._payloads[key] = serializer.encode(self.shapes[shape])
            self.encodings += 1
        return payload

    def prepared(self, shape: Hashable, serializer: Serializer, do_not_compress: bool) -> PreparedMessage:
        if shape not in self.shapes:
            shape = None
        key = (shape, serializer.name, do_not_compress)
        prepared = self._prepared.get(key)
        if prepared is None:
            payload = self.payload(shape, serializer)
            # Server-to-client frames are never masked.
            prepared = self._prepared[key] = PreparedMessage(payload, serializer.binary, False, do_not_compress)
        return prepared

    def send(self, connection: Any, shape: Hashable, serializer: Serializer) -> bool:
        """Queue this message on ``connection``; False if it was not sent (closed or too slow)."""
        if not getattr(connection, "is_connected", True):
            return False
        cap = self.max_buffered_bytes
        if cap and buffered_bytes(connection) > cap:
            txaio.make_logger().warn("wskit: dropping {peer}: more than {cap} bytes unsent (too slow a consumer)",
                      peer=getattr(connection, "peer", "?"), cap=cap)
            connection.dropConnection(abort=True)
            return False
        payload = self.payload(shape, serializer)
        do_not_compress = len(payload) < getattr(connection, "_compress_threshold", 0)
        connection.send_prepared(self.prepared(shape, serializer, do_not_compress))
        return True


__all__ = ["Broadcast", "buffered_bytes"]
