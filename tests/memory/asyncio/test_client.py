"""The shared client behaviours (tests/memory/client_cases.py) on the asyncio backend."""

from memory.client_cases import *  # noqa: F401,F403
