"""Sweeps in the database: creating one, starting its stages, planning the next, cancelling.

These functions work inside a caller's transaction (a `Database.writing()` session) and
raise domain errors, never HTTP ones. Queueing the trials they create is the scheduler's
job (master.queueing), after the transaction commits: a trial is in the database before it
is in Redis, so a crash in between leaves a trial to enqueue, never a job without a trial.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, Protocol, TypeVar, cast

from pydantic import TypeAdapter
from sqlalchemy import Insert, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from master.evaluating import evaluate_finished_sweep, gather_seed_members
from master.models import (
    FINAL_STATUSES,
    Stage,
    StageStatus,
    Sweep,
    SweepStatus,
    Trial,
    TrialEpoch,
    TrialStatus,
    utcnow,
)
from master.planning import TrialResult, default_keep_top, plan_next_stage, space_hull
from master.sampling import sample_trials, stage_rng, trial_seed
from master.space import Distribution, Space
from master.spec import SweepSpec, name_stages, rung_start

_SPACE = TypeAdapter(dict[str, Distribution])


class NotFound(LookupError):
    """No such sweep, trial or worker; the message names it."""


class Conflict(RuntimeError):
    """The request does not fit the current state (e.g. stopping a finished trial)."""


def get_sweep(session: Session, sweep_id: int, **options: Any) -> Sweep:
    """The sweep (`options` go to Session.get), or NotFound naming it."""
    sweep = session.get(Sweep, sweep_id, **options)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id}: no such sweep")
    return sweep


def get_trial(session: Session, trial_id: int, **options: Any) -> Trial:
    """The trial (`options` go to Session.get), or NotFound naming it."""
    trial = session.get(Trial, trial_id, **options)
    if trial is None:
        raise NotFound(f"trial {trial_id}: no such trial")
    return trial


def space_to_json(space: Space) -> dict[str, Any]:
    return {name: dist.model_dump() for name, dist in space.items()}


def space_from_json(data: dict[str, Any]) -> Space:
    return dict(_SPACE.validate_python(data))


def create_sweep(session: Session, spec: SweepSpec) -> Sweep:
    """Store the sweep, its stages, and the trials of its first stage."""
    sweep = Sweep(name=spec.name, spec=spec.model_dump(mode="json"))
    sweep.stages = [
        Stage(
            index=k,
            trials=stage.trials,
            epochs=stage.epochs,
            keep_top=stage.keep_top,
            promote=stage.promote,
        )
        for k, stage in enumerate(spec.stages)
    ]
    session.add(sweep)
    session.flush()
    _start_stage(session, sweep, spec, sweep.stages[0], dict(spec.space), [])
    return sweep


def _start_stage(
    session: Session,
    sweep: Sweep,
    spec: SweepSpec,
    stage: Stage,
    space: Space,
    warnings: list[str],
    first_new: int = 0,
) -> None:
    """Plan the stage: after its `first_new` trials (promoted from the stage before, by
    promote_early), new trials sampled in `space` up to the stage's count."""
    stage.space = space_to_json(space)
    stage.warnings = warnings
    stage.status = StageStatus.RUNNING
    stage.planned_at = utcnow()
    rng = stage_rng(spec.seed, stage.index)
    drawn = sample_trials(
        space, spec.base_hyperparameters(), stage.trials - first_new, rng, spec.sampler
    )
    session.add_all(
        Trial(
            sweep_id=sweep.id,
            stage_index=stage.index,
            index=i,
            hyperparameters=hyperparameters,
            seed=trial_seed(spec.seed, stage.index, i),
            num_epochs=stage.epochs,
        )
        for i, hyperparameters in enumerate(drawn, start=first_new)
    )


def _add_promoted(
    session: Session, sweep: Sweep, stage: Stage, parents: list[Trial], first_index: int
) -> None:
    """Trials that go on from `parents`, each with its parent's history as its own first
    epochs: copied here, in the database, rather than re-sent by the worker (a third of a
    budget sweep's epoch events were inherited ones)."""
    children = [
        Trial(
            sweep_id=sweep.id,
            stage_index=stage.index,
            index=i,
            parent_id=parent.id,
            start_epoch=parent.epochs_done,
            hyperparameters=parent.hyperparameters,
            seed=parent.seed,  # the same run, trained on: the same seed
            num_epochs=stage.epochs,
            # Where the run stands: its parent's end, until it trains an epoch of its own.
            epochs_done=parent.epochs_done,
            val_acc=parent.val_acc,
            best_val_acc=parent.best_val_acc,
            best_epoch=parent.best_epoch,
            train_acc=parent.train_acc,
        )
        for i, parent in enumerate(parents, start=first_index)
    ]
    session.add_all(children)
    session.flush()  # the children's ids
    session.execute(_COPY_INHERITED_EPOCHS, {"children": [c.id for c in children]})


def _copy_inherited_epochs() -> Insert:
    """INSERT ... SELECT of every listed child's inherited epochs (its parent's, up to its
    start_epoch), built once: with an alias of Trial built per promotion (SQLAlchemy adapts
    every column of a new alias) a promotion cost 2.4 ms of CPU against 0.9 ms now (median
    of 50), and the alias was 11% of the master's py-spy samples in a budget sweep."""
    child = aliased(Trial)
    columns = [c for c in TrialEpoch.__table__.columns if c.key not in ("id", "trial_id")]
    inherited = (
        select(child.id, *columns)
        .join(child, child.parent_id == TrialEpoch.trial_id)
        .where(child.id.in_(bindparam("children", expanding=True)))
        .where(TrialEpoch.epoch <= child.start_epoch)
    )
    # Core's table, not the ORM entity: the ORM takes a parameter dict for a bulk insert.
    table = cast(Table, TrialEpoch.__table__)
    return insert(table).from_select(["trial_id", *(c.key for c in columns)], inherited)


_COPY_INHERITED_EPOCHS = _copy_inherited_epochs()


def promote_early(
    session: Session,
    sweep: Sweep,
    first_stage: int,
    counts: dict[int, Counter[str]] | None = None,
) -> bool:
    """Train on the trials sure to be promoted whatever their stage's open trials do: a
    finished trial ranked r among its stage's finished ones, with n trials of the stage
    still open (or not sampled yet), is in the best `promote` once r + n <= promote. Before
    a stage ends, the next one then starts on idle workers instead of waiting for its last
    trial; once it has ended (n = 0), this promotes the rest of its best. The same trials are
    promoted either way. `counts`: stage_counts, if the caller has them. Returns whether it
    promoted any."""
    changed = False
    pairs = [
        (stage, following)
        for stage, following in pairwise(sweep.stages[first_stage:])
        if following.status == StageStatus.PENDING and following.promote
    ]
    if not pairs:
        return False
    # One query for every stage's counts: this runs after each trial that ends.
    counts = stage_counts(session, sweep.id) if counts is None else counts
    for stage, following in pairs:
        pool = rung(sweep.stages, stage.index)
        ended = sum(counts.get(s.index, Counter())[f] for s in pool for f in FINAL_STATUSES)
        still_open = sum(s.trials for s in pool) - ended
        if still_open >= following.promote:
            continue  # nobody can be sure yet: no need to read the rung's trials
        # Only the columns that rank: whole rows (their JSON parsed) after every ended
        # trial were a fifth of the master's CPU in a budget sweep.
        finished = session.execute(
            select(Trial.id, Trial.status, Trial.val_acc, Trial.best_val_acc, Trial.checkpoints)
            .where(Trial.sweep_id == sweep.id)
            .where(Trial.stage_index.in_([s.index for s in pool]))
            .where(Trial.status == TrialStatus.FINISHED)
        ).all()
        sure = promotion(finished, following.promote)[: max(0, following.promote - still_open)]
        children = session.scalars(
            select(Trial.parent_id).where(
                Trial.sweep_id == sweep.id, Trial.stage_index == following.index
            )
        ).all()
        done = set(children)
        new = [t.id for t in sure if t.id not in done]
        if new:
            parents = {t.id: t for t in session.scalars(select(Trial).where(Trial.id.in_(new)))}
            _add_promoted(session, sweep, following, [parents[i] for i in new], len(children))
            session.flush()
            changed = True
    return changed


def rung(stages: Sequence[Stage], index: int) -> list[Stage]:
    """The stages a promotion into stage `index + 1` draws from: stage `index` and the
    stages right before it that train as many epochs (budget mode's first rung is drawn in
    three such stages, wide, narrowed and narrowed again). Ranking them together keeps a
    good trial of the wide part when a narrowing was misled by early results."""
    return list(stages[rung_start(stages, index) : index + 1])


def _rung_trials(session: Session, sweep_id: int, pool: Sequence[Stage]) -> list[Trial]:
    query = select(Trial).where(
        Trial.sweep_id == sweep_id, Trial.stage_index.in_([s.index for s in pool])
    )
    return list(session.scalars(query.order_by(Trial.stage_index, Trial.index)))


def advance_if_stage_done(session: Session, sweep_id: int) -> bool:
    """When the running stage has no queued or running trial left, finish it and start the
    next one (or finish the sweep). Returns whether anything changed."""
    sweep = session.get(Sweep, sweep_id, with_for_update=True)
    if sweep is None or sweep.status != SweepStatus.RUNNING:
        return False
    stage = next((s for s in sweep.stages if s.status == StageStatus.RUNNING), None)
    if stage is None:
        return False
    # One count query answers what follows (failing alike, promotions, open trials): this
    # runs after every trial that ends, and it made a query per question.
    counts = stage_counts(session, sweep.id)
    reason = failing_alike(session, sweep, counts)
    if reason is not None:
        end_sweep(session, sweep.id, SweepStatus.FAILED, reason)
        return True
    promoted_early = promote_early(session, sweep, stage.index, counts)
    # Promotion adds trials to later stages only: the running stage's counts still hold.
    running = counts.get(stage.index, Counter())
    if running[TrialStatus.QUEUED] + running[TrialStatus.RUNNING]:
        return promoted_early
    stage.status = StageStatus.FINISHED
    if stage.index + 1 >= len(sweep.stages):
        sweep.status = SweepStatus.FINISHED
        sweep.finished_at = utcnow()
        evaluate_finished_sweep(session, sweep)  # on the test split, by a worker
        return True
    spec = SweepSpec.stored(sweep.spec)
    following = sweep.stages[stage.index + 1]
    # The next stage is planned from the whole rung (its trials trained as long: they
    # compare), over the ranges its stages drew from.
    pool = rung(sweep.stages, stage.index)
    trials = _rung_trials(session, sweep.id, pool)
    results = [
        TrialResult(t.hyperparameters, t.status, t.best_val_acc, t.epochs_done) for t in trials
    ]
    plan = plan_next_stage(
        current=space_hull([space_from_json(s.space or {}) for s in pool]),
        user=dict(spec.space),
        results=results,
        keep_top=following.keep_top or default_keep_top(len(trials)),
        base=spec.base_hyperparameters(),
        stage_index=stage.index,
        check=spec.check_hyperparameters,
    )
    # promote_early, above, has promoted all of the ended stage's best by now.
    promoted = (
        session.scalar(
            select(func.count())
            .select_from(Trial)
            .where(Trial.sweep_id == sweep.id, Trial.stage_index == following.index)
        )
        or 0
    )
    warnings = list(plan.warnings)
    if promoted < following.promote:
        warnings.append(
            f"only {promoted} trials of {name_stages(pool[0].index, pool[-1].index)} finished "
            f"to be trained on (of {following.promote} asked): stage {following.index} "
            "samples the rest anew"
        )
    _start_stage(session, sweep, spec, following, plan.space, warnings, promoted)
    return True


class Ranked(Protocol):
    """What promotion ranks by: a Trial, or a row of these columns."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> TrialStatus: ...
    @property
    def val_acc(self) -> float | None: ...
    @property
    def best_val_acc(self) -> float | None: ...
    @property
    def checkpoints(self) -> list[Any]: ...


R = TypeVar("R", bound=Ranked)


def promotion(trials: Sequence[R], count: int) -> list[R]:
    """The trials a stage trains on: the `count` finished trials of the stage before with
    the best validation accuracy where they stopped (that is the run trained on), ties to
    the better best, then to the older trial. Only trials with a checkpoint to go on from."""
    finished = [
        t
        for t in trials
        if t.status == TrialStatus.FINISHED and t.val_acc is not None and t.checkpoints
    ]
    finished.sort(key=lambda t: (-(t.val_acc or 0.0), -(t.best_val_acc or 0.0), t.id))
    return finished[:count]


# Errors that every trial of a sweep would meet: the same one from the first trials means
# the sweep cannot work (a dataset that does not load, a setting core refuses).
# A user trainer that breaks its contract, or that the worker does not have, fails every
# trial alike too (core.contract.TrainerError, worker.trainers.UnknownTrainer).
SWEEP_ERRORS = ("DatasetError:", "ConfigError:", "TrainerError:", "UnknownTrainer:")
FAIL_FAST_TRIALS = 3  # ... once this many trials (or the whole first stage) failed alike


def failing_alike(
    session: Session, sweep: Sweep, counts: dict[int, Counter[str]] | None = None
) -> str | None:
    """The reason, when every trial of the sweep that has ended so far failed with the same
    dataset or configuration error, and enough of them did to be sure. `counts`
    (stage_counts), if the caller has them, spare the query once any trial ended otherwise."""
    if counts is not None and any(
        by_status[s]
        for by_status in counts.values()
        for s in FINAL_STATUSES
        if s != TrialStatus.FAILED
    ):
        return None
    outcomes = session.execute(
        select(Trial.status, Trial.reason, func.count())
        .where(Trial.sweep_id == sweep.id, Trial.status.in_(FINAL_STATUSES))
        .group_by(Trial.status, Trial.reason)
        .limit(2)  # two kinds of outcome already rule it out
    ).all()
    if len(outcomes) != 1:
        return None
    status, reason, count = outcomes[0]
    needed = min(FAIL_FAST_TRIALS, sweep.stages[0].trials)
    if (
        status != TrialStatus.FAILED
        or count < needed
        or not (reason or "").startswith(SWEEP_ERRORS)
    ):
        return None
    return f"its first {count} trials failed alike: {reason}"


def end_sweep(
    session: Session, sweep_id: int, status: SweepStatus, reason: str | None = None
) -> tuple[Sweep, list[Trial]]:
    """End the sweep (cancelled, or failed with `reason`) and stop its queued trials; return
    the trials that were queued or running (the caller stops them in Redis)."""
    sweep = get_sweep(session, sweep_id, with_for_update=True)
    open_trials = list(
        session.scalars(
            select(Trial).where(
                Trial.sweep_id == sweep_id,
                Trial.status.in_([TrialStatus.QUEUED, TrialStatus.RUNNING]),
            )
        )
    )
    if sweep.status == SweepStatus.RUNNING:
        sweep.status = status
        sweep.reason = reason
        sweep.finished_at = utcnow()
        for stage in sweep.stages:
            if stage.status == StageStatus.RUNNING:
                stage.status = StageStatus.STOPPED  # not "finished": its open trials stop
        session.flush()
        gather_seed_members(session, sweep)  # what its re-trainings have so far
    session.execute(
        update(Trial)
        .where(Trial.sweep_id == sweep_id, Trial.status == TrialStatus.QUEUED)
        .values(
            status=TrialStatus.STOPPED,
            reason="sweep cancelled" if reason is None else "sweep failed",
            finished_at=utcnow(),
        )
    )
    return sweep, open_trials


def cancel_sweep(session: Session, sweep_id: int) -> tuple[Sweep, list[Trial]]:
    """Mark the sweep cancelled and its queued trials stopped; return the trials that were
    queued or running (the caller stops them in Redis)."""
    return end_sweep(session, sweep_id, SweepStatus.CANCELLED)


def stage_counts(session: Session, sweep_id: int) -> dict[int, Counter[str]]:
    """Trials per status, per stage index."""
    rows = session.execute(
        select(Trial.stage_index, Trial.status, func.count())
        .where(Trial.sweep_id == sweep_id)
        .group_by(Trial.stage_index, Trial.status)
    )
    counts: dict[int, Counter[str]] = {}
    for stage_index, status, count in rows:
        counts.setdefault(stage_index, Counter())[status] = count
    return counts
