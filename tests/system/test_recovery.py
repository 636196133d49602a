"""Crashes and outages mid-sweep, with real processes and real signals: the sweep recovers by
itself, loses no work and repeats none. Each test builds a system of its own to break."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from rq import Queue

from core.config import TrainConfig
from core.data import load_dataset
from core.messages import EVENT_STREAM, dead_job_key
from core.trainer import build_model, train
from tests.master.factories import example_spec
from tests.servers import REPO, http, wait_for
from tests.system.conftest import FINAL, System, running_system
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow
POSTGRES = os.environ.get("HPSEARCH_TEST_DATABASE_URL")
DATABASES = ["sqlite", "postgresql"] if POSTGRES else ["sqlite"]
# For a test of what workers, Redis and the protocol do, where the database only records
# it: one database is enough (CI's time limit), and SQLite is the default one.
PROTOCOL_ONLY = pytest.mark.parametrize("system", ["sqlite"], indirect=True)


@pytest.fixture(params=DATABASES)
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    with running_system(tmp_path, request.param) as running:
        yield running


def short_trials_spec(name: str, trials: int, epochs: float = 1, **changes: Any) -> dict[str, Any]:
    spec = example_spec(
        name=name,
        model={"hidden_sizes": [100]},
        fixed={"update": "momentum", "batch_size": 50},
        space={"learning_rate": {"dist": "loguniform", "low": 1e-3, "high": 1e-1}},
        stages=[{"trials": trials, "epochs": epochs}],
    )
    spec.update(changes)
    return spec


def assert_accounted_for(system: System, sweep_id: int, trials: int) -> list[dict[str, Any]]:
    """Every trial ended well, was dispatched once, and has one history row per epoch."""
    found = system.trials(sweep_id)
    assert len(found) == trials
    assert {t["status"] for t in found} <= {"finished", "exploded"}, found
    for trial in found:
        detail = system.get(f"/api/trials/{trial['id']}")
        epochs = [h["epoch"] for h in detail["history"]]
        assert epochs == sorted(set(epochs)), f"trial {trial['id']}: {epochs}"
        if trial["status"] == "finished":
            assert epochs == [float(e) for e in range(1, int(trial["num_epochs"]) + 1)]
    return found


@PROTOCOL_ONLY
def test_a_killed_worker_is_noticed_and_its_trial_resumes_elsewhere(system: System) -> None:
    spec = example_spec(
        name="kill-a-worker",
        model={"hidden_sizes": [300, 300]},
        fixed={"update": "momentum", "batch_size": 10, "learning_rate": 0.01},
        space={"reg": {"dist": "loguniform", "low": 1e-5, "high": 1e-4}},
        # Long enough (about 6 s here) that the kill lands mid-trial: with 6 epochs of
        # batch 20 the trial once ended (in 1 s) before the test saw its second epoch.
        stages=[{"trials": 1, "epochs": 20}],
    )
    sweep_id = system.submit(spec)

    def two_epochs_done() -> dict[str, Any] | None:
        trials = system.trials(sweep_id)
        return trials[0] if trials and trials[0]["epochs_done"] >= 2 else None

    trial = wait_for(two_epochs_done, 60, "the trial's second epoch")
    victim = trial["worker"]
    system.workers[victim].send_signal(signal.SIGKILL)  # one process: no work horse to spare
    killed_at = time.monotonic()
    system.workers[victim].wait()
    after = system.get(f"/api/trials/{trial['id']}")
    assert after["status"] == "running", f"the trial ended before the kill: {after['status']}"

    def requeued() -> bool:
        return bool(system.get(f"/api/trials/{trial['id']}")["attempts"] >= 2)

    wait_for(requeued, 30, "the master to re-queue the dead worker's trial", interval=0.05)
    detection = time.monotonic() - killed_at
    print(f"\ndead worker noticed and its trial re-queued in {detection:.2f} s")
    assert detection < 15

    system.wait_until_done(sweep_id, timeout=120)
    [done] = assert_accounted_for(system, sweep_id, 1)
    detail = system.get(f"/api/trials/{done['id']}")
    assert done["status"] == "finished" and done["worker"] != victim
    assert "stopped answering" in (detail["reason"] or "") or detail["attempts"] == 2

    # The same trial trained here without interruption gives the very same numbers.
    config = TrainConfig.from_dict(
        {**detail["hyperparameters"], "num_epochs": detail["num_epochs"],
         "seed": detail["seed"], "explode_factor": spec["explode_factor"]}
    )  # fmt: skip
    data = load_dataset("digits")
    reference = train(build_model(config, data), data, config).history
    assert [h["val_acc"] for h in detail["history"]] == reference.val_acc
    assert [h["train_acc"] for h in detail["history"]] == reference.train_acc
    assert done["best_val_acc"] == pytest.approx(max(reference.val_acc), abs=1e-4)


def test_a_killed_master_restarts_and_loses_no_event(system: System) -> None:
    # A first stage long enough that the workers still have jobs queued when the master
    # has applied ten ends: it applies them in batches of up to half a second while every
    # worker has a job queued, and 40 trials of 2 epochs took less than that in all.
    stages = [{"trials": 40, "epochs": 10}, {"trials": 10, "epochs": 2, "keep_top": 5}]
    sweep_id = system.submit(short_trials_spec("kill-the-master", 40, stages=stages))
    queue = Queue("hpsearch", connection=system.redis)

    def ten_ended_with_work_left() -> bool:
        ended = sum(t["status"] in FINAL for t in system.trials(sweep_id))
        return ended >= 10 and queue.count >= 2

    wait_for(ten_ended_with_work_left, 60, "ten trials to end while jobs are still queued")
    assert system.master is not None
    system.master.send_signal(signal.SIGKILL)
    system.master.wait()
    # The workers go on and their events wait in the stream for the master.
    wait_for(lambda: system.redis.xlen(EVENT_STREAM) > 0, 30, "events while the master is down")
    system.start_master()

    sweep = system.wait_until_done(sweep_id, timeout=180)
    assert sweep["status"] == "finished"
    trials = assert_accounted_for(system, sweep_id, 50)
    assert all(t["attempts"] == 1 for t in trials)  # none was dispatched, so run, twice


@PROTOCOL_ONLY
def test_a_restarted_redis_loses_nothing_queued_and_the_sweep_completes(
    system: System,
) -> None:
    sweep_id = system.submit(short_trials_spec("restart-redis", 30, epochs=4))

    def some_ended() -> bool:
        return sum(t["status"] in FINAL for t in system.trials(sweep_id)) >= 4

    wait_for(some_ended, 60, "four trials to end")
    system.redis_server.stop()  # SIGTERM: it writes its append-only file, as in compose
    time.sleep(3)  # the outage itself, not a wait for anything
    system.redis_server.start()

    sweep = system.wait_until_done(sweep_id, timeout=180)
    assert sweep["status"] == "finished"
    trials = assert_accounted_for(system, sweep_id, 30)
    # No running trial was taken for a dead one: the master waits out an outage before it
    # judges leases. A job a worker had just taken off the queue as Redis went down is
    # dropped by RQ before it starts; its trial is dispatched again, never run twice.
    master_log = (system.processes.logs / "master.log").read_text()
    assert "stopped answering at epoch" not in master_log
    assert all(t["attempts"] <= 2 for t in trials)
    assert system.get("/api/workers")["count"] == 2  # both workers came back


@pytest.mark.skipif(not POSTGRES, reason="HPSEARCH_TEST_DATABASE_URL is not set")
def test_a_database_outage_answers_503_and_loses_no_event(tmp_path: Path) -> None:
    assert POSTGRES is not None
    server = urlparse(POSTGRES)
    proxy = TcpProxy((server.hostname or "127.0.0.1", server.port or 5432))
    proxy.start()
    through_proxy = POSTGRES.replace(server.netloc, f"{server.username}@127.0.0.1:{proxy.port}")
    with running_system(tmp_path, "postgresql", database_url=through_proxy) as system:
        sweep_id = system.submit(short_trials_spec("database-outage", 30, epochs=3))
        wait_for(
            lambda: sum(t["status"] in FINAL for t in system.trials(sweep_id)) >= 4,
            60,
            "four trials to end",
        )
        proxy.cut()
        try:
            code, body = wait_for(
                lambda: answer_503(f"{system.url}/api/sweeps/{sweep_id}"),
                30,
                "the API to answer 503",
            )
            assert "database" in body["detail"].lower(), body
            time.sleep(3)  # the outage goes on while the workers report
        finally:
            proxy.start()
        sweep = system.wait_until_done(sweep_id, timeout=180)
        assert sweep["status"] == "finished"
        assert_accounted_for(system, sweep_id, 30)
    proxy.cut()


def answer_503(url: str) -> tuple[int, Any] | None:
    code, body = http("GET", url)
    return (code, body) if code == 503 else None


def test_a_full_disk_fails_the_trial_with_the_reason_and_the_worker_goes_on(
    tmp_path: Path,
) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to give a worker a small disk")
    with running_system(tmp_path, "sqlite", workers=0) as system:
        system.checkpoints.mkdir(parents=True, exist_ok=True)
        # The worker sees a 256 KiB tmpfs at CHECKPOINT_DIR (its own mount namespace).
        mount = 'mount -t tmpfs -o size=256k tmpfs "$CHECKPOINT_DIR" && exec "$0" "$@"'
        hpsearch = [sys.executable, "-m", "master.cli"]
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount,
                   *hpsearch, "worker", "--name", "small-disk"]  # fmt: skip
        system.start_worker("small-disk", command)
        system.wait_for_workers(1)
        worker_view = Path(f"/proc/{system.workers['small-disk'].pid}/root") / str(
            system.checkpoints
        ).lstrip("/")

        big = short_trials_spec("too-big", 2, model={"hidden_sizes": [1000]})
        failed = system.wait_until_done(system.submit(big), timeout=120)
        small = short_trials_spec("fits", 2, model={"hidden_sizes": [10]})
        fits = system.wait_until_done(system.submit(small), timeout=120)

        reasons = [t["reason"] for t in system.trials(failed["id"])]
        assert all("No space left on device" in r for r in reasons), reasons
        assert {t["status"] for t in system.trials(fits["id"])} == {"finished"}
        files = [p.relative_to(worker_view) for p in worker_view.rglob("*") if p.is_file()]
        assert files and all(str(p).startswith(f"sweep{fits['id']:06d}") for p in files), files
        assert not any(p.name.endswith(".tmp") for p in files)  # no partial file


def test_a_soak_of_2000_trials_accounts_for_every_one(tmp_path: Path) -> None:
    dataset = tmp_path / "datasets" / "tiny.npz"  # running_system's dataset folder
    dataset.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", f"from benchmarks.dispatch import tiny_dataset; "
         f"tiny_dataset(__import__('pathlib').Path({str(dataset)!r}))"],
        check=True, cwd=REPO,
    )  # fmt: skip
    trials = 2000
    spec = short_trials_spec(
        "soak", trials, dataset=f"npz:{dataset}", model={"hidden_sizes": [4]},
        fixed={"update": "sgd", "batch_size": 8},
    )  # fmt: skip
    with running_system(tmp_path, "sqlite") as system:
        assert system.master is not None
        sweep_id = system.submit(spec)

        def ended() -> int:
            return int(system.get(f"/api/sweeps/{sweep_id}")["done_trials"])

        wait_for(lambda: ended() >= 200, 120, "the first 200 trials")
        rss_start = rss_mib(system.master.pid)
        sweep = system.wait_until_done(sweep_id, timeout=600)
        rss_end = rss_mib(system.master.pid)
        print(f"\nmaster RSS: {rss_start:.1f} MiB after 200 trials, {rss_end:.1f} MiB at the end")

        assert sweep["status"] == "finished"
        assert sum(sweep["counts"].values()) == trials == sweep["done_trials"]
        found = system.trials(sweep_id)
        assert len(found) == trials and {t["status"] for t in found} == {"finished"}
        recorded = {path for t in found for path in t["checkpoints"]}
        on_disk = set(system.files_on_disk())
        assert recorded == on_disk and len(on_disk) == trials
        assert rss_end - rss_start < 30, (rss_start, rss_end)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_a_sweep_cancelled_right_after_its_worker_died_ends_the_trial(system: System) -> None:
    spec = example_spec(
        name="cancel-after-a-death",
        model={"hidden_sizes": [300, 300]},
        fixed={"update": "momentum", "batch_size": 10, "learning_rate": 0.01},
        space={"reg": {"dist": "loguniform", "low": 1e-5, "high": 1e-4}},
        stages=[{"trials": 1, "epochs": 1000}],  # minutes: it cannot end by itself here
    )
    sweep_id = system.submit(spec)

    def first_epoch_done() -> dict[str, Any] | None:
        trials = system.trials(sweep_id)
        return trials[0] if trials and trials[0]["epochs_done"] >= 1 else None

    trial = wait_for(first_epoch_done, 60, "the trial's first epoch")
    system.workers[trial["worker"]].send_signal(signal.SIGKILL)
    system.workers[trial["worker"]].wait()
    code, body = system.post(f"/api/sweeps/{sweep_id}/cancel")
    assert code == 200, body

    # The dead worker never answers the stop; once its lease lapses the master must end
    # the trial, not put it back in a queue that nothing dispatches for a cancelled sweep.
    def ended() -> dict[str, Any] | None:
        found = system.get(f"/api/trials/{trial['id']}")
        return found if found["status"] in FINAL else None

    cancelled = time.monotonic()
    done = wait_for(ended, 30, "the dead worker's trial to end", interval=0.1)
    print(f"\nthe dead worker's trial ended {time.monotonic() - cancelled:.1f} s after the cancel")
    assert done["status"] == "stopped" and done["attempts"] == 1
    assert done["reason"].startswith("sweep cancelled; worker "), done["reason"]
    assert system.get(f"/api/sweeps/{sweep_id}")["status"] == "cancelled"


@PROTOCOL_ONLY
def test_an_emptied_redis_lists_every_working_worker_again_within_seconds(
    system: System,
) -> None:
    sweep_id = system.submit(short_trials_spec("emptied-redis", 30, epochs=4))
    wait_for(
        lambda: sum(t["status"] in FINAL for t in system.trials(sweep_id)) >= 4,
        60,
        "four trials to end",
    )
    system.redis_server.stop()
    for path in system.redis_server.directory.rglob("*"):  # no persistence: it comes back empty
        if path.is_file():
            path.unlink()
    system.redis_server.start()
    restarted = time.monotonic()
    wait_for(lambda: system.get("/api/workers")["count"] == 2, 20, "both workers listed again")
    print(f"\nboth workers listed again {time.monotonic() - restarted:.1f} s after Redis restarted")

    assert system.wait_until_done(sweep_id, timeout=180)["status"] == "finished"
    assert_accounted_for(system, sweep_id, 30)
    victim = next(iter(system.workers))
    code, body = system.post(f"/api/workers/{victim}/shutdown")
    assert code == 202, body
    system.workers[victim].wait(timeout=30)  # it heard the request and exited


def test_a_master_down_longer_than_rq_keeps_finished_jobs_reruns_nothing(
    system: System,
) -> None:
    """RQ forgets a finished job after its result TTL (10 minutes by default; 2 s here).
    The trials' events wait in the stream all the while: on restart the master must apply
    them, not take the trials for ones whose jobs Redis lost. 60 trials send 240 events:
    more than one read's batch, so the master judges between reads."""
    assert system.master is not None
    system.master.send_signal(signal.SIGKILL)
    system.master.wait()
    system.start_master(HPSEARCH_RESULT_TTL_SECONDS="2")
    sweep_id = system.submit(short_trials_spec("master-away", 60, epochs=2))
    system.master.send_signal(signal.SIGKILL)  # before it applies much, or anything
    system.master.wait()

    def ended_events() -> int:
        entries: Any = system.redis.xrange(EVENT_STREAM)
        return sum(b'"kind": "ended"' in fields[b"event"] for _, fields in entries)

    wait_for(lambda: ended_events() == 60, 120, "every trial to end while the master is down")
    wait_for(lambda: not system.redis.keys("rq:job:*"), 30, "RQ to forget the finished jobs")
    system.start_master(HPSEARCH_RESULT_TTL_SECONDS="2")

    assert system.wait_until_done(sweep_id, timeout=120)["status"] == "finished"
    trials = assert_accounted_for(system, sweep_id, 60)
    assert [t["attempts"] for t in trials] == [1] * 60  # none was run again


def one_trial_under_way_behind(
    system: System, redis_url: str, epochs: int
) -> tuple[int, Callable[[], dict[str, Any]]]:
    """A one-trial sweep started on worker "cut-off", which reaches Redis at `redis_url`,
    trained 3 of its `epochs` (0.05-0.1 s each) there; then worker "other" starts.
    Returns the sweep's id and a reader of the trial."""
    system.start_worker("cut-off", env={"REDIS_URL": redis_url})
    sweep_id = system.submit(
        example_spec(
            name="partition",
            model={"hidden_sizes": [300, 300]},
            fixed={"update": "momentum", "batch_size": 10, "learning_rate": 0.01},
            space={"reg": {"dist": "loguniform", "low": 1e-5, "high": 1e-4}},
            stages=[{"trials": 1, "epochs": epochs}],
        )
    )

    def trial() -> dict[str, Any]:
        return dict(system.trials(sweep_id)[0])

    wait_for(lambda: trial()["epochs_done"] >= 3, 60, "three epochs on the cut-off worker")
    system.start_worker("other")
    return sweep_id, trial


def test_a_worker_cut_off_past_its_lease_hands_its_trial_over_cleanly(tmp_path: Path) -> None:
    """A partition: the worker running a trial loses Redis (through a proxy that resets and
    refuses its connections) for longer than its lease, while the master and another worker
    keep it. The trial resumes on the other worker, the cut-off attempt learns it was given
    up once the link is back, and the trial ends exact, its files all recorded. (With its
    connections reset the cut-off attempt runs ahead of its successor, whose pruning then
    removes what it wrote: an attempt that is behind is the next test's.)"""
    with running_system(tmp_path, "sqlite", workers=0) as system:
        proxy = TcpProxy(("127.0.0.1", system.redis_server.port))
        proxy.start()
        url = f"redis://127.0.0.1:{proxy.port}/0"
        # Long enough that the cut-off attempt still trains when its lease lapses, 5 s after
        # the cut (about 0.05 s an epoch here; 100 epochs ended within the lease).
        sweep_id, trial = one_trial_under_way_behind(system, url, epochs=250)
        proxy.cut()
        wait_for(
            lambda: trial()["attempts"] == 2 and trial()["worker"] == "other",
            30,
            "the trial to resume on the other worker",
        )
        wait_for(lambda: trial()["epochs_done"] >= 20, 60, "the resumed attempt to go on")
        proxy.start()  # the link is back: the cut-off attempt learns it was given up
        system.wait_until_done(sweep_id, timeout=120)

        done = system.get(f"/api/trials/{trial()['id']}")
        assert (done["status"], done["attempts"]) == ("finished", 2)
        assert [h["epoch"] for h in done["history"]] == [float(e) for e in range(1, 251)]
        # Best and latest, nothing stray:
        assert system.files_on_disk() == sorted(done["checkpoints"])
        # The cut-off attempt learns it at its next lease renewal (every second): with fast
        # epochs the trial can finish elsewhere before that.
        log = system.processes.logs / "cut-off.log"
        wait_for(
            lambda: "was given up for dead by the master" in log.read_text(),
            30,
            "the cut-off attempt to learn it was given up",
        )
        proxy.cut()


def test_a_worker_whose_replies_arrive_after_its_trial_ended_elsewhere_writes_nothing(
    tmp_path: Path,
) -> None:
    """The partition the issue saw: the cut-off attempt is *behind* its successor. From a
    lease renewal on, Redis's replies to a worker are held (its requests still arrive, as
    over a link that drops packets one way until TCP's retransmission gets them through)
    for longer than its lease. The trial resumes on another worker and finishes there; then
    the held replies arrive, first that renewal's, which Redis executed before the master
    gave the job up. It must not make the lease look fresh: the cut-off attempt writes and
    prunes nothing, so the files on disk stay exactly the ones the finished trial records."""
    with running_system(tmp_path, "sqlite", workers=0) as system:
        proxy = TcpProxy(("127.0.0.1", system.redis_server.port))
        proxy.start()
        # Held replies must arrive, not time out (RQ's own socket timeout is 11 s).
        url = f"redis://127.0.0.1:{proxy.port}/0?socket_timeout=120"
        sweep_id, trial = one_trial_under_way_behind(system, url, epochs=60)
        proxy.hold_replies(after=dead_job_key("").encode())  # the next lease renewal
        system.wait_until_done(sweep_id, timeout=120)
        done = system.get(f"/api/trials/{trial()['id']}")
        assert (done["status"], done["attempts"], done["worker"]) == ("finished", 2, "other")
        proxy.release()
        log = system.processes.logs / "cut-off.log"
        wait_for(lambda: "Job OK" in log.read_text(), 60, "the cut-off attempt to end")

        assert "was given up for dead by the master" in log.read_text()
        recorded = system.get(f"/api/trials/{done['id']}")["checkpoints"]
        assert system.files_on_disk() == sorted(recorded)
        assert [h["epoch"] for h in done["history"]] == [float(e) for e in range(1, 61)]
        proxy.cut()
