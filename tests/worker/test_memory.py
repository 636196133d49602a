"""The worker's malloc thresholds: freed memory is kept for reuse, not faulted in again."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from worker import memory

ROOT = Path(__file__).resolve().parents[2]
glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

# Three 240 KiB arrays at a time, as a training step's activations and gradients are: freed
# together, they leave more at the heap's top than glibc's default trim threshold, so every
# round hands the memory back and faults it in again, unless the thresholds are raised.
CHURN = """
import json, resource, sys
import numpy as np
from worker.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
for _ in range(20):  # glibc's own thresholds settle first
    arrays = [np.ones(30_000) for _ in range(3)]
    del arrays
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(300):
    arrays = [np.ones(30_000) for _ in range(3)]
    del arrays
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _churn(mode: str, **env: str) -> tuple[bool | None, int]:
    """(whether the thresholds were applied, page faults of the churn) in a new process: the
    thresholds are the whole process's."""
    result = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "", "PYTHONPATH": str(ROOT), **env},
    )
    found = json.loads(result.stdout)
    return found["applied"], int(found["faults"])


@glibc_only
def test_kept_memory_turns_an_allocation_churn_into_no_page_faults() -> None:
    _, faults_by_default = _churn("default")
    applied, faults_kept = _churn("keep")
    assert applied is True
    # 300 rounds: about 25 000 faults with glibc's own thresholds, none with ours.
    assert faults_by_default > 10_000
    assert faults_kept < 500


@glibc_only
def test_thresholds_the_user_set_for_glibc_are_left_alone() -> None:
    # Every block mapped on its own: many faults, as the user asked, not none as ours give.
    applied, faults = _churn("keep", MALLOC_MMAP_THRESHOLD_="0")
    assert applied is False
    assert faults > 10_000


def test_no_glibc_means_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert memory.keep_freed_memory() is False
