"""What the master and the workers say to each other through Redis, defined once for both.

- A trial job (`TrialJob`) describes one attempt at one trial: plain JSON, never a pickle.
  An RQ job (`worker.jobs.run_trials`) carries a batch of them, run one after the other, so
  that RQ's per-job cost (about 13 ms here) is paid once for many short trials.
- Workers report on trials as `TrialEvent`s appended to one Redis Stream (EVENT_STREAM); the
  master reads it with a consumer group and acknowledges an event after its database commit.
- A user's stop request is a flag key (`stop_key`) that the running trial polls.
- A running RQ job holds a lease (`lease_key`) that its worker renews every
  LEASE_RENEW_SECONDS; the master takes a started job whose lease expired for one whose
  worker died, re-queues its open trials, and marks the job dead (`dead_job_key`) so that a
  worker that was only cut off stops it when it can see Redis again.

Non-finite floats (an exploding cost) travel as null: JSON has no NaN and PostgreSQL's JSON
type refuses it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from typing import Any

from core.contract import BUILTIN

EVENT_STREAM = "hpsearch:events"
EVENT_FIELD = "event"
STOP_TTL_SECONDS = 7 * 24 * 3600
LEASE_SECONDS = 5  # a dead worker's trial is re-queued this long (plus a master pass) after
LEASE_RENEW_SECONDS = 1.0


def stop_key(trial_id: int) -> str:
    return f"hpsearch:stop:trial:{trial_id}"


def sweep_stop_key(sweep_id: int) -> str:
    return f"hpsearch:stop:sweep:{sweep_id}"


def lease_key(rq_job_id: str) -> str:
    return f"hpsearch:lease:job:{rq_job_id}"


def dead_job_key(rq_job_id: str) -> str:
    return f"hpsearch:dead:job:{rq_job_id}"


# A shutdown request waits under this key until its worker takes it (at its next heartbeat or
# lease renewal, within about a second): RQ's own shutdown command is a pub/sub message, lost
# while the worker is not subscribed, as in the first seconds after Redis restarted.
SHUTDOWN_REQUEST_SECONDS = 3600


# The field of RQ's worker hash in which a worker advertises the user trainers it has, as a
# JSON list of core.contract.Declaration (the built-in net is every worker's).
TRAINERS_FIELD = "hpsearch_trainers"


def worker_shutdown_key(worker_name: str) -> str:
    return f"hpsearch:shutdown:worker:{worker_name}"


def ensemble_stop_key(ensemble_id: int) -> str:
    return f"hpsearch:stop:ensemble:{ensemble_id}"


ENSEMBLE_JOB_PREFIX = "ensemble-"


def ensemble_job_id(ensemble_id: int, attempt: int) -> str:
    return f"{ENSEMBLE_JOB_PREFIX}{ensemble_id}-{attempt}"


def job_id(first_trial_id: int, attempt: int) -> str:
    """The RQ job id of a batch of trials: its first trial and that trial's attempt (unique,
    since each attempt at a trial is enqueued once)."""
    return f"trials-{first_trial_id}-{attempt}"


@dataclass(frozen=True)
class TrialJob:
    trial_id: int
    sweep_id: int
    stage_index: int
    dataset: str
    hyperparameters: dict[str, Any]  # the trainer's (TrainConfig fields for the built-in net)
    num_epochs: float
    seed: int
    explode_factor: float
    keep_checkpoints: str = "best_and_latest"  # or "all"
    attempt: int = 1  # the master's count: events of an older attempt are ignored
    # A promoted trial goes on from this checkpoint of the trial it was promoted from (a path
    # under CHECKPOINT_DIR) until it has checkpoints of its own.
    resume_from: str | None = None
    # Which trainer runs it, by its registered name (core.registry): never a module path.
    trainer: str = BUILTIN

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["resume_from"] is None:  # as a worker of the version before promotion reads it
            del data["resume_from"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialJob:
        """Fields this version does not know (a newer master's) are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def checkpoint_subdir(self) -> str:
        """Where this trial's checkpoints go, relative to CHECKPOINT_DIR."""
        return f"sweep{self.sweep_id:06d}/stage{self.stage_index}"


@dataclass(frozen=True)
class EnsembleJob:
    """Evaluating an ensemble: its members' checkpoints (paths under CHECKPOINT_DIR, best
    first) on the validation and test splits of the sweep's dataset. The worker returns an
    EnsembleResult as the RQ job's result."""

    ensemble_id: int
    sweep_id: int
    dataset: str
    members: list[str]
    attempt: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnsembleJob:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class MemberScore:
    """One member's accuracies, with its epoch's parameters and with their running average
    (None where the split or the average is missing)."""

    val_acc: float
    test_acc: float | None = None
    average_val_acc: float | None = None
    average_test_acc: float | None = None


@dataclass(frozen=True)
class EnsemblePoint:
    """The ensemble of the first k members (their class probabilities averaged)."""

    k: int
    val_acc: float
    test_acc: float | None = None


@dataclass(frozen=True)
class EnsembleResult:
    status: str  # "finished", or "stopped" when its stop flag was raised
    members: list[MemberScore] = field(default_factory=list)
    curve: list[EnsemblePoint] = field(default_factory=list)
    has_test: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = finite_or_none(asdict(self))  # JSON has no NaN
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnsembleResult:
        return cls(
            str(data["status"]),
            [MemberScore(**m) for m in data.get("members", [])],
            [EnsemblePoint(**p) for p in data.get("curve", [])],
            bool(data.get("has_test", False)),
        )


class EventKind(StrEnum):
    STARTED = "started"
    EPOCH = "epoch"
    ENDED = "ended"


class EndStatus(StrEnum):
    """How an attempt at a trial ended, as its ENDED event says."""

    FINISHED = "finished"
    EXPLODED = "exploded"  # the cost passed explode_factor x the first cost: an outcome
    STOPPED = "stopped"  # by the user (the trial or its sweep)
    FAILED = "failed"  # an exception in training; the reason has its message
    INTERRUPTED = "interrupted"  # the worker shut down mid-trial: the master re-queues it


@dataclass(frozen=True)
class CheckpointFiles:
    """A trial's checkpoint files as the event leaves them (paths under CHECKPOINT_DIR,
    oldest epoch first) and the best of them (core.checkpoint.best_first)."""

    checkpoints: list[str]
    best_val_acc: float | None = None
    best_epoch: float | None = None


@dataclass(frozen=True)
class Started:
    """An attempt began: from scratch, or resumed from a checkpoint."""

    worker: str
    host: str | None = None
    resumed_from_epoch: float = 0.0
    damaged_checkpoints: list[str] = field(default_factory=list)  # "NAME: why", set aside
    # What the loaded dataset looks like in words (core.data: Dataset.warnings).
    data_warnings: list[str] = field(default_factory=list)
    num_classes: int | None = None  # of the dataset: the chance loss is ln(num_classes)


@dataclass(frozen=True)
class EpochEnded:
    """An epoch ended and its checkpoint is written; a resumed attempt re-sends the epochs
    its checkpoint holds (the master stores each once)."""

    epoch: float
    train_acc: float
    val_acc: float
    cost: float | None = None  # None: not finite
    average_val_acc: float | None = None  # of the running average of the parameters
    learning_rate: float | None = None
    update_ratio: dict[str, float | None] = field(default_factory=dict)
    loss: list[float | None] = field(default_factory=list)  # the epoch's iterations
    files: CheckpointFiles | None = None
    # core.distributions, of this epoch: bin shares and dead share per hidden layer, mean
    # gradient norm per weight matrix.
    distributions: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ended:
    """An attempt ended: the trial's outcome, or INTERRUPTED (the master re-queues it)."""

    status: EndStatus
    reason: str | None = None
    epochs_done: float | None = None
    val_acc: float | None = None
    train_seconds: float | None = None  # in the trainer, this attempt
    explosion: dict[str, float | None] | None = None  # iteration, cost, initial_cost, ratio
    files: CheckpointFiles | None = None


Message = Started | EpochEnded | Ended
_MESSAGES: dict[EventKind, type[Started] | type[EpochEnded] | type[Ended]] = {
    EventKind.STARTED: Started,
    EventKind.EPOCH: EpochEnded,
    EventKind.ENDED: Ended,
}


def message_data(message: Message) -> dict[str, Any]:
    """A message as the flat JSON object events carry (files beside the other fields;
    fields that are None left out). Shallow: its values are JSON already, and asdict's deep
    copy of an epoch's costs and distributions was most of what an event cost the worker."""
    data = {}
    for f in fields(message):
        value = getattr(message, f.name)
        if f.name != "files" and value is not None:
            data[f.name] = value
    files = getattr(message, "files", None)
    if files is not None:
        data.update(vars(files))
    return data


def parse_message(kind: EventKind, data: dict[str, Any]) -> Message:
    """The message an event's data holds; ValueError naming what is missing or wrong.
    Fields it does not know (a newer worker's) are ignored."""
    cls = _MESSAGES[kind]
    known = {f.name for f in fields(cls)} - {"files"}
    values = {k: v for k, v in data.items() if k in known}
    if "status" in values:
        values["status"] = EndStatus(values["status"])
    if "files" in {f.name for f in fields(cls)} and "checkpoints" in data:
        values["files"] = CheckpointFiles(
            list(data["checkpoints"]), data.get("best_val_acc"), data.get("best_epoch")
        )
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"{kind.value} event: {exc}") from None


@dataclass(frozen=True)
class TrialEvent:
    """What travels on the stream: a message about one attempt at a trial. `data` is the
    message's JSON (message_data); `message` reads it back typed."""

    kind: EventKind
    trial_id: int
    attempt: int
    data: dict[str, Any] = field(default_factory=dict)
    # When the worker made it (Unix time): a trial's start and end are the worker's, not
    # when the master got round to applying them (events travel in batches).
    at: float = field(default_factory=time.time)

    def to_fields(self) -> dict[str, str]:
        payload = {
            "kind": self.kind.value,
            "trial_id": self.trial_id,
            "attempt": self.attempt,
            "at": self.at,
            "data": finite_or_none(self.data),
        }
        return {EVENT_FIELD: json.dumps(payload, allow_nan=False)}

    @classmethod
    def of(cls, trial_id: int, attempt: int, message: Message) -> TrialEvent:
        kind = next(k for k, c in _MESSAGES.items() if isinstance(message, c))
        return cls(kind, trial_id, attempt, message_data(message))

    @cached_property
    def message(self) -> Message:
        """Read once: the consumer checks it on arrival, the master then applies it."""
        return parse_message(self.kind, self.data)

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> TrialEvent:
        raw = fields.get(EVENT_FIELD) or fields.get(EVENT_FIELD.encode())
        if raw is None:
            raise ValueError(f"event without an {EVENT_FIELD!r} field")
        payload = json.loads(raw)
        return cls(
            EventKind(payload["kind"]),
            int(payload["trial_id"]),
            int(payload["attempt"]),
            payload.get("data") or {},
            float(payload.get("at") or time.time()),  # events of older workers have none
        )


def finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float inside it replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value
