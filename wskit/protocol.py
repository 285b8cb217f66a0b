"""Backend-neutral protocol and factory mixins.

Autobahn's own pattern: generic logic here, combined with
``autobahn.twisted.websocket`` or ``autobahn.asyncio.websocket`` classes in the
thin adapters (:mod:`wskit.twisted`, :mod:`wskit.asyncio`). Nothing here
imports a reactor or an event loop.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

import txaio
from autobahn.exception import PayloadCorruptError, PayloadExceededError
from autobahn.util import encode_truncate
from autobahn.websocket.compress import PERMESSAGE_COMPRESSION_EXTENSION
from autobahn.websocket.protocol import WebSocketClientProtocol, WebSocketProtocol, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from txaio._common import _BatchedCall, _BatchedTimer  # the timer Autobahn's factories use

from . import metrics
from .frames import FIN_BINARY, FIN_RSV1_BINARY, FIN_RSV1_TEXT, FIN_TEXT, MASK_BIT, frame_header, new_mask, unmask
from .compression import (
    DEFLATE,
    ClientCompression,
    DeflateParameterError,
    ServerCompression,
    describe_extensions,
    extension_names,
    make_client_accept,
    make_server_accept,
    tune_extension,
)
from .errors import HandshakeError
from .handshake import Refusal, RequestHead, read_request_head, refusal_response, request_refusal
from .logs import log_failure
from .negotiation import NegotiationError
from .settings import ClientSettings, ServerSettings, SettingsError
from .static import content_type, resolve_static_file, static_root

CLOSE_INTERNAL_ERROR = 1011
# Autobahn batches connection timers into buckets of this many seconds.
TIMER_BUCKET_SECONDS = 0.2
TIMER_CHUNK_SIZE = 1000
# How long a shutdown waits for closing handshakes beyond the close-handshake
# timeout: Autobahn drops a silent peer when that timeout's bucket fires.
CLOSE_GRACE_SECONDS = 2 * TIMER_BUCKET_SECONDS
# Input buffered after this side failed the connection beyond which the peer is dropped.
MAX_BYTES_AFTER_FAILURE = 64 * 1024
# How long a shutdown waits, after aborting the connections that outlived its
# deadline, for their transports to report the loss (one loop turn, normally).
ABORT_GRACE_SECONDS = 1.0
ALLOWED_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
STATE_OPEN = WebSocketProtocol.STATE_OPEN


class WriteBatch:
    """Connections holding broadcast frames back in this loop turn, flushed at its end.

    Frames a fan-out writes (:meth:`ConnectionMixin.send_frame`) are held on
    each connection and written together once the turn's callbacks have run:
    a publisher's burst of events read in one go reaches each recipient in one
    write (one system call) instead of one per event. ``call_soon`` runs a
    callable at the end of the turn (asyncio's ``loop.call_soon``, Twisted's
    ``reactor.callLater(0, ...)``).
    """

    __slots__ = ("connections", "call_soon")

    def __init__(self, call_soon: Any):
        self.call_soon = call_soon
        self.connections: list[Any] = []

    def add(self, connection: Any) -> None:
        if not self.connections:
            self.call_soon(self.flush)
        self.connections.append(connection)

    def flush(self) -> None:
        connections, self.connections = self.connections, []
        for connection in connections:
            try:
                connection._flush_corked()
            except Exception:  # one transport's failure must not hold the others' frames
                connection.log.error(
                    "wskit: dropping {peer}: writing its held frames failed:\n{tb}",
                    peer=connection.peer,
                    tb=txaio.failure_format_traceback(txaio.create_failure()),
                )
                connection._closeConnection(abort=True)


class ConnectionMixin:
    """What server and client connections share: the :class:`wskit.Connection` API.

    Flow control comes from the transport: it tells the connection when its
    write buffer passes the high-water mark and when it has drained (asyncio's
    ``pause_writing``/``resume_writing``, a Twisted push producer registered
    on the transport); the backend adapters wire those signals to
    :meth:`_transport_paused` and :meth:`_transport_resumed`. Every send goes
    through :meth:`_admit`, which drops a peer whose unsent bytes exceed
    ``max_buffered_bytes``: direct replies and broadcasts alike.
    """

    handler: Any = None
    # The subprotocol actually served: the negotiated name, or the default's
    # name when the client offered none (then no Sec-WebSocket-Protocol is sent).
    served_subprotocol: str | None = None
    _compression_settings = None
    compress_threshold = 0
    max_buffered_bytes = 0
    _writing_paused = False
    _paused_bytes = 0
    _drain_waiters: list[Any] | None = None
    _reading_paused = False
    _parsing = False
    _failed = False  # this side failed the connection (a protocol, UTF-8 or size violation)
    _received_after_failure = 0  # bytes of the reads that came after that
    # The permessage-deflate negotiation's outcome (wskit.deflate.DeflateAgreement), once negotiated.
    _deflate_agreement = None
    # The transport has reported the connection lost.
    _transport_gone = False
    # Shared traffic counters (wskit.metrics), when metrics are on.
    _traffic: Any = None

    # Autobahn's _connectionMade copies the factory's options named in CONFIG_ATTRS
    # onto the connection and logs them at debug level, pretty-printed whether or
    # not debug logging is on: about 80 us per connection, a fifth of accepting
    # one. wskit copies the same options itself (_copy_factory_options) and leaves
    # Autobahn an empty list. Set per side in the subclasses.
    CONFIG_ATTRS: tuple[str, ...] = ()
    _FACTORY_OPTIONS: tuple[str, ...] = ()

    def _copy_factory_options(self) -> None:
        # As Autobahn: an option already set on the connection (or its class) is kept.
        factory = self.factory
        for name in self._FACTORY_OPTIONS:
            if not hasattr(self, name):
                setattr(self, name, getattr(factory, name))

    def _release_compression(self) -> None:
        """Drop the permessage-deflate zlib contexts of a connection that is gone
        (some 300 KiB at the default window and memory level). The extension
        object stays, for describing the connection; Autobahn makes new contexts
        if it is ever used again."""
        pmce = getattr(self, "_perMessageCompress", None)
        if pmce is None:
            return
        release = getattr(pmce, "release", None)
        if release is not None:
            release()  # wskit's extension: its windows and idle check too
        else:
            pmce._compressor = None
            pmce._decompressor = None

    def _forget_closed(self) -> None:
        """Autobahn resolves ``is_closed`` with the protocol itself: a reference
        cycle that keeps a closed connection, and all it refers to, until the
        collector's next full pass (which counts objects, not bytes). Whoever took
        the future keeps it; the connection keeps a fired one of its own (None)."""
        closed = getattr(self, "is_closed", None)
        if closed is not None and txaio.is_called(closed):
            self.is_closed = txaio.create_future(result=None)

    # -- Connection API ------------------------------------------------

    @property
    def subprotocol(self) -> str | None:
        return self.websocket_protocol_in_use

    @property
    def extensions(self) -> list[str]:
        return extension_names(self.websocket_extensions_in_use or [])

    @property
    def compression(self) -> dict[str, Any] | None:
        """Negotiated compression parameters, or None when messages go uncompressed."""
        described = describe_extensions(self.websocket_extensions_in_use or [])
        return described[0] if described else None

    @property
    def is_connected(self) -> bool:
        return self.state == STATE_OPEN

    @property
    def writable(self) -> bool:
        """False while the transport's write buffer is over its high-water mark."""
        return not self._writing_paused

    @property
    def buffered_amount(self) -> int:
        """Bytes handed to the transport and not yet written to the socket.

        Frames held for the end of this loop turn count too. Twisted transports
        only signal their high-water mark, so there this counts the bytes queued
        since the transport asked to pause (0 while writable); the asyncio
        adapter reports the transport's exact figure.
        """
        return self._held_bytes() + (self._paused_bytes if self._writing_paused else 0)

    def _held_bytes(self) -> int:
        corked = self._corked
        return sum(map(len, corked)) if corked is not None else 0

    def send_message(self, payload: bytes, is_binary: bool) -> bool:
        """Send an encoded payload as one text (UTF-8) or binary message.

        Returns False when nothing was sent: the connection is not open, or
        the peer was dropped as too slow a consumer.
        """
        if not self._admit():
            return False
        self.sendMessage(payload, is_binary)
        return True

    def send_text(self, text: str) -> bool:
        return self.send_message(text.encode("utf-8"), False)

    def send_binary(self, data: bytes) -> bool:
        return self.send_message(bytes(data), True)

    def send_prepared(self, prepared: Any) -> bool:
        """Send a message framed once for many connections (see :class:`wskit.Broadcast`)."""
        if not self._admit():
            return False
        self.sendPreparedMessage(prepared)
        return True

    # How send_frame writes, looked up on the first frame (see _frame_writer).
    _transport_write: Any = None
    # Frames send_frame has held back for the end of this loop turn (WriteBatch).
    _corked: list[bytes] | None = None

    def _frame_writer(self) -> Any:
        """The callable :meth:`send_frame` writes a frame with: it holds the frame
        on the connection until the end of the loop turn (:class:`WriteBatch`)."""
        factory = self.factory
        batch = getattr(factory, "_write_batch", None)
        if batch is None:
            batch = factory._write_batch = WriteBatch(factory._call_soon)

        def hold(frame: bytes) -> None:
            corked = self._corked
            if corked is None:
                self._corked = [frame]
                batch.add(self)
            else:
                corked.append(frame)

        return hold

    def _flush_corked(self) -> None:
        """Write the frames held back for this loop turn. Any other write on the
        connection, and a graceful close, writes them first: the order on the
        wire is the order of the calls."""
        corked, self._corked = self._corked, None
        if not corked or self._transport_gone or self.transport is None:
            return
        self._write_out(corked[0] if len(corked) == 1 else b"".join(corked))

    def _closeConnection(self, abort: bool = False) -> None:
        if abort:
            self._corked = None  # what the transport holds is discarded too
        elif self._corked is not None:
            self._flush_corked()
        super()._closeConnection(abort)

    def _write_out(self, data: bytes) -> None:
        """Write bytes the connection sends itself (replies, control frames, the
        handshake); the Twisted adapter sends them at once when nothing is queued."""
        self.transport.write(data)

    def send_frame(self, frame: bytes, payload_length: int) -> bool:
        """Write one complete, already framed message (a broadcast's bytes, the same for
        every recipient): the per-recipient fast path of :class:`wskit.Broadcast`.

        The checks are those of :meth:`send_prepared` (open, not past
        ``max_buffered_bytes``), made only where they can fail: the buffer is
        looked at while the transport has asked to pause. ``payload_length``
        is what the metrics count as the message's application bytes.
        """
        if self.state != self.STATE_OPEN:
            return False
        if self._writing_paused or self.send_queue:
            # Behind a full buffer or queued writes: the checked path, in order.
            if not self._admit():
                return False
            self.sendData(frame)
        else:
            write = self._transport_write
            if write is None:
                write = self._transport_write = self._frame_writer()
            write(frame)
            self.trafficStats.outgoingOctetsWireLevel += len(frame)
        traffic = self._traffic
        if traffic is not None:
            traffic.outgoingWebSocketMessages += 1
            traffic.outgoingOctetsAppLevel += payload_length
        return True

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Start the closing handshake.

        Unlike Autobahn's ``sendClose`` (1000 or 3000-4999 only), endpoints may
        send the RFC 6455 codes that describe application decisions too:
        1001 going away, 1003 unsupported data, 1008 policy violation,
        1009 too big, 1011 internal error.
        """
        if code not in ALLOWED_CLOSE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"close code {code} may not be sent (RFC 6455 7.4)")
        if self.state != self.STATE_OPEN:
            return
        reason_utf8 = encode_truncate(reason, 123) if reason else None
        self.sendCloseFrame(code=code, reasonUtf8=reason_utf8, isReply=False)

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake (or without
        waiting any longer for a graceful TCP close to finish)."""
        if self.state != self.STATE_CLOSED:
            self.dropConnection(abort=True)
        elif not self._transport_gone and self.transport is not None:
            self._closeConnection(abort=True)

    def when_writable(self) -> Any:
        """A future that fires with True once the transport can take more bytes
        (at once if it can now), or with False if the connection closes first."""
        if not self._writing_paused:
            return txaio.create_future_success(self.state != self.STATE_CLOSED)
        future = txaio.create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(future)
        return future

    def pause_reading(self) -> None:
        """Deliver no further message until :meth:`resume_reading`.

        The transport stops reading from the socket (TCP backpressure on the
        peer), and frames it had already read stay unparsed: a read of many
        small messages does not run past the pause. The peer's close frame
        waits too.
        """
        self._reading_paused = True
        self._pause_transport_reading()

    def resume_reading(self) -> None:
        """Read again, starting with the frames held since :meth:`pause_reading`."""
        paused, self._reading_paused = self._reading_paused, False
        self._resume_transport_reading()
        # Inside a message callback the running parse loop goes on by itself.
        if paused and not self._parsing and self.state in (self.STATE_OPEN, self.STATE_CLOSING):
            self.consumeData()

    # -- flow control ----------------------------------------------------

    def _admit(self) -> bool:
        """May one more message be queued? Drops the peer past ``max_buffered_bytes``."""
        if self.state != self.STATE_OPEN:
            return False
        cap = self.max_buffered_bytes
        if cap and self._writing_paused and self.buffered_amount > cap:
            self.log.warn(
                "wskit: dropping {peer}: more than {cap} bytes unsent (too slow a consumer)",
                peer=self.peer,
                cap=cap,
                wskit_event="slow-consumer",
            )
            metrics.recorder().slow_consumer_dropped()
            self.abort()
            return False
        return True

    def _transport_paused(self) -> None:
        # Twisted repeats the signal on every write while its buffer is full.
        if not self._writing_paused:
            self._writing_paused = True
            self._paused_bytes = 0

    def _transport_resumed(self) -> None:
        self._writing_paused = False
        self._paused_bytes = 0
        self._wake_drain_waiters(True)

    def _wake_drain_waiters(self, writable: bool) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for future in waiters or ():
            if not txaio.is_called(future):
                txaio.resolve(future, writable)

    # -- Autobahn hooks ------------------------------------------------

    def sendMessage(self, payload, isBinary=False, fragmentSize=None, sync=False, doNotCompress=False):
        length = len(payload)
        # Tiny messages grow under deflate and cost a compressor call each.
        if length < self.compress_threshold:
            doNotCompress = True
        pmce = self._perMessageCompress
        compress = not doNotCompress and pmce is not None
        if (self.state != STATE_OPEN or fragmentSize is not None or sync
                or type(payload) is not bytes or not (isBinary is True or isBinary is False)
                or 0 < self.maxMessagePayloadSize < length or 0 < self.autoFragmentSize < length
                or (compress and self.autoFragmentSize > 0)  # fragmented by the compressed length
                or self.logFrames or self.trackedTimings or not _fast_send_class(type(self))):
            super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)
            return
        # One unfragmented data frame: what Autobahn's sendMessage and sendFrame would
        # write, with the same traffic counts, in one header build and one write.
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += 1
        stats.outgoingOctetsAppLevel += length
        if compress:
            pmce.start_compress_message()
            payload = pmce.compress_message_data(payload) + pmce.end_compress_message()
            length = len(payload)
            if 0 < self.maxMessagePayloadSize < length:
                stats.outgoingOctetsWebSocketLevel += length
                self.wasMaxMessagePayloadSizeExceeded = True
                message = (f"tried to send WebSocket message with size {length} exceeding payload limit "
                           f"of {self.maxMessagePayloadSize} octets")
                self.log.warn(message)
                raise PayloadExceededError(message)
            first = FIN_RSV1_BINARY if isBinary else FIN_RSV1_TEXT
        else:
            first = FIN_BINARY if isBinary else FIN_TEXT
        stats.outgoingOctetsWebSocketLevel += length
        stats.outgoingWebSocketFrames += 1
        if self.maskServerFrames if self.factory.isServer else self.maskClientFrames:
            mask = new_mask()
            if self.applyMask:
                payload = unmask(payload, mask)  # masking is its own inverse
            data = frame_header(first, length, mask) + payload
        elif length <= 125:
            data = bytes((first, length)) + payload
        else:
            data = frame_header(first, length) + payload
        if self.send_queue or self.logOctets:
            self.sendData(data)
            return
        if self._corked is not None:
            self._flush_corked()  # after the frames held back before it
        self._write_out(data)
        if self._writing_paused:
            self._paused_bytes += len(data)
        stats.outgoingOctetsWireLevel += len(data)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # Twisted transports only signal their high-water mark: count what is queued past it.
        if self._corked is not None:
            self._flush_corked()  # after the frames held back before it
        if self._writing_paused:
            self._paused_bytes += len(data)
        # Autobahn's own, less its per-write debug line (whose arguments are built
        # on every write, logging on or off); queued and chopped writes go through it.
        if sync or chopsize or self.logOctets or self.send_queue:
            super().sendData(data, sync, chopsize)
            return
        self._write_out(data)
        state = self.state
        if state == STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif state == self.STATE_CONNECTING or state == self.STATE_PROXY_CONNECTING:
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

    def _message_result(self, result: Any) -> None:
        """What ``onMessage`` returned, as Autobahn's ``_onMessage`` treats it (Twisted: nothing)."""

    def _fail_connection(self, code: int = 1001, reason: str = "going away") -> None:
        self._failed = True
        super()._fail_connection(code, reason)

    def _dataReceived(self, data: bytes) -> None:
        if self._failed:
            self._received_after_failure += len(data)
        if (self.state == STATE_OPEN and not self.data and not self._parsing and not self._reading_paused
                and not self.logOctets and self._whole_frames_apply()):
            # Autobahn's _dataReceived and consumeData, for a read that starts at a frame.
            self.trafficStats.incomingOctetsWireLevel += len(data)
            self.data = data
            self._parsing = True
            try:
                more = self._receive_whole_frames()
            finally:
                self._parsing = False
            if more and self.state != self.STATE_CLOSED:
                self.consumeData()
        else:
            super()._dataReceived(data)
        # After a violation (1002/1007/1009) the connection waits for the peer's close frame, but a
        # frame refused half-way (a fragment or split frame that inflated past the limit) leaves the
        # rest of its bytes, and anything after them, unparsable: buffering it until the close
        # timeout would let a peer grow our memory at line rate, and parsing and discarding what
        # follows a whole refused frame would let it keep us busy. A well-behaved peer sends a
        # close frame: past MAX_BYTES_AFTER_FAILURE, buffered or read since, the peer is dropped.
        # Closed, not aborted: our close frame may still be queued (Twisted writes on the next
        # reactor turn, and reads before it writes), and an abort would throw it away. Closing
        # stops reading at once; a peer that takes nothing is aborted at the close timeout.
        if (self._failed and self.state != self.STATE_CLOSED
                and max(len(self.data), self._received_after_failure) > MAX_BYTES_AFTER_FAILURE):
            self.log.info("wskit: dropping {peer}: {size} bytes received after the connection was failed",
                          peer=self.peer, size=max(len(self.data), self._received_after_failure),
                          wskit_event="drop-after-failure")
            self.data = b""
            self.dropConnection(abort=False)

    def processData(self) -> bool:
        if self._reading_paused:
            return False  # held until resume_reading()
        if self._parsing:
            # Bytes delivered from inside a message callback: the running loop reads them next.
            return False
        self._parsing = True
        try:
            if self.state == STATE_OPEN and self._whole_frames_apply():
                return self._receive_whole_frames()
            return super().processData()
        finally:
            self._parsing = False

    def _whole_frames_apply(self) -> bool:
        """May :meth:`_receive_whole_frames` read the next frame (outside a frame and a
        message, nothing that watches individual frames or messages)?"""
        return (self.current_frame is None and not self.inside_message and not self.logFrames
                and not self.trackedTimings and self._listeners is None and self._parent is None
                and self.applyMask and _fast_receive_class(type(self)))

    def _receive_whole_frames(self) -> bool:
        """Deliver the whole, unfragmented data frames at the head of the buffer.

        What Autobahn's parser would do for them, checks, counts and callbacks
        included, less its per-frame objects and calls; a compressed message is
        inflated through the connection's permessage-deflate object as Autobahn
        does (:meth:`_inflate_whole`). The first frame this does not take (a
        control frame, a fragment, an incomplete frame, an uncompressed size or
        UTF-8 violation, anything unusual) goes to Autobahn's general parser
        from its first byte, which decides what it means.
        """
        data = self.data
        size = len(data)
        pos = 0
        masked = MASK_BIT if self.factory.isServer else 0
        max_frame = self.maxFramePayloadSize
        max_message = self.maxMessagePayloadSize
        validate = self.utf8validateIncoming
        stats = self.trafficStats
        pmce = self._perMessageCompress
        general = stopped = False
        try:
            while size - pos >= 2:
                first = data[pos]
                second = data[pos + 1]
                if (second & MASK_BIT) != masked:
                    general = True
                    break
                if first == FIN_BINARY or first == FIN_TEXT:
                    compressed = False
                elif (first == FIN_RSV1_TEXT or first == FIN_RSV1_BINARY) and pmce is not None:
                    compressed = True
                else:
                    general = True
                    break
                length = second & 0x7F
                start = pos + 2
                if length == 126:
                    length = (data[start] << 8) | data[start + 1] if size - start >= 2 else 0
                    if length < 126:  # incomplete, or not the minimal encoding
                        general = True
                        break
                    start += 2
                elif length == 127:
                    length = int.from_bytes(data[start:start + 8], "big") if size - start >= 8 else 0
                    if length <= 0xFFFF or length > 0x7FFFFFFFFFFFFFFF:
                        general = True
                        break
                    start += 8
                if masked:
                    mask = data[start:start + 4]
                    start += 4
                end = start + length
                if end > size or 0 < max_message < length or 0 < max_frame < length:
                    general = True
                    break
                if masked and length:
                    payload = unmask(data[start:end], mask)
                else:
                    payload = data[start:end]
                if compressed:
                    is_binary = first == FIN_RSV1_BINARY
                    pos = end
                    payload = self._inflate_whole(pmce, payload, not is_binary and validate)
                    if payload is None or payload is _STOP:  # failed, as Autobahn fails it
                        stopped = payload is None  # and reads on, or stops reading, as Autobahn does
                        break
                else:
                    is_binary = first == FIN_BINARY
                    if not is_binary and validate and not payload.isascii():
                        try:
                            payload.decode("utf-8")
                        except UnicodeDecodeError:
                            general = True  # Autobahn fails the connection with its own reason
                            break
                    pos = end
                    stats.incomingOctetsWebSocketLevel += length
                    stats.incomingOctetsAppLevel += length
                    stats.incomingWebSocketFrames += 1
                    if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                        self._cancelAutoPingTimeoutCall()  # (_inflate_whole does it for compressed ones)
                stats.incomingWebSocketMessages += 1
                # Autobahn's _onMessage, whose only work besides is the backend's use of the result.
                result = self.onMessage(payload, is_binary)
                if result is not None:
                    self._message_result(result)
                current = self.data
                if current is not data:
                    # The buffer changed from inside the callback: bytes were added (read on
                    # from where this loop is), or it was emptied.
                    data = data[pos:] + current[size:] if len(current) > size else current
                    self.data = data
                    size = len(data)
                    pos = 0
                if (self.state != STATE_OPEN or self._reading_paused or self.logFrames
                        or self.trackedTimings or self._listeners is not None):
                    stopped = True
                    break
        finally:
            if pos:
                self.data = data[pos:] if pos < size else b""
        if general:
            return super().processData()
        # Stopped by the callback: the caller goes on with the rest (Autobahn's parser
        # when the connection is closing). Otherwise what is left is an incomplete header,
        # or the connection failed on an inflated message (Autobahn's parser stops there too).
        return stopped and len(self.data) > 0

    def _inflate_whole(self, pmce: Any, payload: bytes, validate: bool) -> Any:
        """Inflate one whole compressed message as Autobahn's onFrameBegin/Data/End would:
        the same calls on the extension, limits, UTF-8 checks, traffic counts and, on a
        violation, the same failure (close code and reason). Returns the message; on a
        failure :data:`_STOP` where Autobahn's parser stops reading (a limit, corrupt data)
        and None where it reads on (invalid UTF-8: the connection waits for the peer's
        close frame)."""
        max_message = self.maxMessagePayloadSize
        stats = self.trafficStats
        pmce.start_decompress_message()
        try:
            # The whole message's budget: no frame of it came before.
            data = pmce.decompress_message_data(payload, max_output_len=max_message if max_message > 0 else None)
        except PayloadExceededError:
            self.wasMaxMessagePayloadSizeExceeded = True
            self._max_message_size_exceeded(
                max_message, max_message,
                f"received WebSocket message exceeds payload limit of {max_message} octets after decompression")
            return _STOP
        except PayloadCorruptError as exc:
            self._invalid_payload(f"received WebSocket message cannot be decompressed: {exc}")
            return _STOP
        size = len(data)
        stats.incomingOctetsWebSocketLevel += len(payload)
        stats.incomingOctetsAppLevel += size
        if 0 < max_message < size:
            self.wasMaxMessagePayloadSizeExceeded = True
            self._max_message_size_exceeded(
                size, max_message, f"received WebSocket message size {size} exceeds payload limit of {max_message} octets")
            return _STOP
        utf8_error = None  # where a text message stops being UTF-8 (octet index)
        if validate and not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                validator = self.utf8validator
                validator.reset()
                valid, _ended, _, index = validator.validate(data)
                if not valid:
                    # Autobahn fails the connection here and goes on to the frame's end.
                    self._invalid_payload(
                        f"encountered invalid UTF-8 while processing text message at payload octet index {index}")
                utf8_error = index
        if self.state == STATE_OPEN:
            stats.incomingWebSocketFrames += 1
        if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
            self._cancelAutoPingTimeoutCall()
        try:
            pmce.end_decompress_message()
        except PayloadCorruptError as exc:
            if not self.failedByMe:
                self._invalid_payload(f"received WebSocket message cannot be decompressed: {exc}")
            return _STOP
        if utf8_error is not None:
            # Failing a second time (after invalid UTF-8) drops TCP, as in Autobahn.
            self._invalid_payload(
                f"UTF-8 text message payload ended within Unicode code point at payload octet index {utf8_error}")
            return None
        return data

    def _connectionLost(self, reason) -> None:
        self._transport_gone = True
        self._corked = None
        self._transport_write = None  # refers to this connection (see _frame_writer)
        super()._connectionLost(reason)
        self._release_compression()  # now rather than at collection (see ServerProtocolMixin._connectionLost)
        self._wake_drain_waiters(False)

    def _onOpen(self) -> None:
        if self._perMessageCompress is not None and self._compression_settings is not None:
            tune_extension(self._perMessageCompress, self._compression_settings, self._deflate_agreement,
                           getattr(self.factory, "_batched_timer", None))
        super()._onOpen()

    def _call_handler(self, method: str, *args: Any) -> None:
        handler = self.handler
        if handler is None:
            return
        try:
            result = getattr(handler, method)(*args)
        except Exception:
            self._handler_failed(txaio.create_failure(), method)
            return
        if result is not None:
            future = txaio.as_future(lambda: result)
            txaio.add_callbacks(future, None, lambda fail: self._handler_failed(fail, method))

    def _handler_failed(self, fail: Any, method: str = "handler") -> None:
        log_failure(
            self.log,
            fail,
            "wskit: {subprotocol} {method} failed for {peer}: {log_failure.value}",
            subprotocol=self.subprotocol,
            method=method,
            peer=self.peer,
        )
        self.close(CLOSE_INTERNAL_ERROR, "internal error")
        return None

    def _subprotocol_label(self) -> str:
        if self.subprotocol:
            return self.subprotocol
        if self.served_subprotocol:
            return f"{self.served_subprotocol}(default)"
        return "none"

    def _log_open(self) -> None:
        self.log.info(
            "wskit: open peer={peer} subprotocol={subprotocol} extensions={extensions}",
            peer=self.peer,
            subprotocol=self._subprotocol_label(),
            extensions=",".join(self.extensions) or "none",
            wskit_event="open",
        )

    def _log_close(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        if self._failed and self.localCloseCode is not None:
            # This side failed the connection (1002/1007/1009): Autobahn reports an invalid
            # close code the peer sent as 1000; log the code we closed with instead.
            code, reason = self.localCloseCode, self.localCloseReason
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
        self.log.info(
            "wskit: close peer={peer} subprotocol={subprotocol} extensions={extensions} "
            "code={code} clean={clean}",
            peer=self.peer,
            subprotocol=self._subprotocol_label(),
            extensions=",".join(self.extensions) or "none",
            code=code,
            clean=was_clean,
            reason=reason,
            wskit_event="close",
        )


class ServerProtocolMixin(ConnectionMixin):
    """Server side: path and origin checks, subprotocol routing, limits from settings.

    Subclass the concrete class (``wskit.twisted.ServerProtocol`` or
    ``wskit.asyncio.ServerProtocol``) in Autobahn's native style and call
    ``super()`` where you want wskit's behaviour; or write a
    :class:`wskit.Handler` and let the registry route to it.
    """

    _FACTORY_OPTIONS = tuple(WebSocketServerProtocol.CONFIG_ATTRS)

    app: Any = None
    # The verified claims of the client's token (a wskit.auth.Identity); None with authentication off.
    identity: Any = None
    # The connection's admission and rate-limit state (wskit.guard.ConnectionGuard).
    _guard: Any = None
    _deny_headers: tuple[tuple[str, str], ...] = ()
    # Fires (with None) once the transport is gone and on_close has run (the close line is logged).
    is_gone: Any = None
    # Metrics (wskit.metrics): with metrics on, an open connection's trafficStats
    # is its subprotocol's shared wskit.metrics.Traffic (Autobahn does the counting).
    _recorder: Any = metrics.recorder()
    _traffic: Any = None
    _traffic_label: str | None = None

    def _connectionMade(self) -> None:
        self.is_gone = txaio.create_future()
        self.app = self.factory.app
        self._compression_settings = self.app.settings.compression
        self.compress_threshold = self._compression_settings.threshold
        self.max_buffered_bytes = self.app.settings.limits.max_buffered_bytes
        self._recorder = metrics.recorder()
        self._copy_factory_options()
        super()._connectionMade()
        guard = getattr(self.app, "guard", None)
        if guard is not None:
            self._guard = guard.attach(self, self.factory._timer_clock())

        deadline = self.factory.takeover_deadline
        if deadline is not None and self.openHandshakeTimeoutCall is not None:
            # A twisted.web Site read the request before handing the connection
            # over: the opening handshake's deadline counts from when the client
            # connected, not from now.
            self.openHandshakeTimeoutCall.cancel()
            self.openHandshakeTimeoutCall = self.factory._batched_timer.call_later(
                max(0.0, deadline - self.factory.seconds()), self.onOpenHandshakeTimeout
            )

    # -- the request, before Autobahn parses it ----------------------------------

    # The request head passed wskit's checks; Autobahn parses it next.
    _head_screened = False

    def processHandshake(self) -> None:
        # Autobahn buffers everything until the blank line ending the head and
        # then parses it: measure and check the head first (wskit.handshake),
        # so an endless header line or a flood of headers is refused at the limit.
        if not self._head_screened:
            limits = self.app.settings.limits
            head = read_request_head(self.data, limits.max_request_size, limits.max_headers)
            if head is None:
                return  # incomplete, within the limits: wait for more
            refusal = head if isinstance(head, Refusal) else request_refusal(head, self.factory.host_policy)
            if refusal is not None:
                self._refuse(refusal, head if isinstance(head, RequestHead) else None)
                return
            self._head_screened = True
        super().processHandshake()

    def _refuse(self, refusal: Refusal, head: RequestHead | None = None) -> None:
        self._log_refusal(refusal.status, refusal.reason,
                          head.header("origin") if head else None, head.target if head else None)
        self.failHandshake(refusal.reason, refusal.status, list(refusal.headers))

    def _log_refusal(self, status: int, reason: str, origin: str | None, path: str | None) -> None:
        # One structured line per refusal, so operators see who was turned away and why.
        self.log.info(
            "wskit: refused peer={peer} status={status} origin={origin} path={path}: {reason}",
            peer=self.peer,
            status=status,
            origin=origin or "-",
            path=path or "-",
            reason=reason,
            wskit_event="refused",
        )

    # -- metrics: per connection, below anything a subclass overrides ------------

    def _share_traffic(self, label: str) -> None:
        own, shared = self.trafficStats, self._recorder.traffic(label)
        shared.preopenIncomingOctetsWireLevel += own.preopenIncomingOctetsWireLevel
        shared.preopenOutgoingOctetsWireLevel += own.preopenOutgoingOctetsWireLevel
        self._traffic = self.trafficStats = shared

    def _onOpen(self) -> None:
        label = self._traffic_label = self.served_subprotocol or metrics.NO_SUBPROTOCOL
        if self._recorder.enabled:
            self._share_traffic(label)  # with the handshake's bytes
        self._recorder.connection_opened(label)
        super()._onOpen()

    def _onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._traffic_label is not None:
            self._recorder.connection_closed(self._traffic_label, code)
        super()._onClose(wasClean, code, reason)

    def sendPreparedMessage(self, preparedMsg: Any) -> None:
        # Autobahn counts a prepared message it compresses for this connection
        # (through sendMessage), but not one it sends as pre-framed bytes.
        traffic = self._traffic
        if (traffic is not None and self.state == STATE_OPEN
                and (self._perMessageCompress is None or preparedMsg.doNotCompress)):
            traffic.outgoingWebSocketMessages += 1
            traffic.outgoingOctetsAppLevel += _unmasked_payload_length(preparedMsg.payloadHybi)
        super().sendPreparedMessage(preparedMsg)

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        self._recorder.handshake_refused(code)
        super().failHandshake(reason, code, responseHeaders)

    def onConnect(self, request):
        try:
            return self._accept_handshake(request)
        except ConnectionDeny as deny:
            self._deny_headers = getattr(deny, "headers", ())  # a 401's WWW-Authenticate
            self._log_refusal(deny.code, deny.reason, request.origin, request.path)
            raise

    def _accept_handshake(self, request):
        settings: ServerSettings = self.app.settings
        if self.factory.check_path and urlsplit(request.path).path != settings.path:
            raise ConnectionDeny(404, f"no WebSocket endpoint at {request.path} (try {settings.path})")
        self.app.origin_policy.check(
            request.origin, request.headers.get("host"), is_secure=self.factory.isSecure
        )
        if self._guard is not None:
            self.identity = self._guard.admit(request)  # per-address limit (503), token (401)
        try:
            name, entry = self.app.registry.select(
                request.protocols, settings.default_subprotocol, settings.prefer
            )
        except NegotiationError as exc:
            raise ConnectionDeny(exc.status, str(exc)) from None
        self.served_subprotocol = entry.name
        self.handler = entry.handler(self)
        return name

    def succeedHandshake(self, res):
        # Decide compression from the raw offers before Autobahn parses them:
        # Autobahn answers an offer it cannot parse (a window of 8, an unknown
        # or repeated parameter) with HTTP 400, where RFC 7692 says to decline
        # that offer and try the next. A compression parameter never refuses
        # a handshake.
        policy = self.perMessageCompressionAccept
        if isinstance(policy, ServerCompression):
            choice = policy.choose(self.websocket_extensions or [])
            for reason in choice.declined:
                self.log.debug("wskit: declined compression offer from {peer}: {reason}",
                               peer=self.peer, reason=reason)
            self.websocket_extensions = choice.extensions
            self.perMessageCompressionAccept = choice.accept_offers
            self._deflate_agreement = choice.agreement
        return super().succeedHandshake(res)

    def onOpen(self) -> None:
        self._log_open()
        self.app.connection_opened(self)
        self._call_handler("on_open")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        guard = self._guard
        if guard is not None and guard.throttle is not None:
            guard.message(payload, isBinary, self._dispatch_message)  # rate limits
        else:
            self._dispatch_message(payload, isBinary)

    def _dispatch_message(self, payload: bytes, isBinary: bool) -> None:
        # _call_handler("on_message", ...), written out: it runs for every message.
        handler = self.handler
        if handler is None:
            return
        try:
            result = handler.on_message(payload, isBinary)
        except Exception:
            self._handler_failed(txaio.create_failure(), "on_message")
            return
        if result is not None:
            future = txaio.as_future(lambda: result)
            txaio.add_callbacks(future, None, lambda fail: self._handler_failed(fail, "on_message"))

    # -- the end of the closing handshake ------------------------------------

    # True while Autobahn handles a close frame from the peer (see dropConnection).
    _answering_close = False
    # The abort that ends a graceful TCP close the peer does not let finish.
    _drop_fallback: Any = None

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> Any:
        self._answering_close = True
        try:
            return super().onCloseFrame(code, reasonRaw)
        finally:
            self._answering_close = False

    def dropConnection(self, abort: bool = False) -> None:
        # Once both close frames have been exchanged, Autobahn's server drops
        # TCP with an abort, which discards whatever the transport still holds.
        # When the peer's close frame was invalid, our answer (1002, or 1007 for
        # a reason that is not UTF-8) was queued a moment before: Twisted writes
        # on the next reactor turn, so the peer got a TCP reset instead of the
        # close frame. After a closing handshake, close TCP once our bytes are
        # out; a peer that never takes them is aborted at the close timeout.
        if abort and self._answering_close and self.wasClean:
            abort = False
        dropping = self.state != self.STATE_CLOSED
        super().dropConnection(abort)
        if dropping and not abort:
            self._arm_drop_fallback()

    def _arm_drop_fallback(self) -> None:
        timeout = self.closeHandshakeTimeout
        if timeout and self._drop_fallback is None and not self._transport_gone:
            self._drop_fallback = self.factory._batched_timer.call_later(timeout, self._drop_fallback_due)

    def _drop_fallback_due(self) -> None:
        self._drop_fallback = None
        if not self._transport_gone and self.transport is not None:
            self.log.info(
                "wskit: aborting {peer}: our last bytes not taken within {timeout} s of closing",
                peer=self.peer,
                timeout=self.closeHandshakeTimeout,
            )
            self._closeConnection(abort=True)

    def _connectionLost(self, reason) -> None:
        if self._drop_fallback is not None:
            self._drop_fallback.cancel()
            self._drop_fallback = None
        super()._connectionLost(reason)
        if self._traffic_label is None and self._recorder.enabled:
            self._share_traffic(metrics.NO_SUBPROTOCOL)  # a refused or abandoned handshake
        # A closed connection left in a reference cycle waits for the collector's
        # next full pass, which counts objects, not bytes: hundreds of closed
        # connections, with their zlib contexts, waited in the stress soak. Free
        # what is large now (the zlib contexts, in ConnectionMixin) and leave no
        # cycle: the guard, is_gone (fires with None), is_closed (_forget_closed).
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.detach()
        # Autobahn resolves is_closed when it drops the connection, a loop turn
        # before the transport reports the loss and onClose logs the close line;
        # a shutdown that waited for is_closed stopped the loop in between.
        if self.is_gone is not None and not txaio.is_called(self.is_gone):
            txaio.resolve(self.is_gone, None)
        self._forget_closed()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.handler is not None:
            self._log_close(wasClean, code, reason)
            self.app.connection_closed(self)
            self._call_handler("on_close", wasClean, code, reason)
            self.handler = None

    def sendHttpErrorResponse(self, code, reason, responseHeaders=None) -> None:
        # Autobahn answers a refused handshake with a bare status line; say why in a
        # body too, both bounded (a reason may quote what the client sent).
        self.sendData(refusal_response(code, str(reason), (*(responseHeaders or ()), *self._deny_headers), self.app.settings.server_header))

    def sendServerStatus(self, redirectUrl=None, redirectAfter=0) -> None:
        # A plain HTTP request (no Upgrade) reached the WebSocket protocol.
        self._answer_plain_http()

    def sendRedirect(self, url: str) -> None:
        # Autobahn would 303-redirect to any ?redirect= URL: an open redirect. Never do that.
        self._answer_plain_http()

    def _answer_plain_http(self) -> None:
        settings = self.app.settings
        path = urlsplit(self.http_request_uri).path
        if self.factory.check_path and settings.serve_static and path != settings.path:
            # Standalone server (asyncio): serve the demo page's files ourselves.
            filename = resolve_static_file(static_root(settings.static_dir), path)
            if filename is not None:
                with open(filename, "rb") as f:
                    body = f.read()
                self._send_http(200, "OK", content_type(filename), body)
            else:
                self._send_http(404, "Not Found", "text/plain; charset=utf-8", b"not found\n")
            return
        names = ", ".join(self.app.registry.names)
        body = (
            f"This is a WebSocket endpoint; connect with a WebSocket client "
            f"(subprotocols: {names}).\n"
        ).encode()
        self._send_http(426, "Upgrade Required", "text/plain; charset=utf-8", body,
                        (("Upgrade", "websocket"),))

    def _send_http(self, code: int, phrase: str, kind: str, body: bytes, headers=()) -> None:
        head = (
            f"HTTP/1.1 {code} {phrase}\r\n"
            f"Server: {self.app.settings.server_header}\r\n"
            f"Content-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n"
        )
        for name, value in headers:
            head += f"{name}: {value}\r\n"
        self.sendData(head.encode() + b"\r\n" + body)
        # A complete HTTP exchange: Autobahn drops the connection next, and would
        # log every page or asset fetch as an unclean drop (a warning) otherwise.
        self.wasClean = True


# What _inflate_whole returns for a message that failed the connection where
# Autobahn's parser stops reading.
_STOP: Any = False

# Autobahn's per-frame hooks the whole-frame paths skip: a class that overrides one
# of them (Autobahn's streaming API, a frame logger) gets Autobahn's general paths.
RECEIVE_HOOKS = (
    "onFrameBegin", "onFrameData", "onFrameEnd", "logRxFrame",
    "_onMessageBegin", "onMessageBegin", "_onMessageFrameBegin", "onMessageFrameBegin",
    "_onMessageFrameData", "onMessageFrameData", "_onMessageFrameEnd", "onMessageFrameEnd",
    "_onMessageFrame", "onMessageFrame", "_onMessageEnd", "onMessageEnd", "_onMessage",
    "consumeData", "processData",
)
SEND_HOOKS = ("sendFrame", "logTxFrame", "sendData")
# wskit's own overrides of those hooks keep Autobahn's behaviour.
_OWN_MODULES = ("wskit.protocol", "wskit.twisted", "wskit.asyncio")
_fast_receive_classes: dict[type, bool] = {}
_fast_send_classes: dict[type, bool] = {}


def _autobahn_defines(cls: type, names: tuple[str, ...]) -> bool:
    """True when Autobahn's own classes (or wskit's adapters) define every one of ``names`` for ``cls``."""
    for name in names:
        for klass in cls.__mro__:
            if name in klass.__dict__:
                module = klass.__module__
                if not (module.startswith("autobahn.") or module in _OWN_MODULES):
                    return False
                break
    return True


def _fast_receive_class(cls: type) -> bool:
    ok = _fast_receive_classes.get(cls)
    if ok is None:
        ok = _fast_receive_classes[cls] = _autobahn_defines(cls, RECEIVE_HOOKS)
    return ok


def _fast_send_class(cls: type) -> bool:
    ok = _fast_send_classes.get(cls)
    if ok is None:
        ok = _fast_send_classes[cls] = _autobahn_defines(cls, SEND_HOOKS)
    return ok


def _unmasked_payload_length(frame: bytes) -> int:
    """Payload length of one unmasked frame (a server's ``PreparedMessage.payloadHybi``)."""
    length = frame[1] & 0x7F
    return len(frame) - (2 if length < 126 else 4 if length == 126 else 10)


def split_ws_url(url: str) -> tuple[str, int, bool]:
    """``(host, port, secure)`` of a ``ws://`` or ``wss://`` URL, or :class:`SettingsError`.

    >>> split_ws_url("wss://example.com/ws")
    ('example.com', 443, True)
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"not a WebSocket URL: {url!r} ({exc})") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise SettingsError(f"not a WebSocket URL: {url!r} (expected ws://host[:port]/path or wss://...)")
    secure = parts.scheme == "wss"
    return parts.hostname, port or (443 if secure else 80), secure


def closing_deadline(settings: ServerSettings) -> float:
    """Seconds a server shutdown waits for its connections' closing handshakes.

    Autobahn drops a peer that has not answered by the close-handshake timeout;
    a connection still there at this deadline is aborted
    (:meth:`WebSocketApp.abort_all`), and the shutdown then waits at most
    :data:`ABORT_GRACE_SECONDS` more for the transports to report the loss.
    """
    return settings.timeouts.close_handshake + CLOSE_GRACE_SECONDS


def factory_url(settings: ServerSettings) -> str:
    """The URL an Autobahn server factory is created with.

    Autobahn refuses port 0 in a URL, but ``--port 0`` (pick a free port) is
    valid: the factory only uses the URL's scheme (ws/wss), so leave the port out.
    """
    return settings.url_for(settings.port or None)


class BatchedTimer(_BatchedTimer):
    """txaio's batched timer, each deadline rounded *up* to its bucket.

    A connection timer (handshake, close, ping) is one of many that share one
    delayed call per :data:`TIMER_BUCKET_SECONDS` bucket. txaio truncates
    ``now + delay`` to a whole second before bucketing, so its timers fire up
    to a second early (a 0.5 s ping timeout at once); here a timeout fires at
    most one bucket late, never early.
    """

    def call_later(self, delay: float, func: Any, *args: Any, **kwargs: Any) -> Any:
        now = self._get_seconds()
        bucket = self._bucket_milliseconds
        # The epsilon: float noise on a bucket boundary must not cost a whole bucket.
        due = int(math.ceil((now + delay) * 1000.0 / bucket - 1e-9) * bucket)
        call = _BatchedCall(self, due, lambda: func(*args, **kwargs))
        pending = self._buckets.get(due)
        if pending is not None:
            pending[1].append(call)
        else:
            delayed = self._create_delayed_call(max(0.0, due / 1000.0 - now), self._notify_bucket, due)
            self._buckets[due] = (delayed, [call])
        return call


class FactoryMixin:
    """What server and client factories share: timers on the factory's own event loop."""

    def _bind_timers(self) -> None:
        # Autobahn's handshake, close and auto-ping timers run on a batched timer
        # that txaio would bind to its global loop (importing the global reactor
        # on Twisted). Bind it to the reactor or loop this factory was given,
        # so a connection can be driven on a fake clock.
        seconds, call_later = self._timer_clock()
        self.seconds = seconds
        self._batched_timer = BatchedTimer(
            TIMER_BUCKET_SECONDS * 1000.0, TIMER_CHUNK_SIZE,
            seconds_provider=seconds, delayed_call_creator=call_later,
        )

    def _timer_clock(self) -> tuple[Any, Any]:
        """``(seconds(), call_later(delay, fn, *args))`` of this factory's reactor or loop."""
        raise NotImplementedError


class ServerFactoryMixin(FactoryMixin):
    """Applies :class:`ServerSettings` to an Autobahn server factory.

    ``loop`` is the event loop keyword of the Autobahn factory (``reactor=``
    on Twisted, ``loop=`` on asyncio).
    """

    app: Any = None
    # False when a twisted.web Site has already routed the request to us.
    check_path = True
    # Which Host names requests may carry (wskit.origin.HostPolicy).
    host_policy: Any = None
    # Set by a twisted.web Site while it hands a connection over: when (on this
    # factory's clock) the connection's opening handshake must be complete.
    takeover_deadline: float | None = None

    def __init__(self, app: Any = None, *, settings: ServerSettings | None = None,
                 protocol: type | None = None, **loop: Any):
        if app is None:
            from .app import WebSocketApp

            app = WebSocketApp(settings)
        super().__init__(url=factory_url(app.settings), **loop)
        if protocol is not None:
            self.protocol = protocol
        self._bind_timers()
        self._configure(app)

    def _configure(self, app: Any) -> None:
        settings: ServerSettings = app.settings
        self.app = app
        self.host_policy = app.host_policy
        limits, compression = settings.limits, settings.compression
        self.setProtocolOptions(
            maxConnections=limits.max_connections,
            perMessageCompressionAccept=make_server_accept(compression, limits.max_message_size),
            # RFC 6455 only (Autobahn also speaks the Hybi drafts' version 8).
            versions=[13],
            # Origins are wskit's to judge (OriginPolicy): without this, every
            # setProtocolOptions call makes Autobahn refuse "Origin: null" itself
            # with a bare 400.
            allowNullOrigin=True,
            **common_protocol_options(settings),
        )
        self.server = settings.server_header


def common_protocol_options(settings: ServerSettings | ClientSettings) -> dict[str, Any]:
    """Autobahn factory options both sides take from the same settings."""
    limits, timeouts = settings.limits, settings.timeouts
    return dict(
        maxFramePayloadSize=limits.effective_frame_size,
        maxMessagePayloadSize=limits.max_message_size,
        openHandshakeTimeout=timeouts.open_handshake,
        closeHandshakeTimeout=timeouts.close_handshake,
        autoPingInterval=timeouts.auto_ping_interval,
        autoPingTimeout=timeouts.auto_ping_timeout,
        # Send a close frame with the reason (1002/1007/1009) before dropping.
        failByDrop=False,
        # Answer a close frame with its own code (RFC 6455 5.5.1), not always 1000.
        echoCloseCodeReason=True,
    )


class ClientProtocolMixin(ConnectionMixin):
    """Client side: offers from settings, a clear error when the handshake fails.

    Autobahn's ``is_open`` future fires once the connection is open; when the
    handshake fails it fails with :class:`HandshakeError` instead of never firing.
    ``is_closed`` fires once the connection is gone.
    """

    _FACTORY_OPTIONS = tuple(WebSocketClientProtocol.CONFIG_ATTRS)

    handler_factory: Any = None

    def _connectionMade(self) -> None:
        self._handshake_error: HandshakeError | None = None
        self._compression_error: str | None = None
        settings: ClientSettings = self.factory.wskit_settings
        self._compression_settings = settings.compression
        self.compress_threshold = settings.compression.threshold
        self.max_buffered_bytes = settings.limits.max_buffered_bytes
        self._copy_factory_options()
        super()._connectionMade()

    def _parseExtensionsHeader(self, header, removeQuotes=True):
        # On a client this parses the server's response. Check the compression
        # answer here, against what was offered (wskit.deflate.check_response),
        # before Autobahn's own parser: that one refuses valid windows of 8 and
        # lets through values the offer did not allow.
        extensions = super()._parseExtensionsHeader(header, removeQuotes)
        policy = self.perMessageCompressionAccept
        if not isinstance(policy, ClientCompression):
            return extensions
        for i, (name, params) in enumerate(extensions):
            if name not in PERMESSAGE_COMPRESSION_EXTENSION:
                continue
            try:
                accept = policy.accept_response_params(name, params)
            except Exception as exc:  # DeflateParameterError, or another codec's parser
                detail = str(exc) if isinstance(exc, DeflateParameterError) else f"invalid {name} response: {exc}"
                self._compression_error = (
                    f"invalid compression answer from the server: {detail} "
                    f"(Sec-WebSocket-Extensions: {header.strip()})"
                )
                self.perMessageCompressionAccept = lambda _response: None
            else:
                self._deflate_agreement = getattr(accept, "agreement", None)
                self.perMessageCompressionAccept = lambda _response, accept=accept: accept
            if name == DEFLATE:
                # Autobahn still parses what it is shown: its parameters are handled.
                extensions[i] = (name, {})
            break  # Autobahn refuses a second compression extension itself
        return extensions

    def failHandshake(self, reason: str, code: int = 400, responseHeaders=None) -> None:
        if self._compression_error:
            reason = self._compression_error
            self._handshake_error = HandshakeError(reason)
        else:
            self._handshake_error = self._refusal() or HandshakeError(reason)
        super().failHandshake(reason)

    def _refusal(self) -> HandshakeError | None:
        """The server's refusal (a status other than 101), from the response's status line."""
        parts = (getattr(self, "http_status_line", None) or "").split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit() or parts[1] == "101":
            return None
        return HandshakeError(parts[2].strip() if len(parts) > 2 else "", int(parts[1]))

    def onConnect(self, response) -> None:
        factory = self.handler_factory or self.factory.handler_factory
        if factory is not None:
            self.handler = factory(self)

    def onOpen(self) -> None:
        self._log_open()
        self._call_handler("on_open")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._call_handler("on_message", payload, isBinary)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> Any:
        # The server's answer to our close: Autobahn then waits for the server
        # to drop TCP, on a timer it starts with the global txaio.call_later
        # (the global reactor on Twisted). Start that timer on this factory's
        # reactor or loop instead, like every other timer of the connection.
        drop_timeout = self.serverConnectionDropTimeout
        awaiting_drop = self.state == self.STATE_CLOSING
        self.serverConnectionDropTimeout = 0
        try:
            result = super().onCloseFrame(code, reasonRaw)
        finally:
            self.serverConnectionDropTimeout = drop_timeout
        if awaiting_drop and drop_timeout > 0 and self.state != self.STATE_CLOSED:
            self.serverConnectionDropTimeoutCall = self.factory._batched_timer.call_later(
                drop_timeout, self.onServerConnectionDropTimeout
            )
        return result

    def _connectionLost(self, reason) -> None:
        super()._connectionLost(reason)
        self._forget_closed()  # see ServerProtocolMixin._connectionLost

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not txaio.is_called(self.is_open):
            error = self._handshake_error or HandshakeError(
                self.wasNotCleanReason or reason or "connection closed before the handshake completed"
            )
            txaio.reject(self.is_open, error)
        else:
            self._log_close(wasClean, code, reason)
        self._call_handler("on_close", wasClean, code, reason)
        self.handler = None


class ClientFactoryMixin(FactoryMixin):
    """Applies :class:`ClientSettings` to an Autobahn client factory.

    ``loop`` is the event loop keyword of the Autobahn factory (``reactor=``
    on Twisted, ``loop=`` on asyncio).
    """

    handler_factory: Any = None

    def __init__(self, url: str, settings: ClientSettings | None = None, handler_factory: Any = None,
                 protocol: type | None = None, **loop: Any):
        settings = (settings or ClientSettings()).validate()
        super().__init__(
            url=url,
            protocols=list(settings.subprotocols) or None,
            origin=settings.origin,
            useragent=settings.user_agent,
            headers=dict(settings.headers) or None,
            **loop,
        )
        if protocol is not None:
            self.protocol = protocol
        self._bind_timers()
        self._configure(settings, handler_factory)

    def _configure(self, settings: ClientSettings, handler_factory: Any = None) -> None:
        self.wskit_settings = settings
        self.handler_factory = handler_factory
        limits, compression = settings.limits, settings.compression
        options = common_protocol_options(settings)
        policy = make_client_accept(compression, limits.max_message_size)
        options["perMessageCompressionOffers"] = policy.offers
        options["perMessageCompressionAccept"] = policy
        self.setProtocolOptions(**options)
