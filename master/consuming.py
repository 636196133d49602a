"""Consuming the workers' event stream: read with a consumer group, apply, acknowledge.

Events are acknowledged (and deleted) only after the transaction that applied them commits;
after a start, the consumer first re-reads what it had read but not acknowledged, so a
master crash loses no event. Only the active scheduler consumes (master.leadership), so
events are applied in the order workers sent them.

`all_applied()` says whether every event appended so far is applied. The liveness rules
(master.liveness) judge nothing until it holds: a trial whose ENDED or STARTED event still
waits in the stream looks, in the database, like one whose worker died or whose job Redis
lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

from core.messages import EVENT_STREAM, Ended, EndStatus, EventKind, TrialEvent
from master.db import Database, DatabaseUnavailable
from master.events import apply_event, apply_events

log = logging.getLogger(__name__)
GROUP = "hpsearch-master"
# One name for whichever master is active: a successor re-reads its predecessor's pending
# events as its own.
CONSUMER = "master"
BATCH = 200
# Applying events one transaction each cost the master 3 ms of CPU per epoch event (SQLite,
# a 256x256 model's epoch is 50 ms), against 0.3 ms in batches of 8: so a read that brings
# only progress (STARTED, EPOCH) waits this long for more to apply with it. An ENDED event
# is applied at once when a worker may soon wait on what it decides (the next stage, a
# promotion, a re-queued trial); while the queue holds a job for every worker, it waits too:
# applying each of a budget sweep's short first-stage trials on its own was a quarter of the
# master's CPU.
LINGER_SECONDS = 0.5
# Events that could not be applied (a bug, or a worker of another version), kept with the
# error for a look instead of being dropped without a trace once acknowledged.
UNAPPLIED_STREAM = "hpsearch:events:unapplied"
UNAPPLIED_KEPT = 10_000


@dataclass(frozen=True)
class Consumed:
    """What one read applied."""

    read: int = 0
    ended_sweeps: set[int] = field(default_factory=set)  # sweeps whose trials ended
    requeued: bool = False  # an interrupted trial went back to the queue


@dataclass(frozen=True)
class Backlog:
    """The events not applied yet (applied ones are deleted from the stream)."""

    length: int
    oldest_age_seconds: float | None
    unapplied: int  # kept in UNAPPLIED_STREAM


class EventConsumer:
    def __init__(
        self,
        db: Database,
        redis: Redis,
        linger_seconds: float = LINGER_SECONDS,
        work_queued: Callable[[], bool] = lambda: False,
    ) -> None:
        """`work_queued`: whether every worker has a job queued for it, so that an ended
        trial's consequences can wait for the batch (a round trip to Redis; asked once per
        read that brings an ENDED event)."""
        self.db = db
        self.redis = redis
        self.linger_seconds = linger_seconds
        self.work_queued = work_queued
        self._ended_may_wait: bool | None = None  # asked once per read, when needed
        self._group_ready = False
        self._pending_done = False

    def reset(self) -> None:
        """After Redis went away or this master (re)gained the scheduler lease: make sure of
        the group and re-read this consumer's pending events first."""
        self._group_ready = False

    def step(self, block_ms: int = 0) -> Consumed:
        """Read and apply one batch of events."""
        self._ensure_group()
        entries: list[tuple[Any, dict[Any, Any]]] = []
        if not self._pending_done:  # our unacknowledged events first
            entries = self._read("0", 0)
            self._pending_done = not entries
        if self._pending_done:
            entries = self._read(">", block_ms)
        if not entries:
            return Consumed()
        events = self._parse(entries)
        self._ended_may_wait = None
        if self._pending_done:
            deadline = time.monotonic() + self.linger_seconds
            while len(entries) < BATCH and self._may_wait(events):
                left_ms = int(1000 * (deadline - time.monotonic()))
                if left_ms <= 0:
                    break
                more = self._read(">", left_ms, BATCH - len(entries))
                if not more:
                    break
                entries += more
                events += self._parse(more)
        ended_sweeps = self._apply(events)
        ids = [entry_id for entry_id, _ in entries]
        with self.redis.pipeline() as pipe:
            pipe.xack(EVENT_STREAM, GROUP, *ids)
            pipe.xdel(EVENT_STREAM, *ids)
            pipe.execute()
        requeued = any(
            isinstance(e.message, Ended) and e.message.status is EndStatus.INTERRUPTED
            for e in events
        )
        return Consumed(len(entries), ended_sweeps, requeued)

    def _may_wait(self, events: list[TrialEvent]) -> bool:
        """Whether these events can wait for more to apply with them."""
        if not any(e.kind is EventKind.ENDED for e in events):
            return True
        if self._ended_may_wait is None:
            self._ended_may_wait = self.work_queued()
        return self._ended_may_wait

    def _read(
        self, start_id: str, block_ms: int, count: int = BATCH
    ) -> list[tuple[Any, dict[Any, Any]]]:
        reply: Any = self.redis.xreadgroup(
            GROUP, CONSUMER, {EVENT_STREAM: start_id}, count=count, block=block_ms or None
        )
        return list(reply[0][1]) if reply else []

    def _parse(self, entries: list[tuple[Any, dict[Any, Any]]]) -> list[TrialEvent]:
        events = []
        for entry_id, fields in entries:
            try:
                event = TrialEvent.from_fields(fields)
                event.message  # noqa: B018 - parsed here so that a malformed one is set aside
                events.append(event)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("a malformed event %s; kept in %s: %s", entry_id, UNAPPLIED_STREAM, exc)
                self._keep_unapplied(fields, exc)
        return events

    def all_applied(self) -> bool:
        """Whether every event appended to the stream so far has been applied: delivered to
        this group and acknowledged (which happens after its commit)."""
        self._ensure_group()
        with self.redis.pipeline() as pipe:  # MULTI: one snapshot of the stream and group
            pipe.xinfo_stream(EVENT_STREAM)
            pipe.xinfo_groups(EVENT_STREAM)
            stream, groups = pipe.execute()
        last = _entry_id(stream["last-generated-id"])
        for group in groups:
            if _text(group["name"]) == GROUP:
                delivered = _entry_id(group["last-delivered-id"])
                return int(group["pending"]) == 0 and delivered >= last
        return False

    def backlog(self) -> Backlog:
        """How many events wait, and how old the oldest is (by its id's timestamp)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(EVENT_STREAM)
            pipe.xrange(EVENT_STREAM, count=1)
            pipe.xlen(UNAPPLIED_STREAM)
            length, first, unapplied = pipe.execute()
        if not first:
            return Backlog(int(length), None, int(unapplied))
        sent_ms, _ = _entry_id(first[0][0])
        return Backlog(int(length), max(0.0, time.time() - sent_ms / 1000), int(unapplied))

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
            except Exception as exc:
                log.exception("an event cannot be applied; kept in %s: %s", UNAPPLIED_STREAM, event)
                self._keep_unapplied(event.to_fields(), exc)
        return ended

    def _keep_unapplied(self, fields: dict[Any, Any], error: Exception) -> None:
        kept = {**fields, "error": f"{type(error).__name__}: {error}"}
        self.redis.xadd(UNAPPLIED_STREAM, kept, maxlen=UNAPPLIED_KEPT, approximate=True)

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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_id(value: Any) -> tuple[int, int]:
    """A stream entry id ("1700000000000-3") as a comparable pair."""
    ms, _, seq = _text(value).partition("-")
    return int(ms), int(seq or 0)
