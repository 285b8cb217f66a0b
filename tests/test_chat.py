"""wskit.chat.v1/v2 over json and msgpack against real servers on both backends."""

from __future__ import annotations

import itertools

from app_support import open_peer, server_fixture
from support import run

server = server_fixture("--history-size", "5")

CHAT_NAMES = ["wskit.chat.v2.msgpack", "wskit.chat.v2.json", "wskit.chat.v1.msgpack", "wskit.chat.v1.json"]
_rooms = itertools.count()


def new_room() -> str:
    return f"room{next(_rooms)}"


def test_each_chat_name_negotiated_and_newest_version_preferred(server):
    async def go():
        for name in CHAT_NAMES:
            peer = await open_peer(server, [name])
            assert peer.subprotocol == name
            await peer.close()
        peer = await open_peer(server, ["wskit.chat.v1.json", "wskit.chat.v2.json"])
        assert peer.subprotocol == "wskit.chat.v2.json"
        await peer.close()
        peer = await open_peer(server, ["wskit.chat.v2.json", "wskit.chat.v2.msgpack", "wskit.chat.v1.msgpack"])
        assert peer.subprotocol == "wskit.chat.v2.msgpack"
        await peer.close()

    run(go())


def test_v1_and_v2_clients_see_each_other_in_their_own_shapes(server):
    async def go():
        room = new_room()
        ann = await open_peer(server, ["wskit.chat.v1.json"])
        bob = await open_peer(server, ["wskit.chat.v2.msgpack"])
        await ann.send({"type": "join", "room": room, "nick": "ann"})
        assert await ann.recv() == {"type": "joined", "room": room, "nick": "ann", "members": ["ann"]}
        await bob.send({"type": "join", "room": room, "nick": "bob"})
        joined = await bob.recv()
        epoch = joined.pop("epoch")
        assert isinstance(epoch, str) and epoch
        assert joined == {"type": "joined", "room": room, "nick": "bob", "members": ["ann", "bob"], "history": [],
                          "offset": 0}
        assert await ann.recv() == {"type": "presence", "room": room, "nick": "bob", "event": "join"}

        await ann.send({"type": "say", "room": room, "text": "hello from v1"})
        assert await ann.recv() == {"type": "message", "room": room, "from": "ann", "text": "hello from v1"}
        got = await bob.recv()
        assert {k: got[k] for k in ("type", "room", "from", "text")} == {
            "type": "message", "room": room, "from": "ann", "text": "hello from v1"}
        assert isinstance(got["id"], str) and got["id"] and isinstance(got["ts"], float)
        assert (got["offset"], got["epoch"]) == (1, epoch)

        await bob.send({"type": "say", "room": room, "text": "hello from v2"})
        assert await ann.recv() == {"type": "message", "room": room, "from": "bob", "text": "hello from v2"}
        own = await bob.recv()
        assert own["text"] == "hello from v2" and own["id"] != got["id"]
        assert (own["offset"], own["epoch"]) == (2, epoch)

        # A later v2 joiner gets both messages in history, oldest first, as v2 delivered them.
        carl = await open_peer(server, ["wskit.chat.v2.json"])
        await carl.send({"type": "join", "room": room, "nick": "carl"})
        joined = await carl.recv()
        assert joined["members"] == ["ann", "bob", "carl"]
        assert joined["history"] == [got, own]

        await ann.send({"type": "leave", "room": room, "ref": "r1"})
        assert await ann.recv_until("left") == {"type": "left", "room": room, "ref": "r1"}
        assert await bob.recv() == {"type": "presence", "room": room, "nick": "carl", "event": "join"}
        assert await bob.recv() == {"type": "presence", "room": room, "nick": "ann", "event": "leave"}
        for peer in (ann, bob, carl):
            await peer.close()

    run(go())


def test_history_is_bounded(server):
    async def go():
        room = new_room()
        ann = await open_peer(server, ["wskit.chat.v2.json"])
        await ann.send({"type": "join", "room": room, "nick": "ann"})
        await ann.recv()
        for i in range(8):
            await ann.send({"type": "say", "room": room, "text": str(i)})
            await ann.recv()
        bob = await open_peer(server, ["wskit.chat.v2.json"])
        await bob.send({"type": "join", "room": room, "nick": "bob"})
        joined = await bob.recv()
        assert [m["text"] for m in joined["history"]] == ["3", "4", "5", "6", "7"]  # --history-size 5
        await ann.close()
        await bob.close()

    run(go())


def test_bad_input_answered_with_errors_and_the_connection_keeps_working(server):
    async def go():
        room = new_room()
        peer = await open_peer(server, ["wskit.chat.v1.json"])
        bad = [
            ("[1, 2]", "bad-message"),
            ('{"room": "x"}', "bad-message"),
            ('{"type": "dance"}', "unknown-type"),
            ('{"type": "join", "room": "x"}', "bad-field"),
            ('{"type": "join", "room": 5, "nick": "n"}', "bad-field"),
            ('{"type": "join", "room": "' + "r" * 65 + '", "nick": "n"}', "too-long"),
            ('{"type": "say", "room": "nowhere", "text": "hi"}', "not-joined"),
            ("{not json", "bad-payload"),
        ]
        for raw, code in bad:
            await peer.ws.send(raw)
            reply = await peer.recv()
            assert reply["type"] == "error" and reply["code"] == code, (raw, reply)
            assert isinstance(reply["message"], str) and reply["message"]
        await peer.send({"type": "join", "room": room, "nick": "ann", "ref": 3})
        assert (await peer.recv())["type"] == "joined"
        await peer.send({"type": "join", "room": room, "nick": "ann", "ref": 4})
        assert await peer.recv() == {"type": "error", "code": "already-joined",
                                     "message": f"already in room {room!r} as 'ann'", "ref": 4}
        other = await open_peer(server, ["wskit.chat.v2.json"])
        await other.send({"type": "join", "room": room, "nick": "ann"})
        assert (await other.recv())["code"] == "nick-taken"
        await peer.send({"type": "say", "room": room, "text": "still here"})
        assert (await peer.recv())["text"] == "still here"
        await peer.close()
        await other.close()

    run(go())


def test_error_budget_closes_with_1008(server):
    async def go():
        peer = await open_peer(server, ["wskit.chat.v2.msgpack"])
        for _ in range(10):
            await peer.send({"type": "nonsense"})
            assert (await peer.recv())["code"] == "unknown-type"
        await peer.send({"type": "nonsense"})
        assert await peer.close_code() == 1008

    run(go())


def test_refusals_do_not_count_against_the_budget(server):
    async def go():
        peer = await open_peer(server, ["wskit.chat.v1.json"])
        for _ in range(12):
            await peer.send({"type": "leave", "room": "not-mine"})
            assert (await peer.recv())["code"] == "not-joined"
        await peer.send({"type": "join", "room": new_room(), "nick": "n"})
        assert (await peer.recv())["type"] == "joined"
        await peer.close()

    run(go())


def test_text_frame_on_msgpack_chat_closes_1003(server):
    async def go():
        peer = await open_peer(server, ["wskit.chat.v2.msgpack"])
        await peer.ws.send('{"type": "join", "room": "r", "nick": "n"}')
        assert await peer.close_code() == 1003

    run(go())


def test_presence_leave_when_a_member_disconnects(server):
    async def go():
        room = new_room()
        ann = await open_peer(server, ["wskit.chat.v2.json"])
        bob = await open_peer(server, ["wskit.chat.v1.msgpack"])
        await ann.send({"type": "join", "room": room, "nick": "ann"})
        await ann.recv()
        await bob.send({"type": "join", "room": room, "nick": "bob"})
        await bob.recv()
        assert (await ann.recv())["event"] == "join"
        await bob.ws.close()
        assert await ann.recv() == {"type": "presence", "room": room, "nick": "bob", "event": "leave"}
        # bob's nick is free again.
        carl = await open_peer(server, ["wskit.chat.v1.json"])
        await carl.send({"type": "join", "room": room, "nick": "bob"})
        assert (await carl.recv())["members"] == ["ann", "bob"]
        await ann.close()
        await carl.close()

    run(go())


def test_rejoin_with_since_gets_exactly_the_missed_messages(server):
    async def go():
        room = new_room()
        ann = await open_peer(server, ["wskit.chat.v2.json"])
        bob = await open_peer(server, ["wskit.chat.v2.msgpack"])
        await ann.send({"type": "join", "room": room, "nick": "ann"})
        epoch = (await ann.recv())["epoch"]
        await bob.send({"type": "join", "room": room, "nick": "bob"})
        await bob.recv_until("joined")
        await ann.send({"type": "say", "room": room, "text": "seen"})
        seen = await bob.recv_until("message")
        await bob.send({"type": "leave", "room": room})
        await bob.recv_until("left")
        for text in ("one", "two", "three"):
            await ann.send({"type": "say", "room": room, "text": text})
        while (await ann.recv_until("message"))["text"] != "three":  # stored once it comes back
            pass
        await bob.send({"type": "join", "room": room, "nick": "bob", "since": seen["offset"], "epoch": epoch})
        joined = await bob.recv_until("joined")
        assert [m["text"] for m in joined["history"]] == ["one", "two", "three"]
        assert [m["offset"] for m in joined["history"]] == [seen["offset"] + i for i in (1, 2, 3)]
        assert joined["history_lost"] is False and joined["offset"] == seen["offset"] + 3
        await ann.close()
        await bob.close()

    run(go())
