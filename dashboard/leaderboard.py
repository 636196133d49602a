"""The leaderboard: every trial ranked by best validation accuracy, a page at a time.

Ties go to the trial that trained more epochs, then to the older trial; trials with no
validation accuracy yet (queued, or exploded before their first epoch end) come last. The
query reads one page of trial ids, then those trials, their sweeps and their latest
epochs: indexed queries plus a count, whatever the size of the table
(benchmarks/leaderboard.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from dashboard.files import ranked_checkpoints
from dashboard.health import Health, health_of
from master.models import Sweep, Trial, TrialEpoch, ranking

PAGE_SIZE = 50
MAX_SWEEPS_LISTED = 200


@dataclass(frozen=True)
class Filters:
    sweep: int | None = None
    stage: int | None = None
    status: str | None = None
    every_sweep: bool = False  # sweep=all: no sweep chosen by default

    def query_string(self, offset: int) -> str:
        values = {"sweep": "all" if self.every_sweep else self.sweep, "stage": self.stage,
                  "status": self.status}  # fmt: skip
        parts = [f"{k}={v}" for k, v in values.items() if v is not None]
        return "&".join([*parts, f"offset={offset}"])


@dataclass(frozen=True)
class Row:
    rank: int
    trial: Trial
    sweep_name: str
    health: Health
    checkpoint: str | None  # the best checkpoint, relative to CHECKPOINT_DIR

    @property
    def gap(self) -> float | None:
        """Train minus validation accuracy at the best epoch: large means overfitting."""
        if self.trial.train_acc is None or self.trial.best_val_acc is None:
            return None
        return self.trial.train_acc - self.trial.best_val_acc

    @property
    def status_detail(self) -> str:
        explosion = self.trial.explosion
        if explosion:
            return (
                f"at iteration {explosion.get('iteration')}, cost "
                f"{float(explosion.get('ratio', 0.0)):.3g}x the first"
            )
        return self.trial.reason or ""


@dataclass(frozen=True)
class LeaderboardPage:
    rows: list[Row]
    count: int
    offset: int
    page_size: int
    columns: list[str]  # the hyperparameters searched by the sweeps on this page

    @property
    def next_offset(self) -> int | None:
        following = self.offset + self.page_size
        return following if following < self.count else None

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.page_size) if self.offset > 0 else None


def ranked(query: Select[Any]) -> Select[Any]:
    return query.order_by(*ranking())


def load_leaderboard(
    session: Session, filters: Filters, offset: int = 0, page_size: int = PAGE_SIZE
) -> LeaderboardPage:
    conditions = []
    if filters.sweep is not None:
        conditions.append(Trial.sweep_id == filters.sweep)
    if filters.stage is not None:
        conditions.append(Trial.stage_index == filters.stage)
    if filters.status is not None:
        conditions.append(Trial.status == filters.status)
    count = session.scalar(select(func.count(Trial.id)).where(*conditions)) or 0
    # Rank ids first, from the index alone, then load just the page's rows: an offset over
    # whole rows would read every row it skips (page 1000 took 120 ms, not 20, on SQLite).
    ids = list(
        session.scalars(ranked(select(Trial.id).where(*conditions)).limit(page_size).offset(offset))
    )
    by_id = {t.id: t for t in session.scalars(select(Trial).where(Trial.id.in_(ids)))}
    trials = [by_id[i] for i in ids if i in by_id]
    sweeps = _sweeps(session, {t.sweep_id for t in trials})
    latest = latest_update_ratios(session, [t.id for t in trials])
    rows = [
        Row(
            rank=offset + i + 1,
            trial=trial,
            sweep_name=sweeps[trial.sweep_id].name if trial.sweep_id in sweeps else "",
            health=health_of(latest.get(trial.id)),
            checkpoint=best_checkpoint(trial.checkpoints),
        )
        for i, trial in enumerate(trials)
    ]
    columns: list[str] = []
    for sweep_id in dict.fromkeys(t.sweep_id for t in trials):
        space = sweeps[sweep_id].spec.get("space", {}) if sweep_id in sweeps else {}
        columns += [name for name in space if name not in columns]
    return LeaderboardPage(rows, count, offset, page_size, columns)


def sweep_choices(session: Session) -> list[tuple[int, str]]:
    """(id, name) of the newest sweeps, for the sweep filter."""
    listed = session.execute(
        select(Sweep.id, Sweep.name).order_by(Sweep.id.desc()).limit(MAX_SWEEPS_LISTED)
    )
    return [(sweep_id, name) for sweep_id, name in listed]


def _sweeps(session: Session, ids: set[int]) -> dict[int, Sweep]:
    if not ids:
        return {}
    return {s.id: s for s in session.scalars(select(Sweep).where(Sweep.id.in_(ids)))}


def latest_update_ratios(session: Session, trial_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each trial's update:weight ratios at its latest epoch."""
    if not trial_ids:
        return {}
    latest = (
        select(TrialEpoch.trial_id, func.max(TrialEpoch.epoch).label("epoch"))
        .where(TrialEpoch.trial_id.in_(trial_ids))
        .group_by(TrialEpoch.trial_id)
        .subquery()
    )
    rows = session.execute(
        select(TrialEpoch.trial_id, TrialEpoch.update_ratio).join(
            latest,
            (TrialEpoch.trial_id == latest.c.trial_id) & (TrialEpoch.epoch == latest.c.epoch),
        )
    )
    return {trial_id: ratio for trial_id, ratio in rows}


def best_checkpoint(checkpoints: list[str]) -> str | None:
    """The best of a trial's checkpoints by their names (core.checkpoint.best_first)."""
    ranked = ranked_checkpoints(checkpoints)
    return ranked[0] if ranked else None
