"""The master's side of Redis: putting trials on the RQ queue, taking them off, stopping them.

Jobs name their function by its import path ("worker.jobs.run_trial"), so the master never
imports worker code, and carry one JSON argument (a core.messages.TrialJob).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from core.messages import STOP_TTL_SECONDS, TrialJob, stop_key, sweep_stop_key

log = logging.getLogger(__name__)
JOB_FUNCTION = "worker.jobs.run_trial"
RESULT_TTL_SECONDS = 600
FAILURE_TTL_SECONDS = 7 * 24 * 3600


class TrialQueue:
    def __init__(self, redis: Redis, name: str) -> None:
        self.redis = redis
        self.queue = Queue(name, connection=redis, serializer=JSONSerializer)

    def enqueue(self, jobs: Iterable[tuple[str, TrialJob]]) -> int:
        """Enqueue (job id, trial job) pairs in one round trip; returns how many."""
        data = [
            Queue.prepare_data(
                JOB_FUNCTION,
                kwargs={"job": trial.to_dict()},
                job_id=rq_id,
                timeout=-1,  # trials run as long as their epochs take
                result_ttl=RESULT_TTL_SECONDS,
                failure_ttl=FAILURE_TTL_SECONDS,
                description=f"trial {trial.trial_id} (sweep {trial.sweep_id})",
            )
            for rq_id, trial in jobs
        ]
        if data:
            self.queue.enqueue_many(data)
        return len(data)

    def fetch(self, rq_id: str) -> Job | None:
        try:
            return Job.fetch(rq_id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return None

    def cancel(self, rq_ids: Iterable[str]) -> None:
        """Take queued jobs off the queue (a running one is left to its stop flag)."""
        for rq_id in rq_ids:
            job = self.fetch(rq_id)
            if job is None or job.get_status() not in (JobStatus.QUEUED, JobStatus.DEFERRED):
                continue
            try:
                job.cancel()
            except InvalidJobOperation:  # it started meanwhile: the stop flag ends it
                pass

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
