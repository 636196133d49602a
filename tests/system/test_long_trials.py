"""Trials that outlive every timeout of the worker-master protocol: RQ's started-job registry
expiry (the worker's heartbeat TTL) and the job's lease. A healthy trial must stay on its
first attempt however long it runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from core.messages import LEASE_SECONDS
from tests.conftest import REAL_TIMEOUTS_GROUP
from tests.master.factories import example_spec
from tests.servers import wait_for
from tests.system.conftest import System, running_system

pytestmark = pytest.mark.slow
RQ_DEFAULT_HEARTBEAT_TTL = 30  # WorkerSettings.heartbeat_ttl_seconds's default


def long_trial_spec(name: str, epochs: int) -> dict[str, Any]:
    """One trial of about 0.08 s an epoch here (two 300-unit layers, batches of 10)."""
    return example_spec(
        name=name,
        model={"hidden_sizes": [300, 300]},
        fixed={"update": "momentum", "batch_size": 10, "learning_rate": 0.01},
        space={"reg": {"dist": "loguniform", "low": 1e-5, "high": 1e-4}},
        stages=[{"trials": 1, "epochs": epochs}],
    )


def running_since(system: System, sweep_id: int) -> tuple[dict[str, Any], float]:
    """The sweep's one trial once it runs, and when the test saw it start."""

    def started() -> dict[str, Any] | None:
        trials = system.trials(sweep_id)
        return trials[0] if trials and trials[0]["status"] == "running" else None

    return wait_for(started, 60, "the trial to start", interval=0.1), time.monotonic()


def test_a_trial_outliving_rqs_registry_expiry_stays_on_its_first_attempt(
    tmp_path: Path,
) -> None:
    """RQ's registry expiry and the lease, shrunk and outlived three times over by a trial
    that is still training when the test stops it. One database: this is RQ's and the
    lease's doing, not the database's."""
    ttl = 3  # shrunk from 30 s; the lease (5 s) and the master's pass (0.5 s) keep theirs
    with running_system(
        tmp_path, "sqlite", workers=1, worker_env={"HPSEARCH_HEARTBEAT_TTL_SECONDS": str(ttl)}
    ) as system:
        watch_then_stop(system, 3 * max(ttl, LEASE_SECONDS) + 1)


# One worker on one core, and margins of 29 s (RQ's expiry) and 4 s (the lease) against a
# renewal every second: it can run beside the serial system tests, 105 s off CI's pace.
@pytest.mark.xdist_group(REAL_TIMEOUTS_GROUP)
def test_a_trial_of_minutes_with_the_real_timeouts_stays_on_its_first_attempt(
    tmp_path: Path,
) -> None:
    """RQ's real 30 s registry expiry, outlived three times over by a trial that is still
    training when the test stops it (so its length does not depend on this machine's speed)."""
    with running_system(tmp_path, "sqlite", workers=1) as system:
        watch_then_stop(system, 3 * RQ_DEFAULT_HEARTBEAT_TTL + 5)


def watch_then_stop(system: System, seconds: float) -> None:
    """Run one long trial for `seconds`, checking all along that it runs on its first
    attempt, then stop it: it ends stopped, on that attempt, with every epoch recorded."""
    sweep_id = system.submit(long_trial_spec("outlive-the-timeouts", epochs=100_000))
    trial, started = running_since(system, sweep_id)
    deadline = started + seconds
    while time.monotonic() < deadline:
        now = system.get(f"/api/trials/{trial['id']}")
        assert (now["status"], now["attempts"]) == ("running", 1), now["reason"]
        time.sleep(1)  # a watch over a fixed span, not a wait for a condition
    code, _ = system.post(f"/api/trials/{trial['id']}/stop")
    assert code == 200
    system.wait_until_done(sweep_id, timeout=60)
    ended = system.get(f"/api/trials/{trial['id']}")
    assert (ended["status"], ended["attempts"]) == ("stopped", 1), ended["reason"]
    epochs = [h["epoch"] for h in ended["history"]]
    assert epochs == [float(e) for e in range(1, len(epochs) + 1)]
    assert len(epochs) >= 20  # it trained all along
