"""Logging helpers that behave the same on both txaio frameworks."""

from __future__ import annotations

from typing import Any

import txaio


def log_failure(log: Any, fail: Any, message: str, **kwargs: Any) -> None:
    """Log ``fail`` (a txaio failure) with its traceback.

    txaio's Twisted loggers have ``failure()``; its asyncio loggers do not, so
    there the traceback goes into an ``error`` event. ``message`` may use
    ``{log_failure.value}`` on both.
    """
    method = getattr(log, "failure", None)
    if method is not None:
        method(message, failure=fail, **kwargs)
        return
    log.error(message + "\n{traceback}", log_failure=fail,
              traceback=txaio.failure_format_traceback(fail), **kwargs)
