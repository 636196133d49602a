"""The RQ worker that runs trials: the forking Worker, with the job's dataset loaded first.

The forking Worker is what lets `rq.command.send_stop_job_command` end a job at once (the
master's last resort when a trial ignores its stop flag). Loading the dataset in the main
process before the fork means each work horse inherits it: loaded once per worker process,
not once per trial. Jobs are JSON-serialized: no pickles cross processes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis import Redis
from rq import Queue, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from core.config import TrainConfig
from core.data import DatasetError
from worker.datasets import DATASETS

log = logging.getLogger(__name__)
# Short enough that the master notices a dead worker within seconds (its key expires).
WORKER_TTL_SECONDS = 10


class TrialWorker(Worker):
    def execute_job(self, job: Job, queue: Queue) -> None:
        self._preload(job)
        super().execute_job(job, queue)

    def _preload(self, job: Job) -> None:
        try:
            trial = job.kwargs.get("job") or (job.args[0] if job.args else {})
            dtype = trial.get("hyperparameters", {}).get("dtype", TrainConfig.dtype)
            DATASETS.get(trial["dataset"], dtype)
        except (DatasetError, KeyError, TypeError, AttributeError, OSError):
            # The horse loads it again and reports the error as the trial's failure.
            log.warning("could not preload the dataset of job %s", job.id, exc_info=True)


def make_worker(redis: Redis, queues: Sequence[str], name: str | None = None) -> TrialWorker:
    queue_objects = [Queue(q, connection=redis, serializer=JSONSerializer) for q in queues]
    return TrialWorker(
        queue_objects,
        name=name,
        connection=redis,
        serializer=JSONSerializer,
        worker_ttl=WORKER_TTL_SECONDS,
    )
