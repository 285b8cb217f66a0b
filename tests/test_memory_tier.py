"""The in-memory tier: wskit's protocol classes driven over fake transports on a fake clock.

A process runs one txaio framework (importing wskit.twisted or wskit.asyncio
selects it), so each backend's tier (tests/memory/<backend>/) runs in its own
pytest process; this module starts them and fails with the child's report.
The main run does not collect tests/memory itself (norecursedirs).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from support import BACKENDS, ROOT, python_env

MEMORY = ROOT / "tests" / "memory"


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_tier(backend):
    folder = MEMORY / backend
    assert folder.is_dir(), f"no in-memory tier for {backend} at {folder}"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(folder.relative_to(ROOT)), "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=300,
    )
    report = f"exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    # 0 only: 1 is a failing test, 5 is "no tests collected", anything else an error.
    assert proc.returncode == 0, f"the {backend} in-memory tier failed:\n{report}"
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) > 0, f"no test of the {backend} tier passed:\n{report}"
