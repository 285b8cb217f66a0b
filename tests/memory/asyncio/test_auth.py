"""The authentication, permission and abuse-limit cases (tests/memory/auth_cases.py) on the asyncio backend."""

from memory.auth_cases import *  # noqa: F401,F403
