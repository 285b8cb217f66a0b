"""What the serialized application subprotocols (chat, pubsub, rpc) share.

:class:`SerializedHandler` checks the frame type against the negotiated
serializer (a binary frame on ``.json`` or a text frame on ``.msgpack`` closes
with 1003), decodes, counts bad input against the connection's error budget
(over budget closes with 1008) and encodes replies. The validation helpers
raise :class:`BadMessage`, which handlers turn into a documented error reply.
"""

from __future__ import annotations

import inspect
from collections import deque
from typing import Any, ClassVar

import txaio

from wskit.errors import WskitError
from wskit.handler import Handler
from wskit.hub import new_connection_id
from wskit.logs import log_failure
from wskit.serializers import DecodeError, Serializer
from wskit.settings import AppSettings

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011

# Error codes of chat and pubsub error messages. The first group is bad input
# (counted against the error budget); the second reports a refused request.
BAD_PAYLOAD = "bad-payload"
BAD_MESSAGE = "bad-message"
UNKNOWN_TYPE = "unknown-type"
BAD_FIELD = "bad-field"
TOO_LONG = "too-long"
INPUT_ERRORS = frozenset({BAD_PAYLOAD, BAD_MESSAGE, UNKNOWN_TYPE, BAD_FIELD, TOO_LONG})
NOT_JOINED = "not-joined"
ALREADY_JOINED = "already-joined"
NICK_TAKEN = "nick-taken"
TOO_MANY = "too-many"
# An action the connection's token (or the server's policy) does not allow, or a
# publish to a server-only topic. Charged to the error budget like bad input.
FORBIDDEN = "forbidden"
BUDGET_ERRORS = INPUT_ERRORS | {FORBIDDEN}
UNAVAILABLE = "unavailable"
# Requests read while an earlier one of the same connection waits on the hub
# (a Redis round trip): beyond this many the connection stops reading.
MAX_QUEUED_REQUESTS = 32


class BadMessage(WskitError):
    """A message that cannot be served; ``code`` is one of the error codes above."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def has_control_characters(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def require_str(msg: dict, field: str, max_length: int, allow_empty: bool = False) -> str:
    """``msg[field]`` as a string within ``max_length`` characters, or :class:`BadMessage`."""
    if field not in msg:
        raise BadMessage(BAD_FIELD, f"missing field {field!r}")
    value = msg[field]
    if not isinstance(value, str):
        raise BadMessage(BAD_FIELD, f"field {field!r} must be a string, not {type_name(value)}")
    if not value and not allow_empty:
        raise BadMessage(BAD_FIELD, f"field {field!r} must not be empty")
    if len(value) > max_length:
        raise BadMessage(TOO_LONG, f"field {field!r} is longer than {max_length} characters")
    return value


def require_name(msg: dict, field: str, max_length: int) -> str:
    """A room, nick or topic: non-empty, bounded, no control characters."""
    value = require_str(msg, field, max_length)
    if has_control_characters(value):
        raise BadMessage(BAD_FIELD, f"field {field!r} must not contain control characters")
    return value


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", bytes: "binary",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)


def message_type(msg: Any) -> str:
    if not isinstance(msg, dict):
        raise BadMessage(BAD_MESSAGE, f"a message must be an object with a 'type' field, not {type_name(msg)}")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise BadMessage(BAD_MESSAGE, "a message must have a string 'type' field")
    return kind


def reply_ref(msg: Any) -> Any:
    """The client's optional ``ref`` (echoed on direct replies), when it is a scalar."""
    if isinstance(msg, dict):
        ref = msg.get("ref")
        if isinstance(ref, (str, int, float)) and not isinstance(ref, bool):
            return ref
    return None


class SerializedHandler(Handler):
    """Base for one connection of a ``wskit.<app>.v<N>.<serializer>`` subprotocol."""

    def __init__(self, connection: Any, service: Any, version: int, serializer: Serializer,
                 settings: AppSettings | None = None):
        super().__init__(connection)
        self.service = service
        self.version = version
        self.serializer = serializer
        self.settings = settings or getattr(service, "settings", None) or AppSettings()
        self.bad_inputs = 0
        # Messages that arrived while an authorization was pending: handled, in
        # order, once it is decided (None: nothing pending).
        self._held: deque[tuple[bytes, bool]] | None = None
        # Why reading is paused: an authorization pending, too many requests queued.
        self._pause_reasons: set[str] = set()
        # This connection's id in hub messages (unique across processes).
        self.hub_id = new_connection_id()

    # -- sending -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.connection.is_connected

    def send(self, obj: Any) -> bool:
        """Encode and send a direct reply; False if not sent (closed, or too slow a consumer)."""
        if not self.connected:
            return False
        return self.connection.send_message(self.serializer.encode(obj), self.serializer.binary)

    def deliver(self, topic: str, event: Any) -> None:
        """Hub subscriber API: ``event`` is a :class:`wskit.broadcast.Broadcast`."""
        if event.exclude is not None and event.exclude == self.hub_id:
            return
        event.send(self.connection, self.version, self.serializer)

    # -- receiving -----------------------------------------------------------

    def on_message(self, payload: bytes, is_binary: bool) -> Any:
        if self._held is not None:
            # An earlier message waits for its authorization: keep the order.
            self._held.append((payload, is_binary))
            self._pause_reading_for("authorization")
            return None
        if is_binary != self.serializer.binary:
            wanted = "binary" if self.serializer.binary else "text"
            got = "binary" if is_binary else "text"
            self.connection.close(CLOSE_UNSUPPORTED_DATA,
                                  f"{self.connection.subprotocol} takes {wanted} frames, not {got}")
            return None
        try:
            msg = self.serializer.decode(payload)
        except DecodeError as exc:
            return self.on_bad_payload(str(exc))
        return self.handle(msg)

    def handle(self, msg: Any) -> Any:
        raise NotImplementedError

    def on_bad_payload(self, reason: str) -> None:
        raise NotImplementedError

    # -- authorization ---------------------------------------------------------

    def authorize(self, action: str, target: str) -> Any:
        """May this connection do ``action`` (join, subscribe, publish, call) on ``target``?

        True or False at once, or a future of True/False when the server's
        policy hook answers asynchronously. The hook's failure (exception,
        failed future) denies and is logged: a broken policy fails closed.
        """
        authorizer = getattr(getattr(self.connection, "app", None), "authorizer", None)
        if authorizer is None or not authorizer.active:
            return True
        identity = getattr(self.connection, "identity", None)
        try:
            verdict = authorizer.check(identity, action, target)
        except Exception:
            self._policy_failed(txaio.create_failure(), action, target)
            return False
        if not (txaio.is_future(verdict) or inspect.isawaitable(verdict)):
            return bool(verdict)
        decided = txaio.create_future()
        future = txaio.as_future(lambda: verdict)

        def failed(fail: Any) -> None:
            self._policy_failed(fail, action, target)
            txaio.resolve(decided, False)

        txaio.add_callbacks(future, lambda allowed: txaio.resolve(decided, bool(allowed)), failed)
        return decided

    def _policy_failed(self, fail: Any, action: str, target: str) -> None:
        log_failure(txaio.make_logger(), fail,
                    "wskit: authorization of {action} {target!r} failed (denied): {log_failure.value}",
                    action=action, target=target)

    def when_allowed(self, action: str, target: str, msg: Any, proceed: Any) -> Any:
        """Run ``proceed()`` if ``action`` on ``target`` is allowed, else answer ``forbidden``.

        Returns what ``proceed()`` returned (a future when the request waits on
        a shared hub) when the decision is made at once. When the decision is
        pending, the messages that arrive meanwhile are held (and reading
        paused) and handled in order once it is made and the request is done.
        """
        verdict = self.authorize(action, target)
        if verdict is True:
            return proceed()
        if verdict is False:
            raise BadMessage(FORBIDDEN, f"not allowed to {action} {target!r}")
        if self._held is None:
            self._held = deque()

        def decided(allowed: bool) -> None:
            result = None
            if self.connected:
                try:
                    if not allowed:
                        raise BadMessage(FORBIDDEN, f"not allowed to {action} {target!r}")
                    result = proceed()
                except Exception:
                    self._request_failed_now(txaio.create_failure(), msg)
            if result is not None and txaio.is_future(result):
                def failed(fail: Any) -> None:
                    self._request_failed_now(fail, msg)
                    self._release_held()

                txaio.add_callbacks(result, lambda _: self._release_held(), failed)
            else:
                self._release_held()

        txaio.add_callbacks(verdict, decided, None)
        return None

    def _request_failed_now(self, fail: Any, msg: Any) -> None:
        """A request failed: a :class:`BadMessage` is answered; anything else is logged and closes with 1011."""
        if isinstance(fail.value, BadMessage):
            self.send_error(fail.value.code, fail.value.message, msg)
            return
        log_failure(txaio.make_logger(), fail, "wskit: {subprotocol} request failed for {peer}: "
                    "{log_failure.value}", subprotocol=self.connection.subprotocol, peer=self.connection.peer)
        if self.connected:
            self.connection.close(CLOSE_INTERNAL_ERROR, "internal error")

    def _release_held(self) -> None:
        held, self._held = self._held, None
        while held and self.connected:
            payload, is_binary = held.popleft()
            try:
                self.on_message(payload, is_binary)
            except Exception:  # as the protocol does for a message handled at once
                log_failure(txaio.make_logger(), txaio.create_failure(),
                            "wskit: {subprotocol} on_message failed for {peer}: {log_failure.value}",
                            subprotocol=self.connection.subprotocol, peer=self.connection.peer)
                self.connection.close(CLOSE_INTERNAL_ERROR, "internal error")
                return
            if self._held is not None:  # that message started another pending decision
                self._held.extend(held)
                return
        self._resume_reading_for("authorization")

    def _pause_reading_for(self, reason: str) -> None:
        if not self._pause_reasons:
            self.connection.pause_reading()
        self._pause_reasons.add(reason)

    def _resume_reading_for(self, reason: str) -> None:
        if reason in self._pause_reasons:
            self._pause_reasons.discard(reason)
            if not self._pause_reasons and self.connected:
                self.connection.resume_reading()

    def send_error(self, code: str, message: str, msg: Any) -> None:
        raise NotImplementedError

    def count_bad_input(self) -> bool:
        """Charge one bad message; False (and the connection closing with 1008) when over budget."""
        self.bad_inputs += 1
        budget = self.settings.error_budget
        if budget and self.bad_inputs > budget:
            if self.connected:
                self.connection.close(CLOSE_POLICY_VIOLATION, f"more than {budget} bad messages")
            return False
        return True


class _BadPayload:
    """An undecodable message, queued behind requests in progress."""

    def __init__(self, reason: str):
        self.reason = reason


class TypedMessageHandler(SerializedHandler):
    """Chat and pubsub: objects with a ``type`` field, errors as ``{"type": "error", ...}``.

    A request method may answer at once or return a future (a request that
    waits on a shared hub); later requests of the same connection then wait
    their turn, so a connection's requests are answered in the order sent.
    """

    _waiting: deque | None = None  # requests read while one is in progress

    def handle(self, msg: Any) -> None:
        if self._waiting is not None:
            self._waiting.append(msg)
            if len(self._waiting) >= MAX_QUEUED_REQUESTS:
                self._pause_reading_for("queued requests")
            return
        self._run(msg)

    def _run(self, msg: Any) -> None:
        while True:
            pending = self._dispatch(msg)
            if pending is not None:
                if self._waiting is None:
                    self._waiting = deque()
                txaio.add_callbacks(pending, lambda _: self._resume(),
                                    lambda fail: self._request_failed(fail, msg))
                return
            if not self._waiting:
                self._waiting = None
                self._resume_reading_for("queued requests")
                return
            msg = self._waiting.popleft()

    def _resume(self) -> None:
        """The request in progress is answered: run the ones that waited, in order."""
        if not self._waiting:
            self._waiting = None
            self._resume_reading_for("queued requests")
            return
        self._run(self._waiting.popleft())

    def _dispatch(self, msg: Any) -> Any:
        """Run one request; a future if it is still in progress, else None."""
        if isinstance(msg, _BadPayload):
            self.send_error(BAD_PAYLOAD, msg.reason, None)
            return None
        try:
            kind = message_type(msg)
            method = getattr(self, "on_" + kind.replace("-", "_"), None) if kind in self.message_types else None
            if method is None:
                raise BadMessage(UNKNOWN_TYPE, f"unknown message type {kind!r} "
                                               f"(expected one of: {', '.join(self.message_types)})")
            result = method(msg)
        except BadMessage as exc:
            self.send_error(exc.code, exc.message, msg)
            return None
        return result if result is not None and txaio.is_future(result) else None

    def _request_failed(self, fail: Any, msg: Any) -> None:
        self._request_failed_now(fail, msg)
        self._resume()

    message_types: ClassVar[tuple[str, ...]] = ()

    def on_bad_payload(self, reason: str) -> None:
        if self._waiting is not None:  # answered in turn, after the requests before it
            self.handle(_BadPayload(reason))
        else:
            self.send_error(BAD_PAYLOAD, reason, None)

    def send_error(self, code: str, message: str, msg: Any) -> None:
        if code in BUDGET_ERRORS and not self.count_bad_input():
            return
        self.send(self.reply({"type": "error", "code": code, "message": message}, msg))

    @staticmethod
    def reply(obj: dict, msg: Any) -> dict:
        ref = reply_ref(msg)
        if ref is not None:
            obj["ref"] = ref
        return obj


def handler_factory(cls: type, service: Any, version: int, serializer: Serializer,
                    settings: AppSettings | None = None) -> Any:
    """What the registry calls per connection: ``cls(connection, service, version, serializer)``."""

    def make(connection: Any) -> Any:
        return cls(connection, service, version, serializer, settings)

    make.__name__ = f"{cls.__name__}_v{version}_{serializer.name}"
    return make
