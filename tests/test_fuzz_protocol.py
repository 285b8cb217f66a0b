"""Runs the in-memory protocol fuzz target (tests/memory/fuzz_target.py) once per backend.

A process runs one txaio framework, so each backend's run is its own
process, as with the in-memory tier (tests/test_memory_tier.py). The budget
is the target's default (a fixed, reproducible sequence); WSKIT_FUZZ_EXAMPLES
and WSKIT_FUZZ_RANDOM (tests/fuzz_support.py) pass through to it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from support import BACKENDS, ROOT, python_env

TARGET = ROOT / "tests" / "memory" / "fuzz_target.py"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", BACKENDS)
def test_server_protocol_survives_arbitrary_bytes_after_the_handshake(backend):
    proc = subprocess.run(
        [sys.executable, str(TARGET), "--backend", backend],
        cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=580,
    )
    report = f"exit code {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    assert proc.returncode == 0, f"the {backend} fuzz target failed:\n{report}"
    ran = re.search(rf"fuzz_target: {backend}: (\d+) inputs, no failure", proc.stdout)
    assert ran and int(ran.group(1)) > 0, f"the {backend} fuzz target ran no input:\n{report}"
