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
        self._reading_paused = False

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
        if event.exclude is self:
            return
        event.send(self.connection, self.version, self.serializer)

    # -- receiving -----------------------------------------------------------

    def on_message(self, payload: bytes, is_binary: bool) -> Any:
        if self._held is not None:
            # An earlier message waits for its authorization: keep the order.
            self._held.append((payload, is_binary))
            self._reading_paused = True
            self.connection.pause_reading()
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

    def when_allowed(self, action: str, target: str, msg: Any, proceed: Any) -> None:
        """Run ``proceed()`` if ``action`` on ``target`` is allowed, else answer ``forbidden``.

        When the decision is pending, the messages that arrive meanwhile are
        held (and reading paused) and handled in order once it is made.
        """
        verdict = self.authorize(action, target)
        if verdict is True:
            proceed()
            return
        if verdict is False:
            raise BadMessage(FORBIDDEN, f"not allowed to {action} {target!r}")
        if self._held is None:
            self._held = deque()

        def decided(allowed: bool) -> None:
            if self.connected:
                try:
                    if not allowed:
                        raise BadMessage(FORBIDDEN, f"not allowed to {action} {target!r}")
                    proceed()
                except BadMessage as exc:
                    self.send_error(exc.code, exc.message, msg)
                except Exception:
                    log_failure(txaio.make_logger(), txaio.create_failure(),
                                "wskit: {action} failed for {peer}: {log_failure.value}",
                                action=action, peer=self.connection.peer)
                    self.connection.close(CLOSE_INTERNAL_ERROR, "internal error")
            self._release_held()

        txaio.add_callbacks(verdict, decided, None)

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
        if self._reading_paused and self.connected:
            self._reading_paused = False
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


class TypedMessageHandler(SerializedHandler):
    """Chat and pubsub: objects with a ``type`` field, errors as ``{"type": "error", ...}``."""

    def handle(self, msg: Any) -> None:
        try:
            kind = message_type(msg)
            method = getattr(self, "on_" + kind.replace("-", "_"), None) if kind in self.message_types else None
            if method is None:
                raise BadMessage(UNKNOWN_TYPE, f"unknown message type {kind!r} "
                                               f"(expected one of: {', '.join(self.message_types)})")
            method(msg)
        except BadMessage as exc:
            self.send_error(exc.code, exc.message, msg)

    message_types: ClassVar[tuple[str, ...]] = ()

    def on_bad_payload(self, reason: str) -> None:
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
