"""The master's background loop: consume worker events, walk sweeps through their stages,
keep RQ and the database in step.

- Events are read from the stream with a consumer group and acknowledged (and deleted) only
  after the transaction that applied them commits; on start the loop first re-reads what it
  had read but not acknowledged, so a master crash loses no event.
- Trials are committed before they are enqueued (master.sweeps); `enqueue_pending` queues
  every trial that has no job yet, and re-queues a queued trial whose job Redis lost.
- `requeue_dead` re-queues the open trials of jobs whose worker died: each running RQ job
  holds a lease its worker renews every second (worker.runner); once it expires the job's
  trials get a new attempt, which resumes from their latest checkpoint. Detection takes the
  lease's LEASE_SECONDS plus one reconcile period. It only runs once every event in the
  stream is applied, so a trial that ended, but whose ENDED event is still unread, is never
  taken for a dead one.
- `reconcile` also re-queues the open trials of jobs RQ marked failed (a trial tried
  MAX_ATTEMPTS times fails instead), and runs RQ's clean-up of jobs whose worker died.
Redis or database outages are retried with back-off; nothing is acknowledged meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from itertools import groupby
from typing import Any

from redis import Redis
from redis.exceptions import RedisError, ResponseError
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy import select, update

from core.messages import (
    EVENT_STREAM,
    LEASE_SECONDS,
    EventKind,
    TrialEvent,
    TrialJob,
    dead_job_key,
    job_id,
    lease_key,
)
from master.db import Database, DatabaseUnavailable
from master.events import (
    INTERRUPTED,
    apply_event,
    apply_events,
    end_cancelled,
    requeue,
    sweep_runs,
)
from master.models import Sweep, SweepStatus, Trial, TrialStatus, utcnow
from master.queueing import TrialQueue
from master.sweeps import advance_if_stage_done

log = logging.getLogger(__name__)
GROUP = "hpsearch-master"
CONSUMER = "master"  # one master: after a restart it re-reads its own pending events
BATCH = 200
ENQUEUE_BATCH = 500
MAX_BACKOFF_SECONDS = 5.0
MAX_ATTEMPTS = 3  # a trial whose worker dies this many times fails (it may be the cause)
DEAD_JOB_TTL_SECONDS = 24 * 3600
# RQ job statuses of a job a worker took: without a lease, nobody is running it any more.
LEFT_THE_QUEUE = {"started", "finished", "failed", "stopped"}
BATCH_MAX_EPOCHS = 1.0  # trials this short are batched
MAX_BATCH = 50
JOBS_PER_WORKER = 8


class Scheduler:
    def __init__(
        self, db: Database, redis: Redis, queue: TrialQueue, reconcile_seconds: float = 2.0
    ) -> None:
        self.db = db
        self.redis = redis
        self.queue = queue
        self.reconcile_seconds = reconcile_seconds
        self._group_ready = False
        self._pending_done = False
        self._caught_up = False  # the last read found fewer new events than a batch
        # The API's threads and the scheduler's both enqueue. Without this, `requeue_lost`
        # could see a trial committed with its job id but not yet in Redis, and enqueue it
        # a second time.
        self._enqueueing = threading.Lock()
        # After a Redis outage the workers need a moment to renew their leases.
        self._check_leases_after = 0.0
        self._stuck: set[str] = set()  # jobs last seen taken but not started, without a lease

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stopping: threading.Event, block_ms: int = 500) -> None:
        """Run until `stopping` is set."""
        backoff = 0.1
        next_reconcile = 0.0
        while not stopping.is_set():
            try:
                self.step(block_ms)
                if time.monotonic() >= next_reconcile:
                    self.reconcile()
                    next_reconcile = time.monotonic() + self.reconcile_seconds
                backoff = 0.1
            except (RedisError, DatabaseUnavailable, OSError) as exc:
                log.warning("scheduler: %s; retrying in %.1f s", exc, backoff)
                self._group_ready = False
                self._caught_up = False
                if isinstance(exc, RedisError):
                    self._check_leases_after = time.monotonic() + LEASE_SECONDS + 1
                stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception:  # never let one bad pass end the loop
                log.exception("scheduler pass failed")
                stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def step(self, block_ms: int = 0) -> int:
        """Read and apply one batch of events; returns how many were read."""
        self._ensure_group()
        # Our own unacknowledged events first (after a crash), then new ones.
        start_id = ">" if self._pending_done else "0"
        reply: Any = self.redis.xreadgroup(
            GROUP, CONSUMER, {EVENT_STREAM: start_id}, count=BATCH, block=block_ms or None
        )
        entries: list[tuple[Any, dict[Any, Any]]] = reply[0][1] if reply else []
        if start_id == "0" and not entries:
            self._pending_done = True
            return 0
        self._caught_up = start_id == ">" and len(entries) < BATCH
        if not entries:
            return 0
        events = []
        for entry_id, fields in entries:
            try:
                events.append(TrialEvent.from_fields(fields))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("dropping malformed event %s: %s", entry_id, exc)
        ended_sweeps = self._apply(events)
        ids = [entry_id for entry_id, _ in entries]
        with self.redis.pipeline() as pipe:
            pipe.xack(EVENT_STREAM, GROUP, *ids)
            pipe.xdel(EVENT_STREAM, *ids)
            pipe.execute()
        self.advance(ended_sweeps)
        if any(e.kind is EventKind.ENDED and e.data.get("status") == INTERRUPTED for e in events):
            self.enqueue_pending()
        return len(entries)

    def _apply(self, events: list[TrialEvent]) -> set[int]:
        try:
            with self.db.writing() as session:
                return apply_events(session, events)
        except DatabaseUnavailable:
            raise
        except Exception:
            log.exception("a batch of %d events failed; applying them one by one", len(events))
        ended: set[int] = set()
        for event in events:
            try:
                with self.db.writing() as session:
                    sweep_id = apply_event(session, event)
                if sweep_id is not None:
                    ended.add(sweep_id)
            except DatabaseUnavailable:
                raise
            except Exception:
                log.exception("dropping an event that cannot be applied: %s", event)
        return ended

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.redis.xgroup_create(EVENT_STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True
        self._pending_done = False

    # -- queueing ---------------------------------------------------------------------------

    def advance(self, sweep_ids: Iterable[int]) -> None:
        """After trials of these sweeps ended: start each next stage that is due, and queue
        its trials."""
        advanced = False
        for sweep_id in sweep_ids:
            with self.db.writing() as session:
                advanced |= advance_if_stage_done(session, sweep_id)
        if advanced:
            self.enqueue_pending()

    def enqueue_pending(self) -> int:
        """Give every queued trial of a running sweep that has no job one; returns how many."""
        with self._enqueueing:
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
                        jobs.append((rq_id, [trial_job(trial, spec) for trial, spec in batch]))
            # Committed first: a crash here leaves trials whose job is missing, which
            # `requeue_lost` puts back; never a job whose trial the database lacks.
            total += self.queue.enqueue(jobs)
            if len(rows) < ENQUEUE_BATCH:
                return total

    def requeue_lost(self) -> int:
        """Re-enqueue queued trials whose job Redis no longer has (e.g. Redis lost data)."""
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

    # -- reconciling with RQ ----------------------------------------------------------------

    def requeue_dead(self) -> int:
        """Give up the jobs a worker took but holds no lease on (it died): their open trials
        go back to the queue. Returns how many jobs."""
        if not self._caught_up or time.monotonic() < self._check_leases_after:
            return 0
        with self.db.reading() as session:
            rows = session.execute(
                select(Trial.job_id, Trial.status)
                .where(Trial.status.in_([TrialStatus.QUEUED, TrialStatus.RUNNING]))
                .where(Trial.job_id.is_not(None))
                .distinct()
            ).all()
        running: dict[str, bool] = {}
        for rq_id, status in rows:
            if rq_id is not None:
                running[rq_id] = running.get(rq_id, False) or status == TrialStatus.RUNNING
        if not running:
            return 0
        with self.redis.pipeline(transaction=False) as pipe:
            for rq_id in running:
                pipe.exists(lease_key(rq_id))
                pipe.hget(f"rq:job:{rq_id}", "status")
            replies = pipe.execute()
        leased = dict(zip(running, replies[::2], strict=True))
        statuses = {j: (s or b"").decode() for j, s in zip(running, replies[1::2], strict=True)}
        # Taken off the queue but never started, on two passes in a row (the first sighting
        # may fall between a worker's dequeue and its taking the lease): its worker died or
        # lost Redis in between.
        stuck_before = self._stuck
        self._stuck = {j for j in self.queue.taken_job_ids() if j in running and not leased[j]}
        dead = [
            rq_id
            for rq_id, has_running in running.items()
            if not leased[rq_id]
            and (
                has_running
                or statuses[rq_id] in LEFT_THE_QUEUE
                or rq_id in stuck_before & self._stuck
            )
        ]
        if dead:
            self._give_up(dead, None)
        return len(dead)

    def _give_up(self, rq_ids: list[str], reason: str | None) -> None:
        """The jobs `rq_ids` will not end their open trials: re-queue them (a trial tried
        MAX_ATTEMPTS times fails instead), and tell a worker still running one to stop."""
        with self.redis.pipeline(transaction=False) as pipe:
            for rq_id in rq_ids:
                pipe.set(dead_job_key(rq_id), 1, ex=DEAD_JOB_TTL_SECONDS)
            pipe.execute()
        ended: set[int] = set()
        with self.db.writing() as session:
            trials = session.scalars(
                select(Trial)
                .where(Trial.job_id.in_(rq_ids))
                .where(Trial.status.in_([TrialStatus.QUEUED, TrialStatus.RUNNING]))
                .with_for_update()
            ).all()
            for trial in trials:
                why = reason or (
                    f"worker {trial.worker} stopped answering at epoch {trial.epochs_done:g}"
                    if trial.status == TrialStatus.RUNNING
                    else "its batch's worker stopped answering before it started"
                )
                if not sweep_runs(session, trial):  # cancelled after the worker died
                    end_cancelled(trial, why)
                    ended.add(trial.sweep_id)
                elif trial.attempts >= MAX_ATTEMPTS:
                    trial.status = TrialStatus.FAILED
                    trial.reason = f"{why} (attempt {trial.attempts} of {MAX_ATTEMPTS})"
                    trial.finished_at = utcnow()
                    ended.add(trial.sweep_id)
                else:
                    log.warning("trial %s: %s; re-queued", trial.id, why)
                    requeue(trial, why)
        self.enqueue_pending()
        self.advance(ended)

    def reconcile(self) -> None:
        StartedJobRegistry(queue=self.queue.queue).cleanup()
        failed = FailedJobRegistry(queue=self.queue.queue)
        for rq_id in failed.get_job_ids():  # before requeue_dead, for RQ's better reason
            job = self.queue.fetch(rq_id)
            result = job.latest_result() if job is not None else None
            reason = _last_line(result) or "the worker ended the job without a result"
            self._give_up([rq_id], f"RQ failed its job: {reason}")
            failed.remove(rq_id)
        self.requeue_dead()
        self.enqueue_pending()
        self.requeue_lost()


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


def trial_job(trial: Trial, spec: dict[str, Any]) -> TrialJob:
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
    )


def _last_line(result: Any) -> str | None:
    text = getattr(result, "exc_string", None)
    if not text:
        return None
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else None
