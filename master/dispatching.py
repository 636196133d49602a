"""Dispatching: giving queued trials RQ jobs, and starting a sweep's next stage when due.

Trials are committed before they are enqueued (master.sweeps): `enqueue_pending` queues
every queued trial of a running sweep that has no job yet, batching short trials several to
a job. The API's threads and the scheduler's both call it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from itertools import groupby
from typing import Any

from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.contract import BUILTIN
from core.messages import TrialJob, job_id
from master.db import Database
from master.models import Sweep, SweepStatus, Trial, TrialStatus
from master.queueing import TrialQueue
from master.sweeps import advance_if_stage_done

log = logging.getLogger(__name__)
ENQUEUE_BATCH = 500
BATCH_MAX_EPOCHS = 5.0  # trials this short are batched (a budget's first stage trains 3)
MAX_BATCH = 50
JOBS_PER_WORKER = 8


class Dispatcher:
    def __init__(self, db: Database, redis: Redis, queue: TrialQueue) -> None:
        self.db = db
        self.redis = redis
        self.queue = queue
        # Without it, `requeue_lost` could see a trial committed with its job id but not yet
        # in Redis, and enqueue it a second time.
        self._enqueueing = threading.Lock()

    def advance(self, sweep_ids: Iterable[int]) -> set[int]:
        """After trials of these sweeps ended: start each next stage that is due, and queue
        its trials. Returns the sweeps that changed (a stage started or ended, trials were
        promoted, the sweep ended)."""
        advanced = set()
        failed = []
        for sweep_id in sweep_ids:
            with self.db.writing() as session:
                if not advance_if_stage_done(session, sweep_id):
                    continue
                advanced.add(sweep_id)
                sweep = session.get(Sweep, sweep_id)
                if sweep is not None and sweep.status == SweepStatus.FAILED:
                    failed.append(sweep_id)
        for sweep_id in failed:  # its running trials stop, its queued ones never start
            self.queue.request_stop(sweep_id=sweep_id)
        if advanced:
            self.enqueue_pending()
        return advanced

    def advance_running(self) -> set[int]:
        """advance() for every running sweep: the reconcile pass's catch-up for a stage end
        that no ended trial moved on (the database went away between applying the last
        ENDED event and advancing, or the master died there; the event is acknowledged by
        then, and nothing else would ever end that stage)."""
        with self.db.reading() as session:
            running = session.scalars(
                select(Sweep.id).where(Sweep.status == SweepStatus.RUNNING)
            ).all()
        return self.advance(running)

    def enqueue_pending(self) -> int:
        """Give every queued trial of a running sweep that has no job one; returns how many
        jobs."""
        with self._enqueueing:
            return self._enqueue_pending()

    def requeue_lost(self) -> int:
        """Re-enqueue queued trials whose job Redis no longer has (e.g. Redis lost its data).
        Only for a caller that knows every event is applied (master.liveness): a trial whose
        job ended, and whose record expired, while its events waited is not lost."""
        with self._enqueueing:
            with self.db.reading() as session:
                open_jobs = session.scalars(
                    select(Trial.job_id)
                    .join(Sweep, Sweep.id == Trial.sweep_id)
                    .where(Trial.status == TrialStatus.QUEUED, Trial.job_id.is_not(None))
                    .where(Sweep.status == SweepStatus.RUNNING)
                    .distinct()
                ).all()
            if not open_jobs:
                return 0
            with self.redis.pipeline(transaction=False) as pipe:
                for rq_id in open_jobs:
                    pipe.exists(f"rq:job:{rq_id}")
                present = pipe.execute()
            lost = [rq_id for rq_id, exists in zip(open_jobs, present, strict=True) if not exists]
            if not lost:
                return 0
            log.warning("%d jobs missing from Redis; enqueueing their trials again", len(lost))
            with self.db.writing() as session:
                session.execute(
                    update(Trial)
                    .where(Trial.job_id.in_(lost), Trial.status == TrialStatus.QUEUED)
                    .values(job_id=None)
                )
            return self._enqueue_pending()

    def _enqueue_pending(self) -> int:
        total = 0
        workers: int | None = None
        while True:
            with self.db.writing() as session:
                rows = session.execute(
                    select(Trial, Sweep.spec)
                    .join(Sweep, Sweep.id == Trial.sweep_id)
                    .where(
                        Trial.status == TrialStatus.QUEUED,
                        Trial.job_id.is_(None),
                        Sweep.status == SweepStatus.RUNNING,
                    )
                    .order_by(Trial.id)
                    .limit(ENQUEUE_BATCH)
                    # The API and the scheduler both enqueue: a row one of them holds is
                    # skipped by the other (PostgreSQL; SQLite's BEGIN IMMEDIATE serializes).
                    .with_for_update(of=Trial, skip_locked=True)
                ).all()
                if rows and workers is None:
                    workers = self.queue.worker_count()
                resume = _parent_checkpoints(session, [trial for trial, _ in rows])
                jobs = []
                for _, group in groupby(rows, key=_stage_of):
                    stage_rows = list(group)
                    size = batch_size(len(stage_rows), workers or 1, stage_rows[0][0].num_epochs)
                    for start in range(0, len(stage_rows), size):
                        batch = stage_rows[start : start + size]
                        for trial, _ in batch:
                            trial.attempts += 1
                        rq_id = job_id(batch[0][0].id, batch[0][0].attempts)
                        for trial, _ in batch:
                            trial.job_id = rq_id
                        jobs.append(
                            (rq_id, [trial_job(t, spec, resume.get(t.id)) for t, spec in batch])
                        )
            # Committed first: a crash here leaves trials whose job is missing, which
            # `requeue_lost` puts back; never a job whose trial the database lacks.
            total += self.queue.enqueue(jobs)
            if len(rows) < ENQUEUE_BATCH:
                return total


def _stage_of(row: Any) -> tuple[int, int]:
    return row[0].sweep_id, row[0].stage_index


def batch_size(count: int, workers: int, epochs: float) -> int:
    """How many trials of a stage go into one RQ job. Short trials are batched, so that RQ's
    per-job cost (13 ms here, more than a one-epoch trial on small data) is paid once per
    batch; at least JOBS_PER_WORKER jobs per worker keep every worker busy to the stage's
    end. Longer trials go one per job: their cost dwarfs RQ's, and one per job balances
    the workers best."""
    if epochs > BATCH_MAX_EPOCHS:
        return 1
    return max(1, min(MAX_BATCH, count // (max(1, workers) * JOBS_PER_WORKER)))


def _parent_checkpoints(session: Session, trials: list[Trial]) -> dict[int, str]:
    """Promoted trial -> the latest checkpoint of the trial it goes on from."""
    parents = {t.id: t.parent_id for t in trials if t.parent_id is not None}
    if not parents:
        return {}
    query = select(Trial.id, Trial.checkpoints).where(Trial.id.in_(set(parents.values())))
    files: dict[int, list[Any]] = {trial_id: paths for trial_id, paths in session.execute(query)}
    # A trial's files are listed oldest epoch first (core.messages.CheckpointFiles).
    return {child: files[parent][-1] for child, parent in parents.items() if files.get(parent)}


def trial_job(trial: Trial, spec: dict[str, Any], resume_from: str | None = None) -> TrialJob:
    return TrialJob(
        trial_id=trial.id,
        sweep_id=trial.sweep_id,
        stage_index=trial.stage_index,
        dataset=spec["dataset"],
        hyperparameters=trial.hyperparameters,
        num_epochs=trial.num_epochs,
        seed=trial.seed,
        explode_factor=spec["explode_factor"],
        keep_checkpoints=spec.get("keep_checkpoints", "best_and_latest"),
        attempt=trial.attempts,
        resume_from=resume_from,
        trainer=spec.get("trainer", BUILTIN),
    )
