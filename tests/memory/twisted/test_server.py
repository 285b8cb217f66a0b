"""The shared server behaviours (tests/memory/server_cases.py) on the twisted backend."""

from memory.server_cases import *  # noqa: F401,F403
