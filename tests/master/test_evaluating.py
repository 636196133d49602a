"""Ensembles in the master: which files make one, k chosen on validation only, and following
their jobs on a real Redis (queued, stopped, lost and enqueued again, failed for good)."""

from __future__ import annotations

from redis import Redis
from sqlalchemy import select

from core.checkpoint import checkpoint_name
from core.messages import EnsemblePoint as Point
from core.messages import EnsembleResult, MemberScore, ensemble_stop_key
from master.db import Database
from master.evaluating import (
    MAX_ATTEMPTS,
    Evaluations,
    apply_result,
    best_checkpoint,
    choose_k,
    create_ensemble,
    top_k_members,
)
from master.models import Ensemble, EnsembleKind, Sweep, SweepStatus, Trial, TrialStatus
from master.queueing import TrialQueue
from master.spec import SweepSpec
from master.sweeps import create_sweep
from tests.master.factories import example_spec


def ended_sweep(db: Database, scores: list[float], status: str = "finished") -> int:
    """A sweep whose first stage's trials ended with these best accuracies, one file each
    named as the worker names it."""
    spec = SweepSpec.model_validate(example_spec(stages=[{"trials": len(scores), "epochs": 2}]))
    with db.writing() as session:
        sweep = create_sweep(session, spec)
        session.flush()
        trials = session.scalars(select(Trial).where(Trial.sweep_id == sweep.id)).all()
        for trial, score in zip(sorted(trials, key=lambda t: t.id), scores, strict=True):
            trial.status = TrialStatus.FINISHED
            trial.best_val_acc, trial.best_epoch, trial.epochs_done = score, 2.0, 2.0
            trial.checkpoints = [f"s/stage0/{checkpoint_name(score, trial.id, 2)}"]
        sweep.status = SweepStatus(status)
        return sweep.id


def test_top_k_takes_the_best_runs_once_each(db: Database) -> None:
    sweep_id = ended_sweep(db, [0.5, 0.9, 0.7, 0.8])
    with db.writing() as session:
        trials = sorted(session.scalars(select(Trial)).all(), key=lambda t: t.id)
        # Trial 1 (0.9) was promoted on as a child whose best epoch is its parent's.
        child = Trial(
            sweep_id=sweep_id, stage_index=1, index=0, parent_id=trials[1].id, start_epoch=2.0,
            hyperparameters={}, seed=1, num_epochs=6.0, status=TrialStatus.FINISHED,
            best_val_acc=0.9, best_epoch=2.0, epochs_done=6.0,
            checkpoints=["s/stage1/" + checkpoint_name(0.85, 99, 6)],
        )  # fmt: skip
        session.add(child)
        session.flush()
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
        members = top_k_members(session, sweep, 3)
        # The parent is the child's run: it counts once, as the child, by the parent's file.
        assert [m["trial_id"] for m in members] == [child.id, trials[3].id, trials[2].id]
        assert members[0]["checkpoint"] == trials[1].checkpoints[0]
        assert best_checkpoint(child, {t.id: t for t in trials}.get) == trials[1].checkpoints[0]


def test_k_is_chosen_on_validation_and_ties_go_to_the_smaller() -> None:
    curve = [
        {"k": 1, "val_acc": 0.90, "test_acc": 0.80},
        {"k": 2, "val_acc": 0.92, "test_acc": 0.70},
        {"k": 3, "val_acc": 0.92, "test_acc": 0.99},
        {"k": 4, "val_acc": 0.91, "test_acc": 1.00},
    ]
    assert choose_k(curve) == curve[1]  # test accuracy plays no part


def test_a_stopped_evaluation_keeps_what_it_scored(db: Database) -> None:
    sweep_id = ended_sweep(db, [0.5, 0.9])
    with db.writing() as session:
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
        ensemble = create_ensemble(session, sweep, EnsembleKind.TOP_K, {"max_k": 2})
        result = EnsembleResult("stopped", [MemberScore(0.9, 0.8)], [Point(1, 0.9, 0.8)], True)
        apply_result(ensemble, result)
        assert ensemble.status == TrialStatus.STOPPED and ensemble.k == 1
        assert ensemble.reason == "stopped after 1 of 2 members"
        assert ensemble.members[0]["test_acc"] == 0.8 and "val_acc" not in ensemble.members[1]


def evaluations(db: Database, redis: Redis) -> tuple[Evaluations, TrialQueue]:
    queue = TrialQueue(redis, "hpsearch")
    return Evaluations(db, redis, queue), queue


def new_ensemble(db: Database) -> int:
    sweep_id = ended_sweep(db, [0.5, 0.9])
    with db.writing() as session:
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
        return create_ensemble(session, sweep, EnsembleKind.TOP_K, {"max_k": 2}).id


def read(db: Database, ensemble_id: int) -> Ensemble:
    with db.reading() as session:
        ensemble = session.get(Ensemble, ensemble_id)
        assert ensemble is not None
        session.expunge(ensemble)
        return ensemble


def test_a_queued_evaluation_stops_at_once_and_leaves_the_queue(db: Database, redis: Redis) -> None:
    runner, queue = evaluations(db, redis)
    ensemble_id = new_ensemble(db)
    assert runner.enqueue_pending() == 1
    rq_id = read(db, ensemble_id).job_id
    assert rq_id is not None and rq_id in queue.queue.job_ids
    runner.stop(ensemble_id)
    stopped = read(db, ensemble_id)
    assert stopped.status == TrialStatus.STOPPED and stopped.reason == "stopped before it started"
    assert rq_id not in queue.queue.job_ids
    assert redis.exists(ensemble_stop_key(ensemble_id))  # should a worker have taken it
    runner.follow()
    assert read(db, ensemble_id).status == TrialStatus.STOPPED


def test_a_lost_job_is_enqueued_again_until_its_attempts_run_out(
    db: Database, redis: Redis
) -> None:
    runner, queue = evaluations(db, redis)
    ensemble_id = new_ensemble(db)
    runner.enqueue_pending()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        current = read(db, ensemble_id)
        assert current.attempts == attempt and current.job_id == f"ensemble-{ensemble_id}-{attempt}"
        assert current.job_id is not None
        queue.cancel([current.job_id])  # Redis lost it (flushed, restarted without data)
        runner.follow()
    failed = read(db, ensemble_id)
    assert failed.status == TrialStatus.FAILED
    assert failed.reason == f"its job was lost from Redis (attempt {MAX_ATTEMPTS} of 3)"


def test_a_started_job_without_a_lease_is_lost_on_the_second_pass(
    db: Database, redis: Redis
) -> None:
    runner, _ = evaluations(db, redis)
    ensemble_id = new_ensemble(db)
    runner.enqueue_pending()
    rq_id = read(db, ensemble_id).job_id
    redis.hset(f"rq:job:{rq_id}", "status", "started")  # taken by a worker that then died
    runner.follow()
    assert read(db, ensemble_id).status == TrialStatus.RUNNING  # one pass may be a race
    runner.follow()
    again = read(db, ensemble_id)
    assert again.status == TrialStatus.QUEUED and again.attempts == 2
    assert again.reason == "its worker stopped answering; enqueued again"


def test_a_job_taken_by_a_worker_that_died_before_starting_it_is_lost(
    db: Database, redis: Redis
) -> None:
    runner, queue = evaluations(db, redis)
    ensemble_id = new_ensemble(db)
    runner.enqueue_pending()
    rq_id = read(db, ensemble_id).job_id
    assert rq_id is not None
    # What a worker's dequeue does, without the worker living on to start the job.
    redis.lmove(queue.queue.key, queue.queue.intermediate_queue.key, "LEFT", "RIGHT")
    assert rq_id in queue.taken_job_ids()
    runner.follow()
    assert read(db, ensemble_id).attempts == 1
    runner.follow()
    again = read(db, ensemble_id)
    assert again.status == TrialStatus.QUEUED and again.attempts == 2
    assert again.job_id in queue.queue.job_ids
