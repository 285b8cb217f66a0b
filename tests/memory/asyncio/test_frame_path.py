"""The whole-frame paths against Autobahn's general ones (tests/memory/frame_path_cases.py) on the asyncio backend."""

from memory.frame_path_cases import *  # noqa: F401,F403
