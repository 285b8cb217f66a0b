"""Chat rooms and pubsub topics without sockets: retained history, per-member index, server caps.

Also the option -> setting mapping of the new limits, for `wskit serve` and the twistd plugin.
"""

from __future__ import annotations

import json
import time

import pytest

from wskit.hub import InProcessHub
from wskit.options import server_settings
from wskit.protocols.base import BadMessage
from wskit.protocols.chat import ChatHandler, ChatService
from wskit.protocols.pubsub import PubSubHandler, PubSubService
from wskit.serializers import SERIALIZERS
from wskit.settings import AppSettings

JSON = SERIALIZERS["json"]


class Member:
    """A hub subscriber standing in for a chat connection."""

    def __init__(self, name: str = "m"):
        self.name = name
        self.got: list = []

    def deliver(self, topic, event):
        self.got.append(event)

    def __repr__(self) -> str:
        return self.name


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def chat(**settings) -> tuple[ChatService, FakeClock]:
    clock = FakeClock()
    return ChatService(InProcessHub(), AppSettings(**settings), clock=lambda: 1.5, idle_clock=clock), clock


def texts(messages) -> list[str]:
    return [m["text"] for m in messages]


# -- history of empty rooms -------------------------------------------------------------


def test_a_room_left_by_everyone_keeps_its_history_for_the_next_joiner():
    service, _ = chat(history_size=3)
    ann, bob = Member("ann"), Member("bob")
    service.join(ann, "lobby", "ann")
    service.join(bob, "lobby", "bob")
    for i in range(4):
        service.say(ann, "lobby", f"m{i}")
    service.leave(ann, "lobby")
    service.leave_all(bob)
    assert service.rooms == {} and list(service.retained) == ["lobby"]
    assert service.members("lobby") == [] and texts(service.history("lobby")) == ["m1", "m2", "m3"]
    assert service.hub.topics() == []  # nobody subscribed while the room is empty

    carl = Member("carl")
    room = service.join(carl, "lobby", "carl")
    assert texts(room.history) == ["m1", "m2", "m3"] and room.nicks() == ["carl"]
    assert "lobby" in service.rooms and not service.retained
    service.say(carl, "lobby", "m4")
    assert texts(service.history("lobby")) == ["m2", "m3", "m4"]


def test_a_retained_room_takes_server_posts_for_its_next_joiner():
    service, _ = chat()
    ann = Member()
    service.join(ann, "r", "ann")
    service.say(ann, "r", "hi")
    service.leave(ann, "r")
    assert service.post("r", "server", "maintenance at noon") == 0
    assert service.post("never", "server", "nobody") == 0
    assert texts(service.join(Member(), "r", "bob").history) == ["hi", "maintenance at noon"]
    assert service.history("never") == [] and "never" not in service.retained


def test_rooms_without_history_or_with_retention_off_go_with_their_last_member():
    service, _ = chat()
    service.join(Member(), "quiet", "n")
    service.leave_all(next(iter(service.rooms["quiet"].members)))
    assert not service.retained and not service.rooms

    for settings in ({"max_retained_rooms": 0}, {"history_size": 0}):
        service, _ = chat(**settings)
        m = Member()
        service.join(m, "r", "n")
        service.say(m, "r", "hi")
        service.leave(m, "r")
        assert not service.retained and service.history("r") == []


def leave_with_history(service: ChatService, room: str) -> None:
    m = Member(room)
    service.join(m, room, "n")
    service.say(m, room, f"in {room}")
    service.leave(m, room)


def test_retained_rooms_are_bounded_least_recently_active_dropped_first():
    service, clock = chat(max_retained_rooms=3)
    for room in ("a", "b", "c"):
        clock.now += 1
        leave_with_history(service, room)
    assert list(service.retained) == ["a", "b", "c"]
    clock.now += 1
    service.post("a", "server", "still here")  # activity: a becomes the most recent
    assert list(service.retained) == ["b", "c", "a"]
    clock.now += 1
    leave_with_history(service, "d")
    assert list(service.retained) == ["c", "a", "d"]  # b was the least recently active
    assert service.history("b") == []
    assert texts(service.history("a")) == ["in a", "still here"]
    for i in range(50):
        leave_with_history(service, f"x{i}")
        assert len(service.retained) <= 3
    assert list(service.retained) == ["x47", "x48", "x49"]


def test_room_ttl_forgets_idle_empty_rooms_lazily():
    service, clock = chat(room_ttl=60)
    leave_with_history(service, "old")
    clock.now += 30
    leave_with_history(service, "newer")
    clock.now += 30  # old: exactly 60 s idle, not older than the TTL yet
    assert texts(service.history("old")) == ["in old"]
    clock.now += 1
    assert service.history("old") == [] and "old" not in service.retained  # dropped on access
    assert texts(service.history("newer")) == ["in newer"]
    clock.now += 30
    leave_with_history(service, "third")  # retaining a room sweeps the expired ones
    assert list(service.retained) == ["third"]
    clock.now += 61
    room = service.join(Member(), "third", "late")  # expired: a fresh room
    assert list(room.history) == [] and not service.retained


def test_room_ttl_counts_from_the_last_activity_not_from_emptiness():
    service, clock = chat(room_ttl=10)
    leave_with_history(service, "r")
    clock.now += 8
    service.post("r", "server", "ping")
    clock.now += 8
    assert texts(service.history("r")) == ["in r", "ping"]
    clock.now += 3
    assert service.history("r") == []


# -- indexes --------------------------------------------------------------------------


class CountingRooms(dict):
    """A rooms dict that counts every walk over it."""

    walks = 0

    def __iter__(self):
        type(self).walks += 1
        return super().__iter__()

    def items(self):
        type(self).walks += 1
        return super().items()

    def values(self):
        type(self).walks += 1
        return super().values()

    def keys(self):
        type(self).walks += 1
        return super().keys()


def test_join_leave_and_close_use_the_member_index_not_a_scan_of_all_rooms():
    service, _ = chat(max_subscriptions=0)
    for i in range(50_000):
        service.join(Member(), f"busy{i}", "n")
    service.rooms = CountingRooms(service.rooms)
    member = Member("me")
    started = time.perf_counter()
    for i in range(1000):
        service.join(member, f"busy{i}", "me")
    per_join = (time.perf_counter() - started) / 1000
    assert CountingRooms.walks == 0
    assert service.rooms_of(member) == [f"busy{i}" for i in range(1000)]
    service.leave(member, "busy3")
    service.say(member, "busy4", "hi")
    service.leave_all(member)
    assert CountingRooms.walks == 0 and service.rooms_of(member) == []
    assert len(service.rooms) == 50_000
    print(f"join with 50,000 rooms: {per_join * 1e6:.1f} us")  # informative; the assertion is the count


def test_max_subscriptions_per_member_still_applies():
    service, _ = chat(max_subscriptions=2)
    m = Member()
    service.join(m, "a", "n")
    service.join(m, "b", "n")
    with pytest.raises(BadMessage) as err:
        service.join(m, "c", "n")
    assert err.value.code == "too-many"
    with pytest.raises(BadMessage) as err:
        service.join(m, "a", "n")
    assert err.value.code == "already-joined"
    service.leave(m, "a")
    service.join(m, "c", "n")
    assert service.rooms_of(m) == ["b", "c"]


# -- server-wide caps -----------------------------------------------------------------


def test_max_rooms_refuses_a_new_room_but_not_joining_an_existing_one():
    service, _ = chat(max_rooms=2, max_retained_rooms=5)
    service.join(Member(), "a", "n")
    service.join(Member(), "b", "n")
    with pytest.raises(BadMessage) as err:
        service.join(Member(), "c", "n")
    assert err.value.code == "too-many" and "limit of 2 rooms" in err.value.message
    service.join(Member(), "a", "other")  # an existing room is fine
    # A retained room does not count, but reviving it makes it a room in use again.
    only = next(iter(service.rooms["b"].members))
    service.say(only, "b", "hello")
    service.leave(only, "b")
    assert list(service.retained) == ["b"] and len(service.rooms) == 1
    service.join(Member(), "c", "n")
    with pytest.raises(BadMessage):
        service.join(Member(), "b", "n")
    assert list(service.retained) == ["b"]  # refused: its history is still kept


def test_chat_handler_answers_too_many_without_charging_the_budget():
    from test_app_units import FakeConnection

    settings = AppSettings(max_rooms=1, error_budget=1)
    service = ChatService(InProcessHub(), settings)
    conn = FakeConnection("wskit.chat.v1.json")
    h = ChatHandler(conn, service, 1, JSON, settings)
    for room in ("a", "b", "c", "d"):
        h.handle({"type": "join", "room": room, "nick": "n", "ref": room})
    replies = [json.loads(p) for p, _ in conn.sent]
    assert [r.get("code") for r in replies] == [None, "too-many", "too-many", "too-many"]
    assert replies[1]["ref"] == "b" and conn.is_connected


def test_max_topics_counts_distinct_topics_and_patterns_of_the_server():
    from test_app_units import FakeConnection

    settings = AppSettings(max_topics=2, error_budget=1)
    service = PubSubService(InProcessHub(), settings)
    conns = [FakeConnection("wskit.pubsub.v1.json") for _ in range(2)]
    a, b = (PubSubHandler(c, service, 1, JSON, settings) for c in conns)
    a.handle({"type": "subscribe", "topic": "x"})
    b.handle({"type": "subscribe", "topic": "x"})  # the same topic: no new one
    b.handle({"type": "subscribe", "topic": "y.*"})
    b.handle({"type": "subscribe", "topic": "z"})
    a.handle({"type": "subscribe", "topic": "y.*"})
    assert [json.loads(p).get("code") for p, _ in conns[1].sent] == [None, None, "too-many"]
    assert json.loads(conns[1].sent[-1][0])["message"].startswith("the server is at its limit of 2 topics and patterns")
    assert service.topic_count == 2 and conns[0].is_connected and conns[1].is_connected
    b.on_close(True, 1000, None)
    assert service.topic_count == 2  # a still holds x and y.*
    a.handle({"type": "unsubscribe", "topic": "x"})
    a.handle({"type": "unsubscribe", "topic": "never"})
    assert service.topic_count == 1
    b2 = PubSubHandler(FakeConnection("wskit.pubsub.v1.json"), service, 1, JSON, settings)
    b2.handle({"type": "subscribe", "topic": "z"})
    assert json.loads(b2.connection.sent[-1][0]) == {"type": "subscribed", "topic": "z"}
    a.on_close(True, 1000, None)
    b2.on_close(True, 1000, None)
    assert service.topic_count == 0 and service.hub.topics() == []


def test_post_refuses_text_that_is_not_unicode():
    service, _ = chat()
    for args in (("r", "server", "\ud800"), ("r", "\udfff", "x"), ("\ud83d", "s", "x")):
        with pytest.raises(ValueError, match="lone surrogate"):
            service.post(*args)
    assert service.post("r", "server", "\U0001F600 fine") == 0


# -- options -> settings --------------------------------------------------------------


def test_defaults_and_options_map_to_app_settings():
    defaults = server_settings({}).apps
    assert (defaults.max_rooms, defaults.max_topics, defaults.max_retained_rooms, defaults.room_ttl) == (
        100_000, 100_000, 1000, 0.0)
    apps = server_settings({"max_rooms": 5, "max_topics": 6, "max_retained_rooms": 7, "room_ttl": 8.5}).apps
    assert (apps.max_rooms, apps.max_topics, apps.max_retained_rooms, apps.room_ttl) == (5, 6, 7, 8.5)


def test_serve_and_twistd_parse_the_new_options_alike():
    import argparse

    from twisted.plugins.wskit_plugin import Options

    from wskit.options import add_server_arguments

    argv = ["--max-rooms", "10", "--max-topics", "20", "--max-retained-rooms", "30", "--room-ttl", "2.5"]
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    from_cli = server_settings(vars(parser.parse_args(argv))).apps

    options = Options()
    options.parseOptions(argv)
    from_twistd = server_settings({k.replace("-", "_"): v for k, v in options.items()}).apps
    assert from_cli == from_twistd
    assert (from_cli.max_rooms, from_cli.max_topics, from_cli.max_retained_rooms, from_cli.room_ttl) == (
        10, 20, 30, 2.5)
    with pytest.raises(Exception, match="room_ttl must be >= 0"):
        server_settings({"room_ttl": -1})


def test_serve_and_twistd_parse_the_request_and_history_limits_alike():
    import argparse

    from twisted.plugins.wskit_plugin import Options

    from wskit.options import add_server_arguments

    defaults = server_settings({})
    assert (defaults.limits.max_request_size, defaults.limits.max_headers, defaults.apps.max_history_bytes,
            defaults.allowed_hosts) == (16384, 100, 262144, ())
    argv = ["--max-request-size", "65536", "--max-headers", "50", "--max-history-bytes", "4096",
            "--allow-host", "chat.example.com", "--allow-host", "*.example.org"]
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    from_cli = server_settings(vars(parser.parse_args(argv)))
    options = Options()
    options.parseOptions(argv)
    from_twistd = server_settings({k.replace("-", "_"): v for k, v in options.items()})
    assert from_cli == from_twistd
    assert (from_cli.limits.max_request_size, from_cli.limits.max_headers, from_cli.apps.max_history_bytes,
            from_cli.allowed_hosts) == (65536, 50, 4096, ("chat.example.com", "*.example.org"))
    with pytest.raises(Exception, match="at least 256 bytes"):
        server_settings({"max_request_size": 100})
    with pytest.raises(Exception, match="max_history_bytes must be >= 0"):
        server_settings({"max_history_bytes": -1})


# -- history in bytes -------------------------------------------------------------------


def test_newest_within_keeps_the_newest_messages_that_fit_in_bytes():
    from wskit.protocols.chat import encoded_size, newest_within

    history = [{"type": "message", "text": f"{i}" * (10 * (i + 1))} for i in range(10)]
    sizes = [encoded_size(m) for m in history]
    assert newest_within(history, 0) == history
    assert newest_within(history, sum(sizes)) == history
    assert texts(newest_within(history, sizes[-1] + sizes[-2])) == ["8" * 90, "9" * 100]
    assert texts(newest_within(history, sizes[-1] + sizes[-2] - 1)) == ["9" * 100]
    assert newest_within(history, sizes[-1] - 1) == []  # never a partial or skipped-over answer


def test_history_size_is_counted_in_utf8_bytes():
    from wskit.protocols.chat import encoded_size

    assert encoded_size({"text": "é"}) == len('{"text":"é"}'.encode())


# -- offsets, epochs and recovery (in-process store) ----------------------------------


def test_messages_get_consecutive_offsets_and_the_rooms_epoch():
    service, _ = chat(history_size=3)
    ann = Member("ann")
    room = service.join(ann, "r", "ann")
    epoch = room.history.epoch
    assert isinstance(epoch, str) and len(epoch) == 16 and room.history.offset == 0
    for i in range(5):
        service.say(ann, "r", f"m{i}")
    stored = service.history("r")
    assert [(m["text"], m["offset"], m["epoch"]) for m in stored] == [
        ("m2", 3, epoch), ("m3", 4, epoch), ("m4", 5, epoch)]
    # What members got is what history holds (v2 shape), and v1 stays without the new fields.
    last = ann.got[-1]
    assert last.shapes[2] == stored[-1] and (last.offset, last.epoch) == (5, epoch)
    assert "offset" not in last.shapes[1] and "epoch" not in last.shapes[1]


def test_since_answers_exactly_the_missed_messages_or_says_history_was_lost():
    service, clock = chat(history_size=4, room_ttl=60)
    ann = Member("ann")
    history = service.join(ann, "r", "ann").history
    for i in range(1, 7):
        service.say(ann, "r", f"m{i}")  # offsets 1..6, history keeps 3..6
    epoch = history.epoch
    got = history.read(since=4, since_epoch=epoch)
    assert texts(got.entries) == ["m5", "m6"] and got.lost is False and got.offset == 6
    assert history.read(since=6, since_epoch=epoch).entries == []
    assert history.read(since=2, since_epoch=epoch).lost is False  # 3.. are all kept
    lost = history.read(since=1, since_epoch=epoch)  # 2 is gone
    assert lost.lost is True and texts(lost.entries) == ["m3", "m4", "m5", "m6"]
    assert history.read(since=4, since_epoch="another").lost is True
    assert history.read(since=7, since_epoch=epoch).lost is True  # never given out
    assert history.read().lost is None

    # A room forgotten after its TTL comes back with a new epoch and offsets from 1.
    service.leave(ann, "r")
    clock.now += 61
    fresh = service.join(Member("bob"), "r", "bob").history
    assert fresh.epoch != epoch and fresh.offset == 0
    again = fresh.read(since=6, since_epoch=epoch)
    assert again.lost is True and again.entries == []


def test_join_with_since_in_the_handler_v2_only():
    from test_app_units import FakeConnection

    settings = AppSettings(history_size=10)
    service = ChatService(InProcessHub(), settings)
    ann = ChatHandler(FakeConnection("wskit.chat.v2.json"), service, 2, JSON, settings)
    ann.handle({"type": "join", "room": "r", "nick": "ann"})
    for i in range(5):
        service.post("r", "server", f"m{i}")
    epoch = json.loads(ann.connection.sent[0][0])["epoch"]

    bob = ChatHandler(FakeConnection("wskit.chat.v2.json"), service, 2, JSON, settings)
    bob.handle({"type": "join", "room": "r", "nick": "bob", "since": 3, "epoch": epoch, "ref": 1})
    answer = json.loads(bob.connection.sent[-1][0])
    assert texts(answer["history"]) == ["m3", "m4"] and [m["offset"] for m in answer["history"]] == [4, 5]
    assert answer["history_lost"] is False and (answer["offset"], answer["epoch"]) == (5, epoch)

    carl = ChatHandler(FakeConnection("wskit.chat.v2.json"), service, 2, JSON, settings)
    carl.handle({"type": "join", "room": "r", "nick": "carl", "since": 3, "epoch": "old"})
    answer = json.loads(carl.connection.sent[-1][0])
    assert answer["history_lost"] is True and len(answer["history"]) == 5

    dan = ChatHandler(FakeConnection("wskit.chat.v2.json"), service, 2, JSON, settings)
    for bad in ("3", -1, True, 2.5):
        dan.handle({"type": "join", "room": "r", "nick": "dan", "since": bad})
        assert json.loads(dan.connection.sent[-1][0])["code"] == "bad-field"
    dan.handle({"type": "join", "room": "r", "nick": "dan"})
    assert "history_lost" not in json.loads(dan.connection.sent[-1][0])

    old = ChatHandler(FakeConnection("wskit.chat.v1.json"), service, 1, JSON, settings)
    old.handle({"type": "join", "room": "r", "nick": "old", "since": "ignored by v1"})
    assert json.loads(old.connection.sent[-1][0]) == {"type": "joined", "room": "r", "nick": "old",
                                                      "members": ["ann", "bob", "carl", "dan", "old"]}
