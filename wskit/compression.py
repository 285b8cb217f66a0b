"""permessage-deflate offer/accept policy built from :class:`CompressionSettings`.

Autobahn applies the extension; :mod:`wskit.deflate` decides the
permessage-deflate parameters (RFC 7692), and this module connects the two:
what to offer (client), what to accept (server), how hard to compress. It
uses only ``autobahn.websocket.compress``, which is backend-neutral.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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


class TunedPerMessageDeflate(PerMessageDeflate):
    """Autobahn's permessage-deflate with a configurable zlib level, exact
    negotiated windows, and without idle zlib contexts when context takeover
    is off.

    Autobahn always compresses at zlib's default level (6, which wskit keeps
    by default; see docs/performance.md for what other levels cost and save).
    Without context takeover Autobahn builds a fresh compressor (or
    decompressor) for each message but keeps the last one referenced, so an
    idle connection still holds it; this class drops it once the message is
    done, which is what no context takeover is for (zlib's state is most of
    a compressed connection's memory).

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

    def drop_compressor(self) -> None:
        """Forget the outgoing compressor (the next message starts a new one, or
        one :attr:`share` hands over)."""
        self._compressor = None

    def _sending_resets(self) -> bool:
        return self.server_no_context_takeover if self._is_server else self.client_no_context_takeover

    def _receiving_resets(self) -> bool:
        return self.client_no_context_takeover if self._is_server else self.server_no_context_takeover

    def start_compress_message(self) -> None:
        share = self.share
        if share is not None and (share.member or share.pending is not None):
            # Leaving a shared broadcast compressor: continue from its state.
            compressor = share.split(self)
            if compressor is not None:
                self._compressor = compressor
        bits = self.server_max_window_bits if self._is_server else self.client_max_window_bits
        if self._compressor is None or self._sending_resets():
            wbits, strategy = zlib_compress_window(bits)
            self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, -wbits, self.mem_level, strategy)

    def end_compress_message(self) -> bytes:
        data = super().end_compress_message()
        self.compressed_messages += 1
        if self._sending_resets():
            self._compressor = None
        return data

    def start_decompress_message(self) -> None:
        bits = self.client_max_window_bits if self._is_server else self.server_max_window_bits
        if self._decompressor is None or self._receiving_resets():
            self._decompressor = zlib.decompressobj(-zlib_inflate_window(bits))
        self._decompress_message_size = 0

    def end_decompress_message(self) -> None:
        super().end_decompress_message()
        if self._receiving_resets():
            self._decompressor = None


def tune_extension(pmce: Any, settings: CompressionSettings, agreement: DeflateAgreement | None = None) -> None:
    """Apply what Autobahn's negotiation has no slot for: zlib level, freeing idle
    contexts, and (given the negotiation's ``agreement``) the exact windows,
    including 8 bits, which Autobahn's classes cannot hold."""
    if type(pmce) is PerMessageDeflate:
        # Same object, subclass behaviour: Autobahn keeps its reference to it.
        pmce.__class__ = TunedPerMessageDeflate
        pmce.level = settings.level
    if agreement is not None and isinstance(pmce, TunedPerMessageDeflate):
        pmce.server_no_context_takeover = agreement.server_no_context_takeover
        pmce.client_no_context_takeover = agreement.client_no_context_takeover
        pmce.server_max_window_bits = agreement.server_max_window_bits
        pmce.client_max_window_bits = agreement.client_max_window_bits
    mode = getattr(settings, "broadcast_compression", PER_CONNECTION)
    if isinstance(pmce, TunedPerMessageDeflate) and pmce._is_server and mode != PER_CONNECTION:
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
