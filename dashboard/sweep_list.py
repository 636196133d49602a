"""The sweeps page's rows: every sweep with its progress and best, in three queries whatever
the number of sweeps (a sweep's own page reads the rest)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from master.models import FINAL_STATUSES, Ensemble, Stage, Sweep, Trial

MAX_SWEEPS = 200


@dataclass
class SweepRow:
    sweep: Sweep
    planned: int
    counts: Counter[str] = field(default_factory=Counter)
    best_val_acc: float | None = None
    test_acc: float | None = None  # its best trial's, from its test evaluation

    @property
    def ended(self) -> int:
        return sum(self.counts[s] for s in FINAL_STATUSES)


def list_sweeps(session: Session, limit: int = MAX_SWEEPS) -> list[SweepRow]:
    sweeps = list(session.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(limit)))
    ids = [s.id for s in sweeps]
    if not ids:
        return []
    planned = dict(
        session.execute(
            select(Stage.sweep_id, func.sum(Stage.trials))
            .where(Stage.sweep_id.in_(ids))
            .group_by(Stage.sweep_id)
        ).all()
    )
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    best: dict[int, float | None] = {}
    for sweep_id, status, count, top in session.execute(
        select(Trial.sweep_id, Trial.status, func.count(), func.max(Trial.best_val_acc))
        .where(Trial.sweep_id.in_(ids))
        .group_by(Trial.sweep_id, Trial.status)
    ):
        counts[sweep_id][str(status)] = count
        known = best.get(sweep_id)
        if top is not None and (known is None or top > known):
            best[sweep_id] = top
    tests: dict[int, float | None] = {}
    for sweep_id, members in session.execute(
        select(Ensemble.sweep_id, Ensemble.members)
        .where(Ensemble.sweep_id.in_(ids), Ensemble.automatic.is_(True))
        .order_by(Ensemble.id)
    ):
        tests[sweep_id] = (members[0] if members else {}).get("test_acc")
    return [
        SweepRow(s, int(planned.get(s.id) or 0), counts[s.id], best.get(s.id), tests.get(s.id))
        for s in sweeps
    ]
