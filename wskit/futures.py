"""Small combinators over txaio futures (Twisted Deferreds or asyncio Futures).

Code that runs unchanged on both backends cannot use ``await`` on the
Twisted side without ``inlineCallbacks``; these keep such chains flat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import txaio


def chain(d: Any, then: Callable[[Any], Any]) -> Any:
    """``d`` followed by ``then`` (which may return a value or a future), as a new future.

    An exception raised by ``then``, or a failure of ``d`` or of the future
    ``then`` returns, rejects the result.
    """
    out = txaio.create_future()

    def ok(value: Any) -> None:
        try:
            result = then(value)
        except Exception:
            txaio.reject(out, txaio.create_failure())
            return
        if result is not None and txaio.is_future(result):
            txaio.add_callbacks(result, lambda v: txaio.resolve(out, v), lambda f: txaio.reject(out, f))
        else:
            txaio.resolve(out, result)

    txaio.add_callbacks(d, ok, lambda fail: txaio.reject(out, fail))
    return out


def then_both(d: Any, ok: Callable[[Any], Any], failed: Callable[[Any], Any]) -> Any:
    """``d`` through ``ok`` or ``failed`` (which returns the failure or exception to pass on)."""
    out = txaio.create_future()

    def done(value: Any) -> None:
        try:
            txaio.resolve(out, ok(value))
        except Exception:
            txaio.reject(out, txaio.create_failure())

    txaio.add_callbacks(d, done, lambda fail: txaio.reject(out, failed(fail)))
    return out


def gather(futures: list) -> Any:
    """All results in order, or the first failure (not wrapped)."""
    out = txaio.create_future()
    results: list[Any] = [None] * len(futures)
    left = [len(futures)]
    if not futures:
        txaio.resolve(out, [])
        return out

    def ok(value: Any, i: int) -> None:
        results[i] = value
        left[0] -= 1
        if left[0] == 0 and not txaio.is_called(out):
            txaio.resolve(out, results)

    def failed(fail: Any) -> None:
        if not txaio.is_called(out):
            txaio.reject(out, fail)

    for i, future in enumerate(futures):
        txaio.add_callbacks(future, lambda value, i=i: ok(value, i), failed)
    return out


__all__ = ["chain", "gather", "then_both"]
