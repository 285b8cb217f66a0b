"""permessage-deflate offer/accept policy built from :class:`CompressionSettings`.

Autobahn applies the extension; :mod:`wskit.deflate` decides the
permessage-deflate parameters (RFC 7692), and this module connects the two:
what to offer (client), what to accept (server), how hard to compress. It
uses only ``autobahn.websocket.compress``, which is backend-neutral.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import weakref
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autobahn.exception import PayloadCorruptError, PayloadExceededError
from autobahn.websocket.compress import (
    PERMESSAGE_COMPRESSION_EXTENSION,
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)

from .deflate import (
    EXTENSION_NAME as DEFLATE,
    DeflateAgreement,
    DeflateParameterError,
    DeflateParams,
    DeflatePolicy,
    check_response,
    client_offer,
    negotiate_offer,
    parse_params,
    zlib_compress_window,
    zlib_inflate_window,
)
from .settings import CompressionSettings, SettingsError
from .shared_deflate import PER_CONNECTION, ShareState, share_params


def available_codecs() -> tuple[str, ...]:
    """Compression extensions Autobahn can use in this environment."""
    return tuple(PERMESSAGE_COMPRESSION_EXTENSION)


def check_codecs(settings: CompressionSettings) -> None:
    missing = [c for c in settings.codecs if c not in PERMESSAGE_COMPRESSION_EXTENSION]
    if missing:
        raise SettingsError(
            "compression extension(s) {} not available here (available: {}); "
            "install the codec's Python package".format(", ".join(missing), ", ".join(available_codecs()))
        )


# Overrides CompressionSettings.hibernate_after in every process that reads it
# (tests, the conformance testees): seconds, or "message" to hibernate after
# every message, which exercises the wake-up path on each one.
HIBERNATE_ENV = "WSKIT_COMPRESS_HIBERNATE_AFTER"
HIBERNATE_EVERY_MESSAGE = -1.0


def hibernate_delay(settings: CompressionSettings) -> float:
    """Seconds of idleness before a connection's zlib contexts are freed (0: never).

    :data:`HIBERNATE_ENV` overrides ``settings.hibernate_after``; its value
    ``message`` gives :data:`HIBERNATE_EVERY_MESSAGE`.
    """
    value = os.environ.get(HIBERNATE_ENV)
    if not value:
        return settings.hibernate_after
    if value.strip().lower() == "message":
        return HIBERNATE_EVERY_MESSAGE
    try:
        return max(0.0, float(value))
    except ValueError:
        raise SettingsError(f"{HIBERNATE_ENV} must be a number of seconds or 'message', not {value!r}") from None


class DeflateWindow:
    """The last ``size`` bytes of plaintext one direction of a deflate stream carried.

    That is all the peer's inflater (or our compressor) remembers between
    messages, so a compressor or decompressor primed with it as ``zdict``
    continues the stream exactly where the freed one stopped.

    Kept cheaply: ``parts`` is a list of references to the payloads themselves
    (a broadcast's payload is one shared object, so it costs nothing extra),
    oldest first, trimmed so that dropping the oldest would leave fewer than
    ``size`` bytes; a payload longer than ``size`` is kept as a copy of its
    tail, and past :attr:`MAX_PARTS` parts (many tiny messages) they are
    joined into one. :meth:`value` joins them only when asked (at
    hibernation). A plain list, not a deque: an idle connection keeps two of
    these, and an empty deque alone is 760 bytes.
    Only payloads that went through the deflate stream belong here: a message
    sent or received uncompressed (RSV1 clear) never enters the peer's window.
    """

    __slots__ = ("size", "parts", "length")
    MAX_PARTS = 64

    def __init__(self, size: int):
        self.size = size
        self.parts: list[bytes] = []
        self.length = 0  # bytes in parts (may exceed size by less than the oldest part)

    def __len__(self) -> int:
        return min(self.length, self.size)

    def append(self, data: bytes) -> None:
        n = len(data)
        size = self.size
        if 0 < n < size and type(data) is bytes:
            parts = self.parts
            parts.append(data)
            length = self.length + n
            while length - len(parts[0]) >= size:
                length -= len(parts.pop(0))
            self.length = length
            if len(parts) > self.MAX_PARTS:
                self.compact()
        elif n >= size:
            # A long payload: only its tail matters (copied, so the payload itself is not kept).
            self.parts = [bytes(data[n - size:])]
            self.length = size
        elif n:
            self.append(bytes(data))  # a mutable buffer: keep a copy of what it holds now

    def value(self) -> bytes:
        """The last ``size`` bytes (fewer if fewer went through), as one bytes object."""
        parts = self.parts
        if len(parts) == 1 and self.length <= self.size:
            return parts[0]
        data = b"".join(parts)
        if len(data) > self.size:
            data = data[len(data) - self.size:]
        return data

    def compact(self) -> bytes:
        """Replace the parts by their joined value (what an idle connection keeps)."""
        data = self.value()
        self.parts = [data] if data else []
        self.length = len(data)
        return data

    def reset(self, data: bytes = b"") -> None:
        """Start over from ``data`` (the window of a compressor handed over, or nothing)."""
        self.parts = []
        self.length = 0
        self.append(data)


class MallocTrim:
    """Give freed heap memory back to the OS after many zlib contexts were freed.

    glibc keeps freed blocks of its main heap for reuse; zlib contexts freed
    among live allocations leave holes that ``malloc_trim(0)`` returns to the
    OS page by page. One trim runs after a timer bucket's hibernations
    (scheduled on the same batched timer), and only once at least
    :attr:`min_bytes` were freed since the last. A no-op off glibc.
    """

    def __init__(self, min_bytes: int = 1 << 20):
        self.min_bytes = min_bytes
        self.freed = 0
        # Timers with a trim scheduled: weak, so a timer whose loop is gone
        # (its trim never runs) does not hold trims back for the others.
        self.pending: weakref.WeakSet[Any] = weakref.WeakSet()
        self.trims = 0
        self._trim = self._find_malloc_trim()

    @staticmethod
    def _find_malloc_trim() -> Any:
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            trim = libc.malloc_trim
        except (OSError, AttributeError):  # musl and others have no malloc_trim
            return None
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
        return trim

    @property
    def available(self) -> bool:
        return self._trim is not None

    def note_freed(self, nbytes: int, timer: Any) -> None:
        if self._trim is None:
            return
        self.freed += nbytes
        if self.freed >= self.min_bytes and timer is not None and timer not in self.pending:
            self.pending.add(timer)
            timer.call_later(0, self.trim, timer)

    def trim(self, timer: Any = None) -> None:
        if timer is not None:
            self.pending.discard(timer)
        if self._trim is not None and self.freed:
            self.freed = 0
            self.trims += 1
            self._trim(0)


MALLOC_TRIM = MallocTrim()


def zlib_compressor_bytes(wbits: int, mem_level: int) -> int:
    """Approximate heap bytes of a zlib compressor (zlib's own formula, plus its state)."""
    return (1 << (wbits + 2)) + (1 << (mem_level + 9)) + 6 * 1024


def zlib_decompressor_bytes(wbits: int) -> int:
    """Approximate heap bytes of a zlib decompressor (its window plus its state)."""
    return (1 << wbits) + 7 * 1024


class TunedPerMessageDeflate(PerMessageDeflate):
    """Autobahn's permessage-deflate with a configurable zlib level, exact
    negotiated windows, without idle zlib contexts when context takeover
    is off, and hibernation of idle connections when it is on.

    Autobahn always compresses at zlib's default level (6, which wskit keeps
    by default; see docs/performance.md for what other levels cost and save).
    Without context takeover Autobahn builds a fresh compressor (or
    decompressor) for each message but keeps the last one referenced, so an
    idle connection still holds it; this class drops it once the message is
    done, which is what no context takeover is for (zlib's state is most of
    a compressed connection's memory).

    **Hibernation.** With context takeover, all a direction of the stream
    needs between messages is its last window of plaintext
    (:class:`DeflateWindow`, tracked as messages go through): after
    ``hibernate_after`` idle seconds (:attr:`CompressionSettings.hibernate_after`)
    :meth:`hibernate` frees the zlib objects (~40 KiB at 12 bits, memLevel 5)
    and keeps only the windows (at most 2 x 4 KiB); the next message in
    either direction rebuilds the compressor or decompressor primed with its
    window as ``zdict``. The peer's inflater holds exactly those bytes, so
    back-references stay valid and the ratio is unchanged.
    The idle check rides on the factory's batched timer: one pending call per
    active connection, re-armed at most once per ``hibernate_after`` seconds.

    **For shared compression** (a group of connections fed by one
    compressor): :meth:`sent_window` gives the last window of plaintext this
    connection sent through its deflate stream; :meth:`replace_compressor`
    hands it a compressor (e.g. a ``copy()`` of the group's) with the window
    that compressor has seen; :meth:`drop_compressor` frees its own while
    something else compresses for it. A compressor primed with any suffix of
    what the peer's window holds (even nothing) produces a valid stream, so
    after :meth:`drop_compressor` the next message is still correct, just
    compressed without history.

    The window fields hold the RFC 7692 values negotiated (8-15); zlib gets
    what :func:`wskit.deflate.zlib_compress_window` and
    :func:`~wskit.deflate.zlib_inflate_window` make of them (8 bits needs care).
    """

    level: int = zlib.Z_DEFAULT_COMPRESSION
    # Messages this side has compressed (wskit.shared_deflate counts runs with it).
    compressed_messages: int = 0
    # This connection's place among the shared broadcast compressors
    # (a wskit.shared_deflate.ShareState), on a server that shares them.
    share: Any = None
    # Set by tune_extension: seconds idle before hibernating (0: never,
    # HIBERNATE_EVERY_MESSAGE: after each message) and the batched timer.
    hibernate_after: float = 0.0
    _timer: Any = None
    _hibernate_call: Any = None
    _active = False
    _sending = False
    _receiving = False
    # Plaintext windows, per direction; None while that direction resets per message.
    _sent: DeflateWindow | None = None
    _received: DeflateWindow | None = None
    hibernations = 0
    wakeups = 0

    def _sending_resets(self) -> bool:
        return self.server_no_context_takeover if self._is_server else self.client_no_context_takeover

    def _receiving_resets(self) -> bool:
        return self.client_no_context_takeover if self._is_server else self.server_no_context_takeover

    def _compress_bits(self) -> int:
        return self.server_max_window_bits if self._is_server else self.client_max_window_bits

    def _inflate_bits(self) -> int:
        return zlib_inflate_window(self.client_max_window_bits if self._is_server else self.server_max_window_bits)

    def track_windows(self) -> None:
        """Start keeping each context-takeover direction's plaintext window
        (called once the negotiated windows are final)."""
        self._sent = None if self._sending_resets() else DeflateWindow(1 << zlib_compress_window(self._compress_bits())[0])
        self._received = None if self._receiving_resets() else DeflateWindow(1 << self._inflate_bits())

    # -- sending ------------------------------------------------------------

    def start_compress_message(self) -> None:
        share = self.share
        if share is not None and (share.member or share.pending is not None):
            # Leaving a shared broadcast compressor: continue from its state.
            handed = share.split(self)
            if handed is not None:
                self.replace_compressor(*handed)
        self._sending = True
        if self._compressor is None or self._sending_resets():
            wbits, strategy = zlib_compress_window(self._compress_bits())
            window = self._sent
            if window is not None and window.length:
                self.wakeups += 1
                self._compressor = zlib.compressobj(
                    self.level, zlib.DEFLATED, -wbits, self.mem_level, strategy, window.value())
            else:
                self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, -wbits, self.mem_level, strategy)
        if not self._active:
            self._mark_active()

    def compress_message_data(self, data: bytes) -> bytes:
        if self._sent is not None:
            self._sent.append(data)
        return self._compressor.compress(data)

    def end_compress_message(self) -> bytes:
        data = self._compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
        self._sending = False
        self.compressed_messages += 1
        if self._sending_resets():
            self._compressor = None
        elif self.hibernate_after < 0:
            self.hibernate()
        return data

    # -- receiving ----------------------------------------------------------

    def start_decompress_message(self) -> None:
        self._receiving = True
        if self._decompressor is None or self._receiving_resets():
            window = self._received
            if window is not None and window.length:
                self.wakeups += 1
                self._decompressor = zlib.decompressobj(-self._inflate_bits(), window.value())
            else:
                self._decompressor = zlib.decompressobj(-self._inflate_bits())
        self._decompress_message_size = 0
        if not self._active:
            self._mark_active()

    def decompress_message_data(self, data: bytes, max_output_len: int | None = None) -> bytes:
        # Autobahn's method (output bounded by max_message_size and the protocol's
        # remaining budget), with the output added to the window: one frame less per call.
        limit = max_output_len
        if self.max_message_size is not None:
            remaining = self.max_message_size - self._decompress_message_size
            limit = remaining if limit is None or remaining < limit else limit
        decompressor = self._decompressor
        try:
            if limit is None:
                out = decompressor.decompress(data)
            else:
                # zlib takes a max_length of 0 as "unlimited": an exhausted budget allows
                # 1 byte, so any output then exceeds it.
                out = decompressor.decompress(data, limit if limit > 0 else 1)
        except zlib.error as exc:
            raise PayloadCorruptError(f"invalid permessage-deflate data: {exc}") from exc
        self._decompress_message_size += len(out)
        if limit is not None and (decompressor.unconsumed_tail or len(out) > limit):
            raise PayloadExceededError(
                "WebSocket message exceeds decompression limit "
                f"(max_message_size={self.max_message_size}, max_output_len={max_output_len})"
            )
        if self._received is not None:
            self._received.append(out)
        return out

    def end_decompress_message(self) -> None:
        super().end_decompress_message()
        self._receiving = False
        if self._receiving_resets():
            self._decompressor = None
        elif self.hibernate_after < 0:
            self.hibernate()

    # -- hibernation --------------------------------------------------------

    def _mark_active(self) -> None:
        self._active = True
        if self._hibernate_call is None and self.hibernate_after > 0 and self._timer is not None:
            self._hibernate_call = self._timer.call_later(self.hibernate_after, self._idle_check)

    def _idle_check(self) -> None:
        self._hibernate_call = None
        if self._active:
            # Traffic since the check was armed: look again one delay later.
            self._active = False
            self._hibernate_call = self._timer.call_later(self.hibernate_after, self._idle_check)
        elif not self.hibernate():
            self._mark_active()  # mid-message: try again later

    @property
    def hibernating(self) -> bool:
        """True when no zlib context is held (both directions idle or resetting)."""
        return self._compressor is None and self._decompressor is None

    def hibernate(self) -> bool:
        """Free the zlib contexts now, keeping only the plaintext windows.

        Returns False (and frees nothing) in the middle of a message.
        Safe to call at any time between messages; the next message rebuilds
        what it needs.
        """
        if self._sending or self._receiving:
            return False
        freed = 0
        if self._compressor is not None:
            if self._sent is not None:
                self._sent.compact()
            self._compressor = None
            freed += zlib_compressor_bytes(zlib_compress_window(self._compress_bits())[0], self.mem_level)
        if self._decompressor is not None:
            if self._received is not None:
                self._received.compact()
            self._decompressor = None
            freed += zlib_decompressor_bytes(self._inflate_bits())
        self._active = False
        if freed:
            self.hibernations += 1
            if self.hibernate_after > 0:
                MALLOC_TRIM.note_freed(freed, self._timer)
        return True

    def release(self) -> None:
        """The connection is gone: drop contexts, windows and the pending idle check."""
        call, self._hibernate_call = self._hibernate_call, None
        if call is not None:
            call.cancel()
        self._compressor = None
        self._decompressor = None
        self._sent = self._received = None
        self.hibernate_after = 0.0

    # -- shared compression -------------------------------------------------

    def sent_window(self) -> bytes:
        """The last window of plaintext sent through this connection's deflate
        stream (what the peer's inflater remembers); empty without context takeover."""
        return self._sent.value() if self._sent is not None else b""

    def replace_compressor(self, compressor: Any, window: bytes) -> None:
        """Compress from now on with ``compressor``, whose history is ``window``
        (which must be a suffix of what this connection's peer has received)."""
        self._compressor = compressor
        if self._sent is not None:
            self._sent.reset(window)

    def drop_compressor(self) -> None:
        """Free this connection's compressor and window (something else compresses
        for it); the next message of its own starts a fresh, valid context."""
        self._compressor = None
        if self._sent is not None:
            self._sent.reset()


def tune_extension(pmce: Any, settings: CompressionSettings, agreement: DeflateAgreement | None = None,
                   timer: Any = None) -> None:
    """Apply what Autobahn's negotiation has no slot for: zlib level, freeing idle
    contexts, hibernation (on ``timer``, the factory's batched timer), and
    (given the negotiation's ``agreement``) the exact windows, including 8
    bits, which Autobahn's classes cannot hold."""
    if type(pmce) is PerMessageDeflate:
        # Same object, subclass behaviour: Autobahn keeps its reference to it.
        pmce.__class__ = TunedPerMessageDeflate
        pmce.level = settings.level
    if not isinstance(pmce, TunedPerMessageDeflate):
        return
    if agreement is not None:
        pmce.server_no_context_takeover = agreement.server_no_context_takeover
        pmce.client_no_context_takeover = agreement.client_no_context_takeover
        pmce.server_max_window_bits = agreement.server_max_window_bits
        pmce.client_max_window_bits = agreement.client_max_window_bits
    pmce.track_windows()
    pmce.hibernate_after = hibernate_delay(settings)
    pmce._timer = timer
    mode = getattr(settings, "broadcast_compression", PER_CONNECTION)
    if pmce._is_server and mode != PER_CONNECTION:
        pmce.share = ShareState(share_params(
            mode, pmce.server_max_window_bits, pmce.mem_level, pmce.level, pmce.server_no_context_takeover))


class NegotiatedDeflateOfferAccept(PerMessageDeflateOfferAccept):
    """Autobahn's server-side accept object for a :class:`DeflateAgreement`.

    Autobahn builds the connection's extension from the window and flag
    fields (given here as zlib-usable values, 9-15) and sends
    :meth:`get_extension_string`, which is the agreement's response as
    negotiated (which may say 8).
    """

    def __init__(self, agreement: DeflateAgreement, mem_level: int | None = None,
                 max_message_size: int | None = None):
        offer = PerMessageDeflateOffer(
            accept_no_context_takeover=True,
            accept_max_window_bits=True,
            request_no_context_takeover=agreement.server_no_context_takeover,
        )
        super().__init__(
            offer,
            request_no_context_takeover=agreement.client_no_context_takeover,
            request_max_window_bits=zlib_inflate_window(agreement.client_max_window_bits),
            no_context_takeover=agreement.server_no_context_takeover,
            window_bits=zlib_compress_window(agreement.server_max_window_bits)[0],
            mem_level=mem_level,
            max_message_size=max_message_size or None,
        )
        self.agreement = agreement

    def get_extension_string(self) -> str:
        return self.agreement.response.header_value()


class NegotiatedDeflateResponseAccept(PerMessageDeflateResponseAccept):
    """Autobahn's client-side accept object for a :class:`DeflateAgreement`."""

    def __init__(self, agreement: DeflateAgreement, mem_level: int | None = None,
                 max_message_size: int | None = None):
        compress_bits = zlib_compress_window(agreement.client_max_window_bits)[0]
        response = PerMessageDeflateResponse(
            compress_bits,
            agreement.client_no_context_takeover,
            zlib_inflate_window(agreement.server_max_window_bits),
            agreement.server_no_context_takeover,
        )
        super().__init__(
            response,
            no_context_takeover=agreement.client_no_context_takeover,
            window_bits=compress_bits,
            mem_level=mem_level,
            max_message_size=max_message_size or None,
        )
        self.agreement = agreement


class DeflateOffer(PerMessageDeflateOffer):
    """A client's permessage-deflate offer, sent exactly as :class:`DeflateParams` says,
    and kept so the server's response can be checked against it."""

    def __init__(self, params: DeflateParams):
        super().__init__(
            accept_no_context_takeover=True,
            accept_max_window_bits=params.client_max_window_bits is not None,
            request_no_context_takeover=params.server_no_context_takeover,
            request_max_window_bits=params.server_max_window_bits or 0,
        )
        self.params = params

    def get_extension_string(self) -> str:
        return self.params.header_value()


def _offer_params(offer: PerMessageDeflateOffer) -> dict[str, list[Any]]:
    """An offer Autobahn already parsed, back as header parameters (for Autobahn's own accept path)."""
    if isinstance(offer, DeflateOffer):
        return _wire_params(offer.params)
    params: dict[str, list[Any]] = {}
    if offer.accept_max_window_bits:
        params["client_max_window_bits"] = [True]
    if offer.request_max_window_bits:
        params["server_max_window_bits"] = [str(offer.request_max_window_bits)]
    if offer.request_no_context_takeover:
        params["server_no_context_takeover"] = [True]
    return params


def _wire_params(params: DeflateParams) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name in ("server_no_context_takeover", "client_no_context_takeover"):
        if getattr(params, name):
            out[name] = [True]
    for name in ("server_max_window_bits", "client_max_window_bits"):
        value = getattr(params, name)
        if value is True:
            out[name] = [True]
        elif value:
            out[name] = [str(value)]
    return out


def accept_deflate_offer(
    offer: PerMessageDeflateOffer, settings: CompressionSettings, max_message_size: int | None = None
) -> NegotiatedDeflateOfferAccept:
    """The server's answer to one permessage-deflate offer Autobahn has parsed."""
    parsed = parse_params(_offer_params(offer), is_response=False)
    agreement = negotiate_offer(parsed, DeflatePolicy.from_settings(settings))
    return NegotiatedDeflateOfferAccept(agreement, settings.mem_level, max_message_size)


@dataclass
class CompressionChoice:
    """A server's decision on one handshake's ``Sec-WebSocket-Extensions``.

    ``extensions`` is the request's extension list as Autobahn should see it:
    the accepted compression offer only (a permessage-deflate one with its
    parameters already handled), every other compression offer removed, so
    Autobahn neither refuses the handshake over one nor re-reads it.
    """

    extensions: list[tuple[str, dict[str, list[Any]]]]
    accept: Any = None
    agreement: DeflateAgreement | None = None
    declined: list[str] = field(default_factory=list)

    def accept_offers(self, _offers: Sequence[Any]) -> Any:
        """Autobahn's ``perMessageCompressionAccept`` for this one connection."""
        return self.accept


class ServerCompression:
    """The server's permessage-compress policy, usable as Autobahn's
    ``perMessageCompressionAccept``.

    wskit's server protocol calls :meth:`choose` with the request's raw
    extension offers before Autobahn parses them (Autobahn answers an offer it
    cannot parse, e.g. a window of 8 or an unknown parameter, with HTTP 400,
    where RFC 7692 says to decline the offer). Called by Autobahn with parsed
    offers, it gives the same answers for what those can express.
    Offers are considered in the client's order; the first acceptable one of
    an enabled codec wins.
    """

    def __init__(self, settings: CompressionSettings, max_message_size: int | None = None):
        if settings.enabled:
            check_codecs(settings)
        self.settings = settings
        self.policy = DeflatePolicy.from_settings(settings)
        self.max_message_size = max_message_size or None
        self.enabled = set(settings.codecs) if settings.enabled else set()

    def choose(self, extensions: Sequence[tuple[str, Any]]) -> CompressionChoice:
        kept = [(name, params) for name, params in extensions if name not in PERMESSAGE_COMPRESSION_EXTENSION]
        declined = []
        for name, params in extensions:
            if name not in self.enabled:
                continue
            try:
                if name == DEFLATE:
                    agreement = negotiate_offer(parse_params(params, is_response=False), self.policy)
                    accept = NegotiatedDeflateOfferAccept(agreement, self.settings.mem_level, self.max_message_size)
                    # Autobahn still parses the offer it is shown: show it one without parameters.
                    return CompressionChoice(kept + [(name, {})], accept, agreement, declined)
                codec = PERMESSAGE_COMPRESSION_EXTENSION[name]
                accept = codec["OfferAccept"](codec["Offer"].parse(params))
                return CompressionChoice(kept + [(name, params)], accept, None, declined)
            except Exception as exc:  # Autobahn's other codecs raise plain Exception for bad offers
                declined.append(f"{name}: {exc}")
        return CompressionChoice(kept, None, None, declined)

    def __call__(self, offers: Sequence[Any]) -> Any:
        for offer in offers:
            name = offer.EXTENSION_NAME
            if name not in self.enabled:
                continue
            if isinstance(offer, PerMessageDeflateOffer):
                return accept_deflate_offer(offer, self.settings, self.max_message_size)
            return PERMESSAGE_COMPRESSION_EXTENSION[name]["OfferAccept"](offer)
        return None


def make_server_accept(settings: CompressionSettings, max_message_size: int | None = None) -> ServerCompression:
    """Build the ``perMessageCompressionAccept`` policy for a server factory."""
    return ServerCompression(settings, max_message_size)


def make_client_offers(settings: CompressionSettings) -> list[Any]:
    """Offers a client sends, in ``settings.codecs`` order."""
    if not settings.enabled:
        return []
    check_codecs(settings)
    offers: list[Any] = []
    for name in settings.codecs:
        if name == DEFLATE:
            offers.append(DeflateOffer(client_offer(DeflatePolicy.from_settings(settings))))
        else:
            offers.append(PERMESSAGE_COMPRESSION_EXTENSION[name]["Offer"]())
    return offers


class ClientCompression:
    """The client's side: its offers, and the check of the server's response.

    Usable as Autobahn's ``perMessageCompressionAccept``; wskit's client
    protocol calls :meth:`accept_response_params` with the response's raw
    parameters first, because Autobahn's parser rejects valid responses
    (windows of 8) and accepts invalid ones (values the offer did not allow).
    """

    def __init__(self, settings: CompressionSettings, max_message_size: int | None = None):
        self.settings = settings
        self.policy = DeflatePolicy.from_settings(settings)
        self.max_message_size = max_message_size or None
        self.offers = make_client_offers(settings)
        self.enabled = {offer.EXTENSION_NAME for offer in self.offers}

    def deflate_offer(self) -> DeflateParams | None:
        for offer in self.offers:
            if isinstance(offer, DeflateOffer):
                return offer.params
        return None

    def accept_response_params(self, name: str, params: Any) -> Any:
        """The accept object for the server's answer, or :class:`DeflateParameterError`."""
        if name not in self.enabled:
            raise DeflateParameterError(f"the server answered {name}, which was not offered")
        if name != DEFLATE:
            codec = PERMESSAGE_COMPRESSION_EXTENSION[name]
            return codec["ResponseAccept"](codec["Response"].parse(params))
        offer = self.deflate_offer()
        assert offer is not None
        agreement = check_response(offer, params, self.policy)
        return NegotiatedDeflateResponseAccept(agreement, self.settings.mem_level, self.max_message_size)

    def __call__(self, response: Any) -> Any:
        name = response.EXTENSION_NAME
        if isinstance(response, PerMessageDeflateResponse):
            params = _wire_params(DeflateParams(
                server_no_context_takeover=response.server_no_context_takeover,
                client_no_context_takeover=response.client_no_context_takeover,
                server_max_window_bits=response.server_max_window_bits or None,
                client_max_window_bits=response.client_max_window_bits or None,
            ))
            try:
                return self.accept_response_params(name, params)
            except DeflateParameterError:
                return None
        if name not in self.enabled:
            return None
        return PERMESSAGE_COMPRESSION_EXTENSION[name]["ResponseAccept"](response)


def make_client_accept(settings: CompressionSettings, max_message_size: int | None = None) -> ClientCompression:
    """Build the ``perMessageCompressionAccept`` policy for a client factory."""
    return ClientCompression(settings, max_message_size)


def describe_extensions(extensions: Sequence[Any]) -> list[dict[str, Any]]:
    """JSON-friendly description of the extensions in use on a connection."""
    out = []
    for ext in extensions:
        info = ext.__json__() if hasattr(ext, "__json__") else {"extension": str(ext)}
        info.pop("is_server", None)
        out.append(info)
    return out


def extension_names(extensions: Sequence[Any]) -> list[str]:
    return [getattr(ext, "EXTENSION_NAME", str(ext)) for ext in extensions]
