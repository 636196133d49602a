"""Judging liveness: which jobs will never end their trials, and what becomes of those trials.

- A running RQ job holds a lease its worker renews every second (worker.runner). A job a
  worker took whose lease expired lost its worker: its open trials get a new attempt, which
  resumes from their latest checkpoint, and the job is marked dead (core.messages
  dead_job_key) so that a worker that was only cut off ends it when it sees Redis again.
  Detection takes the lease's LEASE_SECONDS plus one pass.
- A job RQ failed (its function raised, or RQ's own clean-up gave it up) is treated alike,
  with RQ's reason.
- A queued trial whose job Redis lost is enqueued again (master.dispatching).
- A trial whose worker died MAX_ATTEMPTS times (Trial.lost_attempts: clean shutdowns, which
  re-queue it too, do not count) fails; one whose sweep was cancelled
  meanwhile ends stopped (nothing would dispatch it again).

Nothing is judged while an event may wait unapplied (`events_applied`), nor for a grace
period after Redis came back (workers need a moment to renew their leases): a trial that
ended, but whose ENDED event is still unread, must never be taken for a dead one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from redis import Redis
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy import select

from core.messages import ENSEMBLE_JOB_PREFIX, LEASE_SECONDS, dead_job_key, lease_key
from master.db import Database
from master.dispatching import Dispatcher
from master.events import end_cancelled, requeue, sweep_runs
from master.models import Trial, TrialStatus, utcnow
from master.queueing import TrialQueue

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # a trial whose worker dies this many times fails (it may be the cause)
DEAD_JOB_TTL_SECONDS = 24 * 3600
# After a Redis outage, until the workers have renewed their leases.
REDIS_OUTAGE_GRACE_SECONDS = LEASE_SECONDS + 1
# RQ job statuses of a job a worker took: without a lease, nobody is running it any more.
LEFT_THE_QUEUE = {"started", "finished", "failed", "stopped"}


class Liveness:
    def __init__(
        self,
        db: Database,
        redis: Redis,
        queue: TrialQueue,
        dispatcher: Dispatcher,
        events_applied: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.redis = redis
        self.queue = queue
        self.dispatcher = dispatcher
        self.events_applied = events_applied
        self.clock = clock
        self._judge_after = 0.0
        self._stuck: set[str] = set()  # jobs last seen taken but not started, without a lease

    def redis_was_down(self) -> None:
        self._judge_after = self.clock() + REDIS_OUTAGE_GRACE_SECONDS

    def ready(self) -> bool:
        """Whether what the database and Redis show can be judged now."""
        return self.clock() >= self._judge_after and self.events_applied()

    def judge(self) -> int:
        """One pass of every rule; returns how many jobs were given up."""
        StartedJobRegistry(queue=self.queue.queue).cleanup()
        if not self.ready():
            return 0
        given_up = self.give_up_failed() + self.requeue_dead()
        self.dispatcher.requeue_lost()
        return given_up

    def give_up_failed(self) -> int:
        """Give up the jobs in RQ's failed registry, with RQ's reason."""
        failed = FailedJobRegistry(queue=self.queue.queue)
        # An ensemble's failed job is master.evaluating's to record.
        rq_ids = [j for j in failed.get_job_ids() if not j.startswith(ENSEMBLE_JOB_PREFIX)]
        for rq_id in rq_ids:
            job = self.queue.fetch(rq_id)
            result = job.latest_result() if job is not None else None
            reason = _last_line(result) or "the worker ended the job without a result"
            self.give_up([rq_id], f"RQ failed its job: {reason}")
            failed.remove(rq_id)
        return len(rq_ids)

    def requeue_dead(self) -> int:
        """Give up the jobs a worker took but holds no lease on (it died): their open trials
        go back to the queue. Returns how many jobs. The caller checks `ready()` first."""
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
            self.give_up(dead, None)
        return len(dead)

    def give_up(self, rq_ids: list[str], reason: str | None) -> None:
        """The jobs `rq_ids` will not end their open trials: re-queue them, and tell a worker
        still running one to stop."""
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
                    continue
                trial.lost_attempts += 1
                if trial.lost_attempts >= MAX_ATTEMPTS:
                    trial.status = TrialStatus.FAILED
                    trial.reason = (
                        f"{why} (its worker was lost {trial.lost_attempts} times, attempt "
                        f"{trial.attempts})"
                    )
                    trial.finished_at = utcnow()
                    ended.add(trial.sweep_id)
                else:
                    log.warning("trial %s: %s; re-queued", trial.id, why)
                    requeue(trial, why)
        self.dispatcher.enqueue_pending()
        self.dispatcher.advance(ended)


def _last_line(result: Any) -> str | None:
    text = getattr(result, "exc_string", None)
    if not text:
        return None
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else None
