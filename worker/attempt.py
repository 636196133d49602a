"""What one attempt at a trial sends and obeys: its events (Reporter) and its stop flag
(StopFlag), which also decides whether the attempt may still write the trial's files.

Events are buffered and sent in one round trip with the next stop poll (at most every
STOP_POLL_SECONDS) or at the trial's end, so a short trial costs two round trips to Redis.
Redis going away does not fail a trial: the ENDED event is re-sent with back-off until Redis
is back, and a stop poll that cannot reach Redis is skipped.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from core.messages import (
    EVENT_STREAM,
    LEASE_RENEW_SECONDS,
    LEASE_SECONDS,
    Ended,
    EndStatus,
    Message,
    TrialEvent,
    TrialJob,
    message_data,
    stop_key,
    sweep_stop_key,
)
from worker.lifecycle import LEASE_RENEWED, SHUTTING_DOWN, SUPERSEDED

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2  # a stop request ends the trial within this, plus one iteration
MAX_SEND_BACKOFF_SECONDS = 5.0
# A lease renewed this recently is surely still held: it lapses LEASE_SECONDS after its
# renewal, and the master judges it one pass later.
LEASE_SURELY_HELD_SECONDS = LEASE_SECONDS - 1.0


class Reporter:
    """Collects this trial's events and appends them to the stream in one round trip: with
    the next stop poll, or, waiting out a Redis outage, at the trial's end."""

    def __init__(self, redis: Redis, trial_id: int, attempt: int) -> None:
        self.redis = redis
        self.trial_id = trial_id
        self.attempt = attempt
        self.pending: list[dict[str, str]] = []

    def send(self, message: Message) -> None:
        self.pending.append(TrialEvent.of(self.trial_id, self.attempt, message).to_fields())

    def flush(self, *also: tuple[str, tuple[Any, ...]]) -> list[Any]:
        """Send what is pending, plus the commands `also` (name, args) in the same round
        trip; returns the replies to `also`. Raises RedisError, keeping what is pending."""
        with self.redis.pipeline(transaction=False) as pipe:
            for fields in self.pending:
                pipe.xadd(EVENT_STREAM, fields)  # type: ignore[arg-type]
            for name, args in also:
                getattr(pipe, name)(*args)
            replies = pipe.execute()
        sent = len(self.pending)
        self.pending = []
        return replies[sent:]

    def end(self, ended: Ended) -> dict[str, Any]:
        """Send the attempt's ENDED event, waiting out a Redis outage; returns it as the RQ
        job's result."""
        self.send(ended)
        backoff = 0.1
        while True:
            try:
                self.flush()
                return message_data(ended)
            except RedisError as exc:
                # An event is never dropped: the master needs every one to account for
                # the trial. A worker that cannot reach Redis has nothing better to do.
                log.warning("trial %s: cannot send its end (%s); retrying", self.trial_id, exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_SEND_BACKOFF_SECONDS)


class StopFlag:
    """should_stop() for the trainer. True once the user stopped the trial or its sweep (keys
    polled at most every STOP_POLL_SECONDS, with the pending events, so a stop costs
    microseconds per iteration), the worker is shutting down, or the master gave this job up
    for dead."""

    def __init__(self, trial: TrialJob, rq_id: str | None, reporter: Reporter) -> None:
        self.keys = (stop_key(trial.trial_id), sweep_stop_key(trial.sweep_id))
        self.rq_id = rq_id
        self.reporter = reporter
        self.next_poll = 0.0
        self.requested = False

    @property
    def interrupted(self) -> bool:
        return SHUTTING_DOWN.is_set()

    @property
    def superseded(self) -> bool:
        return self.rq_id in SUPERSEDED

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.requested and now >= self.next_poll:
            self.next_poll = now + STOP_POLL_SECONDS
            try:
                [found] = self.reporter.flush(("exists", self.keys))
                self.requested = bool(found)
            except RedisError as exc:  # Redis restarting: train on, poll again later
                log.warning("cannot poll the stop flags: %s", exc)
        return self.requested or self.interrupted or self.superseded

    def may_write(self) -> bool:
        """Whether this attempt may write (and prune) the trial's files: only while its
        lease is surely held. Cut off from Redis for longer (a partition), it may have been
        given up for dead and the trial given to another worker, whose files it must not
        touch: it waits until Redis answers and says which. Outside a worker there is no
        lease."""
        if self.rq_id is None:
            return True
        while not (self.superseded or self.interrupted):
            renewed = LEASE_RENEWED.get(self.rq_id)
            if renewed is not None and time.monotonic() - renewed < LEASE_SURELY_HELD_SECONDS:
                return True
            time.sleep(LEASE_RENEW_SECONDS / 4)
        return False

    def ending(self, when: str) -> tuple[EndStatus, str]:
        """The status and reason of a trial this flag ended `when` ("at epoch 2.50"): a
        user's stop wins over a worker shutdown, which re-queues the trial."""
        if self.requested:
            return EndStatus.STOPPED, f"stopped {when}"
        return EndStatus.INTERRUPTED, f"the worker shut down {when}"

    def outcome(self, when: str) -> dict[str, Any]:
        """The ENDED event of a trial this flag ended before it trained."""
        if self.superseded:
            return {"status": "superseded"}
        status, reason = self.ending(when)
        return self.reporter.end(Ended(status, reason=reason))
