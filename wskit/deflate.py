"""permessage-deflate parameter negotiation (RFC 7692 section 7), pure.

No I/O, no Autobahn, no zlib objects: offers and responses go in as the
parameter mappings Autobahn's header parser produces (name -> list of values,
``True`` for a parameter without a value), and come out as
:class:`DeflateParams` (what is on the wire) and :class:`DeflateAgreement`
(what each end then does). :mod:`wskit.compression` feeds these results to
Autobahn.

Server side, :func:`negotiate_offers` answers every offer a client may send:

* An offer with an unknown parameter, a parameter given twice or an invalid
  value is declined (RFC 7692 section 7: the server "MUST decline" it) and the
  next offer is tried; when none is left the connection goes on without
  compression. A compression parameter never refuses a handshake.
* ``server_no_context_takeover`` is answered when offered or configured
  (7.1.1.1 lets the server add it unasked).
* ``client_no_context_takeover`` is answered when configured (7.1.1.2 lets the
  server add it unasked). An offered one is not echoed: Autobahn-based
  clients send it in every offer without resetting their compressor, so the
  server keeps its decompression context unless configured otherwise.
* ``server_max_window_bits``: the server compresses with the configured window,
  or with the offered value when that is smaller, and says so in the response
  when the offer asked (7.1.2.1: that is how the request is accepted) and
  whenever the window is below 15 (7.1.2.1 allows the parameter in a response
  to an offer that did not carry it).
* ``client_max_window_bits``: only answered when offered (7.1.2.2: "MUST NOT
  include" it otherwise). Without a value in the offer the server answers its
  configured window; with a value N it answers min(configured, N), which never
  exceeds what the client allowed. When that is 15 the parameter is left out:
  its absence means "up to 15 bits" (7.1.2.2), which is then the truth.

Client side, :func:`check_response` accepts every response RFC 7692 allows
for the offer that was sent and names the offending parameter otherwise.

Window bits 8. zlib cannot compress raw deflate with a 256-byte window
(``deflateInit2`` rejects -8 since zlib 1.2.9; before that it silently used
512 bytes, zlib issue 171). An offer of ``server_max_window_bits=8`` is still
accepted, truthfully: the server answers 8 and compresses with zlib's
run-length strategy (``Z_RLE``, documented to "limit match distances to
one"), whose output any inflater with a window of 8 or more bits decodes
(see :func:`zlib_compress_window`). The ratio is lower than a real 8-bit
window would give, but such a client asked for minimal memory, not ratio.
A peer that announces 8 bits for its own compressor (``client_max_window_bits=8``
from a client, ``server_max_window_bits=8`` from a server) is inflated with a
9-bit window (:func:`zlib_inflate_window`): larger inflate windows are always
safe, and zlib-based peers (Node's ``ws`` among them) compress with 9 bits
when asked for 8.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EXTENSION_NAME = "permessage-deflate"
MIN_WINDOW_BITS = 8
MAX_WINDOW_BITS = 15
# zlib's smallest raw-deflate window (see the module docstring).
ZLIB_MIN_WINDOW_BITS = 9
# zlib.Z_DEFAULT_STRATEGY and zlib.Z_RLE (constants of zlib.h, stable since zlib 1.2.0).
Z_DEFAULT_STRATEGY = 0
Z_RLE = 3

# RFC 7692 7.1.2: "a decimal integer value without leading zeroes between 8 to 15, inclusive".
_WINDOW_BITS_VALUE = re.compile(r"(?:[89]|1[0-5])")

_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_WINDOWS = ("server_max_window_bits", "client_max_window_bits")
KNOWN_PARAMETERS = _FLAGS + _WINDOWS


class DeflateParameterError(ValueError):
    """An offer or response a peer sent violates RFC 7692; the message names the parameter."""


# Parameters as Autobahn's header parser gives them: name -> [value, ...], True for "no value".
RawParams = Mapping[str, Sequence[Any]]


@dataclass(frozen=True)
class DeflateParams:
    """The parameters of one permessage-deflate offer or response, as on the wire.

    ``client_max_window_bits`` is ``True`` when present without a value (only
    an offer may do that), an int when present with one, ``None`` when absent.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | bool | None = None

    def header_value(self) -> str:
        """The ``Sec-WebSocket-Extensions`` element, e.g. ``permessage-deflate; server_max_window_bits=12``."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is True:
            parts.append("client_max_window_bits")
        elif self.client_max_window_bits:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


@dataclass(frozen=True)
class DeflateAgreement:
    """The outcome of a negotiation: the response on the wire and what each end does.

    Window bits are the RFC's values (8-15): the most each end may use to
    compress. :func:`zlib_compress_window` and :func:`zlib_inflate_window` turn
    them into zlib arguments.
    """

    response: DeflateParams
    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int


@dataclass(frozen=True)
class DeflatePolicy:
    """What this endpoint wants: the fields of :class:`wskit.CompressionSettings` negotiation uses."""

    server_max_window_bits: int = MAX_WINDOW_BITS
    client_max_window_bits: int = MAX_WINDOW_BITS
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> DeflatePolicy:
        return cls(
            server_max_window_bits=settings.server_max_window_bits,
            client_max_window_bits=settings.client_max_window_bits,
            server_no_context_takeover=bool(settings.server_no_context_takeover),
            client_no_context_takeover=bool(settings.client_no_context_takeover),
        )


def parse_params(params: RawParams, *, is_response: bool) -> DeflateParams:
    """Check one offer's (or response's) parameters against RFC 7692 section 7.

    Raises :class:`DeflateParameterError` for an unknown parameter, a parameter
    given more than once, a value on a flag, a missing or invalid window value.
    Only an offer may carry ``client_max_window_bits`` without a value.
    """
    found: dict[str, Any] = {}
    for name, values in params.items():
        if name not in KNOWN_PARAMETERS:
            raise DeflateParameterError(f"unknown parameter {name!r}")
        if len(values) != 1:
            raise DeflateParameterError(f"parameter {name!r} appears {len(values)} times")
        value = values[0]
        if name in _FLAGS:
            if value is not True:
                raise DeflateParameterError(f"parameter {name!r} takes no value (got {value!r})")
            found[name] = True
        elif value is True:
            if name == "server_max_window_bits" or is_response:
                raise DeflateParameterError(f"parameter {name!r} needs a value (8-15)")
            found[name] = True
        elif isinstance(value, str) and _WINDOW_BITS_VALUE.fullmatch(value):
            found[name] = int(value)
        else:
            raise DeflateParameterError(f"invalid value {value!r} for {name!r} (expected 8-15)")
    return DeflateParams(**found)


def negotiate_offer(offer: DeflateParams, policy: DeflatePolicy) -> DeflateAgreement:
    """The server's answer to one valid offer (the rules are in the module docstring)."""
    server_no_context = offer.server_no_context_takeover or policy.server_no_context_takeover
    client_no_context = policy.client_no_context_takeover

    server_bits = policy.server_max_window_bits
    if offer.server_max_window_bits is not None:
        server_bits = min(server_bits, offer.server_max_window_bits)
    # Stated when requested (7.1.2.1: that is how the request is accepted) and
    # whenever below 15, so the client sizes its decompressor to what we use.
    stated = offer.server_max_window_bits is not None or server_bits < MAX_WINDOW_BITS
    response_server_bits = server_bits if stated else None

    offered_client = offer.client_max_window_bits
    if offered_client is None:
        client_bits = MAX_WINDOW_BITS  # 7.1.2.2: the response MUST NOT limit it
        response_client_bits = None
    else:
        client_bits = policy.client_max_window_bits
        if offered_client is not True:
            client_bits = min(client_bits, offered_client)
        response_client_bits = client_bits if client_bits < MAX_WINDOW_BITS else None

    response = DeflateParams(
        server_no_context_takeover=server_no_context,
        client_no_context_takeover=client_no_context,
        server_max_window_bits=response_server_bits,
        client_max_window_bits=response_client_bits,
    )
    return DeflateAgreement(
        response=response,
        server_no_context_takeover=server_no_context,
        client_no_context_takeover=client_no_context,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )


@dataclass(frozen=True)
class Negotiation:
    """Result of :func:`negotiate_offers`: the accepted offer (if any) and why others were declined."""

    agreement: DeflateAgreement | None
    index: int | None
    declined: tuple[tuple[int, str], ...] = ()


def negotiate_offers(offers: Sequence[RawParams], policy: DeflatePolicy) -> Negotiation:
    """Accept the first valid offer, in the client's order of preference; decline invalid ones."""
    declined = []
    for index, raw in enumerate(offers):
        try:
            offer = parse_params(raw, is_response=False)
        except DeflateParameterError as exc:
            declined.append((index, str(exc)))
            continue
        return Negotiation(negotiate_offer(offer, policy), index, tuple(declined))
    return Negotiation(None, None, tuple(declined))


def client_offer(policy: DeflatePolicy) -> DeflateParams:
    """What a client with this policy offers.

    ``server_*`` parameters as configured (a window only when below 15).
    ``client_max_window_bits`` without a value: the server may then limit our
    window to anything from 8 to 15, and we compress with the smaller of its
    answer and our own setting. A valued offer would be more informative but
    the Autobahn TestSuite's fuzzingserver answers 15 to it whatever it says,
    which RFC 7692 7.1.2.2 makes a response to refuse.

    ``client_no_context_takeover`` is always offered, as Autobahn's clients
    do: servers that follow Autobahn's reading only ask for it (and the
    TestSuite's 13.2/13.5/13.6 only negotiate) when the offer carries it.
    RFC 7692 7.1.1.2 calls it a hint that the client will not use context
    takeover; servers act on that hint by echoing the parameter (python-
    websockets, ws and Go's servers do), and the client resets its compressor
    whenever the response carries it.
    """
    return DeflateParams(
        server_no_context_takeover=policy.server_no_context_takeover,
        client_no_context_takeover=True,
        server_max_window_bits=(
            policy.server_max_window_bits if policy.server_max_window_bits < MAX_WINDOW_BITS else None
        ),
        client_max_window_bits=True,
    )


def check_response(offer: DeflateParams, params: RawParams, policy: DeflatePolicy) -> DeflateAgreement:
    """Validate a server's response to ``offer``; the agreement the client then uses.

    Raises :class:`DeflateParameterError` naming the parameter when the
    response is not one RFC 7692 allows for this offer.
    """
    response = parse_params(params, is_response=True)
    if offer.server_no_context_takeover and not response.server_no_context_takeover:
        # 7.1.1.1: a server accepts the parameter by including it.
        raise DeflateParameterError("server_no_context_takeover was offered but is missing from the response")
    if offer.server_max_window_bits is not None:
        # 7.1.2.1: accepted "by including server_max_window_bits ... with the same or smaller value".
        if response.server_max_window_bits is None:
            raise DeflateParameterError(
                f"server_max_window_bits={offer.server_max_window_bits} was offered "
                "but is missing from the response"
            )
        if response.server_max_window_bits > offer.server_max_window_bits:
            raise DeflateParameterError(
                f"server_max_window_bits={response.server_max_window_bits} is larger than "
                f"the {offer.server_max_window_bits} offered"
            )
    if response.client_max_window_bits is not None:
        if offer.client_max_window_bits is None:
            raise DeflateParameterError("client_max_window_bits in the response, but the offer did not include it")
        if offer.client_max_window_bits is not True and response.client_max_window_bits > offer.client_max_window_bits:
            raise DeflateParameterError(
                f"client_max_window_bits={response.client_max_window_bits} is larger than "
                f"the {offer.client_max_window_bits} offered"
            )

    if response.client_max_window_bits is not None:
        client_bits = int(response.client_max_window_bits)
    elif offer.client_max_window_bits not in (None, True):
        client_bits = int(offer.client_max_window_bits)  # our own promise in the offer
    else:
        client_bits = MAX_WINDOW_BITS
    client_bits = min(client_bits, policy.client_max_window_bits)
    return DeflateAgreement(
        response=response,
        server_no_context_takeover=response.server_no_context_takeover,
        client_no_context_takeover=response.client_no_context_takeover or policy.client_no_context_takeover,
        server_max_window_bits=response.server_max_window_bits or MAX_WINDOW_BITS,
        client_max_window_bits=client_bits,
    )


def zlib_compress_window(bits: int) -> tuple[int, int]:
    """``(wbits, strategy)`` for ``zlib.compressobj`` to honour an RFC window of ``bits``.

    8 cannot be asked of zlib (module docstring): compress with 9 bits and
    ``Z_RLE``, whose matches all have distance 1, so every back-reference
    fits any window.
    """
    if bits < ZLIB_MIN_WINDOW_BITS:
        return ZLIB_MIN_WINDOW_BITS, Z_RLE
    return bits, Z_DEFAULT_STRATEGY


def zlib_inflate_window(bits: int) -> int:
    """``wbits`` for ``zlib.decompressobj`` to read a peer that announced ``bits``."""
    return max(bits, ZLIB_MIN_WINDOW_BITS)
