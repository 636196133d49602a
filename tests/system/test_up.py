"""`hpsearch up` starts everything and leaves no process behind on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

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
