"""The event consumer on a real Redis and database: what "every event applied" means, what
becomes of an event that cannot be applied, and when a read waits for more events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Worker
from sqlalchemy import select

from core.messages import EVENT_STREAM, EventKind, TrialEvent, TrialJob, job_id
from master import consuming
from master.consuming import UNAPPLIED_STREAM, EventConsumer
from master.db import Database
from master.models import Trial
from master.queueing import TrialQueue
from master.spec import SweepSpec
from master.sweeps import create_sweep
from tests.master.factories import example_spec
from tests.servers import wait_for


@pytest.fixture
def consumer(redis: Redis, tmp_path: Path) -> Iterator[EventConsumer]:
    db = Database(f"sqlite:///{tmp_path}/db.sqlite")
    db.create_tables()
    yield EventConsumer(db, redis)
    db.dispose()


def a_running_trial(consumer: EventConsumer) -> int:
    spec = SweepSpec.model_validate(example_spec(stages=[{"trials": 1, "epochs": 2}]))
    with consumer.db.writing() as session:
        create_sweep(session, spec)
        trial = session.scalars(select(Trial)).one()
        trial.attempts, trial.job_id = 1, job_id(trial.id, 1)
        return trial.id


def send(redis: Redis, event: TrialEvent) -> None:
    redis.xadd(EVENT_STREAM, event.to_fields())  # type: ignore[arg-type]


def test_all_applied_only_once_every_appended_event_is_acknowledged(
    consumer: EventConsumer, redis: Redis
) -> None:
    trial_id = a_running_trial(consumer)
    assert consumer.all_applied()  # an empty stream
    send(redis, TrialEvent(EventKind.STARTED, trial_id, 1, {"worker": "w"}))
    assert not consumer.all_applied()
    assert consumer.backlog().length == 1
    assert consumer.step().read == 1
    assert consumer.all_applied()
    assert consumer.backlog().length == 0 and consumer.backlog().oldest_age_seconds is None


def test_a_malformed_event_is_kept_with_its_error_and_the_rest_applied(
    consumer: EventConsumer, redis: Redis
) -> None:
    trial_id = a_running_trial(consumer)
    good = TrialEvent(EventKind.STARTED, trial_id, 1, {"worker": "w"})
    broken = TrialEvent(EventKind.EPOCH, trial_id, 1, {"epoch": 1.0})  # no accuracies
    send(redis, good)
    send(redis, broken)
    consumer.step()
    assert consumer.all_applied()  # acknowledged, so nothing waits on it
    entries: Any = redis.xrange(UNAPPLIED_STREAM)
    [(_, fields)] = entries
    assert TrialEvent.from_fields(fields).data == {"epoch": 1.0}
    assert fields[b"error"].startswith(b"ValueError: epoch event: ")
    assert b"'train_acc' and 'val_acc'" in fields[b"error"]
    assert consumer.backlog().unapplied == 1
    with consumer.db.reading() as session:  # the good one of the batch is applied
        assert session.get_one(Trial, trial_id).worker == "w"


def test_progress_waits_for_more_events_and_an_end_is_applied_at_once(
    consumer: EventConsumer, redis: Redis
) -> None:
    trial_id = a_running_trial(consumer)
    consumer.linger_seconds = 60.0
    consumer.step()  # creates the group and reads the (empty) backlog

    def read_unacknowledged() -> int:
        groups: Any = redis.xinfo_groups(EVENT_STREAM)
        return int(groups[0]["pending"])

    send(redis, TrialEvent(EventKind.STARTED, trial_id, 1, {"worker": "w"}))
    consumed: list[Any] = []
    step = threading.Thread(target=lambda: consumed.append(consumer.step()))
    step.start()
    wait_for(lambda: read_unacknowledged() == 1, 10, "the step to read the start")
    epoch = {"epoch": 1.0, "train_acc": 0.5, "val_acc": 0.4, "loss": [1.0]}
    send(redis, TrialEvent(EventKind.EPOCH, trial_id, 1, epoch))
    # Read and still not applied: the step waits for more instead of committing the start.
    wait_for(lambda: read_unacknowledged() == 2, 10, "the step to read the epoch too")
    assert step.is_alive() and not consumed
    send(redis, TrialEvent(EventKind.ENDED, trial_id, 1, {"status": "finished"}))
    step.join(timeout=30)
    assert not step.is_alive(), "the ENDED event did not end the wait for more"
    assert consumed[0].read == 3 and consumed[0].ended_sweeps  # one step, one transaction
    with consumer.db.reading() as session:
        assert session.get_one(Trial, trial_id).status == "finished"


def test_an_end_waits_for_more_events_while_every_worker_has_a_job_queued(
    consumer: EventConsumer, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    trial_id = a_running_trial(consumer)
    consumer.linger_seconds = 60.0
    asked: list[bool] = []

    def work_queued() -> bool:
        asked.append(True)
        return True

    consumer.work_queued = work_queued
    monkeypatch.setattr(consuming, "BATCH", 3)  # the third event ends the wait
    consumer.step()

    def read_unacknowledged() -> int:
        groups: Any = redis.xinfo_groups(EVENT_STREAM)
        return int(groups[0]["pending"])

    send(redis, TrialEvent(EventKind.STARTED, trial_id, 1, {"worker": "w"}))
    send(redis, TrialEvent(EventKind.ENDED, trial_id, 1, {"status": "finished"}))
    consumed: list[Any] = []
    step = threading.Thread(target=lambda: consumed.append(consumer.step()))
    step.start()
    wait_for(lambda: read_unacknowledged() == 2, 10, "the step to read the start and end")
    assert step.is_alive() and not consumed, "the ENDED event was applied at once"
    with consumer.db.reading() as session:
        assert session.get_one(Trial, trial_id).status == "queued"
    send(redis, TrialEvent(EventKind.STARTED, trial_id, 1, {"worker": "w"}))
    step.join(timeout=30)
    assert not step.is_alive()
    assert consumed[0].read == 3 and consumed[0].ended_sweeps
    assert asked == [True]  # asked once for the read, not once per event
    with consumer.db.reading() as session:
        assert session.get_one(Trial, trial_id).status == "finished"


def test_a_job_per_worker_queued_counts_the_queue_against_its_registered_workers(
    redis: Redis,
) -> None:
    queue = TrialQueue(redis, "hpsearch")
    assert not queue.job_per_worker_queued()  # nothing queued, no worker
    workers = [Worker([queue.queue], name=f"w{i}", connection=redis) for i in range(2)]
    for worker in workers:
        worker.register_birth()
    trial = TrialJob(1, 1, 0, "digits", {}, 1.0, 0, 3.0)
    queue.enqueue([("job-1", [trial])])
    assert not queue.job_per_worker_queued()  # one job for two workers
    queue.enqueue([("job-2", [trial])])
    assert queue.job_per_worker_queued()
    for worker in workers:
        worker.register_death()
