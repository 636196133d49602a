"""Turning database rows into the API's schemas."""

from __future__ import annotations

from collections import Counter

from redis import Redis
from rq import Worker
from rq.worker import BaseWorker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.contract import BUILTIN, Declaration
from master.diagnoses import sweep_summary, trial_findings
from master.evaluating import best_checkpoint, sweep_test_evaluation, trial_lookup
from master.models import (
    FINAL_STATUSES,
    Ensemble,
    Sweep,
    SweepStatus,
    Trial,
    TrialStatus,
    ranking,
)
from master.planning import final_border_warnings
from master.schemas import (
    EnsemblePublic,
    EpochPublic,
    FindingPublic,
    RankedTrial,
    StagePublic,
    SweepPublic,
    TestEvaluation,
    TrialDetail,
    TrialPublic,
    WorkerPublic,
)
from master.sweeps import rung, space_from_json, stage_counts
from master.trainers import workers_trainers


def sweep_public(session: Session, sweep: Sweep) -> SweepPublic:
    counts = stage_counts(session, sweep.id)
    stages = []
    for stage in sweep.stages:
        space = space_from_json(stage.space) if stage.space else {}
        stages.append(
            StagePublic(
                index=stage.index,
                status=stage.status,
                trials=stage.trials,
                epochs=stage.epochs,
                keep_top=stage.keep_top,
                promote=stage.promote,
                ranked_from=[s.index for s in rung(sweep.stages, stage.index - 1)]
                if stage.index
                else [],
                space=stage.space,
                ranges={name: dist.describe() for name, dist in space.items()},
                warnings=stage.warnings or [],
                counts=dict(counts.get(stage.index, Counter())),
                planned_at=stage.planned_at,
            )
        )
    total: Counter[str] = Counter()
    for stage_counter in counts.values():
        total.update(stage_counter)
    planned = sum(stage.trials for stage in sweep.stages)
    done = sum(total[s] for s in FINAL_STATUSES)
    # Trials never sampled because the sweep was cancelled are not "to do" any more.
    to_do = planned if sweep.status == SweepStatus.RUNNING else max(1, sum(total.values()))
    return SweepPublic(
        id=sweep.id,
        name=sweep.name,
        status=sweep.status,
        dataset=sweep.spec.get("dataset", ""),
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
        reason=sweep.reason,
        total_trials=planned,
        done_trials=done,
        progress=min(1.0, done / to_do) if to_do else 1.0,
        counts=dict(total),
        stages=stages,
        epochs_trained=epochs_trained(session, sweep.id),
        final_warnings=final_warnings(session, sweep),
        test=_test_public(sweep_test_evaluation(session, sweep)),
        diagnoses=sweep_summary(session, sweep.id),
        spec=sweep.spec,
    )


def _test_public(ensemble: Ensemble | None) -> TestEvaluation | None:
    if ensemble is None:
        return None
    best = ensemble.members[0] if ensemble.members else {}
    return TestEvaluation(
        status=ensemble.status,
        ensemble_id=ensemble.id,
        best_trial_id=best.get("trial_id"),
        best_val_acc=best.get("val_acc"),
        best_test_acc=best.get("test_acc"),
        k=ensemble.k,
        ensemble_val_acc=ensemble.val_acc,
        ensemble_test_acc=ensemble.test_acc,
    )


def ensemble_public(ensemble: Ensemble) -> EnsemblePublic:
    return EnsemblePublic.model_validate(ensemble)


def epochs_trained(session: Session, sweep_id: int) -> float:
    """What the sweep's trials trained, each promoted one without the epochs it inherited."""
    trained = session.scalar(
        select(func.sum(Trial.epochs_trained)).where(Trial.sweep_id == sweep_id)
    )
    return float(trained or 0.0)


def final_warnings(session: Session, sweep: Sweep) -> list[str]:
    """For a finished sweep: where its last stage's best trial sits on a range's border."""
    if sweep.status != SweepStatus.FINISHED or not sweep.stages:
        return []
    # The last stage that searched (a seeds ensemble's stage after it only re-trains).
    last = next((s for s in reversed(sweep.stages) if s.space), sweep.stages[-1])
    best = session.scalars(
        select(Trial)
        .where(Trial.sweep_id == sweep.id, Trial.stage_index == last.index)
        .where(Trial.status == TrialStatus.FINISHED)
        .order_by(*ranking())
        .limit(1)
    ).first()
    if best is None or not last.space:
        return []
    user = space_from_json(sweep.spec.get("space", {}))
    return final_border_warnings(space_from_json(last.space), user, best.hyperparameters)


def trial_public(trial: Trial) -> TrialPublic:
    return TrialPublic.model_validate(trial)


def ranked_trial(trial: Trial, rank: int) -> RankedTrial:
    return RankedTrial.model_validate(trial).model_copy(update={"rank": rank})


def trial_detail(session: Session, trial: Trial) -> TrialDetail:
    history = [EpochPublic.model_validate(epoch) for epoch in trial.epochs]
    loss = [cost for epoch in trial.epochs for cost in epoch.loss]
    best = best_checkpoint(trial, trial_lookup(session))
    diagnoses = [FindingPublic(kind=f.kind, text=f.text) for f in trial_findings(trial)]
    return TrialDetail(
        **trial_public(trial).model_dump(),
        best_checkpoint=best,
        history=history,
        loss=loss,
        diagnoses=diagnoses,
    )


def live_workers(redis: Redis, session: Session) -> list[WorkerPublic]:
    """Every worker registered in Redis, by name, with the trial it is running."""
    found = Worker.all(connection=redis)
    running = running_trials(session, [w.name for w in found])
    trainers = workers_trainers(redis, found)
    workers = [_worker_public(w, running.get(w.name), trainers[w.name]) for w in found]
    return sorted(workers, key=lambda w: w.name)


def running_trials(session: Session, workers: list[str] | None = None) -> dict[str, int]:
    """Worker name -> its running trial, from the database: a worker's RQ job may hold a
    batch of trials, and only the database knows which one is running."""
    query = select(Trial.worker, Trial.id).where(Trial.status == TrialStatus.RUNNING)
    if workers is not None:
        query = query.where(Trial.worker.in_(workers))
    return {name: trial_id for name, trial_id in session.execute(query).all() if name}


def _worker_public(
    worker: BaseWorker, trial_id: int | None, declared: list[Declaration]
) -> WorkerPublic:
    job = worker.get_current_job_id()
    trainers = [BUILTIN, *sorted(d.name for d in declared)]
    return WorkerPublic(
        name=worker.name,
        host=worker.hostname,
        state=str(worker.get_state()),
        queues=worker.queue_names(),
        current_job=job,
        current_trial=trial_id if job else None,
        last_heartbeat=worker.last_heartbeat,
        trainers=trainers,
    )
