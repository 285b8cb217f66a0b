"""wskit.allocator: glibc's mmap threshold, fixed for a long-running server."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from wskit import allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_fixes_the_threshold_on_glibc():
    # In a child process: the setting is process-wide.
    code = "from wskit.allocator import fix_mmap_threshold; print(fix_mmap_threshold())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "True"


def test_leaves_a_threshold_the_environment_chose(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "262144")
    assert allocator.fix_mmap_threshold() is False


def test_does_nothing_elsewhere_than_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert allocator.fix_mmap_threshold() is False
