"""``async for conn in wskit.connect(...)``: a new open connection each time one is lost.

Like python-websockets' ``async for websocket in connect(...)``, with wskit's
rules (:class:`wskit.settings.ReconnectSettings`):

* a connection attempt that fails for a transient reason (refused, reset,
  timed out, DNS, a handshake dropped halfway, HTTP 500/502/503/504) is
  retried after a backoff delay; any other failure (a 4xx refusal, an
  untrusted certificate, an invalid compression answer) is raised at once;
* after a connection closes with a code in ``retry_close_codes`` (1001 going
  away, 1006 lost, 1011, 1012, 1013, 1014) the next one is opened after a
  random delay of up to ``initial_delay``; after 1000 (or a close frame
  without a code) the iteration ends; after any other code it raises
  :class:`ConnectionClosed`;
* a connection closed by this client (``conn.close()``), or still open when
  the loop asks for the next one, is replaced at once;
* the backoff starts again after each successful connection, and the
  iteration gives up (raising the last error) after ``max_attempts`` failed
  attempts in a row or ``give_up_after`` seconds without a connection.

All timers run on the backend's loop (the factory's reactor on Twisted). The
backend halves (``_twisted``, ``_asyncio``) provide the driver: how to open a
connection, run a coroutine, wait, read the clock, which errors are network
errors. This module imports no backend.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import txaio

from wskit.errors import ConnectionClosed, HandshakeError
from wskit.settings import ReconnectSettings

from .connection import ClientConnection

RETRY, END, RAISE = "retry", "end", "raise"

# Failures without an HTTP status that a retry would only repeat.
_DETERMINISTIC = ("invalid compression answer", "certificate verify failed", "CERTIFICATE_VERIFY_FAILED")


def after_close(code: int | None, policy: ReconnectSettings) -> str:
    """What follows a connection the server (or the network) closed with ``code``.

    >>> policy = ReconnectSettings()
    >>> after_close(1001, policy), after_close(1006, policy), after_close(1000, policy), after_close(1008, policy)
    ('retry', 'retry', 'end', 'raise')
    """
    code = 1006 if code is None else code
    if code in policy.retry_close_codes:
        return RETRY
    if code in (1000, 1005):  # a normal closure, or a close frame without a code
        return END
    return RAISE


def is_transient(exc: BaseException, policy: ReconnectSettings, network_errors: tuple[type, ...] = ()) -> bool:
    """Whether a failed connection attempt is worth retrying.

    >>> policy = ReconnectSettings()
    >>> is_transient(HandshakeError("Service Unavailable", 503), policy)
    True
    >>> is_transient(HandshakeError("Forbidden", 403), policy)
    False
    >>> is_transient(HandshakeError("connection closed before the handshake completed"), policy)
    True
    >>> is_transient(ConnectionRefusedError(), policy, (OSError,))
    True
    >>> is_transient(ValueError("bad URL"), policy, (OSError,))
    False
    """
    text = str(exc)
    if any(marker in text for marker in _DETERMINISTIC):
        return False
    if isinstance(exc, HandshakeError):
        if exc.status is not None:
            return exc.status in policy.retry_statuses
        return True  # no HTTP answer: dropped or timed out during the handshake
    return isinstance(exc, network_errors)


class Reconnecting:
    """The async iterator behind ``async for conn in wskit.connect(...)``.

    Each step returns (a future of) the next open :class:`ClientConnection`.
    Inside the loop, ``async for msg in conn`` ends quietly at any close: the
    loop then decides whether to reconnect, end or raise. ``on_retry``
    callables are called as ``hook(error, delay)`` before each wait: ``error``
    is the :class:`ConnectionClosed` of a lost connection or the exception of
    a failed attempt. :meth:`aclose` stops the iteration (also during a wait).
    """

    def __init__(self, driver: Any, policy: ReconnectSettings,
                 make_connection: Callable[[], ClientConnection], first: Any = None):
        self.driver = driver
        self.policy = policy
        self.make_connection = make_connection
        self.connection: ClientConnection | None = None
        self.on_retry: list[Callable[[BaseException, float], Any]] = []
        self.attempts = 0  # attempts made in the current (re)connection, the successful one included
        self._first = first  # an attempt already under way (Twisted's connect starts at once)
        self._stopped = False
        self._ended = False
        self._waiting: Any = None  # the future a wait or an attempt is parked on
        self._cancel_timer: Callable[[], Any] | None = None
        self._random = random.random
        self._log = txaio.make_logger()

    def __aiter__(self) -> Reconnecting:
        return self

    def __anext__(self) -> Any:
        return self.driver.future(self._next())

    def aclose(self, code: int = 1000, reason: str | None = None) -> Any:
        """Stop: no further connection; the current one closes with ``code``. Fires once it is closed."""
        self._stopped = True
        cancel, self._cancel_timer = self._cancel_timer, None
        if cancel is not None:
            cancel()
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not txaio.is_called(waiting):
            txaio.resolve(waiting, None)
        if self.connection is not None:
            return self.connection.close(code, reason)
        return txaio.create_future_success(None)

    # -- one step ---------------------------------------------------------------

    async def _next(self) -> ClientConnection:
        if self._ended or self._stopped:
            self._ended = True
            raise StopAsyncIteration
        try:
            return await self._reconnect()
        except BaseException:
            self._ended = True
            raise

    async def _reconnect(self) -> ClientConnection:
        lost: ConnectionClosed | None = None
        previous = self.connection
        if previous is not None:
            if not previous.closed:
                await previous.close()  # the loop asked for a new connection: this one is done
            elif not previous.close_requested:
                lost = ConnectionClosed(previous.close_code, previous.close_reason)
                outcome = after_close(lost.code, self.policy)
                if outcome == END:
                    raise StopAsyncIteration
                if outcome == RAISE:
                    raise lost
            if self._stopped:
                raise StopAsyncIteration
        return await self._open(lost)

    async def _open(self, lost: ConnectionClosed | None) -> ClientConnection:
        policy = self.policy
        error: BaseException | None = lost
        started = self.driver.seconds()
        waits = 0
        self.attempts = 0
        first, self._first = self._first, None
        wait = lost is not None  # RFC 6455 7.2.3: a random first delay after an abnormal closure
        while True:
            if wait:
                delay = policy.delay(waits, self._random())
                if policy.give_up_after and self.driver.seconds() + delay - started > policy.give_up_after:
                    raise error  # type: ignore[misc]
                self._announce(error, delay)
                await self._park(self._timer(delay))
                self._cancel_timer = None
                waits += 1
                if self._stopped:
                    raise StopAsyncIteration
            self.attempts += 1
            try:
                conn = await self._park(self._attempt(first))
            except Exception as exc:
                if not is_transient(exc, policy, self.driver.network_errors):
                    raise
                if policy.max_attempts and self.attempts >= policy.max_attempts:
                    raise
                error, wait, first = exc, True, None
                continue
            if conn is None:  # stopped while connecting
                raise StopAsyncIteration
            conn.ends_quietly = True
            self.connection = conn
            return conn

    def _announce(self, error: BaseException | None, delay: float) -> None:
        self._log.info("wskit: {why}; reconnecting in {delay} s", why=_describe(error), delay=f"{delay:.2f}")
        for hook in list(self.on_retry):
            hook(error, delay)

    def _timer(self, delay: float) -> Any:
        done = txaio.create_future()
        self._cancel_timer = self.driver.call_later(delay, lambda: txaio.resolve(done, None))
        return done

    def _attempt(self, first: Any) -> Any:
        if first is not None:
            return first
        conn = self.make_connection()
        return self.driver.future(self.driver.open(conn))

    def _park(self, future: Any) -> Any:
        """A future of ``future``'s outcome that :meth:`aclose` can resolve early with None.

        An attempt that completes after that is closed, not leaked.
        """
        parked = self._waiting = txaio.create_future()

        def done(result: Any) -> Any:
            if not txaio.is_called(parked):
                txaio.resolve(parked, result)
            elif isinstance(result, ClientConnection):
                result.close()
            return result

        def failed(fail: Any) -> None:
            if not txaio.is_called(parked):
                txaio.reject(parked, fail)
            return None  # consumed: the outcome is parked's

        txaio.add_callbacks(future, done, failed)
        return parked


def _describe(error: BaseException | None) -> str:
    if isinstance(error, ConnectionClosed):
        return f"connection lost (code={error.code}{' reason=' + error.reason if error.reason else ''})"
    if error is None:
        return "connection lost"
    return f"connect failed: {error or type(error).__name__}"


__all__ = ["Reconnecting", "after_close", "is_transient"]
