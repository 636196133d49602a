"""The database tables: sweeps, their stages, their trials and each trial's epochs, and the
ensembles evaluated from a sweep's checkpoints.

The database is the source of truth (DESIGN.md): Redis only carries the queue and the
worker events. Hyperparameters, ranges and warnings are JSON columns because their keys are
the user's; everything a page filters or sorts on is a real column with an index.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    case,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Ids are INTEGER columns (32 bits on PostgreSQL): a larger one names no row, and
# PostgreSQL refuses to compare it with one (an error, not an empty answer).
MAX_ID = 2**31 - 1


class SweepStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"  # its first trials all failed alike (a bad dataset or setting): `reason`


class StageStatus(StrEnum):
    PENDING = "pending"  # planned from the previous stage's results once that one ends
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # its sweep was cancelled or failed while it ran


class TrialStatus(StrEnum):
    """Where a trial stands; all but QUEUED and RUNNING are final."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"  # trained every epoch of its stage
    EXPLODED = "exploded"  # cost above explode_factor x the first cost: killed early
    FAILED = "failed"  # the job raised; `reason` holds the message
    STOPPED = "stopped"  # stopped or cancelled by a user

    @property
    def is_final(self) -> bool:
        return self not in (TrialStatus.QUEUED, TrialStatus.RUNNING)


FINAL_STATUSES = tuple(s for s in TrialStatus if s.is_final)


class EnsembleKind(StrEnum):
    TOP_K = "top-k"  # the sweep's best trials, each by its best checkpoint
    CHECKPOINTS = "checkpoints"  # the checkpoints of one trial (keep_checkpoints: all)
    SEEDS = "seeds"  # one trial and its hyperparameters re-trained from new seeds (a stage)


def _status_column(statuses: type[StrEnum]) -> Enum:
    """A status column: read back as its enum, stored as the value's text in a VARCHAR(16),
    as it always was (no database type or constraint to migrate)."""
    return Enum(
        statuses,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]  # as submitted, after validation
    status: Mapped[SweepStatus] = mapped_column(
        _status_column(SweepStatus), default=SweepStatus.RUNNING, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)  # why it failed

    stages: Mapped[list[Stage]] = relationship(
        back_populates="sweep", order_by="Stage.index", cascade="all, delete-orphan"
    )


class Stage(Base):
    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("sweep_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    index: Mapped[int]
    trials: Mapped[int]
    epochs: Mapped[float]
    keep_top: Mapped[int | None]
    # How many of `trials` are the previous stage's best, trained on (the rest are new).
    promote: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # The distributions this stage samples from (None until planned), as the spec writes them.
    space: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[StageStatus] = mapped_column(
        _status_column(StageStatus), default=StageStatus.PENDING
    )
    planned_at: Mapped[datetime | None]

    sweep: Mapped[Sweep] = relationship(back_populates="stages")


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        Index("ix_trials_sweep_stage_status", "sweep_id", "stage_index", "status"),
        Index("ix_trials_rank", "best_val_acc", "epochs_done"),
        # The leaderboard's exact order, for PostgreSQL (whose DESC puts NULLs first, so the
        # index above cannot serve it); SQLite has no NULLS LAST in an index and uses the above.
        Index(
            "ix_trials_leaderboard",
            text("best_val_acc DESC NULLS LAST"),
            text("epochs_done DESC"),
            "id",
        ).ddl_if(dialect="postgresql"),
        Index("ix_trials_status_job", "status", "job_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    stage_index: Mapped[int]
    index: Mapped[int]  # within its stage
    # A promoted trial goes on from its parent's latest checkpoint: its history starts with
    # the parent's `start_epoch` epochs, which it did not train itself.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id", ondelete="SET NULL"))
    start_epoch: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    hyperparameters: Mapped[dict[str, Any]]
    seed: Mapped[int] = mapped_column(BigInteger)  # up to 2**32: beyond a 32-bit INTEGER
    num_epochs: Mapped[float]
    status: Mapped[TrialStatus] = mapped_column(
        _status_column(TrialStatus), default=TrialStatus.QUEUED
    )
    reason: Mapped[str | None] = mapped_column(Text)
    epochs_done: Mapped[float] = mapped_column(Float, default=0.0)
    best_val_acc: Mapped[float | None]
    best_epoch: Mapped[float | None]
    train_acc: Mapped[float | None]  # at the best epoch: its gap to best_val_acc shows overfitting
    val_acc: Mapped[float | None]  # at the latest epoch
    # Explosion: the iteration and cost that tripped it, and cost / first cost.
    explosion: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    checkpoints: Mapped[list[Any]] = mapped_column(default=list)  # paths under CHECKPOINT_DIR
    num_classes: Mapped[int | None]  # of its dataset, as its worker saw it
    worker: Mapped[str | None] = mapped_column(String(200))
    job_id: Mapped[str | None] = mapped_column(String(64))  # None until enqueued
    attempts: Mapped[int] = mapped_column(default=0)
    # Attempts whose worker died (not those re-queued by a clean shutdown): MAX_ATTEMPTS of
    # them fail the trial, which may be what kills its workers.
    lost_attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    epochs: Mapped[list[TrialEpoch]] = relationship(
        order_by="TrialEpoch.epoch", cascade="all, delete-orphan"
    )

    @hybrid_property
    def epochs_trained(self) -> float:
        """The epochs this trial trained itself (a promoted one inherited start_epoch; one
        not started yet has trained none)."""
        return max(0.0, self.epochs_done - self.start_epoch)

    @epochs_trained.inplace.expression
    @classmethod
    def _epochs_trained_expression(cls) -> ColumnElement[float]:
        own = cls.epochs_done - cls.start_epoch
        return case((own > 0, own), else_=0.0)


class Ensemble(Base):
    """An evaluation of a sweep's models on its validation and test splits: the ensembles of
    the first k of `members` for every k, each member alone, and its running average. Runs
    as a worker's job; its status follows a trial's (queued, running, then final)."""

    __tablename__ = "ensembles"

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    kind: Mapped[EnsembleKind] = mapped_column(_status_column(EnsembleKind))
    params: Mapped[dict[str, Any]]  # as requested, after validation
    # Made by the master when the sweep finished (its test evaluation), not by a user.
    automatic: Mapped[bool] = mapped_column(default=False)
    # Best first: {"trial_id", "checkpoint"} (a path under CHECKPOINT_DIR), then the scores.
    # Empty while a seeds ensemble's stage trains: it is not enqueued until that ends.
    members: Mapped[list[Any]] = mapped_column(default=list)
    curve: Mapped[list[Any]] = mapped_column(default=list)  # {"k", "val_acc", "test_acc"}
    k: Mapped[int | None]  # chosen on validation accuracy (ties to the smaller ensemble)
    val_acc: Mapped[float | None]
    test_acc: Mapped[float | None]
    status: Mapped[TrialStatus] = mapped_column(
        _status_column(TrialStatus), default=TrialStatus.QUEUED
    )
    reason: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class TrialEpoch(Base):
    """One epoch end of a trial; unique per (trial, epoch), so a re-read event is a no-op."""

    __tablename__ = "trial_epochs"
    __table_args__ = (UniqueConstraint("trial_id", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    epoch: Mapped[float]
    cost: Mapped[float | None]
    train_acc: Mapped[float]
    val_acc: Mapped[float]
    average_val_acc: Mapped[float | None]
    learning_rate: Mapped[float | None]
    update_ratio: Mapped[dict[str, Any]] = mapped_column(default=dict)
    loss: Mapped[list[Any]] = mapped_column(default=list)  # the epoch's per-iteration costs
    # core.distributions of the epoch: activation bin shares, dead units, gradient norms.
    distributions: Mapped[dict[str, Any] | None] = mapped_column(JSON)


def ranking() -> tuple[Any, ...]:
    """The one order trials are ranked in (leaderboards, "best first"): best validation
    accuracy, ties to more epochs trained, then to the older trial; unscored ones last.
    ix_trials_leaderboard is this order, for PostgreSQL."""
    return (Trial.best_val_acc.desc().nulls_last(), Trial.epochs_done.desc(), Trial.id.asc())
