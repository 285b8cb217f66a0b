"""The reconnecting loop and the app clients' restore, on each backend's fake clock.

``async for conn in wskit.connect(...)`` runs on a backend driver (clients/_twisted.py,
clients/_asyncio.py) whose timers here run on the tier's clock; connection attempts are
scripted: each one fails with a given error or opens a fake connection the test closes
with any code. Times are exact: no jitter unless a case sets it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from wskit.errors import ConnectionClosed, HandshakeError
from wskit.settings import ClientSettings, ReconnectSettings

URL = "ws://127.0.0.1:9000/ws"
POLICY = ReconnectSettings(initial_delay=1.0, factor=2.0, max_delay=5.0, jitter=0.0)


class FakeProtocol:
    """What a ClientConnection needs of its protocol: open until ``close()``."""

    def __init__(self, conn: Any, subprotocol: str | None):
        self.conn = conn
        self.subprotocol = subprotocol
        self.compression = None
        self.is_connected = True
        self.writable = True
        self.sent: list[Any] = []

    def send_message(self, payload: bytes, is_binary: bool) -> bool:
        self.sent.append(json.loads(payload) if not is_binary else payload)
        return self.is_connected

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.drop(code, reason)

    def drop(self, code: int | None, reason: str | None = None) -> None:
        if self.is_connected:
            self.is_connected = False
            self.conn._closed(code == 1000, code, reason)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Script:
    """The outcomes of successive connection attempts, and when each was made."""

    def __init__(self, tier: Any, *outcomes: Any, subprotocol: str | None = None):
        self.tier = tier
        self.outcomes = list(outcomes)
        self.subprotocol = subprotocol
        self.times: list[float] = []
        self.opened: list[Any] = []

    async def open(self, conn: Any) -> Any:
        self.times.append(self.tier.now())
        outcome = self.outcomes.pop(0) if self.outcomes else "open"
        if isinstance(outcome, BaseException):
            raise outcome
        conn._opened(FakeProtocol(conn, self.subprotocol))
        self.opened.append(conn)
        return conn

    def lose(self, code: int | None, reason: str | None = None) -> None:
        """The latest connection ends the way the server or the network ended it."""
        self.opened[-1].protocol.drop(code, reason)


def reconnecting(tier: Any, script: Script, policy: ReconnectSettings = POLICY) -> Any:
    from wskit.clients.connection import ClientConnection
    from wskit.clients.reconnect import Reconnecting

    settings = ClientSettings(reconnect=policy)
    if tier.backend == "twisted":
        from wskit.clients._twisted import Driver

        driver = Driver(URL, settings, reactor=tier.reactor)
    else:
        from wskit.clients._asyncio import Driver

        driver = Driver(URL, settings)
    driver.open = script.open
    iterator = Reconnecting(driver, policy, lambda: ClientConnection(settings.max_queue))
    iterator.waits = []
    iterator.on_retry.append(lambda error, delay: iterator.waits.append((type(error).__name__, delay)))
    return iterator


def step(tier: Any, iterator: Any, seconds: float = 0.0) -> Any:
    """Ask for the next connection and let ``seconds`` pass on the fake clock."""
    future = iterator.__anext__()
    tier.advance(seconds)
    return future


def outcome(tier: Any, future: Any) -> Any:
    """The connection, or the exception the step raised."""
    assert tier.is_done(future), f"still waiting at t={tier.now()}"
    try:
        return tier.result_of(future)
    except BaseException as exc:  # StopAsyncIteration included
        return exc


def network_error(tier: Any) -> Exception:
    if tier.backend == "twisted":
        from twisted.internet import error

        return error.ConnectionRefusedError()
    return ConnectionRefusedError(111, "Connection refused")


# -- opening ---------------------------------------------------------------------


def test_failed_attempts_back_off_exponentially(tier):
    script = Script(tier, network_error(tier), network_error(tier), network_error(tier))
    iterator = reconnecting(tier, script)
    future = step(tier, iterator, 10)
    conn = outcome(tier, future)
    assert conn.is_open
    assert script.times == [0.0, 1.0, 3.0, 7.0]  # waits of 1, 2 and 4 s
    assert [delay for _name, delay in iterator.waits] == [1.0, 2.0, 4.0]
    assert iterator.attempts == 4


def test_delays_stop_growing_at_max_delay_and_jitter_shortens_them(tier):
    errors = [network_error(tier) for _ in range(5)]
    iterator = reconnecting(tier, Script(tier, *errors), POLICY.replace(jitter=0.5))
    iterator._random = lambda: 0.5  # each wait is 75% of its nominal value
    outcome(tier, step(tier, iterator, 30))
    assert [delay for _name, delay in iterator.waits] == [0.75, 1.5, 3.0, 3.75, 3.75]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_trouble_statuses_are_retried(tier, status):
    script = Script(tier, HandshakeError("busy", status))
    iterator = reconnecting(tier, script)
    assert outcome(tier, step(tier, iterator, 1)).is_open
    assert script.times == [0.0, 1.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 426])
def test_4xx_refusals_are_raised_at_once(tier, status):
    script = Script(tier, HandshakeError("no", status))
    iterator = reconnecting(tier, script)
    raised = outcome(tier, step(tier, iterator, 10))
    assert isinstance(raised, HandshakeError) and raised.status == status
    assert script.times == [0.0] and iterator.waits == []
    assert isinstance(outcome(tier, step(tier, iterator)), StopAsyncIteration)  # the iteration is over


def test_a_handshake_dropped_halfway_is_retried_but_not_a_bad_compression_answer(tier):
    script = Script(tier, HandshakeError("connection closed before the handshake completed"),
                    HandshakeError("invalid compression answer from the server: window 16"))
    iterator = reconnecting(tier, script)
    raised = outcome(tier, step(tier, iterator, 10))
    assert isinstance(raised, HandshakeError) and "compression" in raised.reason
    assert script.times == [0.0, 1.0]


def test_max_attempts_raises_the_last_error(tier):
    errors = [network_error(tier) for _ in range(10)]
    script = Script(tier, *errors)
    iterator = reconnecting(tier, script, POLICY.replace(max_attempts=3))
    raised = outcome(tier, step(tier, iterator, 60))
    assert raised is errors[2]
    assert script.times == [0.0, 1.0, 3.0]


def test_give_up_after_starts_no_attempt_past_the_deadline(tier):
    script = Script(tier, *[network_error(tier) for _ in range(10)])
    iterator = reconnecting(tier, script, POLICY.replace(give_up_after=6.0))
    raised = outcome(tier, step(tier, iterator, 60))
    assert type(raised) is type(network_error(tier))
    assert script.times == [0.0, 1.0, 3.0]  # the next would start at 7.0 > 6.0
    assert tier.now() == 60


# -- after a connection ends -------------------------------------------------------


@pytest.mark.parametrize("code", [1001, 1006, 1011, 1012, 1013, 1014, None])
def test_lost_connections_are_replaced_after_a_first_wait(tier, code):
    script = Script(tier)
    iterator = reconnecting(tier, script)
    first = outcome(tier, step(tier, iterator))
    tier.advance(5)
    script.lose(code, "going")
    second = outcome(tier, step(tier, iterator, 1))
    assert second is not first and second.is_open
    assert script.times == [0.0, 6.0]
    assert iterator.waits == [("ConnectionClosed", 1.0)]


def test_the_iteration_of_a_lost_connection_ends_quietly(tier):
    script = Script(tier)
    iterator = reconnecting(tier, script)
    conn = outcome(tier, step(tier, iterator))
    pending = conn.__anext__()
    script.lose(1006)
    tier.settle()
    assert isinstance(outcome(tier, pending), StopAsyncIteration)  # not ConnectionClosed
    with pytest.raises(ConnectionClosed):  # recv() still says why
        tier.result_of(conn.recv())


@pytest.mark.parametrize("code", [1000, 1005])
def test_a_normal_close_by_the_server_ends_the_iteration(tier, code):
    script = Script(tier)
    iterator = reconnecting(tier, script)
    outcome(tier, step(tier, iterator))
    script.lose(code)
    assert isinstance(outcome(tier, step(tier, iterator, 10)), StopAsyncIteration)
    assert script.times == [0.0]


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1008, 1009, 4000])
def test_other_close_codes_are_raised(tier, code):
    script = Script(tier)
    iterator = reconnecting(tier, script)
    outcome(tier, step(tier, iterator))
    script.lose(code, "nope")
    raised = outcome(tier, step(tier, iterator, 10))
    assert isinstance(raised, ConnectionClosed) and (raised.code, raised.reason) == (code, "nope")
    assert script.times == [0.0]


def test_close_codes_to_retry_are_configurable(tier):
    script = Script(tier)
    iterator = reconnecting(tier, script, POLICY.replace(retry_close_codes=(1000,)))
    outcome(tier, step(tier, iterator))
    script.lose(1000)
    assert outcome(tier, step(tier, iterator, 1)).is_open
    script.lose(1001)
    assert isinstance(outcome(tier, step(tier, iterator, 1)), ConnectionClosed)


def test_a_connection_this_client_closed_or_left_open_is_replaced_at_once(tier):
    script = Script(tier)
    iterator = reconnecting(tier, script)
    first = outcome(tier, step(tier, iterator))
    tier.advance(2)
    first.close()
    second = outcome(tier, step(tier, iterator))
    assert first.close_code == 1000 and second.is_open
    third = outcome(tier, step(tier, iterator))  # asked for while the second is open
    assert second.closed and second.close_code == 1000 and third.is_open
    assert script.times == [0.0, 2.0, 2.0]


def test_close_called_after_the_server_closed_does_not_count_as_the_clients(tier):
    script = Script(tier)
    iterator = reconnecting(tier, script)
    conn = outcome(tier, step(tier, iterator))
    conn.protocol.is_connected = False  # the server's close frame has arrived: the connection is closing
    conn.close()
    conn._closed(True, 1001, "restart")
    outcome(tier, step(tier, iterator, 1))
    assert script.times == [0.0, 1.0]  # waited, as after any 1001


def test_backoff_starts_again_after_a_successful_connection(tier):
    script = Script(tier, network_error(tier), network_error(tier))
    iterator = reconnecting(tier, script)
    outcome(tier, step(tier, iterator, 10))
    assert script.times == [0.0, 1.0, 3.0]
    script.lose(1006)
    outcome(tier, step(tier, iterator, 1))
    assert script.times == [0.0, 1.0, 3.0, 11.0]  # 1 s again, not 4


# -- stopping ----------------------------------------------------------------------


def test_aclose_during_a_wait_ends_the_iteration_at_once(tier):
    script = Script(tier, *[network_error(tier) for _ in range(3)])
    iterator = reconnecting(tier, script)
    future = step(tier, iterator, 0.5)  # failed once, waiting 1 s
    iterator.aclose()
    tier.settle()
    assert isinstance(outcome(tier, future), StopAsyncIteration)
    tier.advance(10)
    assert script.times == [0.0]


def test_aclose_closes_the_open_connection_and_ends(tier):
    script = Script(tier)
    iterator = reconnecting(tier, script)
    conn = outcome(tier, step(tier, iterator))
    iterator.aclose(1001, "bye")
    assert conn.closed and conn.close_code == 1001
    assert isinstance(outcome(tier, step(tier, iterator, 5)), StopAsyncIteration)
    assert script.times == [0.0]


# -- app clients restore their state ------------------------------------------------


def _reply_to_all(conn: Any, answer: Any) -> None:
    """Feed the connection the server's answer to each request it sent (and not yet answered)."""
    for request in list(conn.protocol.sent):
        conn.protocol.sent.remove(request)
        reply = answer(request)
        if reply is not None:
            conn._received(json.dumps(dict(reply, ref=request["ref"])).encode(), False)


def test_attach_rejoins_rooms_and_hands_the_joined_replies_to_readers(tier):
    from wskit.clients.chat import ChatClient

    script = Script(tier, subprotocol="wskit.chat.v2.json")
    iterator = reconnecting(tier, script)
    first = outcome(tier, step(tier, iterator))
    chat = ChatClient(first)
    joins = [chat.join("lobby", "ann"), chat.join("den", "ann2"), chat.join("attic", "ann")]
    _reply_to_all(first, lambda r: {"type": "joined", "room": r["room"], "nick": r["nick"], "members": []})
    left = chat.leave("attic")
    _reply_to_all(first, lambda r: {"type": "left", "room": r["room"]})
    tier.settle()
    assert all(tier.is_done(j) for j in joins) and tier.is_done(left)
    assert chat.rooms == {"lobby": "ann", "den": "ann2"}

    script.lose(1001)
    second = outcome(tier, step(tier, iterator, 1))
    attached = chat.attach(second)
    assert [(m["type"], m["room"], m["nick"]) for m in second.protocol.sent] == [
        ("join", "lobby", "ann"), ("join", "den", "ann2")]

    def answer(request: dict) -> dict:
        if request["room"] == "den":
            return {"type": "error", "code": "nick-taken", "message": "taken"}
        return {"type": "joined", "room": "lobby", "nick": "ann", "members": ["ann"], "history": [{"text": "hi"}]}

    _reply_to_all(second, answer)
    second._received(json.dumps({"type": "message", "room": "lobby", "from": "bob", "text": "hey"}).encode(), False)
    tier.settle()
    replies = tier.result_of(attached)
    assert replies[0]["type"] == "joined" and str(replies[1]) == "nick-taken: taken"
    assert chat.rooms == {"lobby": "ann"}  # a refused re-join is forgotten
    # Readers see the re-join replies in their place, then the room again.
    got = [tier.result_of(chat.recv()) for _ in range(3)]
    assert [(m["type"], m.get("room"), m.get("code")) for m in got] == [
        ("joined", "lobby", None), ("error", None, "nick-taken"), ("message", "lobby", None)]


def test_attach_renews_subscriptions_quietly_and_fails_requests_of_the_old_connection(tier):
    from wskit.clients.pubsub import PubSubClient

    script = Script(tier, subprotocol="wskit.pubsub.v1.json")
    iterator = reconnecting(tier, script)
    first = outcome(tier, step(tier, iterator))
    ps = PubSubClient(first)
    ps.subscribe("ticks.*"), ps.subscribe("news")
    _reply_to_all(first, lambda r: {"type": "subscribed", "topic": r["topic"]})
    tier.settle()
    assert ps.topics == ["ticks.*", "news"]
    pending = ps.subscribe("late")  # never answered: the connection goes first
    script.lose(1006)
    tier.settle()
    with pytest.raises(ConnectionClosed):
        tier.result_of(pending)

    second = outcome(tier, step(tier, iterator, 1))
    attached = ps.attach(second)
    assert [m["topic"] for m in second.protocol.sent] == ["ticks.*", "news"]
    _reply_to_all(second, lambda r: {"type": "subscribed", "topic": r["topic"]})
    second._received(json.dumps({"type": "event", "topic": "ticks.a", "data": 1}).encode(), False)
    tier.settle()
    assert [r["type"] for r in tier.result_of(attached)] == ["subscribed", "subscribed"]
    assert tier.result_of(ps.recv()) == {"type": "event", "topic": "ticks.a", "data": 1}  # no "subscribed"


def kept_client(tier: Any, cls: Any, script: Script, policy: ReconnectSettings = POLICY) -> Any:
    """What ``cls.reconnecting(...)`` gives, over the scripted attempts."""
    iterator = reconnecting(tier, script, policy)
    future = iterator.driver.future(cls._first_connection(iterator))
    tier.settle()
    return tier.result_of(future)


def test_a_kept_client_switches_readers_over_once_the_rejoin_is_answered(tier):
    from wskit.clients.chat import ChatClient

    script = Script(tier, subprotocol="wskit.chat.v2.json")
    chat = kept_client(tier, ChatClient, script)
    hooks: list = []
    chat.on_reconnect.append(hooks.append)
    chat.join("lobby", "ann")
    _reply_to_all(chat.connection, lambda r: {"type": "joined", "room": "lobby", "nick": "ann", "members": []})
    tier.settle()
    reading = chat.recv()  # waits across the loss

    script.lose(1006)
    tier.advance(1)
    new = script.opened[-1]
    assert chat.connection is new and [m["type"] for m in new.protocol.sent] == ["join"]
    new._received(json.dumps({"type": "message", "room": "lobby", "from": "x", "text": "early"}).encode(), False)
    tier.settle()
    assert not tier.is_done(reading)  # queued behind the re-join, which is not answered yet
    _reply_to_all(new, lambda r: {"type": "joined", "room": "lobby", "nick": "ann", "members": ["ann"]})
    tier.settle()
    # Then the reader reads the new connection as it is: what came first comes first.
    assert tier.result_of(reading)["text"] == "early"
    following = chat.recv()
    tier.settle()
    assert tier.result_of(following)["type"] == "joined"
    assert chat.reconnects == 1 and [r["type"] for r in hooks[0]] == ["joined"]


@pytest.mark.parametrize("code, ends", [(1000, StopAsyncIteration), (1008, ConnectionClosed)])
def test_a_kept_client_ends_or_raises_as_its_connections_do(tier, code, ends):
    from wskit.clients.pubsub import PubSubClient

    script = Script(tier, subprotocol="wskit.pubsub.v1.json")
    ps = kept_client(tier, PubSubClient, script)
    pending = ps.__anext__()
    script.lose(code, "bye")
    tier.advance(5)
    raised = outcome(tier, pending)
    assert isinstance(raised, ends) and script.times == [0.0]
    if code == 1008:
        assert raised.code == 1008


def test_a_kept_client_raises_the_error_it_gave_up_on(tier):
    from wskit.clients.pubsub import PubSubClient

    errors = [network_error(tier), network_error(tier)]
    script = Script(tier, "open", *errors, subprotocol="wskit.pubsub.v1.json")
    ps = kept_client(tier, PubSubClient, script, POLICY.replace(max_attempts=2))
    pending = ps.recv()
    script.lose(1001)
    tier.advance(10)
    assert outcome(tier, pending) is errors[1]
    assert script.times == [0.0, 1.0, 3.0]


def test_closing_a_kept_client_stops_its_reconnecting(tier):
    from wskit.clients.chat import ChatClient

    script = Script(tier, subprotocol="wskit.chat.v1.msgpack")
    chat = kept_client(tier, ChatClient, script)
    closed = chat.close()
    tier.advance(5)
    assert tier.is_done(closed) and script.times == [0.0]
    after = chat.__anext__()
    tier.settle()
    assert isinstance(outcome(tier, after), StopAsyncIteration)
