"""The scheduler gives up jobs whose worker died, judged by their leases in a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import select

from core.messages import lease_key
from master.db import Database
from master.models import Trial
from master.queueing import TrialQueue
from master.scheduler import Scheduler
from master.spec import SweepSpec
from master.sweeps import create_sweep
from tests.master.factories import example_spec


@pytest.fixture
def scheduler(redis: Redis, tmp_path: Path) -> Iterator[Scheduler]:
    db = Database(f"sqlite:///{tmp_path}/db.sqlite")
    db.create_tables()
    scheduler = Scheduler(db, redis, TrialQueue(redis, "hpsearch"))
    spec = SweepSpec.model_validate(example_spec(stages=[{"trials": 1, "epochs": 5}]))
    with db.writing() as session:
        create_sweep(session, spec)
    scheduler.enqueue_pending()
    scheduler._caught_up = True  # as after a read of every event in the stream
    yield scheduler
    db.dispose()


def the_trial(scheduler: Scheduler) -> Trial:
    with scheduler.db.reading() as session:
        return session.scalars(select(Trial)).one()


def test_a_job_taken_but_never_started_is_given_up_on_the_second_pass(
    scheduler: Scheduler, redis: Redis
) -> None:
    queue = scheduler.queue.queue
    # A worker moved the job to RQ's intermediate queue, then died before taking its lease.
    redis.lmove(queue.key, queue.intermediate_queue.key)
    first = the_trial(scheduler).job_id
    assert scheduler.requeue_dead() == 0  # it may be between its dequeue and its lease
    assert scheduler.requeue_dead() == 1
    trial = the_trial(scheduler)
    assert trial.status == "queued" and trial.attempts == 2 and trial.job_id != first
    assert trial.job_id in queue.get_job_ids()


def test_a_job_with_a_lease_is_left_alone(scheduler: Scheduler, redis: Redis) -> None:
    queue = scheduler.queue.queue
    redis.lmove(queue.key, queue.intermediate_queue.key)
    redis.set(lease_key(str(the_trial(scheduler).job_id)), "w", ex=5)
    assert scheduler.requeue_dead() == 0
    assert scheduler.requeue_dead() == 0
    assert the_trial(scheduler).attempts == 1


def test_a_queued_job_is_left_alone(scheduler: Scheduler) -> None:
    assert scheduler.requeue_dead() == 0
    assert scheduler.requeue_dead() == 0
    assert the_trial(scheduler).attempts == 1
