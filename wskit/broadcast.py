"""One message to many connections, serialized once per wire format.

A :class:`Broadcast` is the event a hub hands its local subscribers. It
holds the message in each *shape* its recipients may need (chat v1 and v2
differ, say) and encodes a shape for a serializer the first time a recipient
asks for that pair, then frames it once as an Autobahn ``PreparedMessage``.
Every further recipient of the same shape and serializer gets the same bytes.

Per recipient the work is small: the frame bytes go straight to the
connection's transport (``Connection.send_frame``), checked only for an open
connection and, while its transport has asked to pause, the slow-consumer cap.

Permessage-deflate: payloads shorter than the connection's compression
threshold go out pre-framed everywhere (an uncompressed message is legal on a
deflate connection). Longer ones are compressed as the connection's
``broadcast_compression`` setting says (:mod:`wskit.shared_deflate`):
``shared`` (the default) compresses each message once per topic, shape,
serializer and deflate parameters, and writes that frame to every connection
whose recent history of the topic is the group's (the others, newcomers until
a window's worth of the topic has reached them, compress with their own
compressor); ``fresh`` compresses once without history for everyone;
``per-connection`` leaves each connection to compress with its own context.

Slow consumers: sending only appends to the connection's transport buffer, so
one peer that does not read cannot stall delivery to the others. The
connection itself bounds that buffer (``LimitSettings.max_buffered_bytes``):
a recipient too far behind is dropped instead of sent to.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from typing import Any

from autobahn.websocket.protocol import PreparedMessage

from .serializers import Serializer
from .shared_deflate import FRESH, compressed_frame, deflate_message, group_for


class Broadcast:
    """A message in one or more shapes, encoded lazily and at most once per (shape, serializer).

    ``shapes`` maps a shape key (chat uses the protocol version) to the message
    object; the key ``None`` is the shape for recipients whose key is absent.
    Hubs build it on the receiving side from data that crosses processes
    (shapes, an excluded connection id, a history offset and epoch).

    >>> from wskit.serializers import SERIALIZERS
    >>> b = Broadcast({"v1": {"type": "event"}})
    >>> b.payload("v1", SERIALIZERS["json"])
    b'{"type":"event"}'
    >>> b.encodings
    1
    """

    def __init__(self, shapes: Mapping[Hashable, Any], exclude: str | None = None,
                 offset: int | None = None, epoch: str | None = None, published_at: float | None = None,
                 topic: str | None = None):
        self.shapes = shapes
        # The connection id (see wskit.hub.new_connection_id) of the one subscriber,
        # e.g. the sender of a presence change, that must not receive it.
        self.exclude = exclude
        # Where the message sits in its topic's history, when it was stored in one.
        self.offset = offset
        self.epoch = epoch
        # When it was published (time.time(), comparable across processes):
        # hubs report publish -> deliver latency from it (wskit.metrics).
        self.published_at = time.time() if published_at is None else published_at
        self.encodings = 0
        self._payloads: dict[tuple[Hashable, str], bytes] = {}
        self._prepared: dict[tuple[Hashable, str, bool], PreparedMessage] = {}
        # The hub topic it is published on (set by the hub's fan-out): broadcasts
        # of one topic share a compressor (wskit.shared_deflate).
        self.topic: str | None = topic
        # Compressed frames: (shape, serializer, deflate parameters) -> frame / (group, frame, its seq).
        self._fresh: dict[tuple[Hashable, str, Any], bytes] = {}
        self._shared: dict[tuple[Hashable, str, Any], tuple[Any, bytes, int]] = {}
        # The (shape, serializer) the previous recipient asked for and its frame:
        # recipients of one fan-out mostly ask for the same, found without a lookup.
        self._last_shape: Any = _NOTHING
        self._last_serializer: Any = None
        self._last_payload = b""
        self._last_frame = b""
        # The same for the shared compressor's frame (see _send_compressed).
        self._group_params: Any = None
        self._group_shape: Any = _NOTHING
        self._group_serializer: Any = None
        self._group: Any = None
        self._group_frame = b""
        self._group_seq = 0

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
        """Queue this message on ``connection`` (a :class:`wskit.Connection`);
        False if it was not sent (closed, or dropped as too slow a consumer)."""
        if shape is self._last_shape and serializer is self._last_serializer:
            payload, frame = self._last_payload, self._last_frame
        else:
            payload = self.payload(shape, serializer)
            frame = self.prepared(shape, serializer, True).payloadHybi
            self._last_shape, self._last_serializer = shape, serializer
            self._last_payload, self._last_frame = payload, frame
        try:
            pmce = connection._perMessageCompress  # a wskit connection (wskit.protocol.ConnectionMixin)
        except AttributeError:
            return self._send_prepared(connection, shape, serializer, payload)
        if pmce is None or len(payload) < connection.compress_threshold:
            # The pre-framed bytes as they are: the same for every such recipient.
            return connection.send_frame(frame, len(payload))
        return self._send_compressed(connection, shape, serializer, payload)

    def _send_compressed(self, connection: Any, shape: Hashable, serializer: Serializer, payload: bytes) -> bool:
        pmce = connection._perMessageCompress
        try:
            state = pmce.share
        except AttributeError:  # another extension than wskit's permessage-deflate
            state = None
        if state is None or self.topic is None:
            # Compressed by the connection's own compressor (Autobahn's way).
            return connection.send_prepared(self.prepared(shape, serializer, False))
        params = state.params
        if params.resets or params.mode == FRESH:
            # Compressed without history: the same frame for every connection with these parameters.
            key = (shape, serializer.name, params)
            frame = self._fresh.get(key)
            if frame is None:
                frame = self._fresh[key] = compressed_frame(
                    deflate_message(params.compressor(), payload), serializer.binary)
            if not connection.send_frame(frame, len(payload)):
                return False
            if not params.resets:
                # Its peer's window moved on without this connection's compressor:
                # the next message it compresses starts afresh.
                pmce.drop_compressor()
            return True
        if params is self._group_params and shape is self._group_shape and serializer is self._group_serializer:
            group, frame, seq = self._group, self._group_frame, self._group_seq  # as for the previous recipient
        else:
            key = (shape, serializer.name, params)
            entry = self._shared.get(key)
            if entry is None:
                group = group_for(self.topic, shape, serializer.name, params)
                frame = group.compress(payload, serializer.binary)
                entry = self._shared[key] = (group, frame, group.seq)
            group, frame, seq = entry
            self._group_params, self._group_shape, self._group_serializer = params, shape, serializer
            self._group, self._group_frame, self._group_seq = group, frame, seq
        # The group's frame fits a member that has every message before it, if it is
        # still the group's latest (a delivery held back, e.g. during a join, may not be).
        if state.member and state.group is group and state.seq == seq - 1 and group.seq == seq:
            if not connection.send_frame(frame, len(payload)):
                return False
            state.seq = seq
            return True
        before = pmce.compressed_messages
        if not connection.send_prepared(self.prepared(shape, serializer, False)):
            return False
        if pmce.compressed_messages == before + 1:
            group.sent_privately(state, pmce, len(payload), seq)
        return True

    def _send_prepared(self, connection: Any, shape: Hashable, serializer: Serializer, payload: bytes) -> bool:
        # Any other implementation of the Connection API.
        if not connection.is_connected:
            return False
        do_not_compress = len(payload) < connection.compress_threshold
        return connection.send_prepared(self.prepared(shape, serializer, do_not_compress))


_NOTHING = object()


__all__ = ["Broadcast"]
