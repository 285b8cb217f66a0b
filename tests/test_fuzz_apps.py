"""Property tests (hypothesis) of the chat, pubsub and rpc handlers, driven through a fake connection.

Several connections (both versions and serializers) share one service; each
step sends one arbitrary payload from one of them through
``handler.on_message``, as the protocol would after Autobahn's checks.
Whatever arrives must end in a documented reply (an error message, a
JSON-RPC error object) or a valid action, never in an exception (which the
protocol turns into 1011) or a hub delivery that fails. Budgets and
switches: tests/fuzz_support.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct

import msgpack
import txaio
from fuzz_support import fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st

from wskit.hub import InProcessHub
from wskit.jsonrpc import RPCService
from wskit.protocols.base import (
    ALREADY_JOINED,
    INPUT_ERRORS,
    NICK_TAKEN,
    NOT_JOINED,
    TOO_MANY,
)
from wskit.protocols.chat import ChatHandler, ChatService
from wskit.protocols.pubsub import PubSubHandler, PubSubService
from wskit.protocols.rpc import RPCHandler, create_service
from wskit.serializers import SERIALIZERS
from wskit.settings import AppSettings

JSON, MSGPACK = SERIALIZERS["json"], SERIALIZERS["msgpack"]
ERROR_CODES = INPUT_ERRORS | {NOT_JOINED, ALREADY_JOINED, NICK_TAKEN, TOO_MANY}
# What a handler may close with on its own: the frame type does not match the
# serializer, or the error budget is spent. Never 1011.
HANDLER_CLOSE_CODES = {1003, 1008}


class FakeConnection:
    """Stands in for a wskit connection (the wskit.Connection API): records what is sent and closed."""

    peer = "fake"
    compress_threshold = 64

    def __init__(self, subprotocol: str):
        self.subprotocol = subprotocol
        self.is_connected = True
        self.sent: list[tuple[bytes, bool]] = []
        self.prepared: list = []
        self.closed: tuple[int, str | None] | None = None

    def send_message(self, payload, is_binary):
        if not self.is_connected:
            return False
        self.sent.append((payload, is_binary))
        return True

    def send_prepared(self, prepared):
        if not self.is_connected:
            return False
        self.prepared.append(prepared)
        return True

    def close(self, code=1000, reason=None):
        if self.is_connected:
            self.closed = (code, reason)
        self.is_connected = False

    def abort(self):
        self.is_connected = False


class RecordingHub(InProcessHub):
    """Counts deliveries that failed (the hub logs and skips those)."""

    def __init__(self):
        super().__init__()
        self.failures = 0

    def fan_out(self, topic, event, members=None):
        if members is None:
            members = self.subscribers(topic)
        expected = sum(1 for m in members if event.exclude is None or getattr(m, "hub_id", None) != event.exclude)
        delivered = super().fan_out(topic, event, members)
        self.failures += expected - delivered
        return delivered


def prepared_payload(prepared) -> bytes:
    """The payload of a pre-framed (unmasked) server message."""
    data = prepared.payloadHybi
    n, offset = data[1] & 0x7F, 2
    if n == 126:
        n, offset = struct.unpack("!H", data[2:4])[0], 4
    elif n == 127:
        n, offset = struct.unpack("!Q", data[2:10])[0], 10
    return data[offset:offset + n]


# -- values a decoder may hand a handler --------------------------------------------------------

# NaN and infinities, integers msgpack cannot carry and bytes map keys included: the decoders
# refuse what one serializer could not encode again (docs/reliability.md).
FLOATS = st.floats()
# ...often enough that a short budget meets them.
ODD_FLOATS = [st.sampled_from([math.nan, math.inf, -math.inf])]
INTS = st.integers(-(2**70), 2**70)
TEXT = st.one_of(st.sampled_from(["r", "lobby", "t.a", "a..b", "x" * 70, "\x07bell", "é", ""]), st.text(max_size=10))
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=10,
)
MSGPACK_KEYS = st.one_of(TEXT, st.integers(-(2**63), 2**63), st.none(), st.booleans(),
                         st.binary(max_size=3))
MSGPACK_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), FLOATS, TEXT, st.binary(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(MSGPACK_KEYS, inner, max_size=3)),
    max_leaves=10,
)


def wire(serializer, value) -> bytes | None:
    """``value`` as a peer would send it (NaN written as JSON's NaN token); None if it cannot be."""
    try:
        if serializer is JSON:
            return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return None


ANY_VALUE = st.one_of(JSON_VALUES, MSGPACK_VALUES)


@st.composite
def message(draw, types, fields):
    """Mostly a well-formed message (a known ``type``, each field present and plausible),
    sometimes with a missing or arbitrary field, an arbitrary type, or no object at all."""
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return draw(ANY_VALUE)
    msg = {"type": draw(st.sampled_from(types)) if roll > 1 else draw(ANY_VALUE)}
    for name, plausible in fields.items():
        kind = draw(st.integers(0, 9))
        if kind == 0:
            continue  # missing
        msg[name] = draw(plausible) if kind > 1 else draw(ANY_VALUE)
    return msg


STEP_KINDS = st.sampled_from(["message"] * 8 + ["garbage", "wrong-frame-type"])


@st.composite
def steps(draw, messages, connections: int):
    out = []
    for _ in range(draw(st.integers(1, 12))):
        out.append((draw(st.integers(0, connections - 1)), draw(STEP_KINDS), draw(messages),
                    draw(st.binary(max_size=12))))
    return out


def payload_for(handler, kind: str, msg, garbage: bytes) -> tuple[bytes, bool] | None:
    serializer = handler.serializer
    if kind == "garbage":
        return garbage, serializer.binary
    encoded = wire(serializer, msg)
    if encoded is None:
        return None
    if kind == "wrong-frame-type":
        return encoded, not serializer.binary
    return encoded, serializer.binary


def check_replies(handler, conn: FakeConnection, seen: int, allowed_types: set[str]) -> int:
    """Every direct reply since ``seen`` decodes with the connection's serializer and is documented."""
    for payload, is_binary in conn.sent[seen:]:
        assert is_binary == handler.serializer.binary
        reply = handler.serializer.decode(payload)
        assert isinstance(reply, dict) and reply.get("type") in allowed_types, reply
        if reply["type"] == "error":
            assert reply["code"] in ERROR_CODES and isinstance(reply["message"], str), reply
        event(f"reply {reply['type']} {reply.get('code', '')}".rstrip())  # --hypothesis-show-statistics
    return len(conn.sent)


def check_broadcasts(handler, conn: FakeConnection, allowed_types: set[str]) -> None:
    for prepared in conn.prepared:
        message = handler.serializer.decode(prepared_payload(prepared))
        assert isinstance(message, dict) and message.get("type") in allowed_types, message


def check_close(conn: FakeConnection, wrong_frame_sent: bool) -> None:
    if conn.closed is not None:
        code = conn.closed[0]
        assert code in HANDLER_CLOSE_CODES, f"closed with {code}"
        if code == 1003:
            assert wrong_frame_sent


# -- chat ---------------------------------------------------------------------------------------

CHAT_KINDS = [(2, JSON), (2, MSGPACK), (1, JSON), (1, MSGPACK)]
ROOMS = st.one_of(st.sampled_from(["r", "lobby", "r2", "r3"]), TEXT)
CHAT_MESSAGES = message(["join", "join", "leave", "say", "say", "nope"],
                        {"room": ROOMS, "nick": st.one_of(st.sampled_from(["ann", "bob", "cy"]), TEXT),
                         "text": TEXT, "ref": st.one_of(TEXT, INTS, FLOATS, *ODD_FLOATS)})


@fuzz_settings(250)
@given(script=steps(CHAT_MESSAGES, len(CHAT_KINDS)), budget=st.sampled_from([0, 3]),
       max_subscriptions=st.sampled_from([0, 2]), max_rooms=st.sampled_from([0, 2]))
def test_chat_handlers_answer_any_message_with_a_documented_reply(script, budget, max_subscriptions, max_rooms):
    hub = RecordingHub()
    settings = AppSettings(error_budget=budget, max_subscriptions=max_subscriptions, max_rooms=max_rooms,
                           history_size=3, max_retained_rooms=2)
    service = ChatService(hub, settings, clock=lambda: 1.0, idle_clock=lambda: 1.0)
    handlers = []
    for version, serializer in CHAT_KINDS:
        conn = FakeConnection(f"wskit.chat.v{version}.{serializer.name}")
        handlers.append(ChatHandler(conn, service, version, serializer, settings))
    seen = [0] * len(handlers)
    wrong = [False] * len(handlers)
    for index, kind, msg, garbage in script:
        handler = handlers[index]
        if not handler.connection.is_connected:
            continue
        sent = payload_for(handler, kind, msg, garbage)
        if sent is None:
            continue
        wrong[index] |= kind == "wrong-frame-type"
        handler.on_message(*sent)  # an exception here is a 1011 on a real connection
        seen[index] = check_replies(handler, handler.connection, seen[index], {"joined", "left", "error"})
    assert hub.failures == 0, "a broadcast could not be delivered"
    for i, handler in enumerate(handlers):
        check_broadcasts(handler, handler.connection, {"message", "presence"})
        check_close(handler.connection, wrong[i])
    for handler in handlers:
        handler.on_close(True, 1000, None)
    assert service.rooms == {} and hub.topics() == []


# -- pubsub -------------------------------------------------------------------------------------

TOPICS = st.one_of(st.sampled_from(["t", "t.a", "t.b", "t.a.b", "t.*", "t.**", "*.a", "**", "a..b", ".t", "t.*x"]),
                   st.text(max_size=6))
PUBSUB_MESSAGES = message(["subscribe", "subscribe", "unsubscribe", "publish", "publish", "nope"],
                          {"topic": TOPICS, "data": st.one_of(ANY_VALUE, *ODD_FLOATS),
                           "ref": st.one_of(TEXT, INTS, FLOATS, *ODD_FLOATS)})


@fuzz_settings(250)
@given(script=steps(PUBSUB_MESSAGES, 4), budget=st.sampled_from([0, 3]),
       max_subscriptions=st.sampled_from([0, 2]), max_topics=st.sampled_from([0, 3]))
def test_pubsub_handlers_answer_any_message_and_deliver_every_event(script, budget, max_subscriptions, max_topics):
    hub = RecordingHub()
    settings = AppSettings(error_budget=budget, max_subscriptions=max_subscriptions, max_topics=max_topics)
    service = PubSubService(hub, settings)
    handlers = [PubSubHandler(FakeConnection(f"wskit.pubsub.v1.{s.name}"), service, 1, s, settings)
                for s in (JSON, MSGPACK, JSON, MSGPACK)]
    seen = [0] * len(handlers)
    wrong = [False] * len(handlers)
    for index, kind, msg, garbage in script:
        handler = handlers[index]
        if not handler.connection.is_connected:
            continue
        sent = payload_for(handler, kind, msg, garbage)
        if sent is None:
            continue
        wrong[index] |= kind == "wrong-frame-type"
        topic = msg.get("topic") if isinstance(msg, dict) else None
        audience = hub.subscribers(service.hub_topic(topic)) if isinstance(topic, str) else []
        before = {id(h): len(h.connection.prepared) for h in handlers}
        handler.on_message(*sent)
        seen[index] = check_replies(handler, handler.connection, seen[index],
                                    {"subscribed", "unsubscribed", "error"})
        published = any(len(h.connection.prepared) > before[id(h)] for h in handlers)
        if published:
            # Every subscriber of the topic (exact or by pattern) got the event, once.
            for h in handlers:
                expected = 1 if h in audience and h.connection.is_connected else 0
                assert len(h.connection.prepared) - before[id(h)] == expected
    assert hub.failures == 0, "an event could not be delivered to some subscriber"
    for i, handler in enumerate(handlers):
        check_broadcasts(handler, handler.connection, {"event"})
        check_close(handler.connection, wrong[i])
    for handler in handlers:
        handler.on_close(True, 1000, None)
    assert service.topic_count == 0 and hub.topics() == []


# -- JSON-RPC -----------------------------------------------------------------------------------

IDS = st.one_of(st.integers(0, 9), st.sampled_from(["a", "", 1.5, None]), TEXT, INTS, FLOATS, st.booleans(),
                st.lists(st.integers(), max_size=1), *ODD_FLOATS)
PARAMS = st.one_of(st.lists(st.one_of(st.integers(-9, 9), st.floats(-1e3, 1e3)), max_size=3),
                   st.lists(ANY_VALUE, max_size=3), st.dictionaries(st.sampled_from(["value", "x"]), ANY_VALUE,
                                                                    max_size=2))


@st.composite
def rpc_requests(draw):
    """Mostly well-formed JSON-RPC requests and notifications, sometimes not."""
    def field(plausible, odd):
        kind = draw(st.integers(0, 9))
        return None if kind == 0 else (draw(plausible) if kind > 1 else draw(odd))

    request = {}
    for name, plausible, odd in (("jsonrpc", st.just("2.0"), st.sampled_from(["1.0", 2.0, None])),
                                 ("method", st.sampled_from(["echo", "add", "time", "rpc.discover", "nope"]), TEXT),
                                 ("params", PARAMS, ANY_VALUE), ("id", IDS, ANY_VALUE)):
        value = field(plausible, odd)
        if value is not None or name == "id":
            request[name] = value
    if draw(st.integers(0, 4)) == 0:
        del request["id"]  # a notification
    return request


RPC_MESSAGES = st.one_of(rpc_requests(), rpc_requests(), st.lists(rpc_requests(), max_size=4), ANY_VALUE)


def valid_response(obj) -> bool:
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0" or "id" not in obj:
        return False
    if "error" in obj:
        error = obj["error"]
        return isinstance(error, dict) and isinstance(error.get("code"), int) and isinstance(error.get("message"), str)
    return "result" in obj


def must_answer(msg) -> bool:
    """A single well-formed request (not a notification) with a valid id must get a response."""
    return (isinstance(msg, dict) and msg.get("jsonrpc") == "2.0" and isinstance(msg.get("method"), str)
            and "id" in msg and (msg["id"] is None or (isinstance(msg["id"], (str, int, float))
                                                        and not isinstance(msg["id"], bool))))


def rpc_service() -> RPCService:
    rpc = create_service(max_batch_size=3)
    rpc.unregister("sleep")  # waits in real time: not for a fuzz budget
    return rpc


@fuzz_settings(250)
@given(script=steps(RPC_MESSAGES, 2), budget=st.sampled_from([0, 3]))
def test_rpc_handler_answers_every_request_with_a_valid_response(script, budget):
    if txaio._explicit_framework is None:
        txaio.use_asyncio()
    if txaio.using_twisted:  # pragma: no cover - only when another test chose Twisted
        return
    settings = AppSettings(error_budget=budget)
    service = rpc_service()

    async def session():
        loop = asyncio.get_running_loop()
        txaio.config.loop = loop
        errors: list = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        handlers = [RPCHandler(FakeConnection(f"wskit.rpc.v1.{s.name}"), service, 1, s, settings)
                    for s in (JSON, MSGPACK)]
        wrong = [False, False]
        for index, kind, msg, garbage in script:
            handler = handlers[index]
            conn = handler.connection
            if not conn.is_connected:
                continue
            sent = payload_for(handler, kind, msg, garbage)
            if sent is None:
                continue
            wrong[index] |= kind == "wrong-frame-type"
            before = len(conn.sent)
            result = handler.on_message(*sent)
            if result is not None:
                await asyncio.wait_for(asyncio.ensure_future(result), 5)  # a failure here is a 1011
            for _ in range(3):
                await asyncio.sleep(0)
            assert not errors, f"exception outside the handler: {errors[0].get('message')} {errors[0].get('exception')!r}"
            replies = [handler.serializer.decode(p) for p, _ in conn.sent[before:]]
            for reply in replies:
                items = reply if isinstance(reply, list) else [reply]
                assert items and all(valid_response(item) for item in items), reply
                for item in items:
                    event("result" if "result" in item else f"error {item['error']['code']}")
            if kind == "message" and must_answer(msg) and conn.is_connected:
                assert len(replies) == 1, f"no response to {msg!r}"
                if not (isinstance(msg["id"], float) and math.isnan(msg["id"])):
                    assert replies[0]["id"] == msg["id"] or replies[0]["id"] is None
        for i, handler in enumerate(handlers):
            check_close(handler.connection, wrong[i])

    asyncio.run(session())
