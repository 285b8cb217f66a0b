"""The reconnecting loop and the app clients' restore (tests/memory/reconnect_cases.py) on the twisted backend."""

from memory.reconnect_cases import *  # noqa: F401,F403
