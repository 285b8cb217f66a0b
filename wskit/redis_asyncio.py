"""The Redis connection of :class:`wskit.redis_hub.RedisHub` on asyncio: ``redis.asyncio``.

Commands go out in order on one connection: those issued while a batch is on
the wire are sent together as the next pipeline (so a process's publishes keep
their order). Subscriptions use a second connection read by one task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .redis_hub import LinkLost, RedisAddress, ReplyError

CONNECT_TIMEOUT = 5
COMMAND_TIMEOUT = 10
LOST = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.IncompleteReadError, EOFError)


class AsyncioRedisLink:
    """What :class:`~wskit.redis_hub.RedisHub` needs of Redis, on an asyncio loop."""

    def __init__(self, address: RedisAddress, on_push: Callable[..., None],
                 on_lost: Callable[[Any, Any], None], loop: asyncio.AbstractEventLoop | None = None):
        self.address = address
        self.loop = loop or asyncio.get_running_loop()
        self._on_push = on_push
        self._on_lost = on_lost
        self._closed = False
        self._queue: list[tuple[tuple, asyncio.Future]] = []
        self._subscriptions: list[tuple] = []
        self._flushing = False
        self._subscribing = False
        self._tasks: set[asyncio.Task] = set()
        options = dict(host=address.host, port=address.port, password=address.password,
                       username=address.username, socket_connect_timeout=CONNECT_TIMEOUT,
                       retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._client = aioredis.Redis(db=address.db, socket_timeout=COMMAND_TIMEOUT, **options)
        # No read timeout on the subscriber connection: it waits for messages.
        self._sub_client = aioredis.Redis(socket_timeout=None, **options)
        self._pubsub = self._sub_client.pubsub()

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lost(self, reason: Any) -> None:
        if not self._closed:
            self._on_lost(self, reason)

    def connect(self) -> asyncio.Future:
        return asyncio.ensure_future(self._connect(), loop=self.loop)

    async def _connect(self) -> None:
        try:
            await self._client.ping()
            # A channel of this link's own, so the reader always has a subscription to wait on.
            await self._pubsub.subscribe(f"{self.address.prefix}~link.{id(self)}")
        except LOST as exc:
            raise LinkLost(str(exc) or type(exc).__name__) from None
        self._spawn(self._read())

    async def _read(self) -> None:
        try:
            while not self._closed:
                message = await self._pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message["type"]
                if kind == "pmessage":
                    self._on_push(b"pmessage", message["pattern"], message["channel"], message["data"])
                else:
                    self._on_push(kind.encode(), message["channel"], message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost(exc)

    def command(self, *args: Any) -> asyncio.Future:
        future = self.loop.create_future()
        if self._closed:
            future.set_exception(LinkLost("closed"))
            return future
        self._queue.append((args, future))
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._queue and not self._closed:
                batch, self._queue = self._queue, []
                pipe = self._client.pipeline(transaction=False)
                for args, _ in batch:
                    pipe.execute_command(*args)
                try:
                    replies = await pipe.execute(raise_on_error=False)
                except LOST as exc:
                    self._fail([future for _, future in batch] + [f for _, f in self._queue], exc)
                    self._queue = []
                    self._lost(exc)
                    return
                except asyncio.CancelledError:  # closed while this batch was on the wire
                    self._fail([future for _, future in batch], LinkLost("closed"))
                    raise
                for (_, future), reply in zip(batch, replies):
                    if future.done():
                        continue
                    if isinstance(reply, ResponseError):
                        future.set_exception(ReplyError(str(reply)))
                    elif isinstance(reply, Exception):
                        future.set_exception(LinkLost(str(reply)) if isinstance(reply, LOST) else reply)
                    else:
                        future.set_result(reply)
        finally:
            self._flushing = False

    @staticmethod
    def _fail(futures: list, exc: Exception) -> None:
        for future in futures:
            if not future.done():
                future.set_exception(LinkLost(str(exc) or type(exc).__name__))

    def pubsub(self, *args: Any) -> None:
        """SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE or PUNSUBSCRIBE, sent in order."""
        if self._closed:
            return
        self._subscriptions.append(args)
        if not self._subscribing:
            self._subscribing = True
            self._spawn(self._send_subscriptions())

    async def _send_subscriptions(self) -> None:
        methods = {"SUBSCRIBE": self._pubsub.subscribe, "UNSUBSCRIBE": self._pubsub.unsubscribe,
                   "PSUBSCRIBE": self._pubsub.psubscribe, "PUNSUBSCRIBE": self._pubsub.punsubscribe}
        try:
            while self._subscriptions and not self._closed:
                command, *names = self._subscriptions.pop(0)
                await methods[command](*names)
        except LOST as exc:
            self._lost(exc)
        finally:
            self._subscribing = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fail([future for _, future in self._queue], LinkLost("closed"))
        self._queue = []
        for task in list(self._tasks):
            task.cancel()
        self.loop.create_task(self._close())

    async def _close(self) -> None:
        for closing in (self._pubsub.aclose, self._client.aclose, self._sub_client.aclose):
            try:
                await closing()
            except Exception:  # already gone: nothing to release
                pass

    def now(self) -> float:
        return self.loop.time()

    def call_later(self, delay: float, fn: Callable[[], Any]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, fn)


__all__ = ["AsyncioRedisLink"]
