"""The master's side of Redis: putting trials on the RQ queue, taking them off, stopping them.

Jobs name their function by its import path ("worker.jobs.run_trials"), so the master never
imports worker code, and carry one JSON argument: a batch of core.messages.TrialJob.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from core.messages import STOP_TTL_SECONDS, EnsembleJob, TrialJob, stop_key, sweep_stop_key

log = logging.getLogger(__name__)
JOB_FUNCTION = "worker.jobs.run_trials"
ENSEMBLE_FUNCTION = "worker.ensembles.run_ensemble"
FAILURE_TTL_SECONDS = 7 * 24 * 3600


class TrialQueue:
    def __init__(self, redis: Redis, name: str, result_ttl_seconds: int = 600) -> None:
        self.redis = redis
        self.queue = Queue(name, connection=redis, serializer=JSONSerializer)
        # How long a finished job's record stays: nothing depends on it once its events
        # are applied, since trials are judged by the database and leases.
        self.result_ttl_seconds = result_ttl_seconds

    def enqueue(self, jobs: Iterable[tuple[str, list[TrialJob]]]) -> int:
        """Enqueue (job id, batch of trials) pairs in one round trip; returns how many jobs."""
        data = [
            Queue.prepare_data(
                JOB_FUNCTION,
                kwargs={"trials": [trial.to_dict() for trial in trials]},
                job_id=rq_id,
                timeout=-1,  # trials run as long as their epochs take
                result_ttl=self.result_ttl_seconds,
                failure_ttl=FAILURE_TTL_SECONDS,
                description=_describe(trials),
            )
            for rq_id, trials in jobs
        ]
        if data:
            self.queue.enqueue_many(data)
        return len(data)

    def enqueue_ensemble(self, rq_id: str, job: EnsembleJob) -> None:
        self.queue.enqueue_call(
            ENSEMBLE_FUNCTION,
            kwargs={"ensemble": job.to_dict()},
            job_id=rq_id,
            timeout=-1,
            # The result is the evaluation itself, read by the master's next pass: kept as
            # long as a failure, so that a master down for days still finds it.
            result_ttl=FAILURE_TTL_SECONDS,
            failure_ttl=FAILURE_TTL_SECONDS,
            description=f"ensemble {job.ensemble_id} (sweep {job.sweep_id})",
        )

    def taken_job_ids(self) -> set[str]:
        """Jobs a worker took off the queue but has not started yet (RQ's intermediate
        queue): a job stays there if its worker died, or lost Redis, in between."""
        return set(self.queue.intermediate_queue.get_job_ids())

    def worker_count(self) -> int:
        return int(Worker.count(queue=self.queue))

    def job_per_worker_queued(self) -> bool:
        """Whether at least as many jobs wait in the queue as workers serve it (and one)."""
        queued = self.queue.count
        return queued > 0 and queued >= self.worker_count()

    def fetch(self, rq_id: str) -> Job | None:
        try:
            return Job.fetch(rq_id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return None

    def cancel(self, rq_ids: Iterable[str]) -> None:
        """Take queued jobs off the queue and delete them, in two round trips whatever their
        number. A job a worker has already taken is left to its trials' stop flags (RQ's own
        job.cancel() costs a dozen round trips per job and fails on a job that starts
        meanwhile)."""
        ids = list(dict.fromkeys(rq_ids))  # a batch's trials share their job id
        if not ids:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for rq_id in ids:
                self.queue.remove(rq_id, pipeline=pipe)
            removed = pipe.execute()
        with self.redis.pipeline(transaction=False) as pipe:
            for rq_id, count in zip(ids, removed, strict=True):
                if count:
                    pipe.delete(Job.key_for(rq_id))
            pipe.execute()

    def request_stop(self, trial_ids: Iterable[int] = (), sweep_id: int | None = None) -> None:
        """Raise the stop flags the running trials poll."""
        keys = [stop_key(t) for t in trial_ids]
        if sweep_id is not None:
            keys.append(sweep_stop_key(sweep_id))
        if keys:
            with self.redis.pipeline() as pipe:
                for key in keys:
                    pipe.set(key, 1, ex=STOP_TTL_SECONDS)
                pipe.execute()


def _describe(trials: list[TrialJob]) -> str:
    first, last = trials[0], trials[-1]
    if len(trials) == 1:
        return f"trial {first.trial_id} (sweep {first.sweep_id})"
    return f"trials {first.trial_id}-{last.trial_id} (sweep {first.sweep_id})"
