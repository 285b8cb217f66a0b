"""permessage-deflate offer/accept policy built from :class:`CompressionSettings`.

Autobahn parses and applies the extension; this module decides what to offer
(client), what to accept (server) and how hard to compress. It uses only
``autobahn.websocket.compress``, which is backend-neutral.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from autobahn.websocket.compress import (
    PERMESSAGE_COMPRESSION_EXTENSION,
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)

from .settings import CompressionSettings, SettingsError

DEFLATE = "permessage-deflate"
MAX_WINDOW_BITS = 15


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
    """Autobahn's permessage-deflate with a configurable zlib level, and
    without idle zlib contexts when context takeover is off.

    Autobahn always compresses at zlib's default level (6, which wskit keeps
    by default; see docs/performance.md for what other levels cost and save).
    Without context takeover Autobahn builds a fresh compressor (or
    decompressor) for each message but keeps the last one referenced, so an
    idle connection still holds it; this class drops it once the message is
    done, which is what no context takeover is for (zlib's state is most of
    a compressed connection's memory).
    """

    level: int = zlib.Z_DEFAULT_COMPRESSION

    def _sending_resets(self) -> bool:
        return self.server_no_context_takeover if self._is_server else self.client_no_context_takeover

    def _receiving_resets(self) -> bool:
        return self.client_no_context_takeover if self._is_server else self.server_no_context_takeover

    def start_compress_message(self) -> None:
        bits = self.server_max_window_bits if self._is_server else self.client_max_window_bits
        if self._compressor is None or self._sending_resets():
            self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, -bits, self.mem_level)

    def end_compress_message(self) -> bytes:
        data = super().end_compress_message()
        if self._sending_resets():
            self._compressor = None
        return data

    def end_decompress_message(self) -> None:
        super().end_decompress_message()
        if self._receiving_resets():
            self._decompressor = None


def tune_extension(pmce: Any, settings: CompressionSettings) -> None:
    """Apply what Autobahn's negotiation has no slot for (zlib level, freeing idle contexts)."""
    if type(pmce) is PerMessageDeflate:
        # Same object, subclass behaviour: Autobahn keeps its reference to it.
        pmce.__class__ = TunedPerMessageDeflate
        pmce.level = settings.level


class _DeflateOfferAccept(PerMessageDeflateOfferAccept):
    """Accept whose response states the parameters this server really uses.

    Autobahn echoes the client's requested ``server_max_window_bits``; we
    answer with the window we compress with (RFC 7692 7.1.2.1 allows the same
    or a smaller value), and announce a ``server_no_context_takeover`` we
    chose ourselves (7.1.1.1 allows it unrequested) so the client can free
    its decompression context too.
    """

    announce_no_context_takeover = False

    def get_extension_string(self) -> str:
        params = [self.EXTENSION_NAME]
        if self.offer.request_no_context_takeover or self.announce_no_context_takeover:
            params.append("server_no_context_takeover")
        if self.offer.request_max_window_bits:
            params.append(f"server_max_window_bits={self.window_bits}")
        if self.request_no_context_takeover:
            params.append("client_no_context_takeover")
        if self.request_max_window_bits:
            params.append(f"client_max_window_bits={self.request_max_window_bits}")
        return "; ".join(params)


def accept_deflate_offer(
    offer: PerMessageDeflateOffer, settings: CompressionSettings, max_message_size: int | None = None
) -> PerMessageDeflateOfferAccept:
    """The server's answer to one permessage-deflate offer."""
    window = settings.server_max_window_bits
    if offer.request_max_window_bits:
        window = min(window, offer.request_max_window_bits)
    request_client_bits = 0
    if offer.accept_max_window_bits and settings.client_max_window_bits < MAX_WINDOW_BITS:
        request_client_bits = settings.client_max_window_bits
    no_context = bool(settings.server_no_context_takeover or offer.request_no_context_takeover)
    accept = _DeflateOfferAccept(
        offer,
        request_no_context_takeover=bool(settings.client_no_context_takeover and offer.accept_no_context_takeover),
        request_max_window_bits=request_client_bits,
        no_context_takeover=no_context,
        window_bits=window,
        mem_level=settings.mem_level,
        max_message_size=max_message_size or None,
    )
    accept.announce_no_context_takeover = settings.server_no_context_takeover
    return accept


def make_server_accept(settings: CompressionSettings, max_message_size: int | None = None):
    """Build a ``perMessageCompressionAccept`` callable for a server factory.

    Offers are considered in the client's order; the first one of an enabled
    codec is accepted.
    """
    check_codecs(settings)
    enabled = set(settings.codecs)

    def accept(offers: Sequence[Any]):
        for offer in offers:
            name = offer.EXTENSION_NAME
            if name not in enabled:
                continue
            if isinstance(offer, PerMessageDeflateOffer):
                return accept_deflate_offer(offer, settings, max_message_size)
            return PERMESSAGE_COMPRESSION_EXTENSION[name]["OfferAccept"](offer)
        return None

    return accept


def make_client_offers(settings: CompressionSettings) -> list[Any]:
    """Offers a client sends, in ``settings.codecs`` order."""
    check_codecs(settings)
    offers: list[Any] = []
    for name in settings.codecs:
        if name == DEFLATE:
            offers.append(
                PerMessageDeflateOffer(
                    accept_no_context_takeover=True,
                    accept_max_window_bits=True,
                    request_no_context_takeover=bool(settings.server_no_context_takeover),
                    request_max_window_bits=(
                        settings.server_max_window_bits
                        if settings.server_max_window_bits < MAX_WINDOW_BITS
                        else 0
                    ),
                )
            )
        else:
            offers.append(PERMESSAGE_COMPRESSION_EXTENSION[name]["Offer"]())
    return offers


def accept_deflate_response(
    response: PerMessageDeflateResponse, settings: CompressionSettings, max_message_size: int | None = None
) -> PerMessageDeflateResponseAccept:
    window = settings.client_max_window_bits
    if response.client_max_window_bits:
        window = min(window, response.client_max_window_bits)
    return PerMessageDeflateResponseAccept(
        response,
        no_context_takeover=bool(settings.client_no_context_takeover or response.client_no_context_takeover),
        window_bits=window,
        mem_level=settings.mem_level,
        max_message_size=max_message_size or None,
    )


def make_client_accept(settings: CompressionSettings, max_message_size: int | None = None):
    """Build a ``perMessageCompressionAccept`` callable for a client factory."""
    enabled = set(settings.codecs)

    def accept(response: Any):
        if response.EXTENSION_NAME not in enabled:
            return None
        if isinstance(response, PerMessageDeflateResponse):
            return accept_deflate_response(response, settings, max_message_size)
        return PERMESSAGE_COMPRESSION_EXTENSION[response.EXTENSION_NAME]["ResponseAccept"](response)

    return accept


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
