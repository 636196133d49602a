"""The RQ worker that runs trials: one process that runs jobs itself, holding a lease on each.

Why not RQ's forking Worker: a fork per job costs 16-20 ms, more than a whole one-epoch trial
of a coarse stage on small data; running jobs in the worker process saves that and keeps each
dataset loaded once per worker (worker.datasets). RQ's own bookkeeping still costs about
13 ms per job here, which is why the master batches short trials into one job. What the fork
gave is covered here:
- Stopping a trial: the trainer polls the trial's stop flag (worker.jobs), so no process has
  to be killed to stop one.
- Noticing a dead worker: RQ's own heartbeats expire a minute after a worker dies. Instead a
  thread renews the running job's lease (core.messages.lease_key) every second with a
  LEASE_SECONDS expiry; the master re-queues the open trials of a started job whose lease
  expired. The thread also renews what RQ itself watches: the worker's heartbeat and the
  job's entry in RQ's started-job registry. RQ renews that entry only from the forking
  Worker's monitoring loop, which a SimpleWorker does not run: left alone it expires after
  the heartbeat TTL (30 s), and RQ's registry clean-up (which the master runs) then fails
  a healthy long trial as abandoned.
- Shutting down: the first SIGTERM or SIGINT (or the master's shutdown request) interrupts
  the running trial at its next stop poll; it checkpoints and reports INTERRUPTED, the master
  re-queues it and another worker resumes it from that checkpoint. A second signal is RQ's
  cold stop. The master's request is RQ's pub/sub command and a key the worker takes with
  its next heartbeat or lease renewal: a command sent while the worker was not subscribed
  (Redis restarting) is lost, the key waits.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, worker_registration
from rq.command import parse_payload
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from core.messages import (
    LEASE_RENEW_SECONDS,
    LEASE_SECONDS,
    TRAINERS_FIELD,
    dead_job_key,
    lease_key,
    worker_shutdown_key,
)
from worker.lifecycle import LEASE_RENEWED, SHUTTING_DOWN, SUPERSEDED

log = logging.getLogger(__name__)
WORKER_TTL_SECONDS = 10  # RQ's heartbeat expiry while idle (renewed at every dequeue poll)
HEARTBEAT_SECONDS = LEASE_RENEW_SECONDS  # RQ's own heartbeats and re-registrations, at most
# One SIGINT per process for a shutdown request, however many ways it arrives: a second one
# is RQ's cold stop.
_SHUTDOWN_SIGNALLED = threading.Event()
_SHUTDOWN_LOCK = threading.Lock()


def _clock() -> float:
    return time.monotonic()  # a test's own clock replaces this


class TrialWorker(SimpleWorker):
    # RQ's expiry of the worker's heartbeat and of the running job's registry entry, both
    # renewed every LEASE_RENEW_SECONDS by the lease thread (WorkerSettings).
    heartbeat_ttl_seconds = 30
    _lease: _Lease | None = None
    # The user trainers it has, as advertised in its registration (core.messages).
    trainers_json = "[]"
    _beaten = -math.inf  # when the last heartbeat was sent (monotonic clock)
    _registered = -math.inf  # when the registration was last written again

    def execute_job(self, job: Job, queue: Queue) -> None:
        lease = self._lease = _Lease(self, job)
        try:
            lease.renew()  # before the job reports STARTED: a running trial has a lease
        except RedisError as exc:  # the thread renews it once Redis is back
            log.warning("could not take the lease of %s: %s", job.id, exc)
        lease.start()
        try:
            super().execute_job(job, queue)
        finally:
            lease.stop()
            self._lease = None

    def prepare_execution(self, job: Job) -> Execution:
        execution = super().prepare_execution(job)
        if self._lease is not None:  # from here on the lease renews its registry entry too
            self._lease.execution = execution
        return execution

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        SHUTTING_DOWN.set()

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's heartbeat, at most every HEARTBEAT_SECONDS when RQ sends one on its own, which
        also writes this worker's registration again (idempotent writes).

        RQ sends three heartbeats of its own around each job and the lease thread renews the
        same key every second while one runs: a round trip each, and the registration
        written with every one, made an empty job cost 7.6 ms (5.4 ms of CPU) against
        3.2 ms (2.4 ms) now, on an idle machine. The key lives worker_ttl + 60 s from each,
        so one a second is plenty. The registration: RQ
        registers a worker only when it starts, so after Redis lost its data (restarted
        without persistence) a worker that goes on working would stay missing from
        /api/workers, and deaf to a shutdown request, until it restarted."""
        now = _clock()
        if pipeline is None and timeout is None and now - self._beaten < HEARTBEAT_SECONDS:
            return
        self._beaten = now
        own = pipeline if pipeline is not None else self.connection.pipeline()
        if pipeline is None:  # our own round trip: whether a shutdown request waits
            own.delete(worker_shutdown_key(self.name))
        # RQ's own registration comes first, when the worker starts.
        if self.birth_date is not None and now - self._registered >= HEARTBEAT_SECONDS:
            self._registered = now
            mapping = {**self.serialize(), "state": self.get_state()}
            own.hset(self.key, mapping={**mapping, TRAINERS_FIELD: self.trainers_json})
            worker_registration.register(self, own)
        super().heartbeat(timeout, pipeline=own)
        if pipeline is None:
            replies = own.execute()
            if replies[0]:
                self.request_shutdown("a shutdown request")

    def register_birth(self, *args: Any, **kwargs: Any) -> None:
        """RQ's registration, with the trainers this worker has: the master validates a
        sweep's trainer and hyperparameters against them from the first second."""
        super().register_birth(*args, **kwargs)
        self.connection.hset(self.key, TRAINERS_FIELD, self.trainers_json)

    def handle_payload(self, message: dict[Any, Any]) -> None:
        """RQ's commands (pub/sub): a shutdown goes through request_shutdown, which the
        waiting request may have triggered already; the others are RQ's."""
        if parse_payload(message).get("command") == "shutdown":
            self.request_shutdown("a shutdown command")
            try:  # taken: a worker of this name started later must not take it too
                self.connection.delete(worker_shutdown_key(self.name))
            except RedisError:
                pass  # it expires, and the heartbeat would take it first
        else:
            super().handle_payload(message)

    def request_shutdown(self, how: str) -> None:
        """A warm shutdown, as RQ's own command makes it (SIGINT to this process, which RQ
        handles in the main thread), once however many times it is asked for."""
        with _SHUTDOWN_LOCK:
            if _SHUTDOWN_SIGNALLED.is_set():
                return
            _SHUTDOWN_SIGNALLED.set()
        log.info("worker %s: %s; shutting down after the running trial", self.name, how)
        os.kill(os.getpid(), signal.SIGINT)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.heartbeat_ttl_seconds  # the lease thread renews it; trials have no timeout


class _Lease(threading.Thread):
    """Renews a running job's lease, its worker's RQ heartbeat and the job's entry in RQ's
    started-job registry until stopped, and learns whether the master gave the job up for
    dead (then its trials end at their next poll).

    The lease is left to expire rather than deleted when the job ends: the master may not
    have applied the job's last events yet, and must not take it for a dead one meanwhile.
    """

    def __init__(self, worker: TrialWorker, job: Job) -> None:
        super().__init__(name=f"lease-{job.id}", daemon=True)
        self.worker = worker
        self.job_id = job.id
        self.registry = job.started_job_registry
        self.execution: Execution | None = None  # set once RQ has registered it as started
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(LEASE_RENEW_SECONDS):
            try:
                self.renew()
            except RedisError as exc:  # Redis restarting: keep trying, the trial goes on
                log.warning("could not renew the lease of %s: %s", self.job_id, exc)
            except Exception:  # the trial waits on this thread to write: it must not end
                log.exception("renewing the lease of %s failed", self.job_id)

    def renew(self) -> None:
        ttl = self.worker.heartbeat_ttl_seconds
        with self.worker.connection.pipeline(transaction=False) as pipe:
            pipe.set(lease_key(self.job_id), self.worker.name, ex=LEASE_SECONDS)
            pipe.exists(dead_job_key(self.job_id))
            pipe.delete(worker_shutdown_key(self.worker.name))
            self.worker.heartbeat(ttl, pipeline=pipe)
            if self.execution is not None:
                # Only updates an entry that exists (XX): an ended job is not re-added.
                self.execution.heartbeat(self.registry, ttl, pipeline=pipe)
            # The lease runs from when Redis set it, which is no earlier than this: a reply
            # held up by a partition must not make a lease the master gave up look fresh.
            sent = time.monotonic()
            dead, shutdown = pipe.execute()[1:3]
        LEASE_RENEWED[self.job_id] = sent
        if shutdown:
            self.worker.request_shutdown("a shutdown request")
        if dead:
            log.warning("job %s was given up for dead by the master; ending it", self.job_id)
            SUPERSEDED.add(self.job_id)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=LEASE_RENEW_SECONDS * 2)
        LEASE_RENEWED.pop(self.job_id, None)


def make_worker(
    redis: Redis,
    queues: Sequence[str],
    name: str | None = None,
    heartbeat_ttl_seconds: int = TrialWorker.heartbeat_ttl_seconds,
    trainers: Sequence[dict[str, Any]] = (),
) -> TrialWorker:
    """`trainers`: the declarations of the user trainers it has, to advertise."""
    queue_objects = [Queue(q, connection=redis, serializer=JSONSerializer) for q in queues]
    worker = TrialWorker(
        queue_objects,
        name=name,
        connection=redis,
        serializer=JSONSerializer,
        worker_ttl=WORKER_TTL_SECONDS,
    )
    worker.heartbeat_ttl_seconds = heartbeat_ttl_seconds
    worker.trainers_json = json.dumps(list(trainers))
    return worker
