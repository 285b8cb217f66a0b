"""A hub shared by server processes through Redis: ``--hub redis://host:port/db``.

:class:`RedisHub` keeps the :class:`wskit.hub.Hub` contract across processes and
hosts, on both backends (Twisted: a small protocol over ``hiredis.Reader``;
asyncio: ``redis.asyncio``; ``pip install 'wskit[redis]'``).

**Fan-out.** Each process keeps its subscribers in a local
:class:`~wskit.hub.InProcessHub` and subscribes to a Redis channel once per
topic (``SUBSCRIBE``) or pattern (``PSUBSCRIBE``) it has local subscribers for,
unsubscribing when the last one leaves. A publish is one ``PUBLISH`` of a
compact msgpack envelope (message id, excluded connection id, shapes); every
subscribed process, the publisher's included, gets one Redis message and
fans it out locally (one :class:`~wskit.broadcast.Broadcast`: serialized once
per shape and serializer, framed once). Everything in a topic reaches every
process in one order, Redis's.

**History and presence** (chat rooms): :meth:`RedisHub.append` stores a
message in the topic's capped stream under the next offset and publishes it in
one Lua script (``HINCRBY`` offset, ``XADD ... MAXLEN size``, ``PUBLISH``);
:meth:`RedisHub.history` reads it with the epoch; presence entries expire with
their process's heartbeat. The key layout is in :mod:`wskit.redis_scripts`.

**Faults.** While Redis cannot be reached, publishes reach this process's
subscribers only (``connected`` is False, so callers can say so), and the
operations that need Redis (append, history, presence reads) fail at once with
:class:`wskit.errors.HubUnavailable`. The hub reconnects with exponential
backoff, then restores its subscriptions and its members' presence. It logs
one line when the connection is lost and one when it is back.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import msgpack
import txaio

from . import metrics
from .broadcast import Broadcast
from .errors import HubUnavailable, SettingsError
from .futures import chain, gather, then_both
from .history import Recovery, new_epoch, recover
from .hub import InProcessHub, Subscriber, process_id
from .logs import log_failure
from .redis_scripts import SCRIPTS

DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisAddress:
    """A parsed ``redis://[:password@]host[:port][/db][?option=value&...]`` URL.

    Options: ``heartbeat`` (seconds between this process's heartbeats, 5),
    ``presence_timeout`` (seconds after which a silent process's members are
    gone, 15), ``prefix`` (of keys and channels, ``wskit:``).

    >>> a = RedisAddress.parse("redis://10.0.0.5/2?heartbeat=1&presence_timeout=3")
    >>> (a.host, a.port, a.db, a.heartbeat, a.presence_timeout)
    ('10.0.0.5', 6379, 2, 1.0, 3.0)
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: int = 0
    password: str | None = None
    username: str | None = None
    heartbeat: float = 5.0
    presence_timeout: float = 15.0
    prefix: str = "wskit:"
    url: str = field(default="", compare=False)

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise SettingsError(f"bad hub URL {url!r}: {exc}") from None
        if parts.scheme != "redis":
            raise SettingsError(f"bad hub URL {url!r}: expected redis://host[:port][/db]")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise SettingsError(f"bad hub URL {url!r}: the path is the database number, not {path!r}")
        options = dict(parse_qsl(parts.query))
        known = {"heartbeat", "presence_timeout", "prefix"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise SettingsError(f"bad hub URL {url!r}: unknown option {unknown[0]!r} "
                                f"(known: {', '.join(sorted(known))})")
        try:
            heartbeat = float(options.get("heartbeat", cls.heartbeat))
            timeout = float(options.get("presence_timeout", cls.presence_timeout))
        except ValueError:
            raise SettingsError(f"bad hub URL {url!r}: heartbeat and presence_timeout are seconds") from None
        if not 0 < heartbeat < timeout:
            raise SettingsError(f"bad hub URL {url!r}: need 0 < heartbeat < presence_timeout")
        shown = url.replace(f":{parts.password}@", ":***@") if parts.password else url
        return cls(host=parts.hostname or "127.0.0.1", port=port or DEFAULT_PORT, db=int(path or 0),
                   password=unquote(parts.password) if parts.password else None,
                   username=unquote(parts.username) if parts.username else None,
                   heartbeat=heartbeat, presence_timeout=timeout,
                   prefix=options.get("prefix", cls.prefix), url=shown)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.db}"


class LinkLost(Exception):
    """The connection to Redis is gone (or never came up)."""


class ReplyError(Exception):
    """Redis answered a command with an error."""


def glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def channel_pattern(prefix: str, pattern: str) -> str:
    """The Redis glob for a hub pattern: at least what it matches (``*`` also spans dots in
    Redis), so each process filters exactly with its own pattern index."""
    segments = [("*" if s in ("*", "**") else glob_escape(s)) for s in pattern.split(".")]
    return glob_escape(prefix) + ".".join(segments)


class _Waiters:
    """Futures waiting for one event per name (a subscription confirmed, say)."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[Any]] = {}

    def add(self, name: str) -> Any:
        future = txaio.create_future()
        self._waiting.setdefault(name, []).append(future)
        return future

    def fire(self, name: str) -> None:
        for future in self._waiting.pop(name, ()):
            txaio.resolve(future, None)

    def fail_all(self, exc: Exception) -> None:
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                txaio.reject(future, exc)


class RedisHub:
    """A :class:`wskit.hub.Hub` shared by every server process on one Redis.

    The connection (and its timers) is built when :meth:`start` is called
    (``WebSocketApp.start`` does), for the backend txaio runs on: on Twisted
    over ``reactor`` (the global one if None), on asyncio on ``loop`` (the
    running one if None). ``link_factory(address, on_push, on_lost)`` replaces
    that choice. ``backoff`` is the first and the longest delay between
    reconnection attempts, in seconds.
    """

    shared = True

    def __init__(self, url: str | RedisAddress, *, link_factory: Callable[..., Any] | None = None,
                 reactor: Any = None, loop: Any = None,
                 backoff: tuple[float, float] = (0.1, 5.0)):
        self.address = url if isinstance(url, RedisAddress) else RedisAddress.parse(url)
        self.local = InProcessHub()
        self.process = process_id()
        self._prefix = self.address.prefix
        self._channel_prefix = f"{self._prefix}{self.address.db}:"
        self._link_factory = link_factory
        self._reactor, self._loop = reactor, loop
        self._backoff = backoff
        self._link: Any = None
        self._state = "stopped"  # stopped, connecting, connected, waiting (to reconnect)
        self._ever_connected = False
        self._first_failure: str | None = None
        self._lost_at = 0.0
        self._attempt = 0
        self._timer: Any = None
        self._heartbeat_timer: Any = None
        self._shas: dict[str, str] = {}
        self._channels: set[str] = set()  # exact topics with local subscribers
        self._patterns: set[str] = set()
        self._confirmed: set[str] = set()  # topics whose SUBSCRIBE Redis confirmed on this link
        self._subscribed = _Waiters()
        self._ready: list[Any] = []
        # This process's members: topic -> member id -> (info, ttl seconds).
        self._members: dict[str, dict[str, tuple[str, float]]] = {}
        self._joining: dict[tuple[str, str], bool] = {}  # presence joins on the way: still wanted?
        self._watchers: list[tuple[str, Callable[[str, str, str, str], Any]]] = []
        self._recent: OrderedDict[str, None] = OrderedDict()  # ids of messages just delivered
        self._ids = itertools.count(1)
        self._last_refresh = 0.0
        self._log: Any = None

    @property
    def log(self) -> Any:
        if self._log is None:  # txaio's framework is chosen by the time anything is logged
            self._log = txaio.make_logger()
        return self._log

    # -- state -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while Redis is reachable (publishes reach every server)."""
        return self._state == "connected"

    def start(self) -> None:
        """Start connecting (and reconnecting, whenever the connection is lost)."""
        if self._state == "stopped":
            self._state = "connecting"
            self._connect()

    def ready(self) -> Any:
        """A future that fires once connected, or fails with :class:`HubUnavailable`
        if the first attempt failed (the hub keeps trying all the same)."""
        future = txaio.create_future()
        if self.connected:
            txaio.resolve(future, self)
        elif self._first_failure is not None and not self._ever_connected:
            txaio.reject(future, HubUnavailable(self._first_failure))
        else:
            self._ready.append(future)
        return future

    def stop(self) -> Any:
        """Say this process is gone (its members leave everywhere at the next heartbeat of
        another process) and close the connection."""
        state, self._state = self._state, "stopped"
        for timer in (self._timer, self._heartbeat_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._heartbeat_timer = None
        link, self._link = self._link, None
        if link is None:
            return None
        if state == "connected":
            done = self._script_on(link, "heartbeat", [self._key("procs")],
                                   [self.process, self._ms(self.address.presence_timeout), self._prefix, "0"])
            txaio.add_callbacks(done, lambda _: link.close(), lambda _: link.close())
            return done
        link.close()
        return None

    # -- the Hub interface -------------------------------------------------------

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self.local.subscribe(topic, subscriber)
        if topic not in self._channels:
            self._channels.add(topic)
            if self.connected:
                self._link.pubsub("SUBSCRIBE", self._channel(topic))

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        self.local.unsubscribe(topic, subscriber)
        if topic in self._channels and not self.local.has_exact(topic):
            self._channels.discard(topic)
            self._confirmed.discard(topic)
            if self.connected:
                self._link.pubsub("UNSUBSCRIBE", self._channel(topic))

    def subscribe_pattern(self, pattern: str, subscriber: Subscriber) -> None:
        self.local.subscribe_pattern(pattern, subscriber)
        if pattern not in self._patterns:
            self._patterns.add(pattern)
            if self.connected:
                self._link.pubsub("PSUBSCRIBE", channel_pattern(self._channel_prefix, pattern))

    def unsubscribe_pattern(self, pattern: str, subscriber: Subscriber) -> None:
        self.local.unsubscribe_pattern(pattern, subscriber)
        if pattern in self._patterns and not self.local.has_pattern(pattern):
            self._patterns.discard(pattern)
            self._confirmed.discard(pattern)
            if self.connected:
                self._link.pubsub("PUNSUBSCRIBE", channel_pattern(self._channel_prefix, pattern))

    def unsubscribe_all(self, subscriber: Subscriber) -> None:
        for name in self.local.subscriptions(subscriber):
            if "*" in name and name in self._patterns:
                self.unsubscribe_pattern(name, subscriber)
            else:
                self.unsubscribe(name, subscriber)
        self.local.unsubscribe_all(subscriber)

    def subscribers(self, topic: str) -> list[Subscriber]:
        return self.local.subscribers(topic)

    def topics(self) -> list[str]:
        return self.local.topics()

    def publish(self, topic: str, shapes: Mapping[Hashable, Any], exclude: str | None = None, *,
                offset: int | None = None, epoch: str | None = None) -> int:
        """Send to every process's subscribers of ``topic``; returns this process's.

        While Redis cannot be reached, only this process's subscribers get it
        (``connected`` is False then).
        """
        here = len(self.local.subscribers(topic))
        if not self.connected:
            self.local.publish(topic, shapes, exclude, offset=offset, epoch=epoch)
            return here
        message_id = self._message_id()
        payload = b"p" + msgpack.packb([message_id, exclude, None, shapes, time.time()], use_bin_type=True)
        sent = self._link.command("PUBLISH", self._channel(topic), payload)

        def failed(fail: Any) -> None:
            # Lost on the way: this process's subscribers get it all the same.
            if message_id not in self._recent:
                self.local.publish(topic, shapes, exclude, offset=offset, epoch=epoch)

        txaio.add_callbacks(sent, None, failed)
        return here

    def when_subscribed(self, name: str) -> Any:
        """A future that fires once Redis relays topic (or pattern) ``name`` to this process."""
        if not self.connected:
            return txaio.create_future_error(HubUnavailable(self._unreachable()))
        if name in self._confirmed:
            return txaio.create_future_success(None)
        if name not in self._channels and name not in self._patterns:
            return txaio.create_future_error(ValueError(f"nobody here subscribes to {name!r}"))
        return self._subscribed.add(name)

    # -- history ------------------------------------------------------------------

    def append(self, topic: str, shapes: Mapping[Hashable, Any], *, stored: Hashable, size: int,
               ttl: float, exclude: str | None = None) -> Any:
        """Store ``shapes[stored]`` as the topic's next history entry and publish ``shapes``
        with ``offset`` and ``epoch`` added to that shape, in one step.

        A future of ``(offset, epoch)``; fails with :class:`HubUnavailable`.
        """
        envelope = msgpack.packb([self._message_id(), exclude, stored, shapes, time.time()], use_bin_type=True)
        entry = msgpack.packb(shapes[stored], use_bin_type=True)
        meta, stream = self._room_keys(topic)[:2]
        done = self._script("append", [meta, stream],
                            [self._channel(topic), envelope, entry, size, self._ms(ttl), new_epoch()])
        return chain(done, lambda reply: (int(reply[0]), _text(reply[1])))

    def history(self, topic: str, *, since: int | None = None, since_epoch: str | None = None,
                ttl: float) -> Any:
        """A future of the topic's :class:`~wskit.history.Recovery` (entries after ``since``)."""
        meta, stream = self._room_keys(topic)[:2]
        done = self._script("history", [meta, stream], [self._ms(ttl), new_epoch()])

        def read(reply: list) -> Recovery:
            top, epoch = int(reply[0]), _text(reply[1])
            kept = []
            for entry_id, fields in reply[2] or ():
                offset = int(entry_id.split(b"-", 1)[0])
                values = dict(zip(fields[::2], fields[1::2]))
                message = msgpack.unpackb(values[b"d"], raw=False, strict_map_key=False)
                if isinstance(message, dict):
                    message.update(offset=offset, epoch=epoch)
                kept.append((offset, message))
            return recover(kept, top, epoch, since, since_epoch)

        return chain(done, read)

    # -- presence -------------------------------------------------------------------

    def presence_join(self, topic: str, member_id: str, info: str, *, ttl: float) -> Any:
        """Add a member (with ``info``: a chat nick) to the topic's presence.

        A future of True, or False when a live member (any process) holds ``info``.
        """
        presence, names = self._room_keys(topic)[2:]
        done = self._script("presence_join", [presence, names, self._key("procs"), self._proc_key()],
                            [member_id, info, self.process, self._ms(self.address.presence_timeout),
                             self._ms(ttl), topic])

        key = (topic, member_id)
        self._joining[key] = True

        def joined(reply: Any) -> bool:
            wanted = self._joining.pop(key, False)
            if reply and wanted:  # not left meanwhile
                self._members.setdefault(topic, {})[member_id] = (info, ttl)
            return bool(reply)

        def failed(fail: Any) -> Any:
            self._joining.pop(key, None)
            return fail

        return then_both(done, joined, failed)

    def presence_leave(self, topic: str, member_id: str) -> None:
        """Remove a member; without Redis, the next connection sets it right."""
        if (topic, member_id) in self._joining:
            self._joining[(topic, member_id)] = False
        members = self._members.get(topic)
        if members is not None:
            members.pop(member_id, None)
            if not members:
                del self._members[topic]
        if not self.connected:
            return
        presence, names = self._room_keys(topic)[2:]
        done = self._script("presence_leave", [presence, names, self._proc_key()], [member_id, topic])
        txaio.add_callbacks(done, None, lambda fail: None)  # the next (re)connection syncs

    def presence(self, topic: str) -> Any:
        """A future of ``[(member id, info), ...]`` of the live members, in joining order."""
        presence = self._room_keys(topic)[2]
        done = self._script("presence", [presence, self._key("procs")],
                            [self._ms(self.address.presence_timeout)])

        def listed(reply: list) -> list[tuple[str, str]]:
            found = []
            for member_id, value in zip(reply[::2], reply[1::2]):
                seq, _, info = _text(value).partition("\t")
                found.append((int(seq), _text(member_id), info))
            found.sort()
            return [(member_id, info) for _, member_id, info in found]

        return chain(done, listed)

    def watch_presence(self, prefix: str, callback: Callable[[str, str, str, str], Any]) -> None:
        """Call ``callback(topic, member id, info, "leave" | "join")`` for members of topics
        under ``prefix`` that this hub found gone (their process stopped) or put back
        (after this process could not reach Redis for longer than the presence timeout)."""
        self._watchers.append((prefix, callback))

    # -- keys, messages ----------------------------------------------------------------

    def _key(self, name: str) -> str:
        return self._prefix + name

    def _proc_key(self) -> str:
        return f"{self._prefix}proc:{self.process}"

    def _room_keys(self, topic: str) -> tuple[str, str, str, str]:
        base = f"{self._prefix}{{{topic}}}:"
        return base + "meta", base + "stream", base + "presence", base + "names"

    def _channel(self, topic: str) -> str:
        return self._channel_prefix + topic

    def _message_id(self) -> str:
        return f"{self.process}.{next(self._ids)}"

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(seconds * 1000))

    def _unreachable(self) -> str:
        return f"the hub cannot reach Redis at {self.address.where} (reconnecting)"

    def _received(self, kind: bytes, *args: Any) -> None:
        """A push from the subscriber connection."""
        if kind in (b"message", b"pmessage"):
            channel, data = args[-2], args[-1]
            try:
                self._deliver(_text(channel)[len(self._channel_prefix):], data)
            except Exception:
                log_failure(self.log, txaio.create_failure(), "wskit hub: bad message on {channel}: "
                            "{log_failure.value}", channel=_text(channel))
        elif kind == b"subscribe":
            topic = _text(args[0])[len(self._channel_prefix):]
            if topic in self._channels:
                self._confirmed.add(topic)
                self._subscribed.fire(topic)
        elif kind == b"psubscribe":
            glob = _text(args[0])
            for pattern in self._patterns:
                if channel_pattern(self._channel_prefix, pattern) == glob:
                    self._confirmed.add(pattern)
                    self._subscribed.fire(pattern)

    def _deliver(self, topic: str, data: bytes) -> None:
        offset = epoch = None
        if data[:1] == b"h":
            head, _, rest = data[1:].partition(b":")
            epoch_raw, _, body = rest.partition(b":")
            offset, epoch = int(head), epoch_raw.decode("ascii")
        else:
            body = data[1:]
        # [message id, excluded connection, stored shape, shapes, publish time (time.time())]
        message_id, exclude, stored, shapes, *rest = msgpack.unpackb(body, raw=False, strict_map_key=False)
        recent = self._recent
        if message_id in recent:  # a topic and a pattern of this process both matched
            return
        recent[message_id] = None
        if len(recent) > 256:
            recent.popitem(last=False)
        if stored is not None and offset is not None:
            shapes[stored] = dict(shapes[stored], offset=offset, epoch=epoch)
        published_at = rest[0] if rest and isinstance(rest[0], float) else None
        self.local.fan_out(topic, Broadcast(shapes, exclude=exclude, offset=offset, epoch=epoch,
                                            published_at=published_at))

    # -- commands --------------------------------------------------------------------------

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if not self.connected:
            return txaio.create_future_error(HubUnavailable(self._unreachable()))
        return self._script_on(self._link, name, keys, args)

    def _script_on(self, link: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        sha = self._shas.get(name) or _sha(SCRIPTS[name])
        out = txaio.create_future()

        def answered(reply: Any) -> None:
            txaio.resolve(out, reply)

        def failed(fail: Any) -> None:
            exc = fail.value
            if isinstance(exc, ReplyError) and str(exc).startswith("NOSCRIPT"):
                # Redis lost its script cache (restarted): send the script itself once.
                again = link.command("EVAL", SCRIPTS[name], len(keys), *keys, *args)
                txaio.add_callbacks(again, answered, failed)
            elif isinstance(exc, LinkLost):
                txaio.reject(out, HubUnavailable(self._unreachable()))
            else:
                txaio.reject(out, fail)

        txaio.add_callbacks(link.command("EVALSHA", sha, len(keys), *keys, *args), answered, failed)
        return out

    # -- connecting ------------------------------------------------------------------------

    def _make_link(self) -> Any:
        if self._link_factory is None:
            if txaio.using_twisted:
                from .redis_twisted import TwistedRedisLink

                reactor = self._reactor
                if reactor is None:
                    from twisted.internet import reactor  # the running reactor, not at import time
                self._link_factory = lambda *a: TwistedRedisLink(*a, reactor=reactor)
            else:
                from .redis_asyncio import AsyncioRedisLink

                self._link_factory = lambda *a: AsyncioRedisLink(*a, loop=self._loop)
        return self._link_factory(self.address, self._received, self._lost)

    def _connect(self) -> None:
        self._timer = None
        link = self._link = self._make_link()
        d = link.connect()
        d = chain(d, lambda _: self._prepare(link))
        txaio.add_callbacks(d, lambda changed: self._connected(link, changed),
                            lambda fail: self._attempt_failed(link, fail))

    def _prepare(self, link: Any) -> Any:
        """Scripts loaded, presence synced, subscriptions restored: then the link is usable."""
        loads = [link.command("SCRIPT", "LOAD", source) for source in SCRIPTS.values()]
        members = [(topic, member_id, info) for topic, found in self._members.items()
                   for member_id, (info, _) in found.items()]
        ttl = max((ttl for found in self._members.values() for _, ttl in found.values()), default=60.0)
        synced = self._script_on(link, "sync", [self._key("procs"), self._proc_key()],
                                 [self.process, self._prefix, self._ms(ttl),
                                  *itertools.chain.from_iterable(members)])

        def loaded(shas: list) -> Any:
            self._shas = {name: _text(sha) for name, sha in zip(SCRIPTS, shas)}
            return synced

        return chain(gather(loads), loaded)

    def _connected(self, link: Any, changed: list) -> None:
        if link is not self._link or self._state == "stopped":
            link.close()
            return
        was_lost = self._ever_connected
        self._state, self._ever_connected, self._attempt = "connected", True, 0
        # From here on subscribe() talks to Redis itself: send what it could not.
        for topic in self._channels:
            link.pubsub("SUBSCRIBE", self._channel(topic))
        for pattern in self._patterns:
            link.pubsub("PSUBSCRIBE", channel_pattern(self._channel_prefix, pattern))
        now = link.now()
        if not was_lost:
            self.log.info("wskit hub: connected to Redis at {where}", where=self.address.where)
        else:
            metrics.recorder().hub_reconnected()
            self.log.info("wskit hub: reconnected to Redis at {where} after {seconds:.1f} s; "
                          "{channels} topics, {patterns} patterns and {members} members restored",
                          where=self.address.where, seconds=now - self._lost_at,
                          channels=len(self._channels), patterns=len(self._patterns),
                          members=sum(len(found) for found in self._members.values()))
        ready, self._ready = self._ready, []
        for future in ready:
            txaio.resolve(future, self)
        self._notify(list(zip(changed[::4], changed[1::4], changed[2::4], changed[3::4])))
        self._last_refresh = now
        self._schedule_heartbeat()

    def _attempt_failed(self, link: Any, fail: Any) -> None:
        link.close()
        if link is not self._link or self._state == "stopped":
            return
        if not self._ever_connected and self._attempt == 0:
            reason = f"cannot connect to Redis at {self.address.where}: {_reason(fail.value)}"
            self._first_failure = reason
            ready, self._ready = self._ready, []
            if ready:  # whoever waits says so
                for future in ready:
                    txaio.reject(future, HubUnavailable(reason))
            else:
                self.log.warn("wskit hub: {reason} (retrying)", reason=reason)
        self._retry(link)

    def _retry(self, clock: Any) -> None:
        if self._state == "stopped":
            return
        self._state = "waiting"
        self._attempt += 1
        base, cap = self._backoff
        delay = min(cap, base * 2 ** (self._attempt - 1)) * random.uniform(0.8, 1.2)
        self._timer = clock.call_later(delay, self._reconnect)

    def _reconnect(self) -> None:
        if self._state == "waiting":
            self._state = "connecting"
            self._connect()

    def _lost(self, link: Any, reason: Any) -> None:
        """One of the link's connections is gone."""
        if link is not self._link or self._state != "connected":
            return
        self._lost_at = link.now()
        self.log.warn("wskit hub: lost Redis at {where} ({reason}); delivering on this server only, "
                      "reconnecting", where=self.address.where, reason=_reason(reason))
        self._confirmed.clear()
        self._subscribed.fail_all(HubUnavailable(self._unreachable()))
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None
        link.close()
        self._retry(link)

    # -- heartbeat ----------------------------------------------------------------------------

    def _schedule_heartbeat(self) -> None:
        self._heartbeat_timer = self._link.call_later(self.address.heartbeat, self._heartbeat)

    def _heartbeat(self) -> None:
        self._heartbeat_timer = None
        if not self.connected:
            return
        link = self._link
        done = self._script_on(link, "heartbeat", [self._key("procs")],
                               [self.process, self._ms(self.address.presence_timeout), self._prefix, "1"])

        def beat(gone: list) -> None:
            self._notify([("leave", *triple) for triple in zip(gone[::3], gone[1::3], gone[2::3])])

        txaio.add_callbacks(done, beat, lambda fail: None)
        self._refresh(link)
        if self.connected:
            self._schedule_heartbeat()

    def _refresh(self, link: Any) -> None:
        """Keep the keys of the rooms this process has members in (history too) alive."""
        if not self._members:
            return
        ttl = min(ttl for found in self._members.values() for _, ttl in found.values())
        now = link.now()
        if now - self._last_refresh < max(self.address.heartbeat, ttl / 4):
            return
        self._last_refresh = now
        keys = [key for topic in self._members for key in self._room_keys(topic)]
        done = self._script_on(link, "refresh", keys, [self._ms(ttl)])
        txaio.add_callbacks(done, None, lambda fail: None)

    def _notify(self, changes: list) -> None:
        for event, topic, member_id, info in changes:
            event, topic, member_id, info = _text(event), _text(topic), _text(member_id), _text(info)
            for prefix, callback in self._watchers:
                if topic.startswith(prefix):
                    try:
                        callback(topic, member_id, info, event)
                    except Exception:
                        log_failure(self.log, txaio.create_failure(), "wskit hub: presence watcher "
                                    "failed: {log_failure.value}")


def require_client(backend: str) -> None:
    """Raise :class:`SettingsError` (one line) unless ``backend``'s Redis client is installed."""
    module = "hiredis" if backend == "twisted" else "redis.asyncio"
    try:
        __import__(module)
    except ImportError:
        raise SettingsError(f"--hub redis:// on the {backend} backend needs the "
                            f"{module.split('.')[0]} package: pip install 'wskit[redis]'") from None


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _reason(exc: Any) -> str:
    if hasattr(exc, "value"):  # a Failure
        exc = exc.value
    text = str(exc).strip()
    return text or type(exc).__name__


__all__ = ["RedisAddress", "RedisHub", "channel_pattern", "require_client"]
