"""hpsearch up's supervision, with real child processes and an injected clock: a child that
dies is described and restarted after a back-off that doubles, and starts afresh once it
has run long enough."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from master.up import HEALTHY_SECONDS, RESTART_BACKOFF, _Supervisor, describe_exit
from tests.servers import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by signal 9 (SIGKILL)"


def test_a_dying_child_is_restarted_with_a_doubling_back_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    supervisor = _Supervisor(tmp_path, clock)
    supervisor.start("worker-1", [sys.executable, "-c", "import sys; sys.exit(3)"], {})
    child = supervisor.children[0]
    delays: list[float] = []
    for _ in range(3):
        assert child.process is not None
        child.process.wait(timeout=30)
        supervisor.check()
        assert child.process is None and child.restart_at is not None
        delays.append(child.restart_at - clock.now)
        supervisor.check()  # not due yet: nothing starts
        assert child.process is None
        clock.now = child.restart_at
        supervisor.check()
        assert child.process is not None  # started again
    assert delays == list(RESTART_BACKOFF[:3])
    err = capsys.readouterr().err
    assert "hpsearch up: worker-1 exited with code 3 after 0.0 s; restarting it in 1 s" in err
    assert "restarting it in 4 s (restart 3" in err and "worker-1 started again" in err
    # One that ran a minute before dying starts its back-off afresh.
    assert child.process is not None
    child.process.wait(timeout=30)
    clock.now += HEALTHY_SECONDS
    supervisor.check()
    assert child.restart_at is not None and child.restart_at - clock.now == RESTART_BACKOFF[0]
    supervisor.stop_all()


def test_stop_all_leaves_nothing_running_and_starts_nothing_more(tmp_path: Path) -> None:
    supervisor = _Supervisor(tmp_path)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    for name in ("redis", "master", "worker-1", "dashboard"):
        supervisor.start(name, sleeper, {})
    supervisor.stop_all()
    assert all(c.process is not None and c.process.poll() is not None for c in supervisor.children)
    assert all(c.restart_at is None for c in supervisor.children)
    wait_for(lambda: supervisor.dead() is not None, 5, "the children to be reaped")
