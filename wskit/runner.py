"""Run one coroutine on the chosen backend until it returns: :func:`run`.

The one place where a wskit program starts an event loop. ``main`` is an
``async def`` taking one argument, ``stopping``: a future that fires when the
process gets SIGINT or SIGTERM, so a server can shut down gracefully::

    async def main(stopping):
        server = await wskit.asyncio.serve(ServerSettings(port=9000))
        await stopping
        server.close()
        await server.wait_closed()

    wskit.run(main, "asyncio")

On Twisted ``main`` runs under ``ensureDeferred`` (it may await Deferreds)
and the reactor stops when it returns. :func:`run` returns what ``main``
returned and raises what it raised.

A second SIGINT or SIGTERM ends the process the usual way. A worker process
that a supervisor started (:mod:`wskit.workers`) runs with ``supervised=True``
instead: SIGINT is ignored (a terminal's Ctrl-C reaches the whole process
group; the supervisor forwards it as SIGTERM) and so is every SIGTERM after
the first (systemd may send one beside the supervisor's; the supervisor kills
a worker that does not finish in time).
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any

from .settings import BACKENDS, SettingsError

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(main: Callable[[Any], Awaitable[Any]], backend: str = "asyncio", *, use_uvloop: bool = False,
        supervised: bool = False) -> Any:
    """Run ``main(stopping)`` on ``backend`` ("asyncio" or "twisted") and return its result.

    ``use_uvloop`` (asyncio): run on uvloop when it is installed.
    ``supervised``: signal handling of a worker process (see above).
    """
    if backend == "asyncio":
        return _run_asyncio(main, use_uvloop, supervised)
    if backend == "twisted":
        return _run_twisted(main, supervised)
    raise SettingsError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")


def _stop_signals(supervised: bool) -> tuple[signal.Signals, ...]:
    if supervised:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return (signal.SIGTERM,)
    return SHUTDOWN_SIGNALS


def _run_asyncio(main: Callable[[Any], Awaitable[Any]], use_uvloop: bool, supervised: bool) -> Any:
    import asyncio

    from . import asyncio as wasyncio

    if use_uvloop:
        wasyncio.install_uvloop()

    async def wrapper() -> Any:
        loop = asyncio.get_running_loop()
        stopping = loop.create_future()
        signals = _stop_signals(supervised)

        def stop() -> None:
            if not stopping.done():
                stopping.set_result(None)
            if not supervised:
                for sig in signals:  # a second signal ends the process the usual way
                    loop.remove_signal_handler(sig)

        for sig in signals:
            loop.add_signal_handler(sig, stop)
        try:
            return await main(stopping)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    return asyncio.run(wrapper())


def _run_twisted(main: Callable[[Any], Awaitable[Any]], supervised: bool) -> Any:
    from twisted.internet import defer, reactor
    from twisted.python.failure import Failure

    from . import twisted as _select_twisted  # noqa: F401  (selects Twisted for txaio)

    stopping: defer.Deferred = defer.Deferred()
    outcome: list[Any] = []
    previous = {sig: signal.getsignal(sig) for sig in SHUTDOWN_SIGNALS}

    def fire() -> None:
        if not stopping.called:
            stopping.callback(None)

    def on_signal(signum: int, frame: Any) -> None:
        if not supervised:
            for sig, handler in previous.items():  # a second signal ends the process the usual way
                signal.signal(sig, handler)
        reactor.callFromThread(fire)

    def finished(result: Any) -> None:
        outcome.append(result)
        if reactor.running:
            reactor.stop()

    def start() -> None:
        for sig in _stop_signals(supervised):
            signal.signal(sig, on_signal)
        defer.ensureDeferred(main(stopping)).addBoth(finished)

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    if not outcome:
        return None
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


__all__ = ["run"]
