"""Two masters on one database and Redis: exactly one scheduler runs, the other stands by,
and takes over when the active one dies, with no event lost or applied twice."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, http, http_answers, wait_for
from tests.system.conftest import FINAL, System, running_system
from tests.system.test_recovery import DATABASES, assert_accounted_for, short_trials_spec

pytestmark = pytest.mark.slow
SCHEDULER_LEASE_SECONDS = 10  # Settings.scheduler_lease_seconds's default


@pytest.fixture(params=DATABASES)
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    with running_system(tmp_path, request.param) as running:
        yield running


def health(url: str) -> dict[str, Any]:
    code, body = http("GET", url + "/api/health")
    assert code in (200, 503), body
    return dict(body)


def test_a_second_master_stands_by_and_takes_over_when_the_first_dies(system: System) -> None:
    second_url = f"http://127.0.0.1:{free_port()}"
    system.processes.hpsearch("master2", "master", "--port", second_url.rsplit(":", 1)[1])
    wait_for(lambda: http_answers(second_url + "/api/health"), 30, "the second master")
    first, second = health(system.url), health(second_url)
    assert first["scheduler"]["active"] and not second["scheduler"]["active"]
    assert second["scheduler"]["active_master"] == first["scheduler"]["this_master"]
    assert second["status"] == "ok"  # a standby is healthy

    # The second master's API works as well; its scheduler reads no event meanwhile.
    spec = short_trials_spec("two-masters", 200, epochs=2)
    code, body = http("POST", second_url + "/api/sweeps", spec)
    assert code == 201, body
    sweep_id = int(body["id"])

    def some_ended() -> bool:
        return sum(t["status"] in FINAL for t in system.trials(sweep_id)) >= 50

    wait_for(some_ended, 120, "50 trials to end")
    assert system.master is not None
    system.master.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    system.master.wait()
    wait_for(lambda: health(second_url)["scheduler"]["active"], 30, "the standby to take over")
    takeover = time.monotonic() - killed
    print(f"\nthe standby master took over {takeover:.1f} s after the active one died")
    assert takeover < SCHEDULER_LEASE_SECONDS + 5

    system.url = second_url  # the test's API calls go to the survivor now
    assert system.wait_until_done(sweep_id, timeout=180)["status"] == "finished"
    trials = assert_accounted_for(system, sweep_id, 200)
    assert all(t["attempts"] == 1 for t in trials)
    for trial in trials:
        if trial["status"] == "finished":
            detail = system.get(f"/api/trials/{trial['id']}")
            assert all(h["val_acc"] is not None for h in detail["history"]), trial["id"]
