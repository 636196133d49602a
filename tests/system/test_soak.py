"""A soak of long and short trials through crashes: 200 trials, 4 of them over 2 minutes,
2 workers, one worker SIGKILLed and Redis restarted mid-way. Every trial must end accounted
for, with its history exactly 1..N. About 10 minutes, so it runs only on request:
HPSEARCH_SOAK=1 python3 -m pytest -n 0 -s tests/system/test_soak.py"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.master.factories import example_spec
from tests.servers import wait_for
from tests.system.conftest import FINAL, running_system
from tests.system.test_recovery import assert_accounted_for, short_trials_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("HPSEARCH_SOAK"), reason="set HPSEARCH_SOAK=1"),
]


def long_trials_spec(trials: int, epochs: int) -> dict[str, Any]:
    """The issue's long trial: about 1.6 s an epoch on digits here."""
    return example_spec(
        name="soak-long",
        model={"hidden_sizes": [1000, 1000]},
        fixed={"update": "momentum", "batch_size": 4, "learning_rate": 0.01},
        space={"reg": {"dist": "loguniform", "low": 1e-5, "high": 1e-4}},
        stages=[{"trials": trials, "epochs": epochs}],
    )


def test_a_soak_of_long_and_short_trials_through_a_worker_kill_and_a_redis_restart(
    tmp_path: Path,
) -> None:
    kind = "postgresql" if os.environ.get("HPSEARCH_TEST_DATABASE_URL") else "sqlite"
    started = time.monotonic()
    with running_system(tmp_path, kind, workers=2) as system:
        long_id = system.submit(long_trials_spec(4, 80))
        short_id = system.submit(short_trials_spec("soak-short", 196, epochs=2))

        def a_long_trial_ran_a_minute() -> bool:
            return any(t["epochs_done"] >= 35 for t in system.trials(long_id))

        wait_for(a_long_trial_ran_a_minute, 600, "a long trial's first minute", interval=1)
        victim = next(iter(system.workers))
        system.workers[victim].send_signal(signal.SIGKILL)
        system.workers[victim].wait()
        system.start_worker("w2-replacement")
        print(f"\n{time.monotonic() - started:.0f} s: SIGKILLed {victim}, started a replacement")
        time.sleep(20)  # the soak runs on between the two faults
        system.redis_server.stop()
        time.sleep(3)  # the outage itself
        system.redis_server.start()
        print(f"{time.monotonic() - started:.0f} s: Redis restarted")

        for sweep_id in (long_id, short_id):
            assert system.wait_until_done(sweep_id, timeout=1800)["status"] == "finished"
        long_trials = assert_accounted_for(system, long_id, 4)
        short_trials = assert_accounted_for(system, short_id, 196)
        trials = long_trials + short_trials
        assert all(t["status"] in FINAL for t in trials)
        assert all(t["status"] == "finished" for t in long_trials)
        attempts = Counter(t["attempts"] for t in trials)
        statuses = Counter(t["status"] for t in trials)
        print(
            f"{time.monotonic() - started:.0f} s: {len(trials)} trials ended: "
            f"{dict(statuses)}; attempts {dict(sorted(attempts.items()))}; long trials' "
            f"attempts {[t['attempts'] for t in long_trials]}"
        )
        assert max(attempts) <= 2  # one kill and one outage: at most one more attempt each
