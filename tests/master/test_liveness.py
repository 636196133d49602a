"""The liveness rules, judged by leases and event-stream state in a real Redis, with the
clock injected: dead workers' jobs, jobs Redis lost, MAX_ATTEMPTS, the refusals to judge."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import select

from core.messages import EventKind, TrialEvent, dead_job_key, lease_key
from master.consuming import EventConsumer
from master.db import Database
from master.dispatching import Dispatcher
from master.liveness import MAX_ATTEMPTS, REDIS_OUTAGE_GRACE_SECONDS, Liveness
from master.models import Sweep, SweepStatus, Trial, TrialStatus
from master.queueing import TrialQueue
from master.spec import SweepSpec
from master.sweeps import create_sweep
from tests.master.factories import example_spec
from worker.lifecycle import SUPERSEDED
from worker.runner import _Lease, make_worker


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Parts:
    db: Database
    redis: Redis
    queue: TrialQueue
    dispatcher: Dispatcher
    consumer: EventConsumer
    liveness: Liveness
    clock: Clock


@pytest.fixture
def parts(redis: Redis, tmp_path: Path) -> Iterator[Parts]:
    db = Database(f"sqlite:///{tmp_path}/db.sqlite")
    db.create_tables()
    queue = TrialQueue(redis, "hpsearch")
    dispatcher = Dispatcher(db, redis, queue)
    consumer = EventConsumer(db, redis)
    clock = Clock()
    liveness = Liveness(db, redis, queue, dispatcher, consumer.all_applied, clock)
    spec = SweepSpec.model_validate(example_spec(stages=[{"trials": 1, "epochs": 5}]))
    with db.writing() as session:
        create_sweep(session, spec)
    dispatcher.enqueue_pending()
    consumer.step()  # makes the consumer group: every event (none yet) is applied
    yield Parts(db, redis, queue, dispatcher, consumer, liveness, clock)
    db.dispose()


def the_trial(parts: Parts) -> Trial:
    with parts.db.reading() as session:
        return session.scalars(select(Trial)).one()


def run_without_a_worker(parts: Parts) -> Trial:
    """The trial as a worker that then died left it: taken, started, reported, no lease."""
    queue = parts.queue.queue
    parts.redis.lmove(queue.key, queue.intermediate_queue.key)
    trial = the_trial(parts)
    started = TrialEvent(EventKind.STARTED, trial.id, trial.attempts, {"worker": "w"})
    parts.redis.xadd("hpsearch:events", started.to_fields())  # type: ignore[arg-type]
    parts.consumer.step()
    assert the_trial(parts).status == TrialStatus.RUNNING
    return trial


def test_a_job_taken_but_never_started_is_given_up_on_the_second_pass(parts: Parts) -> None:
    queue = parts.queue.queue
    # A worker moved the job to RQ's intermediate queue, then died before taking its lease.
    parts.redis.lmove(queue.key, queue.intermediate_queue.key)
    first = the_trial(parts).job_id
    assert parts.liveness.requeue_dead() == 0  # it may be between its dequeue and its lease
    assert parts.liveness.requeue_dead() == 1
    trial = the_trial(parts)
    assert trial.status == "queued" and trial.attempts == 2 and trial.job_id != first
    assert trial.job_id in queue.get_job_ids()


def test_a_job_with_a_lease_is_left_alone(parts: Parts) -> None:
    trial = run_without_a_worker(parts)
    parts.redis.set(lease_key(str(trial.job_id)), "w", ex=5)
    assert parts.liveness.judge() == 0
    assert parts.liveness.judge() == 0
    assert the_trial(parts).attempts == 1


def test_a_queued_job_is_left_alone(parts: Parts) -> None:
    assert parts.liveness.judge() == 0
    assert parts.liveness.judge() == 0
    assert the_trial(parts).attempts == 1


def test_a_running_trial_without_a_lease_is_requeued_and_its_job_marked_dead(
    parts: Parts,
) -> None:
    trial = run_without_a_worker(parts)
    assert parts.liveness.judge() == 1
    after = the_trial(parts)
    assert (after.status, after.attempts) == (TrialStatus.QUEUED, 2)
    assert after.reason == "worker w stopped answering at epoch 0; re-queued"
    assert parts.redis.exists(dead_job_key(str(trial.job_id)))


def test_nothing_is_judged_while_an_event_waits_unread(parts: Parts) -> None:
    trial = run_without_a_worker(parts)
    # Its worker finished it and let the lease lapse; its ENDED event is not read yet.
    ended = TrialEvent(EventKind.ENDED, trial.id, 1, {"status": "finished", "epochs_done": 5})
    parts.redis.xadd("hpsearch:events", ended.to_fields())  # type: ignore[arg-type]
    assert not parts.consumer.all_applied()
    assert parts.liveness.judge() == 0
    assert the_trial(parts).attempts == 1
    parts.consumer.step()
    assert parts.consumer.all_applied()
    assert parts.liveness.judge() == 0  # ended: nothing to judge
    assert (the_trial(parts).status, the_trial(parts).attempts) == (TrialStatus.FINISHED, 1)


def test_nothing_is_judged_for_a_grace_period_after_redis_came_back(parts: Parts) -> None:
    run_without_a_worker(parts)
    parts.liveness.redis_was_down()
    parts.clock.now += REDIS_OUTAGE_GRACE_SECONDS - 0.1
    assert parts.liveness.judge() == 0
    parts.clock.now += 0.2
    assert parts.liveness.judge() == 1


def test_the_last_lost_worker_allowed_fails_the_trial(parts: Parts) -> None:
    run_without_a_worker(parts)
    with parts.db.writing() as session:
        trial = session.scalars(select(Trial)).one()
        trial.lost_attempts = MAX_ATTEMPTS - 1
    assert parts.liveness.judge() == 1
    after = the_trial(parts)
    assert after.status == TrialStatus.FAILED and after.lost_attempts == MAX_ATTEMPTS
    assert after.reason == (
        f"worker w stopped answering at epoch 0 (its worker was lost {MAX_ATTEMPTS} times, "
        f"attempt {after.attempts})"
    )


def test_clean_shutdowns_do_not_use_up_the_attempts_a_dead_worker_has(parts: Parts) -> None:
    # Five attempts so far, each re-queued by a worker's clean shutdown: none was lost.
    run_without_a_worker(parts)
    with parts.db.writing() as session:
        session.scalars(select(Trial)).one().attempts = 5
    assert parts.liveness.judge() == 1  # now its worker died
    after = the_trial(parts)
    assert after.status == TrialStatus.QUEUED and after.lost_attempts == 1  # re-queued


def test_a_queued_trial_whose_job_redis_lost_is_enqueued_again(parts: Parts) -> None:
    lost = str(the_trial(parts).job_id)
    parts.redis.delete(f"rq:job:{lost}")
    parts.redis.delete(parts.queue.queue.key)
    parts.liveness.judge()
    trial = the_trial(parts)
    assert trial.attempts == 2 and trial.job_id != lost
    assert trial.job_id in parts.queue.queue.get_job_ids()


def test_a_lost_job_is_not_judged_while_its_trials_events_wait(parts: Parts) -> None:
    """As after a master down for longer than RQ keeps a finished job: the job's record
    expired, but its trial's events are still in the stream."""
    trial = the_trial(parts)
    parts.redis.delete(f"rq:job:{trial.job_id}")
    started = TrialEvent(EventKind.STARTED, trial.id, 1, {"worker": "w"})
    parts.redis.xadd("hpsearch:events", started.to_fields())  # type: ignore[arg-type]
    parts.liveness.judge()
    assert the_trial(parts).attempts == 1


def test_a_worker_sees_the_dead_mark_and_ends_its_job(parts: Parts) -> None:
    worker = make_worker(parts.redis, ["hpsearch"])
    [job] = parts.queue.queue.get_jobs()
    lease = _Lease(worker, job)
    lease.renew()
    assert job.id not in SUPERSEDED
    parts.redis.set(dead_job_key(job.id), 1)
    lease.renew()
    assert job.id in SUPERSEDED
    SUPERSEDED.discard(job.id)


def test_a_stage_end_no_ended_trial_moved_on_is_caught_up_by_the_reconcile_pass(
    parts: Parts,
) -> None:
    # The last trial's end applied and acknowledged, then the advance that follows it lost
    # (the database went away in between): nothing but the reconcile pass ends the sweep.
    trial = the_trial(parts)
    for kind, data in (
        (EventKind.STARTED, {"worker": "w"}),
        (EventKind.ENDED, {"status": "finished", "epochs_done": 5.0, "val_acc": 0.5}),
    ):
        event = TrialEvent(kind, trial.id, trial.attempts, data)
        parts.redis.xadd("hpsearch:events", event.to_fields())  # type: ignore[arg-type]
    parts.consumer.step()
    with parts.db.reading() as session:
        assert session.scalars(select(Sweep.status)).one() == SweepStatus.RUNNING
    assert parts.dispatcher.advance_running() == {trial.sweep_id}
    with parts.db.reading() as session:
        assert session.scalars(select(Sweep.status)).one() == SweepStatus.FINISHED
    assert parts.dispatcher.advance_running() == set()  # nothing left to move on
