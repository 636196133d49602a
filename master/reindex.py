"""`hpsearch reindex CHECKPOINT_DIR`: rebuild a lost database from the checkpoint volume.

Every checkpoint a worker writes carries its trial's job (ids, stage, dataset,
hyperparameters, seed, epochs, attempt, the checkpoint it was promoted from) and its run's
whole state and per-epoch history; the master writes each sweep's spec beside its stages as
`sweepNNNNNN/sweep.json` when it is submitted. From these alone, reindex writes into an
empty database the sweeps, their stages, and for every trial that has a checkpoint its row
(status, best validation accuracy and epoch as the worker reported them, its files,
lineage) and its epochs, so that leaderboards, rankings and pages are as they were.

What the files do not hold is not made up: a trial that never wrote a checkpoint (it failed
or exploded in its first epoch, or never started) is missing; a run whose newest checkpoint
is not its end shows `stopped`, saying so; a stage's sampled ranges and warnings are gone;
ensembles are left to be evaluated again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core.checkpoint import (
    CheckpointError,
    CheckpointName,
    parse_checkpoint_name,
    read_summary,
    reported_best,
)
from core.contract import BUILTIN
from core.distributions import epoch_distributions
from core.messages import finite_or_none
from core.state import Explosion, History
from master.db import Database
from master.models import (
    Stage,
    StageStatus,
    Sweep,
    SweepStatus,
    Trial,
    TrialEpoch,
    TrialStatus,
    utcnow,
)
from master.settings import Settings

log = logging.getLogger(__name__)
SWEEP_RECORD = "sweep.json"
_STATUSES = {
    "finished": TrialStatus.FINISHED,
    "exploded": TrialStatus.EXPLODED,
    "stopped": TrialStatus.STOPPED,
}


class ReindexError(ValueError):
    """The volume or the database cannot be reindexed; the message says why."""


def sweep_directory(root: Path, sweep_id: int) -> Path:
    return root / f"sweep{sweep_id:06d}"  # core.messages.TrialJob.checkpoint_subdir's


def write_sweep_record(root: Path, sweep_id: int, name: str, spec: dict[str, Any]) -> None:
    """Keep the sweep's spec on the volume (atomically), for reindex."""
    directory = sweep_directory(root, sweep_id)
    directory.mkdir(parents=True, exist_ok=True)
    record = {"id": sweep_id, "name": name, "spec": spec, "created_at": utcnow().isoformat()}
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{SWEEP_RECORD}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(temp, directory / SWEEP_RECORD)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass
class Report:
    sweeps: int = 0
    trials: int = 0
    epochs: int = 0
    skipped: int = 0  # files that are no worker's checkpoint, or unreadable


def reindex(root: Path, db: Database) -> Report:
    """Write the volume's sweeps into `db`, which must hold none of them."""
    if not root.is_dir():
        raise ReindexError(f"{root}: no such folder")
    report = Report()
    files = _trial_files(root, report)
    runs = {}
    for trial_id, named in files.items():
        latest = max(named, key=lambda item: item[1].epoch)[0]
        try:
            summary = read_summary(latest)
        except CheckpointError as exc:
            log.warning("%s; trial %d skipped", exc, trial_id)
            report.skipped += 1
            continue
        job = summary.get("extra", {}).get("trial")
        if not isinstance(job, dict) or job.get("trial_id") != trial_id:
            report.skipped += 1  # e.g. `hpsearch train --checkpoint-dir`'s, not a sweep's
            continue
        runs[trial_id] = (summary, named, latest)
    by_sweep: dict[int, list[int]] = defaultdict(list)
    for trial_id, (summary, _, _) in runs.items():
        by_sweep[int(summary["extra"]["trial"]["sweep_id"])].append(trial_id)
    db.create_tables()
    with db.writing() as session:
        taken = session.scalars(select(Sweep.id).where(Sweep.id.in_(by_sweep))).all()
        if taken:
            raise ReindexError(
                f"the database already holds sweep(s) {', '.join(map(str, sorted(taken)))}: "
                f"reindex into an empty database"
            )
        for sweep_id, trial_ids in sorted(by_sweep.items()):
            sweep = _sweep(root, sweep_id, [runs[t][0]["extra"]["trial"] for t in trial_ids])
            session.add(sweep)
            session.flush()
            for trial_id in sorted(trial_ids):
                summary, named, latest = runs[trial_id]
                trial, epochs = _trial(root, summary, named, latest)
                session.add(trial)
                session.add_all(epochs)
                report.epochs += len(epochs)
            report.sweeps += 1
            report.trials += len(trial_ids)
        session.flush()
        _number_within_stages(session, list(by_sweep))
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            for table in ("sweeps", "trials"):  # explicit ids do not move the sequences on
                session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT MAX(id) FROM {table}))"
                    )
                )
    return report


def _trial_files(root: Path, report: Report) -> dict[int, list[tuple[Path, CheckpointName]]]:
    files: dict[int, list[tuple[Path, CheckpointName]]] = defaultdict(list)
    for path in root.glob("sweep*/stage*/*.npz"):
        try:
            name = parse_checkpoint_name(path)
        except CheckpointError:
            report.skipped += 1
            continue
        files[name.trial_id].append((path, name))
    return files


def _sweep(root: Path, sweep_id: int, jobs: list[dict[str, Any]]) -> Sweep:
    record_path = sweep_directory(root, sweep_id) / SWEEP_RECORD
    record: dict[str, Any] = {}
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        log.warning(
            "%s: no readable sweep record; its spec is rebuilt from the trials", record_path
        )
    spec = record.get("spec") or _spec_from_jobs(sweep_id, jobs)
    created = record.get("created_at")
    sweep = Sweep(
        id=sweep_id,
        name=record.get("name") or spec.get("name") or f"sweep {sweep_id}",
        spec=spec,
        status=SweepStatus.FINISHED,
        created_at=datetime.fromisoformat(created) if created else utcnow(),
        finished_at=utcnow(),
    )
    seen = {int(job["stage_index"]) for job in jobs}
    stages = spec.get("stages") or []
    count = max(len(stages), max(seen) + 1)
    sweep.stages = [
        Stage(
            index=k,
            trials=int(stages[k]["trials"]) if k < len(stages) else 0,
            epochs=float(stages[k]["epochs"]) if k < len(stages) else 0.0,
            keep_top=stages[k].get("keep_top") if k < len(stages) else None,
            promote=int(stages[k].get("promote") or 0) if k < len(stages) else 0,
            warnings=["reindexed from the checkpoint volume: the sampled ranges are not kept"],
            status=StageStatus.FINISHED,
        )
        for k in range(count)
    ]
    return sweep


def _spec_from_jobs(sweep_id: int, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """What a spec the trials can tell: the trainer, the dataset and each stage's trials and
    epochs."""
    per_stage: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        per_stage[int(job["stage_index"])].append(job)
    stages = [
        {
            "trials": len(per_stage.get(k, [])),
            "epochs": max((j["num_epochs"] for j in per_stage.get(k, [])), default=0),
        }
        for k in range(max(per_stage) + 1)
    ]
    return {
        "name": f"sweep {sweep_id}",
        "trainer": jobs[0].get("trainer", BUILTIN),
        "dataset": jobs[0]["dataset"],
        "space": {},
        "stages": stages,
    }


def _trial(
    root: Path, summary: dict[str, Any], named: list[tuple[Path, CheckpointName]], latest: Path
) -> tuple[Trial, list[TrialEpoch]]:
    job = summary["extra"]["trial"]
    state = summary["state"]
    history = state["history"]
    named = sorted(named, key=lambda item: item[1].epoch)
    epoch_done = history["epoch"][-1] if history["epoch"] else 0.0
    status = _STATUSES.get(state["status"], TrialStatus.STOPPED)
    reason = None
    if state["status"] not in _STATUSES:
        reason = f"reindexed from its checkpoint at epoch {epoch_done:g}: the run had not ended"
    elif status is TrialStatus.STOPPED:
        reason = f"stopped at epoch {epoch_done:g} (reindexed)"
    # The best as the worker reported it.
    best_val_acc, best_epoch = reported_best(
        (n for _, n in named),
        state["best_val_acc"],
        state["best_epoch"],
        promoted=bool(job.get("resume_from")),
    )
    parent_id, start_epoch = None, 0.0
    if job.get("resume_from"):
        parent = parse_checkpoint_name(job["resume_from"])
        # Had it trained from scratch instead (its parent's file unusable), its history
        # would be the same, bit for bit: the files cannot tell, so it counts as promoted.
        parent_id, start_epoch = parent.trial_id, parent.epoch
    epochs = history["epoch"]
    train_acc = next(
        (history["train_acc"][k] for k, e in enumerate(epochs) if e == best_epoch), None
    )
    explosion = state.get("explosion")
    if explosion is not None:
        explosion = Explosion(**explosion).to_json()  # as the worker's ENDED event has it
    finished_at = datetime.fromtimestamp(latest.stat().st_mtime, UTC)
    started_at = datetime.fromtimestamp(named[0][0].stat().st_mtime, UTC)
    trial = Trial(
        id=job["trial_id"],
        sweep_id=job["sweep_id"],
        stage_index=job["stage_index"],
        index=0,  # numbered within the stage once all are in
        parent_id=parent_id,
        start_epoch=start_epoch,
        hyperparameters=job["hyperparameters"],
        seed=job["seed"],
        num_epochs=job["num_epochs"],
        status=status,
        reason=reason,
        epochs_done=epoch_done,
        best_val_acc=best_val_acc,
        best_epoch=best_epoch,
        train_acc=train_acc,
        val_acc=history["val_acc"][-1] if history["val_acc"] else None,
        explosion=explosion,
        checkpoints=[str(path.relative_to(root)) for path, _ in named],
        attempts=job.get("attempt", 1),
        created_at=started_at,
        started_at=started_at,
        finished_at=finished_at,
    )
    rows = []
    typed = History.from_dict(history)
    per_epoch = state["iterations_per_epoch"]
    for k, epoch in enumerate(epochs):
        start = round(epochs[k - 1] * per_epoch) if k else 0
        end = round(epoch * per_epoch)
        rows.append(
            TrialEpoch(
                trial_id=job["trial_id"],
                epoch=epoch,
                # As the worker's events carry them: a value that is not finite (a user
                # trainer's unreported running average, say) as None.
                cost=finite_or_none(history["cost"][k]),
                train_acc=history["train_acc"][k],
                val_acc=history["val_acc"][k],
                average_val_acc=finite_or_none(history["average_val_acc"][k]),
                learning_rate=finite_or_none(history["lr"][k]),
                update_ratio=finite_or_none({n: v[k] for n, v in history["update_ratio"].items()}),
                loss=finite_or_none(history["loss"][start:end]),
                distributions=epoch_distributions(typed, k) or None,
            )
        )
    return trial, rows


def _number_within_stages(session: Session, sweep_ids: list[int]) -> None:
    """Trials were created in index order within a stage, so ids order them."""
    rows = session.scalars(
        select(Trial)
        .where(Trial.sweep_id.in_(sweep_ids))
        .order_by(Trial.sweep_id, Trial.stage_index, Trial.id)
    ).all()
    counters: dict[tuple[int, int], int] = defaultdict(int)
    for trial in rows:
        key = (trial.sweep_id, trial.stage_index)
        trial.index = counters[key]
        counters[key] += 1


def run_reindex(args: argparse.Namespace) -> int:
    url = args.database_url or Settings().database_url
    if not url:
        raise ReindexError("give --database-url (or DATABASE_URL): the database to write into")
    db = Database(url)
    try:
        report = reindex(Path(args.checkpoint_dir), db)
    finally:
        db.dispose()
    print(
        f"reindexed {report.sweeps} sweeps, {report.trials} trials and {report.epochs} epochs "
        f"from {args.checkpoint_dir} into {make_url(db.url).render_as_string(hide_password=True)}"
        + (
            f"; skipped {report.skipped} files that are no sweep's checkpoint"
            if report.skipped
            else ""
        )
    )
    return 0
