"""What the app clients (chat, pubsub, rpc) share: request/reply matching over a ClientConnection,
and keeping one client alive across connections (:meth:`AppClient.attach`, :meth:`AppClient.reconnecting`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import txaio

from wskit.errors import RequestError
from wskit.serializers import APP_VERSIONS, parse_subprotocol

from .connection import ClientConnection, ConnectionClosed

_RUNNING = object()  # the outcome of a kept connection while it is being kept


class AppClient:
    """Wraps an open :class:`ClientConnection` of one ``wskit.<app>.v<N>.<serializer>`` subprotocol.

    Replies to this client's requests resolve the request's future; every other
    message (room messages, presence, events) is read with :meth:`recv` or
    ``async for msg in client``.

    The client remembers what it asked the server to keep (chat rooms joined,
    pubsub subscriptions) and restores it on a new connection: :meth:`attach`
    does it for a connection you opened, :meth:`reconnecting` opens and
    replaces connections by itself.
    """

    app = ""

    def __init__(self, connection: ClientConnection):
        self.version = self._check(connection)
        self.connection = connection
        self._pending: dict[Any, Any] = {}
        self._ids = itertools.count(1)
        # Reconnections so far, and callables run after each (given the restore replies).
        self.reconnects = 0
        self.on_reconnect: list[Callable[[list], Any]] = []
        self._keeper: Any = None  # the Reconnecting iterator of a client made by reconnecting()
        self._supervisor: Any = None  # the task (or Deferred) replacing its connections
        self._stream = connection  # the connection readers read from
        self._outcome: Any = _RUNNING
        self._switch_waiters: list[Any] = []
        self._done_waiters: list[Any] = []
        self._bind(connection)

    @classmethod
    def subprotocols(cls, version: int | None = None, serializers: tuple[str, ...] = ("json", "msgpack")) -> list[str]:
        """Names to offer, e.g. ``ChatClient.subprotocols(2)`` -> ``["wskit.chat.v2.json", "wskit.chat.v2.msgpack"]``."""
        versions = [version] if version else list(APP_VERSIONS[cls.app])
        return [f"wskit.{cls.app}.v{v}.{s}" for v in versions for s in serializers]

    def _check(self, connection: ClientConnection) -> int:
        parsed = parse_subprotocol(connection.subprotocol)
        if parsed is None or parsed.app != self.app:
            raise ValueError(f"{type(self).__name__} needs a wskit.{self.app}.v<N>.<serializer> connection, "
                             f"not {connection.subprotocol or 'no subprotocol'}")
        return parsed.version

    def _bind(self, connection: ClientConnection) -> None:
        connection.interceptors.append(self._intercept)
        connection.close_hooks.append(self._fail_pending)

    def _unbind(self, connection: ClientConnection) -> None:
        if self._intercept in connection.interceptors:
            connection.interceptors.remove(self._intercept)
        if self._fail_pending in connection.close_hooks:
            connection.close_hooks.remove(self._fail_pending)

    def _intercept(self, msg: Any) -> bool:
        raise NotImplementedError

    def _fail_pending(self, closed: ConnectionClosed) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            txaio.reject(future, closed)

    def _request(self, key: Any, msg: Any) -> Any:
        future = txaio.create_future()
        self._pending[key] = future
        sent = self.connection.send(msg)

        def not_sent(fail: Any) -> None:
            if self._pending.pop(key, None) is future:
                txaio.reject(future, fail)

        txaio.add_callbacks(sent, None, not_sent)
        return future

    # -- a new connection -------------------------------------------------------

    def attach(self, connection: ClientConnection) -> Any:
        """Speak over ``connection`` from now on, and restore this client's state on it.

        For a new connection to the same service after the previous one was
        lost: chat re-joins every room it is in (same nick), pubsub
        re-subscribes every topic and pattern. Requests still pending on the
        previous connection fail with :class:`ConnectionClosed`. The future
        fires once every restore request is answered, with the list of
        outcomes (the reply, or the exception of a request that failed).
        """
        version = self._check(connection)
        previous = self.connection
        if previous is not connection:
            self._unbind(previous)
            self._fail_pending(ConnectionClosed(previous.close_code, previous.close_reason))
            self.connection, self.version = connection, version
            self._bind(connection)
            if self._keeper is None:
                self._stream = connection
        return _settled(self._restore())

    def _restore(self) -> list[Any]:
        """Futures of the requests that restore this client's state on a new connection."""
        return []

    @classmethod
    def reconnecting(cls, url: str, subprotocols: Sequence[str] | None = None, *, backend: str | None = None,
                     settings: Any = None, reactor: Any = None) -> Any:
        """A client that replaces its connection whenever it is lost; fires once the first is open.

        Connections come from ``async for conn in wskit.connect(url, ...)``
        (same arguments; ``subprotocols`` defaults to every version and
        serializer of this app), so ``settings.reconnect`` says when to retry
        and when to give up. On each new connection the client restores its
        rooms or subscriptions (see :meth:`attach`) before readers see any
        message from it; ``async for msg in client`` and :meth:`recv` go on
        across connections, and end (or raise) only when the iteration of
        connections does: after a 1000 close, at :meth:`close`, or with the
        error that made it give up. Messages the server sent while no
        connection was open are lost; requests made meanwhile fail with
        :class:`ConnectionClosed`.
        """
        from .connect import connect

        opening = connect(url, subprotocols or cls.subprotocols(), backend=backend, settings=settings,
                          reactor=reactor)
        iterator = opening.__aiter__()
        return iterator.driver.future(cls._first_connection(iterator))

    @classmethod
    async def _first_connection(cls, iterator: Any) -> AppClient:
        conn = await iterator.__anext__()
        try:
            client = cls(conn)
        except Exception:
            await iterator.aclose()
            raise
        client._keeper = iterator
        client._supervisor = iterator.driver.future(client._keep_connected())
        return client

    async def _keep_connected(self) -> None:
        iterator = self._keeper
        outcome: BaseException | None = None
        try:
            while True:
                await self.connection.wait_closed()
                conn = await iterator.__anext__()
                try:
                    replies = await self.attach(conn)
                except Exception:
                    await iterator.aclose()
                    raise
                self._stream = conn
                self.reconnects += 1
                _wake(self._switch_waiters)
                for hook in list(self.on_reconnect):
                    try:
                        hook(replies)
                    except Exception:
                        txaio.make_logger().failure("wskit: on_reconnect hook failed: {log_failure.value}")
        except StopAsyncIteration:
            pass
        except Exception as exc:
            outcome = exc
        self._outcome = outcome
        _wake(self._switch_waiters)
        _wake(self._done_waiters)

    # -- reading and closing --------------------------------------------------

    def recv(self) -> Any:
        """A future of the next message that is not a reply to this client's own requests."""
        if self._keeper is None:
            return self.connection.recv()
        return self._keeper.driver.future(self._recv_across(False))

    def __aiter__(self) -> AppClient:
        return self

    def __anext__(self) -> Any:
        if self._keeper is None:
            return self.connection.__anext__()
        return self._keeper.driver.future(self._recv_across(True))

    async def _recv_across(self, iterating: bool) -> Any:
        while True:
            conn = self._stream
            try:
                return await conn.recv()
            except ConnectionClosed:
                if conn is not self._stream:
                    continue  # replaced meanwhile
                if self._outcome is _RUNNING:
                    await _waiter(self._switch_waiters)
                    continue
                if self._outcome is not None:
                    raise self._outcome from None
                if iterating:
                    raise StopAsyncIteration from None
                raise

    def close(self, code: int = 1000, reason: str | None = None) -> Any:
        """Close the connection (and stop reconnecting); fires once closed."""
        if self._keeper is None:
            return self.connection.close(code, reason)
        self._keeper.aclose(code, reason)
        if self._outcome is not _RUNNING:
            return txaio.create_future_success(None)
        return _waiter(self._done_waiters)


class TypedRequestClient(AppClient):
    """Chat and pubsub: requests carry a ``ref`` that the direct reply (or error) echoes."""

    def __init__(self, connection: ClientConnection):
        # ref -> (called with the reply before its future fires, which replies also go to readers)
        self._reply_hooks: dict[Any, tuple[Callable[[dict], Any] | None, str]] = {}
        super().__init__(connection)

    def _intercept(self, msg: Any) -> bool:
        if not isinstance(msg, dict) or "ref" not in msg:
            return False
        future = self._pending.pop(msg["ref"], None)
        if future is None:
            return False
        on_reply, deliver = self._reply_hooks.pop(msg["ref"], (None, ""))
        failed = msg.get("type") == "error"
        if on_reply is not None:
            on_reply(msg)
        if failed:
            txaio.reject(future, RequestError(str(msg.get("code")), str(msg.get("message"))))
        else:
            txaio.resolve(future, msg)
        # Restore replies may go to readers as well, in their place among the messages.
        return not (deliver == "all" or (deliver == "errors" and failed))

    def _fail_pending(self, closed: ConnectionClosed) -> None:
        self._reply_hooks.clear()
        super()._fail_pending(closed)

    def _typed_request(self, msg: dict, on_reply: Callable[[dict], Any] | None = None, deliver: str = "") -> Any:
        ref = next(self._ids)
        if on_reply is not None or deliver:
            self._reply_hooks[ref] = (on_reply, deliver)
        return self._request(ref, dict(msg, ref=ref))


def _waiter(waiters: list[Any]) -> Any:
    future = txaio.create_future()
    waiters.append(future)
    return future


def _wake(waiters: list[Any]) -> None:
    pending, waiters[:] = list(waiters), []
    for future in pending:
        if not txaio.is_called(future):
            txaio.resolve(future, None)


def _settled(futures: list[Any]) -> Any:
    """A future of every outcome of ``futures``, in order: the result, or the exception."""
    result = txaio.create_future()
    outcomes: list[Any] = [None] * len(futures)
    remaining = [len(futures)]
    if not futures:
        txaio.resolve(result, outcomes)
        return result

    def settle(i: int, value: Any) -> None:
        outcomes[i] = value
        remaining[0] -= 1
        if remaining[0] == 0:
            txaio.resolve(result, outcomes)

    for i, future in enumerate(futures):
        def ok(value: Any, i: int = i) -> Any:
            settle(i, value)
            return value

        def failed(fail: Any, i: int = i) -> None:
            settle(i, fail.value)
            return None  # consumed: the outcome is in the list

        txaio.add_callbacks(future, ok, failed)
    return result
