"""The trial job, run in this process against a real Redis: events, checkpoints, outcomes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis import Redis

from core.checkpoint import best_first, load_checkpoint, parse_checkpoint_name
from core.messages import EVENT_STREAM, EventKind, TrialEvent, TrialJob, stop_key
from worker import jobs, lifecycle, writer
from worker.attempt import Reporter, StopFlag
from worker.jobs import run_trial
from worker.settings import WorkerSettings


@pytest.fixture
def worker_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CHECKPOINT_DIR", str(checkpoints))
    monkeypatch.setenv("HPSEARCH_DATASET_DIRS", str(tmp_path))  # the tests' own files
    return checkpoints


def trial_job(**changes: Any) -> dict[str, Any]:
    job = TrialJob(
        trial_id=42,
        sweep_id=3,
        stage_index=1,
        dataset="digits",
        hyperparameters={"learning_rate": 0.1, "update": "momentum", "reg": 1e-4},
        num_epochs=4,
        seed=5,
        explode_factor=3.0,
    ).to_dict()
    job.update(changes)
    return job


def events(redis: Redis) -> list[TrialEvent]:
    entries: Any = redis.xrange(EVENT_STREAM)
    return [TrialEvent.from_fields(fields) for _, fields in entries]


def test_a_trial_reports_every_epoch_and_keeps_best_and_latest(
    redis: Redis, worker_env: Path
) -> None:
    outcome = run_trial(trial_job())
    assert outcome["status"] == "finished"
    kinds = [e.kind for e in events(redis)]
    assert kinds == [EventKind.STARTED] + [EventKind.EPOCH] * 4 + [EventKind.ENDED]
    epochs = [e.data for e in events(redis) if e.kind is EventKind.EPOCH]
    assert [e["epoch"] for e in epochs] == [1.0, 2.0, 3.0, 4.0]
    assert all(len(e["loss"]) == 11 for e in epochs)  # 1197 training rows / 100 per batch

    files = sorted((worker_env / "sweep000003" / "stage1").glob("*.npz"))
    assert 1 <= len(files) <= 2  # best and latest (one file when they coincide)
    names = [parse_checkpoint_name(f) for f in files]
    assert max(n.epoch for n in names) == 4.0
    best = max(names, key=lambda n: n.val_acc)
    assert outcome["best_val_acc"] == best.val_acc
    best_epoch_val = next(e["val_acc"] for e in epochs if e["epoch"] == best.epoch)
    assert f"{best_epoch_val:.4f}" == f"{best.val_acc:.4f}"
    assert sorted(outcome["checkpoints"]) == sorted(str(f.relative_to(worker_env)) for f in files)
    # The dashboard draws the first layer as images of this shape.
    assert load_checkpoint(files[0]).extra["image_shape"] == [8, 8]


def recorded_syncs(monkeypatch: pytest.MonkeyPatch, sync_seconds: float) -> list[Path]:
    """The files the worker puts on disk, in order, with checkpoints synced at most every
    `sync_seconds`."""
    monkeypatch.setattr(writer, "SYNC_SECONDS", sync_seconds)
    durable: list[Path] = []
    make_durable = writer.make_durable

    def recording_make_durable(path: Path) -> None:
        make_durable(path)
        durable.append(path)

    monkeypatch.setattr(writer, "make_durable", recording_make_durable)
    return durable


def test_a_file_on_disk_is_pruned_only_once_a_newer_one_is(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints are put on disk (fsync) by another thread while training goes on: a power
    loss must still find one intact, so the file last put on disk stays until a newer one
    is. Synced whenever none is under way here (SYNC_SECONDS 0)."""
    durable = recorded_syncs(monkeypatch, 0.0)
    prune = writer.prune

    def checking_prune(checkpoints: list[Any], keep: set[Path]) -> list[Any]:
        kept = prune(checkpoints, keep)
        if durable:
            assert durable[-1] in {p for p, _ in kept}, f"pruned {durable[-1].name}, on disk"
        return kept

    monkeypatch.setattr(writer, "prune", checking_prune)
    outcome = run_trial(trial_job(num_epochs=5))
    assert outcome["status"] == "finished"
    assert len(durable) >= 2  # some while training, not only the end
    files = sorted((worker_env / "sweep000003" / "stage1").glob("*.npz"))
    assert 1 <= len(files) <= 2 and sorted(outcome["checkpoints"]) == sorted(
        str(f.relative_to(worker_env)) for f in files
    )
    for epoch in events(redis):  # the best, the newest on disk, the one going there, the newest
        if epoch.kind is EventKind.EPOCH:
            assert len(epoch.data["checkpoints"]) <= 4


def test_a_trial_shorter_than_the_sync_interval_puts_only_its_end_on_disk(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An fsync per epoch wrote every epoch's file to the disk: a trial syncs at most every
    SYNC_SECONDS, and always the files it ends with, its newest and its best."""
    durable = recorded_syncs(monkeypatch, 3600.0)
    outcome = run_trial(trial_job(num_epochs=5))
    assert outcome["status"] == "finished"
    files = sorted((worker_env / "sweep000003" / "stage1").glob("*.npz"))
    names = {f: parse_checkpoint_name(f) for f in files}
    newest = max(files, key=lambda f: names[f].epoch)
    best = max(files, key=lambda f: best_first(names[f]))
    assert names[newest].epoch == 5.0
    assert sorted(durable) == sorted({newest, best})
    for epoch in events(redis):  # nothing on disk while training: the best and the newest
        if epoch.kind is EventKind.EPOCH:
            assert len(epoch.data["checkpoints"]) <= 2


def test_a_rerun_keeps_the_files_it_found_until_one_of_its_own_is_on_disk(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before its first sync, a re-run attempt's own files are not on disk: the ones it found
    may be all a power loss leaves, so they stay until the re-run's end is on disk."""
    run_trial(trial_job(num_epochs=2))
    directory = worker_env / "sweep000003" / "stage1"
    found = set(directory.glob("*.npz"))
    durable = recorded_syncs(monkeypatch, 3600.0)
    prune = writer.prune
    kept_before_end: list[bool] = []

    def checking_prune(checkpoints: list[Any], keep: set[Path]) -> list[Any]:
        kept = prune(checkpoints, keep)
        if not durable:
            kept_before_end.append(found <= {p for p, _ in kept})
        return kept

    monkeypatch.setattr(writer, "prune", checking_prune)
    # Another config: the re-run starts over, beside the files it found.
    hyperparameters = {"learning_rate": 0.05, "update": "momentum", "reg": 1e-4}
    outcome = run_trial(trial_job(num_epochs=5, attempt=2, hyperparameters=hyperparameters))
    assert outcome["status"] == "finished"
    assert kept_before_end and all(kept_before_end)  # its end written, not yet on disk
    assert not found & set(directory.glob("*.npz"))  # pruned once the end was on disk


PEAKING = {"learning_rate": 1.0, "update": "momentum", "reg": 1e-4}  # digits: best at epoch 5 of 8


def test_a_best_epoch_between_writes_ends_in_the_file_a_write_per_epoch_leaves(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are written at most every SYNC_SECONDS and at the end: the best epoch, kept in
    memory until then, is still written, the same file (name and content) that a write per
    epoch (SYNC_SECONDS 0) leaves, and nothing else is written."""
    ended: dict[float, dict[Path, Any]] = {}
    writes: dict[float, list[str]] = {0.0: [], 3600.0: []}
    write = writer.write_checkpoint
    seconds = 0.0

    def recording_write(path: Path, *args: Any, **kwargs: Any) -> Path:
        writes[seconds].append(Path(path).name)
        return write(path, *args, **kwargs)

    monkeypatch.setattr(writer, "write_checkpoint", recording_write)
    for seconds in (0.0, 3600.0):
        monkeypatch.setattr(writer, "SYNC_SECONDS", seconds)
        trial_id = 42 if seconds else 43
        job = trial_job(trial_id=trial_id, num_epochs=8, hyperparameters=PEAKING)
        assert run_trial(job)["status"] == "finished"
        directory = worker_env / "sweep000003" / "stage1"
        ended[seconds] = {f: load_checkpoint(f) for f in directory.glob(f"*trial{trial_id:06d}*")}
    per_epoch, deferred = ended[0.0], ended[3600.0]
    names = {seconds: sorted(f.name.replace("trial000043", "trial000042") for f in files)
             for seconds, files in ended.items()}  # fmt: skip
    assert names[0.0] == names[3600.0] and len(names[0.0]) == 2  # the best is not the newest
    assert len(writes[0.0]) == 8 and sorted(writes[3600.0]) == names[3600.0]
    for (_, a), (_, b) in zip(sorted(per_epoch.items()), sorted(deferred.items()), strict=True):
        assert a.state.epoch == b.state.epoch
        np.testing.assert_array_equal(a.model.flat, b.model.flat)
        np.testing.assert_array_equal(a.state.average_flat, b.state.average_flat)
        assert a.state.history.val_acc == b.state.history.val_acc
    # Each epoch reports the best so far, written or not (the master keeps its train_acc).
    reported = {
        e.data["epoch"]: e.data["best_epoch"]
        for e in events(redis)
        if e.kind is EventKind.EPOCH and e.trial_id == 42
    }
    assert reported[5.0] == 5.0 and reported[8.0] == 5.0


def test_a_last_epoch_that_is_the_best_is_reported_with_its_file(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The master takes a trial's train_acc from the event of its best epoch: the last epoch
    of a finished run is written before its event, which names it as the best."""
    monkeypatch.setattr(writer, "SYNC_SECONDS", 3600.0)
    outcome = run_trial(trial_job())  # its validation accuracy rises every epoch
    assert outcome["status"] == "finished" and outcome["best_epoch"] == 4.0
    last = [e.data for e in events(redis) if e.kind is EventKind.EPOCH][-1]
    assert last["epoch"] == 4.0 and last["best_epoch"] == 4.0
    assert last["checkpoints"] == outcome["checkpoints"]


def test_every_kept_checkpoint_is_put_on_disk(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keep_checkpoints "all" keeps a file per epoch: each is synced, however often."""
    durable = recorded_syncs(monkeypatch, 3600.0)
    run_trial(trial_job(keep_checkpoints="all"))
    files = sorted((worker_env / "sweep000003" / "stage1").glob("*.npz"))
    assert len(files) == 4 and sorted(durable) == files


def test_a_checkpoint_that_cannot_be_put_on_disk_fails_the_trial(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(path: Path) -> None:
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr(writer, "make_durable", failing)
    outcome = run_trial(trial_job())
    assert outcome["status"] == "failed"
    assert "Input/output error" in outcome["reason"]


def test_keep_all_keeps_one_checkpoint_per_epoch(redis: Redis, worker_env: Path) -> None:
    run_trial(trial_job(keep_checkpoints="all"))
    assert len(list((worker_env / "sweep000003" / "stage1").glob("*.npz"))) == 4


def test_an_exploding_trial_ends_in_its_first_epoch(redis: Redis, worker_env: Path) -> None:
    job = trial_job(hyperparameters={"learning_rate": 1e6, "update": "sgd"})
    outcome = run_trial(job)
    assert outcome["status"] == "exploded"
    assert outcome["explosion"]["iteration"] < 12
    assert outcome["epochs_done"] < 1
    assert "the first cost" in outcome["reason"]
    files = list((worker_env / "sweep000003" / "stage1").glob("*.npz"))
    assert len(files) == 1  # where it was when it blew up
    assert load_checkpoint(files[0]).state.status == "exploded"


def test_a_failing_trial_reports_the_message(
    redis: Redis, worker_env: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an npz file")
    outcome = run_trial(trial_job(dataset=f"npz:{broken}"))
    assert outcome["status"] == "failed"
    assert "broken.npz" in outcome["reason"]
    assert events(redis)[-1].data["status"] == "failed"


@pytest.mark.parametrize(
    "where", ["/etc/passwd", "../../etc/hostname", "/proc/self/environ", "/no/such/file.npz"]
)
def test_a_worker_refuses_a_dataset_outside_its_folders_whatever_is_there(
    redis: Redis, worker_env: Path, where: str
) -> None:
    outcome = run_trial(trial_job(dataset=f"npz:{where}"))
    assert outcome["status"] == "failed"
    assert outcome["reason"] == (
        f"DatasetError: dataset 'npz:{where}': not in a dataset folder; datasets are read only "
        f"from the folders HPSEARCH_DATASET_DIRS names (a relative path: from the first of them)"
    )


def test_a_stop_flag_ends_the_trial(redis: Redis, worker_env: Path) -> None:
    redis.set(stop_key(42), 1)
    outcome = run_trial(trial_job())
    assert outcome == {"status": "stopped", "reason": "stopped before it started"}


def test_a_rerun_resumes_from_the_latest_checkpoint(redis: Redis, worker_env: Path) -> None:
    first = run_trial(trial_job(keep_checkpoints="all"))
    directory = worker_env / "sweep000003" / "stage1"
    latest = max(directory.glob("*.npz"), key=lambda p: parse_checkpoint_name(p).epoch)
    first_epochs = epoch_events(redis)
    latest.unlink()  # as if the worker died during the last epoch
    redis.delete(EVENT_STREAM)

    second = run_trial(trial_job(keep_checkpoints="all", attempt=2))
    started = events(redis)[0]
    assert started.kind is EventKind.STARTED and started.data["resumed_from_epoch"] == 3.0
    # Epochs 1-3 come from the checkpoint (re-sent in case their events were lost), then 4
    # is trained again: the same numbers as the uninterrupted run.
    assert without_files(epoch_events(redis)) == without_files(first_epochs)
    assert second["best_val_acc"] == first["best_val_acc"]
    assert second["checkpoints"] == first["checkpoints"]


def epoch_events(redis: Redis) -> list[dict[str, Any]]:
    return [e.data for e in events(redis) if e.kind is EventKind.EPOCH]


def without_files(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    files = ("checkpoints", "best_val_acc", "best_epoch")
    return [{k: v for k, v in e.items() if k not in files} for e in epochs]


def test_a_finished_trial_is_reported_again_not_retrained(redis: Redis, worker_env: Path) -> None:
    first = run_trial(trial_job())
    redis.delete(EVENT_STREAM)
    second = run_trial(trial_job(attempt=2))
    kinds = [e.kind for e in events(redis)]
    assert kinds == [EventKind.STARTED] + [EventKind.EPOCH] * 4 + [EventKind.ENDED]
    assert second["status"] == "finished" and second["best_val_acc"] == first["best_val_acc"]
    assert second["train_seconds"] == 0.0  # nothing was trained


def test_a_worker_shutdown_interrupts_the_trial_and_a_rerun_ends_as_if_it_had_not(
    redis: Redis, worker_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uninterrupted = run_trial(trial_job(trial_id=7, keep_checkpoints="all"))
    reference = epoch_events(redis)
    redis.delete(EVENT_STREAM)

    # The shutdown flag goes up once epoch 1 is reported, as a SIGTERM then would.
    original_report = writer.CheckpointWriter.report_epoch

    def report_then_shut_down(self: Any, state: Any, k: int) -> None:
        original_report(self, state, k)
        if state.epoch == 1.0:
            lifecycle.SHUTTING_DOWN.set()

    with monkeypatch.context() as patch:
        patch.setattr(writer.CheckpointWriter, "report_epoch", report_then_shut_down)
        try:
            outcome = run_trial(trial_job(trial_id=8, keep_checkpoints="all"))
        finally:
            lifecycle.SHUTTING_DOWN.clear()
    assert outcome["status"] == "interrupted"
    assert outcome["reason"].startswith("the worker shut down at epoch 1.0")

    resumed = run_trial(trial_job(trial_id=8, keep_checkpoints="all", attempt=2))
    assert resumed["status"] == "finished"
    assert resumed["best_val_acc"] == uninterrupted["best_val_acc"]
    assert resumed["val_acc"] == uninterrupted["val_acc"]
    epochs = {e["epoch"]: e for e in epoch_events(redis)}  # re-sent ones once per epoch
    assert without_files(sorted(epochs.values(), key=lambda e: e["epoch"])) == without_files(
        reference
    )


def test_a_job_given_up_for_dead_ends_its_trials_without_a_word(
    redis: Redis, worker_env: Path
) -> None:
    trial = TrialJob.from_dict(trial_job())
    reporter = Reporter(redis, trial.trial_id, trial.attempt)
    lifecycle.SUPERSEDED.add("trials-42-1")
    try:
        stop = StopFlag(trial, "trials-42-1", reporter)
        assert stop() is True
        assert stop.outcome("before it started") == {"status": "superseded"}
    finally:
        lifecycle.SUPERSEDED.clear()
    assert events(redis) == []


def test_a_batch_runs_its_trials_in_turn_and_skips_a_stopped_one(
    redis: Redis, worker_env: Path
) -> None:
    redis.set(stop_key(2), 1)
    outcomes = jobs.run_trials([trial_job(trial_id=i, num_epochs=1) for i in (1, 2, 3)])
    assert [o["status"] for o in outcomes] == ["finished", "stopped", "finished"]
    ended = [e.trial_id for e in events(redis) if e.kind is EventKind.ENDED]
    assert ended == [1, 2, 3]


def test_an_unwritable_checkpoint_directory_fails_the_trial_with_the_reason(
    redis: Redis, worker_env: Path
) -> None:
    (worker_env / "sweep000003").mkdir(parents=True)
    (worker_env / "sweep000003" / "stage1").write_text("a file where a directory should be")
    outcome = run_trial(trial_job())
    assert outcome["status"] == "failed"
    assert "stage1" in outcome["reason"] and "Error" in outcome["reason"]
    assert [p.name for p in worker_env.rglob("*") if p.is_file()] == ["stage1"]


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bit-flipped":
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0x01
        path.write_bytes(bytes(flipped))
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "empty"])
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_one_before_resumes(
    redis: Redis, worker_env: Path, how: str
) -> None:
    first = run_trial(trial_job(keep_checkpoints="all"))
    reference = without_files(epoch_events(redis))
    directory = worker_env / "sweep000003" / "stage1"
    latest = max(directory.glob("*.npz"), key=lambda p: parse_checkpoint_name(p).epoch)
    damage(latest, how)
    redis.delete(EVENT_STREAM)

    second = run_trial(trial_job(keep_checkpoints="all", attempt=2))
    started = events(redis)[0]
    assert started.data["resumed_from_epoch"] == 3.0
    [note] = started.data["damaged_checkpoints"]
    assert note.startswith(f"{latest.name}: not a readable checkpoint"), note
    assert latest.with_name(latest.name + ".damaged").exists()  # kept for a look
    # Epoch 4 trained again from epoch 3's checkpoint: the uninterrupted run's numbers.
    assert second["status"] == "finished"
    assert without_files(epoch_events(redis)) == reference
    assert second["checkpoints"] == first["checkpoints"]
    assert load_checkpoint(latest).state.epoch == 4.0  # written anew, intact


def test_a_trial_whose_every_checkpoint_is_damaged_starts_over(
    redis: Redis, worker_env: Path
) -> None:
    first = run_trial(trial_job(keep_checkpoints="all"))
    reference = without_files(epoch_events(redis))
    files = sorted((worker_env / "sweep000003" / "stage1").glob("*.npz"))
    assert len(files) == 4
    for path in files:
        damage(path, "truncated")
    redis.delete(EVENT_STREAM)

    second = run_trial(trial_job(keep_checkpoints="all", attempt=2))
    started = events(redis)[0]
    assert started.data["resumed_from_epoch"] == 0.0
    assert len(started.data["damaged_checkpoints"]) == 4
    assert second["status"] == "finished" and second["val_acc"] == first["val_acc"]
    assert without_files(epoch_events(redis)) == reference


def test_an_attempt_cut_off_from_its_lease_writes_nothing_once_given_up(
    redis: Redis, worker_env: Path
) -> None:
    """As in a network partition longer than the lease: this attempt's lease was last renewed
    long ago, and when Redis answers again it learns the master gave its job up. It must
    not write (or prune) the trial's files, which a newer attempt elsewhere now owns."""
    rq_id = "trials-42-1"
    lifecycle.LEASE_RENEWED[rq_id] = time.monotonic() - 60
    later = threading.Timer(0.5, lifecycle.SUPERSEDED.add, args=(rq_id,))
    later.start()
    try:
        trial = TrialJob.from_dict(trial_job())
        outcome = jobs._run_one(trial, redis, WorkerSettings(), rq_id, "w")
    finally:
        later.cancel()
        lifecycle.SUPERSEDED.discard(rq_id)
        lifecycle.LEASE_RENEWED.pop(rq_id, None)
    assert outcome == {"status": "superseded"}
    assert list(worker_env.rglob("*.npz")) == []
    assert [e.kind for e in events(redis)] == [EventKind.STARTED]  # no epoch claimed


def test_an_attempt_with_a_fresh_lease_writes_as_usual(redis: Redis, worker_env: Path) -> None:
    rq_id = "trials-42-1"
    lifecycle.LEASE_RENEWED[rq_id] = time.monotonic()
    try:
        outcome = jobs._run_one(
            TrialJob.from_dict(trial_job()), redis, WorkerSettings(), rq_id, "w"
        )
    finally:
        lifecycle.LEASE_RENEWED.pop(rq_id, None)
    assert outcome["status"] == "finished"
    assert len(list(worker_env.rglob("*.npz"))) == 1  # best and latest: epoch 4


def latest_checkpoint(outcome: dict[str, Any]) -> str:
    return outcome["checkpoints"][-1]  # oldest epoch first


def test_a_promoted_trial_ends_exactly_as_one_trained_that_long_from_the_start(
    redis: Redis, worker_env: Path
) -> None:
    direct = run_trial(trial_job(trial_id=10, num_epochs=6, keep_checkpoints="all"))
    reference = epoch_events(redis)
    redis.delete(EVENT_STREAM)
    parent = run_trial(trial_job(trial_id=11, stage_index=0, num_epochs=2))
    inherited = epoch_events(redis)
    redis.delete(EVENT_STREAM)

    child = run_trial(trial_job(trial_id=12, num_epochs=6, resume_from=latest_checkpoint(parent)))

    assert child["status"] == "finished" and child["epochs_done"] == 6
    started = next(e for e in events(redis) if e.kind is EventKind.STARTED)
    assert started.data["resumed_from_epoch"] == 2.0
    # Its own epochs only (the master copies the parent's), which go on from the parent's
    # with no gap or duplicate: together, the run trained for 6 epochs from the start.
    own = epoch_events(redis)
    assert [e["epoch"] for e in own] == [3.0, 4.0, 5.0, 6.0]
    assert without_files(inherited + own) == without_files(reference)
    final = load_checkpoint(worker_env / latest_checkpoint(child))
    expected = load_checkpoint(worker_env / latest_checkpoint(direct))
    assert final.state.history.loss == expected.state.history.loss
    np.testing.assert_array_equal(final.model.flat, expected.model.flat)
    # Its own files only: the parent's stay the parent's.
    assert all("_trial000012_" in path for path in child["checkpoints"])


def test_a_promoted_trial_whose_parent_checkpoint_is_gone_trains_from_scratch(
    redis: Redis, worker_env: Path
) -> None:
    direct = run_trial(trial_job(trial_id=20, num_epochs=3))
    redis.delete(EVENT_STREAM)
    child = run_trial(
        trial_job(trial_id=21, num_epochs=3, resume_from="sweep000003/stage0/missing.npz")
    )
    assert child["status"] == "finished"
    assert child["val_acc"] == direct["val_acc"]  # the same seed and hyperparameters
    started = next(e for e in events(redis) if e.kind is EventKind.STARTED)
    assert started.data["resumed_from_epoch"] == 0.0  # the master counts all 3 as trained


def test_a_promoted_trial_rerun_resumes_from_its_own_checkpoint(
    redis: Redis, worker_env: Path
) -> None:
    parent = run_trial(trial_job(trial_id=30, stage_index=0, num_epochs=2))
    first = run_trial(trial_job(trial_id=31, num_epochs=5, resume_from=latest_checkpoint(parent)))
    redis.delete(EVENT_STREAM)
    again = run_trial(
        trial_job(trial_id=31, num_epochs=5, resume_from=latest_checkpoint(parent), attempt=2)
    )
    started = next(e for e in events(redis) if e.kind is EventKind.STARTED)
    assert started.data["resumed_from_epoch"] == 5.0  # its own final checkpoint, not the parent's
    assert again["val_acc"] == first["val_acc"] and again["train_seconds"] == 0.0


def test_a_promoted_trial_explodes_where_the_run_trained_from_the_start_does(
    redis: Redis, worker_env: Path
) -> None:
    # A run whose cost passes 1.15x its first at epoch 4.68 (of 59 iterations) and not
    # before: the kill compares with the parent's first cost, not the child's.
    run = {"hyperparameters": {"learning_rate": 1e-5, "update": "sgd", "batch_size": 20},
           "seed": 3, "explode_factor": 1.15}  # fmt: skip
    direct = run_trial(trial_job(trial_id=40, num_epochs=8, **run))
    assert direct["status"] == "exploded" and 4 < direct["epochs_done"] < 5
    parent = run_trial(trial_job(trial_id=41, stage_index=0, num_epochs=2, **run))
    assert parent["status"] == "finished"
    child = run_trial(
        trial_job(trial_id=42, num_epochs=8, resume_from=latest_checkpoint(parent), **run)
    )
    assert child["status"] == "exploded"
    assert child["epochs_done"] == direct["epochs_done"]
    assert child["reason"] == direct["reason"]  # the same iteration, cost and first cost


def test_a_promoted_trial_whose_best_epoch_is_its_parents_reports_that_best(
    redis: Redis, worker_env: Path
) -> None:
    # A learning rate high enough that the run peaks at epoch 2 and then does worse.
    hyperparameters = {"learning_rate": 2.0, "update": "momentum", "reg": 1e-4, "lr_decay": 1.0}
    run = {"hyperparameters": hyperparameters, "explode_factor": 1e9}
    direct = run_trial(trial_job(trial_id=50, num_epochs=6, keep_checkpoints="all", **run))
    assert direct["best_epoch"] <= 3  # within the parent's epochs
    parent = run_trial(trial_job(trial_id=51, stage_index=0, num_epochs=3, **run))
    redis.delete(EVENT_STREAM)
    child = run_trial(
        trial_job(trial_id=52, num_epochs=6, resume_from=latest_checkpoint(parent), **run)
    )
    assert (child["best_val_acc"], child["best_epoch"]) == (
        direct["best_val_acc"],
        direct["best_epoch"],
    )


def test_a_job_without_the_newer_fields_and_one_with_unknown_ones_both_parse() -> None:
    older = trial_job()
    assert "resume_from" not in older  # what a worker of the version before reads
    assert TrialJob.from_dict({**older, "from_a_newer_master": 1}).resume_from is None
