"""Unit tests without sockets: serializers, validation, hub patterns, broadcast, chat service, JSON-RPC."""

from __future__ import annotations

import asyncio
import json

import msgpack
import pytest
import txaio

from wskit.broadcast import Broadcast
from wskit.clients.interactive import encode_line, render_message
from wskit.hub import InProcessHub, compile_pattern
from wskit.jsonrpc import RPCError, RPCService, count_input_errors
from wskit.protocols import build_registry
from wskit.protocols.base import BadMessage, message_type, require_name
from wskit.protocols.chat import ChatHandler, ChatService
from wskit.protocols.pubsub import check_topic
from wskit.serializers import (
    SERIALIZERS,
    DecodeError,
    SubprotocolName,
    parse_subprotocol,
    serializer_for,
)
from wskit.settings import AppSettings, ServerSettings, SettingsError

JSON, MSGPACK = SERIALIZERS["json"], SERIALIZERS["msgpack"]


# -- serializers ---------------------------------------------------------------


@pytest.mark.parametrize("obj", [{"a": [1, 2.5, None, True, "é"]}, [], "s", 0, {"n": {"m": {}}}])
def test_serializers_round_trip(obj):
    for s in (JSON, MSGPACK):
        assert s.decode(s.encode(obj)) == obj


def test_serializer_frame_types_and_bytes():
    assert JSON.binary is False and MSGPACK.binary is True
    assert JSON.encode({"b": b"\x01\x02"}) == b'{"b":"AQI="}'
    assert MSGPACK.decode(MSGPACK.encode({"b": b"\x01"})) == {"b": b"\x01"}
    assert JSON.encode({"t": "ü"}) == '{"t":"ü"}'.encode()


@pytest.mark.parametrize("s, payload", [(JSON, b"{nope"), (JSON, b"\xff\xfe"), (MSGPACK, b"\xc1"),
                                        (MSGPACK, b"\x92\x01")])
def test_serializers_reject_garbage_with_decode_error(s, payload):
    with pytest.raises(DecodeError):
        s.decode(payload)


def test_parse_subprotocol_names():
    assert parse_subprotocol("wskit.chat.v2.msgpack") == SubprotocolName("chat", 2, "msgpack")
    assert str(parse_subprotocol("wskit.rpc.v1.json")) == "wskit.rpc.v1.json"
    for name in ("wskit.echo", "wskit.chat.v2.xml", "chat.v1.json", None, ""):
        assert parse_subprotocol(name) is None
    assert serializer_for("wskit.pubsub.v1.msgpack") is MSGPACK
    assert serializer_for("wskit.echo") is None


def test_registry_order_newest_first_msgpack_before_json():
    class App:
        settings = ServerSettings()
        hub = InProcessHub()
        services: dict = {}

    names = build_registry(App()).names
    assert names == (
        "wskit.chat.v2.msgpack", "wskit.chat.v2.json", "wskit.chat.v1.msgpack", "wskit.chat.v1.json",
        "wskit.pubsub.v1.msgpack", "wskit.pubsub.v1.json",
        "wskit.rpc.v1.msgpack", "wskit.rpc.v1.json",
        "wskit.echo",
    )
    assert set(App.services) == {"chat", "pubsub", "rpc", "ticker"}  # the demo ticker runs by default


def test_app_settings_validate():
    assert ServerSettings().apps == AppSettings()
    with pytest.raises(SettingsError):
        ServerSettings(apps=AppSettings(error_budget=-1)).validate()
    with pytest.raises(SettingsError):
        ServerSettings(apps=AppSettings(max_name_length=0)).validate()


def test_interactive_client_renders_and_encodes_by_serializer():
    payload = msgpack.packb({"type": "event", "data": [1]})
    assert render_message(payload, True, "wskit.pubsub.v1.msgpack") == '< {"type": "event", "data": [1]}'
    assert render_message(b'{"a":1}', False, "wskit.chat.v1.json") == '< {"a":1}'
    assert encode_line('{"type":"join"}', "wskit.chat.v2.msgpack") == (msgpack.packb({"type": "join"}), True)
    assert encode_line('{"type":"join"}', "wskit.chat.v2.json") == (b'{"type":"join"}', False)


# -- validation ------------------------------------------------------------------


def test_message_validation():
    with pytest.raises(BadMessage) as err:
        message_type([1])
    assert err.value.code == "bad-message"
    assert message_type({"type": "join"}) == "join"
    assert require_name({"room": "lobby"}, "room", 10) == "lobby"
    for msg, code in [({}, "bad-field"), ({"room": 1}, "bad-field"), ({"room": ""}, "bad-field"),
                      ({"room": "x" * 11}, "too-long"), ({"room": "a\nb"}, "bad-field")]:
        with pytest.raises(BadMessage) as err:
            require_name(msg, "room", 10)
        assert err.value.code == code


def test_topic_validation():
    assert check_topic("a.b", allow_pattern=False) == "a.b"
    assert check_topic("a.*.c", allow_pattern=True) == "a.*.c"
    assert check_topic("a.**", allow_pattern=True) == "a.**"
    for topic, pattern in [("a..b", True), ("a.*", False), ("a.b*", True), ("**.a", True), (".a", True)]:
        with pytest.raises(BadMessage):
            check_topic(topic, allow_pattern=pattern)


# -- hub -----------------------------------------------------------------------------


class Recorder:
    """A hub subscriber recording (topic, the broadcast's default shape)."""

    def __init__(self, hub_id=None):
        self.got = []
        self.events = []
        self.hub_id = hub_id

    def deliver(self, topic, event):
        self.got.append((topic, event.shapes.get(None)))
        self.events.append(event)


def test_hub_exact_and_pattern_subscriptions_deliver_once():
    hub = InProcessHub()
    a, b = Recorder(), Recorder()
    hub.subscribe("t.x", a)
    hub.subscribe_pattern("t.*", a)
    hub.subscribe_pattern("t.**", b)
    assert hub.publish("t.x", {None: 1}) == 2
    assert hub.publish("t.y.z", {None: 2}) == 1
    assert hub.publish("u", {None: 3}) == 0
    assert a.got == [("t.x", 1)] and b.got == [("t.x", 1), ("t.y.z", 2)]
    assert a.events[0] is b.events[0]  # one Broadcast per publish: serialized once for everyone
    assert hub.subscriptions(a) == {"t.x", "t.*"}
    hub.unsubscribe_all(a)
    hub.unsubscribe_pattern("t.**", b)
    assert hub.topics() == [] and hub.publish("t.x", {None: 4}) == 0


def test_hub_publish_carries_plain_data_and_excludes_a_connection_by_id():
    from wskit.hub import new_connection_id, process_id, process_of

    hub = InProcessHub()
    me, other = Recorder(new_connection_id()), Recorder(new_connection_id())
    assert me.hub_id != other.hub_id and process_of(me.hub_id) == process_id()
    for sub in (me, other):
        hub.subscribe("room", sub)
    shapes = {1: {"v": 1}, 2: {"v": 2}}
    assert hub.publish("room", shapes, exclude=me.hub_id, offset=7, epoch="e") == 1
    assert me.events == [] and len(other.events) == 1
    event = other.events[0]
    assert isinstance(event, Broadcast) and event.shapes == shapes and event.exclude == me.hub_id
    assert (event.offset, event.epoch) == (7, "e")


def test_pattern_compilation():
    assert compile_pattern("a.*").match("a.b") and not compile_pattern("a.*").match("a.b.c")
    assert compile_pattern("a.**").match("a.b.c") and not compile_pattern("a.**").match("a")
    assert not compile_pattern("a.b").match("aXb")


def test_hub_skips_a_failing_subscriber():
    if txaio._explicit_framework is None:
        txaio.use_asyncio()

    class Broken:
        def deliver(self, topic, event):
            raise RuntimeError("boom")

    hub, ok = InProcessHub(), Recorder()
    hub.subscribe("t", Broken())
    hub.subscribe("t", ok)
    assert hub.publish("t", {None: 1}) == 1 and ok.got == [("t", 1)]


# -- broadcast and chat fan-out ---------------------------------------------------------


class FakeConnection:
    """Stands in for a wskit connection (the wskit.Connection API): records what is sent."""

    is_connected = True
    peer = "fake"
    compress_threshold = 64

    def __init__(self, subprotocol):
        self.subprotocol = subprotocol
        self.sent = []
        self.prepared = []

    def send_message(self, payload, is_binary):
        self.sent.append((payload, is_binary))
        return True

    def send_prepared(self, prepared):
        self.prepared.append(prepared)
        return True

    def close(self, code=1000, reason=None):
        self.is_connected = False


def test_broadcast_encodes_once_per_shape_and_serializer():
    b = Broadcast({1: {"v": 1}, 2: {"v": 2}})
    conns = [FakeConnection("x") for _ in range(6)]
    kinds = [(1, JSON), (1, JSON), (2, JSON), (2, MSGPACK), (2, MSGPACK), (1, JSON)]
    for conn, (shape, ser) in zip(conns, kinds, strict=True):
        assert b.send(conn, shape, ser)
    assert b.encodings == 3
    assert conns[0].prepared[0] is conns[1].prepared[0] is conns[5].prepared[0]
    assert conns[3].prepared[0] is conns[4].prepared[0]
    assert conns[0].prepared[0].payloadHybi[2:] == b'{"v":1}'  # unmasked server frame


def test_chat_fan_out_serializes_once_per_version_and_serializer():
    hub = InProcessHub()
    seen = []
    fan_out = hub.fan_out
    hub.fan_out = lambda topic, event, members=None: (seen.append(event), fan_out(topic, event, members))[1]
    service = ChatService(hub, AppSettings(history_size=2), clock=lambda: 1.5)
    handlers = []
    for i, (version, ser) in enumerate([(1, JSON)] * 3 + [(2, JSON)] * 2 + [(2, MSGPACK)] * 2):
        h = ChatHandler(FakeConnection(f"wskit.chat.v{version}.{ser.name}"), service, version, ser)
        h.handle({"type": "join", "room": "r", "nick": f"n{i}"})
        handlers.append(h)
    seen.clear()
    assert service.post("r", "server", "hello") == 7
    assert seen[0].encodings == 3
    v1 = json.loads(handlers[0].connection.prepared[-1].payloadHybi[2:])
    assert v1 == {"type": "message", "room": "r", "from": "server", "text": "hello"}
    v2 = msgpack.unpackb(handlers[6].connection.prepared[-1].payloadHybi[2:])
    assert v2["ts"] == 1.5 and v2["id"] and v2["text"] == "hello"
    assert service.history("r") == [v2]
    handlers[0].on_close(True, 1000, None)
    assert service.members("r") == [f"n{i}" for i in range(1, 7)]
    for h in handlers[1:]:
        h.on_close(True, 1000, None)
    assert service.rooms == {} and hub.topics() == []


def test_chat_handler_errors_and_budget():
    service = ChatService(InProcessHub(), AppSettings(error_budget=2))
    conn = FakeConnection("wskit.chat.v1.json")
    h = ChatHandler(conn, service, 1, JSON, service.settings)
    h.on_message(b'{"type":"x"}', False)
    h.on_message(b'{"type":"say","room":"r","text":"t","ref":"q"}', False)  # refusal: not counted
    h.on_message(b"[", False)
    replies = [json.loads(p) for p, _ in conn.sent]
    assert [r["code"] for r in replies] == ["unknown-type", "not-joined", "bad-payload"]
    assert replies[1]["ref"] == "q"
    assert conn.is_connected
    h.on_message(b"[", False)
    assert not conn.is_connected and len(conn.sent) == 3


# -- JSON-RPC dispatch --------------------------------------------------------------


def dispatch(rpc: RPCService, request):
    """Run dispatch under whichever txaio framework this process uses (asyncio by default)."""
    if txaio._explicit_framework is None:
        txaio.use_asyncio()
    if txaio.using_twisted:  # pragma: no cover - only when another test chose Twisted
        results = []
        rpc.dispatch(request).addBoth(results.append)
        return results[0]

    async def go():
        txaio.config.loop = asyncio.get_running_loop()
        return await rpc.dispatch(request)

    return asyncio.run(go())


def make_rpc() -> RPCService:
    rpc = RPCService(max_batch_size=3)

    @rpc.method
    def add(a, b=0):
        """Add two numbers.

        More text that discover leaves out."""
        return a + b

    @rpc.register("fail")
    def fail(kind="rpc"):
        if kind == "rpc":
            raise RPCError(1234, "custom", {"why": "because"})
        raise ValueError("hidden detail")

    async def later(x):
        await asyncio.sleep(0)
        return x * 2

    rpc.register("later", later)
    return rpc


def test_rpc_requests_and_errors():
    rpc = make_rpc()
    assert dispatch(rpc, {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}) == \
        {"jsonrpc": "2.0", "result": 3, "id": 1}
    assert dispatch(rpc, {"jsonrpc": "2.0", "method": "add", "params": {"a": 5}, "id": "k"})["result"] == 5
    assert dispatch(rpc, {"jsonrpc": "2.0", "method": "later", "params": [4], "id": 2})["result"] == 8
    assert dispatch(rpc, {"jsonrpc": "2.0", "method": "add", "params": [1]}) is None  # notification
    assert dispatch(rpc, {"jsonrpc": "2.0", "method": "nope"}) is None  # notifications never answer
    cases = [
        ({"jsonrpc": "2.0", "method": "nope", "id": 3}, -32601, 3),
        ({"jsonrpc": "2.0", "method": "add", "params": [1, 2, 3], "id": 4}, -32602, 4),
        ({"jsonrpc": "2.0", "method": "add", "params": {"c": 1}, "id": 5}, -32602, 5),
        ({"jsonrpc": "2.0", "method": "fail", "params": ["other"], "id": 6}, -32603, 6),
        ({"method": "add", "id": 7}, -32600, 7),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "add"}, -32600, None),
        ("x", -32600, None),
    ]
    for request, code, reply_id in cases:
        reply = dispatch(rpc, request)
        assert reply["error"]["code"] == code and reply["id"] == reply_id, (request, reply)
    custom = dispatch(rpc, {"jsonrpc": "2.0", "method": "fail", "id": 8})
    assert custom["error"] == {"code": 1234, "message": "custom", "data": {"why": "because"}}
    internal = dispatch(rpc, {"jsonrpc": "2.0", "method": "fail", "params": ["other"], "id": 9})
    assert "hidden detail" not in json.dumps(internal)


def test_rpc_batches():
    rpc = make_rpc()
    reply = dispatch(rpc, [{"jsonrpc": "2.0", "method": "add", "params": [1, 1], "id": 1},
                           {"jsonrpc": "2.0", "method": "add", "params": [1, 1]},
                           {"jsonrpc": "2.0", "method": "later", "params": [1], "id": 2}])
    assert reply == [{"jsonrpc": "2.0", "result": 2, "id": 1}, {"jsonrpc": "2.0", "result": 2, "id": 2}]
    assert dispatch(rpc, [{"jsonrpc": "2.0", "method": "add", "params": [1]}]) is None
    assert dispatch(rpc, [])["error"]["code"] == -32600
    too_many = dispatch(rpc, [{"jsonrpc": "2.0", "method": "add", "params": [1], "id": i} for i in range(4)])
    assert too_many["error"]["code"] == -32600 and too_many["id"] is None
    assert count_input_errors([{"error": {"code": -32600}}, {"error": {"code": -32601}}, {"result": 1}]) == 1


def test_rpc_discover_and_registration():
    rpc = make_rpc()
    described = dispatch(rpc, {"jsonrpc": "2.0", "method": "rpc.discover", "id": 1})["result"]
    add = next(m for m in described["methods"] if m["name"] == "add")
    assert add == {"name": "add", "description": "Add two numbers.",
                   "params": [{"name": "a", "required": True}, {"name": "b", "required": False, "default": 0}]}
    with pytest.raises(ValueError):
        rpc.register("rpc.mine", lambda: 1)
    rpc.unregister("add")
    assert "add" not in rpc.methods
    error = RPCError.from_dict({"code": -32601, "message": "Method not found"})
    assert (error.code, error.message, error.data) == (-32601, "Method not found", None)


def test_subscription_limits_refuse_without_charging_the_budget():
    from wskit.protocols.pubsub import PubSubHandler, PubSubService

    settings = AppSettings(max_subscriptions=2, error_budget=1)
    hub = InProcessHub()
    chat = ChatService(hub, settings)
    conn = FakeConnection("wskit.chat.v1.json")
    h = ChatHandler(conn, chat, 1, JSON, settings)
    for room in ("a", "b", "c", "c"):
        h.handle({"type": "join", "room": room, "nick": "n"})
    assert [json.loads(p).get("code") for p, _ in conn.sent] == [None, None, "too-many", "too-many"]
    assert chat.rooms_of(h) == ["a", "b"] and conn.is_connected

    conn = FakeConnection("wskit.pubsub.v1.json")
    p = PubSubHandler(conn, PubSubService(hub, settings), 1, JSON, settings)
    for topic in ("x", "y.*", "x", "z"):
        p.handle({"type": "subscribe", "topic": topic})
    assert [json.loads(m).get("code") for m, _ in conn.sent] == [None, None, None, "too-many"]
    p.handle({"type": "unsubscribe", "topic": "x"})
    p.handle({"type": "subscribe", "topic": "z"})
    assert json.loads(conn.sent[-1][0]) == {"type": "subscribed", "topic": "z"}
    assert conn.is_connected
