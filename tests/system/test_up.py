"""`hpsearch up` starts everything and leaves no process behind on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.master.factories import example_spec
from tests.servers import REPO, free_port, http, http_answers, http_text, wait_for

pytestmark = pytest.mark.slow


def processes_with_marker(marker: str) -> list[int]:
    """Live processes whose environment carries `marker` (all of up's descendants do)."""
    found = []
    needle = f"HPSEARCH_UP_TEST={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                status = (entry / "status").read_text()
                if "\nState:\tZ" not in status:  # a zombie is gone, only not yet reaped
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_runs_trials_of_a_sweep_and_stops_everything(tmp_path: Path, signum: int) -> None:
    marker = uuid.uuid4().hex
    port, dashboard_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    env = {**os.environ, "HPSEARCH_UP_TEST": marker}
    env.pop("DATABASE_URL", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "master.cli", "up", "--workers", "2", "--port", str(port),
         "--dashboard-port", str(dashboard_port), "--data-dir", str(tmp_path / "data")],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: http_answers(url + "/api/health"), 60, "hpsearch up's master")
        spec = example_spec(
            model={"hidden_sizes": [300, 300]},
            fixed={"update": "sgd", "batch_size": 10},
            space={"learning_rate": {"dist": "loguniform", "low": 1e-4, "high": 1e-3}},
            stages=[{"trials": 4, "epochs": 1000}],
        )
        code, sweep = http("POST", url + "/api/sweeps", spec)
        assert code == 201, sweep

        def two_running() -> bool:
            _, trials = http("GET", f"{url}/api/sweeps/{sweep['id']}/trials?status=running")
            return bool(trials["count"] == 2)

        wait_for(two_running, 60, "two trials running under hpsearch up")
        code, page = http_text(f"{dashboard}/sweeps/{sweep['id']}")
        assert code == 200 and "2 running" in page
        assert len(processes_with_marker(marker)) >= 5  # up, master, 2 workers, dashboard
        up.send_signal(signum)
        output, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    text = output.decode(errors="replace")
    assert "hpsearch is up (2 workers" in text and f"{url}/docs" in text
    assert f"dashboard: {dashboard}/" in text
    assert up.returncode == 0, text
    assert processes_with_marker(marker) == []


SLOW_TRIALS = example_spec(
    model={"hidden_sizes": [300, 300]},
    fixed={"update": "sgd", "batch_size": 10},
    space={"learning_rate": {"dist": "loguniform", "low": 1e-4, "high": 1e-3}},
    stages=[{"trials": 2, "epochs": 1000}],
)


@contextmanager
def up_in_its_own_group(
    tmp_path: Path, marker: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`hpsearch up` with 2 workers, as a terminal runs it: the leader of its own process
    group (which a Ctrl-C signals as a whole)."""
    port = free_port()
    env = {**os.environ, "HPSEARCH_UP_TEST": marker}
    env.pop("DATABASE_URL", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "master.cli", "up", "--workers", "2", "--port", str(port),
         "--dashboard-port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield up, f"http://127.0.0.1:{port}"
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def running_trials(url: str, sweep_id: int) -> list[dict[str, Any]]:
    _, trials = http("GET", f"{url}/api/sweeps/{sweep_id}/trials?status=running")
    return list(trials["data"])


def two_slow_trials_running(url: str) -> dict[str, Any]:
    """Once up's master answers: a sweep of SLOW_TRIALS, both of its trials running."""
    wait_for(lambda: http_answers(url + "/api/health"), 60, "hpsearch up's master")
    code, sweep = http("POST", url + "/api/sweeps", SLOW_TRIALS)
    assert code == 201, sweep
    wait_for(lambda: len(running_trials(url, sweep["id"])) == 2, 60, "both trials running")
    return dict(sweep)


def worker_pids(marker: str) -> set[int]:
    return {
        pid
        for pid in processes_with_marker(marker)
        if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    }


def test_a_sigkilled_worker_is_logged_and_restarted_and_its_trial_goes_on(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    with up_in_its_own_group(tmp_path, marker) as (up, url):
        sweep = two_slow_trials_running(url)
        before = worker_pids(marker)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)  # as the kernel's OOM killer does
        wait_for(lambda: len(worker_pids(marker) - before) == 1, 30, "a new worker process")

        # The killed worker's trial was re-queued and runs again, on attempt 2.
        def resumed() -> bool:
            trials = running_trials(url, sweep["id"])
            return len(trials) == 2 and max(t["attempts"] for t in trials) == 2

        wait_for(resumed, 60, "the killed worker's trial running again")
        assert up.poll() is None  # up did not stop with its worker
        os.killpg(up.pid, signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    text = output.decode(errors="replace")
    assert re.search(
        r"hpsearch up: worker-\d was killed by signal 9 \(SIGKILL\) after [\d.]+ s; restarting "
        r"it in 1 s \(restart 1; its log: .*worker-\d\.log\)",
        text,
    ), text
    assert re.search(r"hpsearch up: worker-\d started again", text), text
    assert up.returncode == 0, text
    assert processes_with_marker(marker) == []


def test_ctrl_c_to_the_whole_process_group_stops_in_order(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    with up_in_its_own_group(tmp_path, marker) as (up, url):
        two_slow_trials_running(url)
        started = time.monotonic()
        os.killpg(up.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        output, _ = up.communicate(timeout=60)
        stopped_in = time.monotonic() - started
    text = output.decode(errors="replace")
    assert up.returncode == 0, text
    assert processes_with_marker(marker) == []
    assert stopped_in < 20, stopped_in  # the README's bound for a quiet machine: 15 s
    # The workers reported their interrupted trials and the master applied that before Redis
    # went: both are back in the queue (enqueued again as attempt 2, in Redis's append-only
    # file for the next start), none left `running` for the next start to find dead.
    with sqlite3.connect(tmp_path / "data" / "hpsearch.db") as db:
        rows = db.execute("SELECT status, attempts, reason FROM trials").fetchall()
    assert [status for status, _, _ in rows] == ["queued", "queued"], rows
    assert all(reason.endswith("re-queued") for _, _, reason in rows), rows
    assert all(attempts <= 2 for _, attempts, _ in rows), rows
