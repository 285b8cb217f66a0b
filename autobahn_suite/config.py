"""What the suite runs and how the testees are started; shared by the runner and the tests."""

from __future__ import annotations

from pathlib import Path

SUITE_DIR = Path(__file__).resolve().parent
ROOT = SUITE_DIR.parent
REPORTS_DIR = SUITE_DIR / "reports"

MiB = 1024 * 1024
# Case group 9 sends messages of exactly 16 MiB; Autobahn's limit check is "larger than".
ECHO_MAX_MESSAGE_SIZE = 16 * MiB

# Testee options on top of `wskit serve --protocol wskit.echo` (README explains each):
# * no keep-alive pings: a case records every frame, and a ping ends 12.x/13.x early;
# * compress every message: kosoku's 12.x/13.x cases crash on an uncompressed echo.
SERVER_TESTEE_ARGS = (
    "--protocol", "wskit.echo",
    "--max-message-size", str(ECHO_MAX_MESSAGE_SIZE),
    "--ping-interval", "0",
    "--compress-threshold", "0",
)

SERVER_PATHS = ("twisted", "asyncio", "twistd")
CLIENT_PATHS = ("twisted", "asyncio")
ALL_PATHS = tuple(("server", b) for b in SERVER_PATHS) + tuple(("client", b) for b in CLIENT_PATHS)

# A handful of cases from every group (1-7, 9, 10, 12, 13; the suite has no 8 or 11),
# chosen to touch each kind of check: framing, pings, reserved bits/opcodes,
# fragmentation with interleaved control frames, UTF-8 across fragments, close
# codes, limits/performance, and compression with every deflate parameter set.
QUICK_CASES = (
    "1.1.1", "1.1.8", "1.2.8",
    "2.1", "2.4", "2.10", "2.11",
    "3.1", "3.4", "3.7",
    "4.1.1", "4.1.5", "4.2.1", "4.2.5",
    "5.1", "5.6", "5.9", "5.15", "5.19", "5.20",
    "6.1.1", "6.2.3", "6.3.1", "6.4.1", "6.4.3", "6.6.8", "6.12.8", "6.20.1", "6.21.3", "6.22.1",
    "6.23.7",
    "7.1.6", "7.3.1", "7.5.1", "7.7.1", "7.9.1", "7.13.1",
    "9.1.1", "9.2.1", "9.3.1", "9.4.1", "9.5.1", "9.6.1", "9.7.1", "9.8.1",
    "10.1.1",
    "12.1.1", "12.2.2", "12.3.1", "12.4.3", "12.5.1",
    "13.1.1", "13.2.1", "13.3.1", "13.4.1", "13.5.1", "13.6.1", "13.7.1",
)
