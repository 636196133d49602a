"""The master's background loop: hold the scheduler lease, consume worker events, walk
sweeps through their stages, and judge liveness.

Each job has its own module: master.leadership (exactly one active scheduler),
master.consuming (the event stream), master.dispatching (queueing trials, next stages),
master.liveness (dead workers, lost and failed jobs), master.evaluating (ensembles). Redis
or database outages are retried with back-off; nothing is acknowledged meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

from master.consuming import Backlog, EventConsumer
from master.db import Database, DatabaseUnavailable
from master.dispatching import Dispatcher
from master.evaluating import Evaluations
from master.leadership import SchedulerLease
from master.liveness import Liveness
from master.queueing import TrialQueue

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 5.0
STANDBY_POLL_SECONDS = 1.0  # a standby takes over within this of the active lease lapsing


class Scheduler:
    def __init__(
        self,
        db: Database,
        redis: Redis,
        queue: TrialQueue,
        dispatcher: Dispatcher,
        reconcile_seconds: float = 2.0,
        lease_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.dispatcher = dispatcher
        self.consumer = EventConsumer(db, redis, work_queued=queue.job_per_worker_queued)
        self.liveness = Liveness(db, redis, queue, dispatcher, self.consumer.all_applied, clock)
        self.evaluations = Evaluations(db, redis, queue, self.liveness.ready)
        self.lease = SchedulerLease(redis, lease_seconds, clock=clock)
        self.reconcile_seconds = reconcile_seconds
        self.clock = clock
        self.active = False
        self.created = clock()
        self.last_pass: float | None = None  # when the loop last completed a pass (clock)

    def run(self, stopping: threading.Event, block_ms: int = 500) -> None:
        """Run until `stopping` is set; the lease is let go at the end."""
        backoff = 0.1
        next_reconcile = 0.0
        while not stopping.is_set():
            try:
                if not self._hold_lease():
                    self.last_pass = self.clock()
                    stopping.wait(STANDBY_POLL_SECONDS)
                    continue
                self.step(block_ms)
                if self.clock() >= next_reconcile:
                    self.liveness.judge()
                    # Its queueing follows: trials below, evaluations in step().
                    self.dispatcher.advance_running()
                    self.dispatcher.enqueue_pending()
                    self.evaluations.step()
                    next_reconcile = self.clock() + self.reconcile_seconds
                self.last_pass = self.clock()
                backoff = 0.1
            except (RedisError, DatabaseUnavailable, OSError) as exc:
                log.warning("scheduler: %s; retrying in %.1f s", exc, backoff)
                self.consumer.reset()
                self.lease.forget()
                if isinstance(exc, RedisError):
                    self.liveness.redis_was_down()
                stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception:  # never let one bad pass end the loop
                log.exception("scheduler pass failed")
                stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        try:
            if self.active:
                self.lease.release()
        except RedisError:  # it expires by itself
            pass

    def step(self, block_ms: int = 0) -> int:
        """Read and apply one batch of events, then move on what they ended; returns how
        many events were read."""
        consumed = self.consumer.step(block_ms)
        # A sweep or stage that ended may have an evaluation to enqueue (a transaction, so
        # not after every ended trial: the reconcile pass enqueues any left over).
        if self.dispatcher.advance(consumed.ended_sweeps):
            self.evaluations.enqueue_pending()
        if consumed.requeued:
            self.dispatcher.enqueue_pending()
        return consumed.read

    def backlog(self) -> Backlog:
        return self.consumer.backlog()

    def _hold_lease(self) -> bool:
        held = self.lease.hold()
        if held and not self.active:
            log.info("this master's scheduler is active (%s)", self.lease.holder)
            self.consumer.reset()  # the predecessor's unacknowledged events first
            # A predecessor's leases and events are as fresh as an outage's: let them settle.
            self.liveness.redis_was_down()
        elif not held and (self.active or self.last_pass is None):
            log.warning(
                "another master's scheduler is active (%s): this one stands by and takes "
                "over if that one stops renewing its lease",
                self.lease.current_holder(),
            )
        self.active = held
        return held
