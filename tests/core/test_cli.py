"""`hpsearch train` and `hpsearch check` as a user runs them: a real process, real output."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.checkpoint import parse_checkpoint_name

EPOCH_LINE = re.compile(
    r"^Finished epoch \d+ / \d+: cost \d+\.\d{6}, train: [01]\.\d{6}, val [01]\.\d{6}, "
    r"lr \d\.\d{6}e[+-]\d\d$"
)


def strict_json(text: str) -> Any:
    """json.loads, but NaN and Infinity (which Python accepts and JSON forbids) are errors."""

    def reject(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=reject)


def hpsearch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "master.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_console_script_is_installed() -> None:
    exe = shutil.which("hpsearch")
    assert exe is not None, "pip install -e . puts `hpsearch` on PATH"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "train" in result.stdout and "check" in result.stdout


def test_train_prints_the_notes_epoch_lines_and_writes_sorted_checkpoints(tmp_path: Path) -> None:
    result = hpsearch(
        "train", "--epochs", "3", "--checkpoint-dir", str(tmp_path), "--trial-id", "42"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("Finished epoch")]
    assert len(epoch_lines) == 3 and all(EPOCH_LINE.match(line) for line in epoch_lines)
    assert lines[-2].startswith("Finished in")
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 3
    for name, line in zip(
        sorted(names, key=lambda n: parse_checkpoint_name(n).epoch), epoch_lines, strict=True
    ):
        parsed = parse_checkpoint_name(name)
        assert parsed.trial_id == 42
        assert f"val {parsed.val_acc:.4f}" in line  # the name carries the printed accuracy


def test_train_json_is_one_object_on_stdout() -> None:
    result = hpsearch("train", "--epochs", "20", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "finished" and report["epochs"] == 20
    assert report["best_val_acc"] >= 0.95
    assert report["config"]["learning_rate"] == 0.1
    assert "Finished epoch 20 / 20" in result.stderr  # progress lines stay off stdout


def test_an_exploding_run_exits_3_with_its_iteration_and_cost() -> None:
    result = hpsearch("train", "--learning-rate", "1e6", "--json")
    assert result.returncode == 3
    report = strict_json(result.stdout)
    assert report["status"] == "exploded"
    assert report["explosion"]["iteration"] < 13
    assert report["explosion"]["ratio"] is None or report["explosion"]["ratio"] > 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--learning-rate", "-1"], "learning_rate: must be a number > 0"),
        (["--update", "lbfgs"], "update: must be one of"),
        (["--dataset", "npz:/nonexistent/data.npz"], "/nonexistent/data.npz: no such file"),
        (["--dataset", "mnist"], "unknown spec"),
        (["--hidden-sizes", "0"], "hidden_sizes: must be"),
    ],
)
def test_bad_input_is_one_clear_line_not_a_traceback(args: list[str], message: str) -> None:
    result = hpsearch("train", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("hpsearch train: error:")


def test_check_passes_on_digits_and_prints_the_tables() -> None:
    result = hpsearch("check", "--dataset", "digits")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for param in ("W1", "b1", "W2", "b2"):
        assert re.search(rf"^  data  {param}\s+10\s+\d+\s+\S+\s+(good|okay)$", out, re.M), out
    assert out.count("  pass  ") == 3 and out.rstrip().endswith("PASSED")


def test_check_json_and_failure_exit_code() -> None:
    result = hpsearch("check", "--json", "--hidden-sizes", "1")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["passed"] is False
    overfit = report["sanity_checks"][2]
    assert overfit["name"] == "overfit 20 examples" and overfit["passed"] is False


def test_progress_bar_is_drawn_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "master.cli", "train", "--epochs", "1", "--batch-size", "10"],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    drawn = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    assert process.wait(timeout=60) == 0
    assert re.search(rb"\r\[#+\.*\] iteration \d+/119", drawn), drawn[:200]


def test_a_non_finite_first_cost_still_gives_valid_json(tmp_path: Path) -> None:
    huge = tmp_path / "huge.npz"
    X = np.full((40, 4), 3e38)
    X[::2] *= -1  # near float32's maximum: the first forward pass overflows to inf/NaN
    np.savez(huge, X_train=X, y_train=np.arange(40) % 2, X_val=X[:10], y_val=np.arange(10) % 2)
    result = hpsearch("train", "--dataset", f"npz:{huge}", "--json")
    assert result.returncode == 3, result.stderr
    report = strict_json(result.stdout)
    assert report["explosion"]["iteration"] == 0
    assert report["explosion"]["initial_cost"] is None
    text = hpsearch("train", "--dataset", f"npz:{huge}")
    assert text.returncode == 3 and "Exploded at iteration 0" in text.stdout
