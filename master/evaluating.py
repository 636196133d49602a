"""Ensembles: which checkpoints make one, and following their evaluation on the workers.

The notes close their evaluation advice with model ensembles; a sweep already holds what
two kinds need, and the core keeps the running average a third reports:
- top-k: the sweep's best runs, each by its best checkpoint. A trial that a later stage
  trained on is the same run as its promoted child, so only the child counts.
- checkpoints: the checkpoints of one trial, best first (the sweep must keep them all).
- seeds: one trial and its hyperparameters re-trained from N new seeds (the notes' "same
  model, different initializations"). This trains: the sweep gets one more stage of N
  trials and runs again; the ensemble waits, without members, until that stage ends.
Either way the worker scores the first k members together for every k, and each member
alone with its epoch's and with its running-average parameters; k is chosen on validation
accuracy, the test split only reported. When a sweep finishes, the master asks for a top-k
ensemble by itself: that is the sweep's test evaluation (best trial = k of 1).

The evaluation is a worker's RQ job (worker.ensembles); the master only follows its status:
a finished job's result is applied, a failed one's reason recorded, and a job lost with its
worker (no lease, or gone from Redis) enqueued again, up to MAX_ATTEMPTS.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis
from rq.registry import FailedJobRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.checkpoint import CheckpointError, parse_checkpoint_name
from core.messages import (
    EnsembleJob,
    EnsembleResult,
    ensemble_job_id,
    ensemble_stop_key,
    lease_key,
)
from master.db import Database
from master.models import (
    Ensemble,
    EnsembleKind,
    Stage,
    StageStatus,
    Sweep,
    SweepStatus,
    Trial,
    TrialStatus,
    ranking,
    utcnow,
)
from master.queueing import TrialQueue
from master.sampling import trial_seed
from master.spec import SpecError

log = logging.getLogger(__name__)
MAX_MEMBERS = 50
AUTOMATIC_MAX_K = 5  # the top-k ensemble a finished sweep gets by itself
MAX_ATTEMPTS = 3
DEFAULT_SEEDS = 4
OPEN = (TrialStatus.QUEUED, TrialStatus.RUNNING)


class EnsembleConflict(RuntimeError):
    """The sweep's state does not allow this ensemble (yet); the message says why."""


def best_checkpoint(trial: Trial, lookup: Callable[[int], Trial | None]) -> str | None:
    """The file holding the trial's best epoch: its own, or (for a promoted trial whose best
    epoch was inherited) an ancestor's. `lookup` finds a trial by id."""
    seen = set()
    current: Trial | None = trial
    while current is not None and current.id not in seen:
        seen.add(current.id)
        for path in current.checkpoints or []:
            try:
                name = parse_checkpoint_name(path)
            except CheckpointError:
                continue
            if name.epoch == trial.best_epoch and name.val_acc == trial.best_val_acc:
                return str(path)
        current = lookup(current.parent_id) if current.parent_id is not None else None
    return None


def top_k_members(session: Session, sweep: Sweep, max_k: int) -> list[dict[str, Any]]:
    trained_on = set(
        session.scalars(
            select(Trial.parent_id).where(Trial.sweep_id == sweep.id, Trial.parent_id.is_not(None))
        )
    )
    # Best first, a page at a time: a sweep of thousands of trials needs only its top rows.
    query = (
        select(Trial)
        .where(Trial.sweep_id == sweep.id, Trial.best_val_acc.is_not(None))
        .order_by(*ranking())
    )
    members: list[dict[str, Any]] = []
    offset, page = 0, max(2 * max_k, 20)
    while len(members) < max_k:
        trials = session.scalars(query.limit(page).offset(offset)).all()
        for trial in trials:
            path = None if trial.id in trained_on else best_checkpoint(trial, trial_lookup(session))
            if path is not None and len(members) < max_k:
                members.append({"trial_id": trial.id, "checkpoint": path})
        if len(trials) < page:
            break
        offset += page
    return members


def _trial_of(session: Session, sweep: Sweep, trial_id: int) -> Trial:
    trial = session.get(Trial, trial_id)
    if trial is None or trial.sweep_id != sweep.id:
        raise SpecError([f"trial_id: trial {trial_id} is not a trial of sweep {sweep.id}"])
    return trial


def trial_lookup(session: Session) -> Callable[[int], Trial | None]:
    """best_checkpoint's `lookup`, by the session."""
    return lambda trial_id: session.get(Trial, trial_id)


def checkpoint_members(
    session: Session, sweep: Sweep, trial_id: int, max_k: int
) -> list[dict[str, Any]]:
    trial = _trial_of(session, sweep, trial_id)
    named = []
    for path in trial.checkpoints or []:
        try:
            named.append((parse_checkpoint_name(path), str(path)))
        except CheckpointError:
            continue
    if len(named) < 2:
        keep = (sweep.spec or {}).get("keep_checkpoints", "best_and_latest")
        raise SpecError(
            [
                f"trial_id: trial {trial_id} has {len(named)} checkpoint(s); an ensemble of "
                f"one trial's checkpoints needs several"
                + (
                    " (its sweep keeps only the best and the latest: submit it with "
                    "keep_checkpoints: all)"
                    if keep != "all"
                    else ""
                )
            ]
        )
    named.sort(key=lambda item: (-item[0].val_acc, item[0].epoch))
    return [{"trial_id": trial_id, "checkpoint": path} for _, path in named[:max_k]]


def create_ensemble(
    session: Session,
    sweep: Sweep,
    kind: EnsembleKind,
    params: dict[str, Any],
    automatic: bool = False,
) -> Ensemble:
    """Store a queued ensemble of the sweep (the scheduler enqueues it); EnsembleConflict
    while the sweep runs or when nothing in it can be evaluated, SpecError for bad params."""
    if sweep.status == SweepStatus.RUNNING:
        raise EnsembleConflict(
            f"sweep {sweep.id} is running: its ensembles are made once it has finished or "
            f"was cancelled (its best trials may still change)"
        )
    max_k = int(params.get("max_k", AUTOMATIC_MAX_K))
    if kind is EnsembleKind.SEEDS:
        params = {**params, "seeds": int(params.get("seeds") or DEFAULT_SEEDS)}
        params["stage"] = _start_seeds_stage(session, sweep, params)
        members: list[dict[str, Any]] = []
    elif kind is EnsembleKind.TOP_K:
        members = top_k_members(session, sweep, max_k)
    else:
        members = checkpoint_members(session, sweep, int(params["trial_id"]), max_k)
    if not members and kind is not EnsembleKind.SEEDS:
        raise EnsembleConflict(f"sweep {sweep.id} has no trial with a checkpoint to evaluate")
    ensemble = Ensemble(
        sweep_id=sweep.id, kind=kind, params=params, automatic=automatic, members=members
    )
    session.add(ensemble)
    session.flush()
    return ensemble


def _start_seeds_stage(session: Session, sweep: Sweep, params: dict[str, Any]) -> int:
    """A new last stage of the sweep: the trial's hyperparameters and epochs, new seeds. The
    sweep runs again until it ends. Returns the stage's index."""
    trial = _trial_of(session, sweep, int(params["trial_id"]))
    if best_checkpoint(trial, trial_lookup(session)) is None:
        raise SpecError([f"trial_id: trial {trial.id} has no checkpoint of its best epoch"])
    seeds = int(params["seeds"])
    index = len(sweep.stages)
    sweep.stages.append(
        Stage(
            index=index,
            trials=seeds,
            epochs=trial.num_epochs,
            promote=0,
            warnings=[
                f"trial {trial.id}'s hyperparameters re-trained from {seeds} new seeds, for "
                f"an ensemble of the same model from different initializations"
            ],
            status=StageStatus.RUNNING,
            planned_at=utcnow(),
        )
    )
    sweep_seed = int(sweep.spec.get("seed", 0))
    session.add_all(
        Trial(
            sweep_id=sweep.id,
            stage_index=index,
            index=i,
            hyperparameters=trial.hyperparameters,
            seed=trial_seed(sweep_seed, index, i),
            num_epochs=trial.num_epochs,
        )
        for i in range(seeds)
    )
    sweep.status = SweepStatus.RUNNING
    sweep.finished_at = None
    return index


def gather_seed_members(session: Session, sweep: Sweep) -> None:
    """Once a seeds ensemble's stage has ended (or its sweep was cancelled): its members are
    the trial and every re-training of it that has a checkpoint of its best epoch."""
    waiting = session.scalars(
        select(Ensemble).where(
            Ensemble.sweep_id == sweep.id,
            Ensemble.kind == EnsembleKind.SEEDS,
            Ensemble.status == TrialStatus.QUEUED,
        )
    ).all()
    for ensemble in waiting:
        if ensemble.members:
            continue
        stage = int(ensemble.params["stage"])
        original = session.get(Trial, int(ensemble.params["trial_id"]))
        again = session.scalars(
            select(Trial)
            .where(Trial.sweep_id == sweep.id, Trial.stage_index == stage)
            .order_by(Trial.id)
        ).all()
        members = []
        for trial in [t for t in (original, *again) if t is not None]:
            if (path := best_checkpoint(trial, trial_lookup(session))) is not None:
                members.append({"trial_id": trial.id, "checkpoint": path})
        if len(members) < 2:
            ensemble.status = TrialStatus.FAILED
            ensemble.reason = f"none of stage {stage}'s re-trainings has a checkpoint to join"
            ensemble.finished_at = utcnow()
        ensemble.members = members


def sweep_test_evaluation(session: Session, sweep: Sweep) -> Ensemble | None:
    """The sweep's own test evaluation (the latest, should one have been re-made)."""
    return session.scalars(
        select(Ensemble)
        .where(Ensemble.sweep_id == sweep.id, Ensemble.automatic.is_(True))
        .order_by(Ensemble.id.desc())
        .limit(1)
    ).first()


def evaluate_finished_sweep(session: Session, sweep: Sweep) -> Ensemble | None:
    """The test evaluation a sweep gets when it finishes: a top-k ensemble of its best
    (once: a sweep that ran again for a seeds ensemble keeps its first)."""
    gather_seed_members(session, sweep)
    if sweep_test_evaluation(session, sweep) is not None:
        return None
    try:
        return create_ensemble(
            session, sweep, EnsembleKind.TOP_K, {"max_k": AUTOMATIC_MAX_K}, automatic=True
        )
    except EnsembleConflict as exc:
        log.warning("sweep %d: no test evaluation: %s", sweep.id, exc)
        return None


def choose_k(curve: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The point of the curve with the best validation accuracy, ties to the smaller k: the
    test accuracy plays no part."""
    best = None
    for point in curve:
        if best is None or point["val_acc"] > best["val_acc"]:
            best = point
    return best


def apply_result(ensemble: Ensemble, result: EnsembleResult) -> None:
    members = []
    for member, score in zip(ensemble.members, result.members, strict=False):
        members.append({**member, **vars(score)})
    members += ensemble.members[len(members) :]
    ensemble.members = members
    ensemble.curve = [vars(point) for point in result.curve]
    chosen = choose_k(ensemble.curve)
    if chosen is not None:
        ensemble.k, ensemble.val_acc, ensemble.test_acc = (
            chosen["k"],
            chosen["val_acc"],
            chosen["test_acc"],
        )
    if result.status == "stopped":
        ensemble.status = TrialStatus.STOPPED
        ensemble.reason = f"stopped after {len(result.curve)} of {len(ensemble.members)} members"
    else:
        ensemble.status = TrialStatus.FINISHED
        ensemble.reason = None if result.has_test else "the dataset has no test split"
    ensemble.finished_at = utcnow()


class Evaluations:
    """Enqueues queued ensembles and follows their jobs; one pass per scheduler pass."""

    def __init__(
        self,
        db: Database,
        redis: Redis,
        queue: TrialQueue,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.db = db
        self.redis = redis
        self.queue = queue
        self.ready = ready  # whether a missing lease can be judged (not right after an outage)
        # Jobs seen taken or started without a lease last pass: on the next, their worker is
        # gone (the first sighting may fall between a worker's dequeue and its lease).
        self._unleased: set[str] = set()
        # The API's threads enqueue too: a pass must not see a job committed but not yet in
        # Redis, and take it for a lost one.
        self._lock = threading.Lock()

    def step(self) -> None:
        self.enqueue_pending()
        self.follow()

    def enqueue_pending(self) -> int:
        with self._lock:
            return self._enqueue_pending()

    def _enqueue_pending(self) -> int:
        with self.db.writing() as session:
            pending = session.scalars(
                select(Ensemble)
                .where(Ensemble.status == TrialStatus.QUEUED, Ensemble.job_id.is_(None))
                .with_for_update()
            ).all()
            jobs = []
            for ensemble in pending:
                if not ensemble.members:  # a seeds ensemble whose stage still trains
                    continue
                sweep = session.get(Sweep, ensemble.sweep_id)
                assert sweep is not None  # the foreign key
                ensemble.attempts += 1
                ensemble.job_id = ensemble_job_id(ensemble.id, ensemble.attempts)
                jobs.append(
                    EnsembleJob(
                        ensemble.id,
                        sweep.id,
                        str(sweep.spec["dataset"]),
                        [m["checkpoint"] for m in ensemble.members],
                        ensemble.attempts,
                    )
                )
        for job in jobs:  # after the commit: a job never names an ensemble not stored
            self.queue.enqueue_ensemble(ensemble_job_id(job.ensemble_id, job.attempt), job)
        return len(jobs)

    def follow(self) -> None:
        with self._lock:
            self._follow()

    def _follow(self) -> None:
        with self.db.reading() as session:
            rows = session.execute(
                select(Ensemble.job_id, Ensemble.id).where(
                    Ensemble.status.in_(OPEN), Ensemble.job_id.is_not(None)
                )
            ).all()
        open_jobs = {rq_id: ensemble_id for rq_id, ensemble_id in rows if rq_id is not None}
        if not open_jobs:
            self._unleased = set()
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for rq_id in open_jobs:
                pipe.hget(f"rq:job:{rq_id}", "status")
                pipe.exists(lease_key(rq_id))
            replies = pipe.execute()
        # Taken off the queue by a worker that died before starting it: RQ still says
        # "queued", but no worker will run it.
        taken = self.queue.taken_job_ids()
        unleased = set()
        for (rq_id, ensemble_id), raw, leased in zip(
            open_jobs.items(), replies[::2], replies[1::2], strict=True
        ):
            status = (raw or b"").decode()
            if status == "finished":
                self._finished(ensemble_id, rq_id)
            elif status == "failed":
                self._failed(ensemble_id, rq_id)
            elif status == "started" or (status == "queued" and rq_id in taken):
                if status == "started":
                    self._mark_running(ensemble_id, rq_id)
                if not leased:
                    unleased.add(rq_id)
                    if rq_id in self._unleased and self.ready():
                        self._lost(ensemble_id, rq_id, "its worker stopped answering")
            elif status in ("", "stopped", "canceled") and self.ready():
                self._lost(ensemble_id, rq_id, "its job was lost from Redis")
        self._unleased = unleased

    def stop(self, ensemble_id: int) -> None:
        """A queued ensemble ends now; a running one at its next member (its job's flag)."""
        self.redis.set(ensemble_stop_key(ensemble_id), 1, ex=7 * 24 * 3600)
        with self.db.writing() as session:
            ensemble = session.get(Ensemble, ensemble_id, with_for_update=True)
            if ensemble is None or ensemble.status != TrialStatus.QUEUED:
                return
            rq_id = ensemble.job_id
            ensemble.status = TrialStatus.STOPPED
            ensemble.reason = "stopped before it started"
            ensemble.finished_at = utcnow()
        if rq_id is not None:
            self.queue.cancel([rq_id])

    def _current(self, session: Session, ensemble_id: int, rq_id: str) -> Ensemble | None:
        ensemble = session.get(Ensemble, ensemble_id, with_for_update=True)
        if ensemble is None or ensemble.job_id != rq_id or ensemble.status not in OPEN:
            return None
        return ensemble

    def _finished(self, ensemble_id: int, rq_id: str) -> None:
        job = self.queue.fetch(rq_id)
        value = job.return_value() if job is not None else None
        with self.db.writing() as session:
            ensemble = self._current(session, ensemble_id, rq_id)
            if ensemble is None:
                return
            if not isinstance(value, dict):
                ensemble.status = TrialStatus.FAILED
                ensemble.reason = "the worker ended the job without a result"
                ensemble.finished_at = utcnow()
                return
            apply_result(ensemble, EnsembleResult.from_dict(value))

    def _failed(self, ensemble_id: int, rq_id: str) -> None:
        job = self.queue.fetch(rq_id)
        result = job.latest_result() if job is not None else None
        text = str(getattr(result, "exc_string", "") or "").strip().splitlines()
        with self.db.writing() as session:
            ensemble = self._current(session, ensemble_id, rq_id)
            if ensemble is not None:
                ensemble.status = TrialStatus.FAILED
                ensemble.reason = text[-1] if text else "the worker's job failed"
                ensemble.finished_at = utcnow()
        FailedJobRegistry(queue=self.queue.queue).remove(rq_id)

    def _mark_running(self, ensemble_id: int, rq_id: str) -> None:
        with self.db.writing() as session:
            ensemble = self._current(session, ensemble_id, rq_id)
            if ensemble is not None and ensemble.status == TrialStatus.QUEUED:
                ensemble.status = TrialStatus.RUNNING

    def _lost(self, ensemble_id: int, rq_id: str, why: str) -> None:
        with self.db.writing() as session:
            ensemble = self._current(session, ensemble_id, rq_id)
            if ensemble is None:
                return
            if ensemble.attempts >= MAX_ATTEMPTS:
                ensemble.status = TrialStatus.FAILED
                ensemble.reason = f"{why} (attempt {ensemble.attempts} of {MAX_ATTEMPTS})"
                ensemble.finished_at = utcnow()
            else:
                log.warning("ensemble %d: %s; enqueued again", ensemble_id, why)
                ensemble.status = TrialStatus.QUEUED
                ensemble.job_id = None
                ensemble.reason = f"{why}; enqueued again"
        self._enqueue_pending()  # the caller holds the lock
