"""Promotion: a stage trains the previous stage's best on, and the database keeps lineage."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.messages import EventKind, TrialEvent, job_id
from master.db import Database
from master.dispatching import _parent_checkpoints, trial_job
from master.events import apply_events
from master.models import Stage, Sweep, Trial, TrialEpoch, TrialStatus
from master.space import Choice
from master.spec import SweepSpec
from master.sweeps import advance_if_stage_done, create_sweep, space_from_json
from master.views import sweep_public
from tests.master.factories import example_spec

STAGES = [
    {"trials": 5, "epochs": 2},
    {"trials": 4, "epochs": 6, "keep_top": 3, "promote": 2},
]


def stage_trials(session: Session, sweep_id: int, stage: int) -> list[Trial]:
    query = select(Trial).where(Trial.sweep_id == sweep_id, Trial.stage_index == stage)
    return list(session.scalars(query.order_by(Trial.index)))


def end_first_stage(db: Database, outcomes: list[tuple[str, float | None]]) -> int:
    """A sweep whose first stage ended so: (status, latest val_acc) per trial."""
    spec = SweepSpec.model_validate(example_spec(stages=STAGES))
    with db.writing() as session:
        sweep = create_sweep(session, spec)
        session.flush()
        for trial, (status, val_acc) in zip(
            stage_trials(session, sweep.id, 0), outcomes, strict=True
        ):
            trial.status = TrialStatus(status)
            trial.val_acc = val_acc
            trial.best_val_acc = val_acc
            trial.epochs_done = 2.0 if status == "finished" else 0.5
            trial.checkpoints = [
                f"sweep/stage0/ep001_t{trial.id}.npz",
                f"sweep/stage0/ep002_t{trial.id}.npz",
            ]
        return sweep.id


def test_the_best_finished_trials_are_trained_on_and_the_rest_sampled(db: Database) -> None:
    sweep_id = end_first_stage(
        db,
        [("finished", 0.5), ("finished", 0.8), ("exploded", None), ("finished", 0.7),
         ("finished", 0.6)],
    )  # fmt: skip
    with db.writing() as session:
        assert advance_if_stage_done(session, sweep_id)
    with db.reading() as session:
        first = stage_trials(session, sweep_id, 0)
        second = stage_trials(session, sweep_id, 1)
        assert len(second) == 4
        promoted, new = second[:2], second[2:]
        assert [t.parent_id for t in promoted] == [first[1].id, first[3].id]  # 0.8, then 0.7
        for child in promoted:
            parent = session.get_one(Trial, child.parent_id)
            assert child.hyperparameters == parent.hyperparameters
            assert child.seed == parent.seed
            assert child.start_epoch == 2.0 and child.num_epochs == 6.0
        assert all(t.parent_id is None and t.start_epoch == 0 for t in new)
        assert {t.seed for t in new}.isdisjoint({t.seed for t in first})
        # Each promoted trial's job goes on from its parent's latest checkpoint.
        resume = _parent_checkpoints(session, second)
        assert resume == {
            c.id: session.get_one(Trial, c.parent_id).checkpoints[-1] for c in promoted
        }
        job = trial_job(promoted[0], session.get_one(Sweep, sweep_id).spec, resume[promoted[0].id])
        assert job.resume_from == first[1].checkpoints[-1]
        stage = session.scalars(
            select(Stage).where(Stage.sweep_id == sweep_id, Stage.index == 1)
        ).one()
        assert stage.promote == 2
        assert not any("finished to be trained on" in w for w in stage.warnings)


def test_too_few_finished_trials_promote_what_there_is_and_say_so(db: Database) -> None:
    sweep_id = end_first_stage(
        db,
        [("finished", 0.5), ("exploded", None), ("failed", None), ("stopped", None),
         ("exploded", None)],
    )  # fmt: skip
    with db.writing() as session:
        assert advance_if_stage_done(session, sweep_id)
    with db.reading() as session:
        second = stage_trials(session, sweep_id, 1)
        assert [t.parent_id is not None for t in second] == [True, False, False, False]
        stage = session.scalars(
            select(Stage).where(Stage.sweep_id == sweep_id, Stage.index == 1)
        ).one()
        assert any("only 1 trials of stage 0 finished" in w for w in stage.warnings), stage.warnings


def test_epochs_trained_count_a_promoted_trial_own_epochs_only(db: Database) -> None:
    sweep_id = end_first_stage(db, [("finished", 0.5 + k / 10) for k in range(5)])
    with db.writing() as session:
        advance_if_stage_done(session, sweep_id)
        for trial in stage_trials(session, sweep_id, 1):
            trial.status = TrialStatus.FINISHED
            trial.epochs_done = 6.0
    with db.reading() as session:
        sweep = session.get_one(Sweep, sweep_id)
        # 5 x 2 in stage 0, then 2 promoted x (6 - 2) and 2 new x 6.
        assert sweep_public(session, sweep).epochs_trained == 10 + 8 + 12


def add_epochs(session: Session, trial: Trial, epochs: list[float]) -> None:
    session.add_all(
        TrialEpoch(trial_id=trial.id, epoch=e, cost=2.0 - e / 10, train_acc=e / 10,
                   val_acc=e / 20, average_val_acc=None, learning_rate=1e-3,
                   update_ratio={"W1": 1e-3 * e}, loss=[2.0, 1.9 - e / 10],
                   distributions={"dead_units": {"1": e}})
        for e in epochs
    )  # fmt: skip


def epoch_rows(session: Session, trial_id: int) -> list[dict[str, object]]:
    rows = session.scalars(
        select(TrialEpoch).where(TrialEpoch.trial_id == trial_id).order_by(TrialEpoch.epoch)
    )
    fields = ("epoch", "cost", "train_acc", "val_acc", "average_val_acc", "learning_rate",
              "update_ratio", "loss", "distributions")  # fmt: skip
    return [{f: getattr(row, f) for f in fields} for row in rows]


def promote_after_two_recorded_epochs(db: Database) -> int:
    """A sweep whose first stage's 5 trials each recorded epochs 1 and 2, then ended: its
    best 2 promoted."""
    sweep_id = end_first_stage(db, [("finished", 0.5 + k / 10) for k in range(5)])
    with db.writing() as session:
        for trial in stage_trials(session, sweep_id, 0):
            add_epochs(session, trial, [1.0, 2.0])
        advance_if_stage_done(session, sweep_id)
    return sweep_id


def test_a_promoted_trial_starts_with_its_parents_epochs_as_its_own(db: Database) -> None:
    sweep_id = promote_after_two_recorded_epochs(db)
    with db.reading() as session:
        promoted = [t for t in stage_trials(session, sweep_id, 1) if t.parent_id is not None]
        assert len(promoted) == 2
        for child in promoted:
            parent = session.get_one(Trial, child.parent_id)
            # Copied when it was promoted: its worker sends only the epochs it trains.
            assert epoch_rows(session, child.id) == epoch_rows(session, parent.id)
            assert [r["epoch"] for r in epoch_rows(session, child.id)] == [1.0, 2.0]
            assert (child.epochs_done, child.val_acc, child.best_val_acc) == (
                2.0,
                parent.val_acc,
                parent.best_val_acc,
            )
            assert child.epochs_trained == 0.0


def test_a_promoted_trial_that_could_not_go_on_has_no_inherited_epochs(db: Database) -> None:
    sweep_id = promote_after_two_recorded_epochs(db)
    with db.writing() as session:
        child = stage_trials(session, sweep_id, 1)[0]
        child.attempts, child.job_id = 1, job_id(child.id, 1)
    started = TrialEvent(EventKind.STARTED, child.id, 1, {"worker": "w", "resumed_from_epoch": 0.0})
    retrained = TrialEvent(
        EventKind.EPOCH, child.id, 1,
        {"epoch": 1.0, "train_acc": 0.3, "val_acc": 0.25, "cost": 1.5, "loss": [1.6]},
    )  # fmt: skip
    with db.writing() as session:
        apply_events(session, [started, retrained])
    with db.reading() as session:
        trial = session.get_one(Trial, child.id)
        assert trial.start_epoch == 0.0
        assert trial.reason is not None and f"trial {trial.parent_id}'s checkpoint" in trial.reason
        # What it trains again is its history, not the copy of its parent's epochs.
        assert [(r["epoch"], r["val_acc"]) for r in epoch_rows(session, child.id)] == [(1.0, 0.25)]
        assert trial.epochs_done == 1.0 and trial.val_acc == 0.25


def finish_trial(session: Session, trial: Trial, val_acc: float) -> None:
    trial.status = TrialStatus.FINISHED
    trial.val_acc = trial.best_val_acc = val_acc
    trial.epochs_done = trial.num_epochs
    trial.checkpoints = [f"sweep/stage{trial.stage_index}/ep{trial.num_epochs:g}_t{trial.id}.npz"]


def test_trials_sure_to_be_promoted_start_before_their_stage_ends(db: Database) -> None:
    spec = SweepSpec.model_validate(example_spec(stages=STAGES))  # 5 trials, then promote 2
    with db.writing() as session:
        sweep_id = create_sweep(session, spec).id
    with db.writing() as session:
        first = stage_trials(session, sweep_id, 0)
        for trial, val_acc in zip(first[:3], (0.9, 0.8, 0.7), strict=True):
            finish_trial(session, trial, val_acc)
        # 2 open trials could still beat every finished one: nobody is sure yet.
        assert not advance_if_stage_done(session, sweep_id)
        finish_trial(session, first[3], 0.1)
        # 1 open trial: the 0.9 one stays in the best 2 whatever it does.
        assert advance_if_stage_done(session, sweep_id)
        [early] = stage_trials(session, sweep_id, 1)
        assert early.parent_id == first[0].id and early.status == TrialStatus.QUEUED
        stage = session.scalars(
            select(Stage).where(Stage.sweep_id == sweep_id, Stage.index == 1)
        ).one()
        assert stage.status == "pending"  # planned, and its new trials sampled, at the end
        assert not advance_if_stage_done(session, sweep_id)  # nothing more is sure
    with db.writing() as session:
        finish_trial(session, stage_trials(session, sweep_id, 0)[4], 0.85)
        assert advance_if_stage_done(session, sweep_id)
    with db.reading() as session:
        second = stage_trials(session, sweep_id, 1)
        first = stage_trials(session, sweep_id, 0)
        # The same two as promoted at the end: 0.9 early, then 0.85; each once.
        assert [t.parent_id for t in second[:2]] == [first[0].id, first[4].id]
        assert [t.parent_id for t in second[2:]] == [None, None]
        assert [t.index for t in second] == [0, 1, 2, 3]


def test_a_promoted_trial_not_started_yet_counts_no_epochs(db: Database) -> None:
    sweep_id = end_first_stage(db, [("finished", 0.5 + k / 10) for k in range(5)])
    with db.writing() as session:
        advance_if_stage_done(session, sweep_id)  # stage 1's trials queued, none started
    with db.reading() as session:
        sweep = session.get_one(Sweep, sweep_id)
        assert sweep_public(session, sweep).epochs_trained == 10  # stage 0's 5 x 2 only


def test_a_promoted_trial_that_trained_from_scratch_keeps_saying_so(db: Database) -> None:
    sweep_id = end_first_stage(db, [("finished", 0.5 + k / 10) for k in range(5)])
    with db.writing() as session:
        advance_if_stage_done(session, sweep_id)
        child = stage_trials(session, sweep_id, 1)[0]
        child.attempts, child.job_id = 1, job_id(child.id, 1)
    events = [
        TrialEvent(EventKind.STARTED, child.id, 1, {"worker": "w", "resumed_from_epoch": 0.0}),
        TrialEvent(EventKind.ENDED, child.id, 1, {"status": "finished", "epochs_done": 6.0}),
    ]
    with db.writing() as session:
        apply_events(session, events)
    with db.reading() as session:
        trial = session.get_one(Trial, child.id)
        assert trial.status == "finished" and trial.epochs_trained == 6.0
        assert trial.reason is not None and "could not go on" in trial.reason


def test_a_sweep_fails_only_when_its_first_trials_all_fail_alike(db: Database) -> None:
    from master.sweeps import failing_alike

    spec = SweepSpec.model_validate(example_spec(stages=[{"trials": 4, "epochs": 1}]))
    with db.writing() as session:
        sweep = create_sweep(session, spec)
        session.flush()
        trials = stage_trials(session, sweep.id, 0)
        same = "DatasetError: data.npz: not a readable .npz of plain arrays (bad)"
        for trial in trials[:2]:
            trial.status, trial.reason = TrialStatus.FAILED, same
        assert failing_alike(session, sweep) is None  # two are not enough to be sure
        trials[2].status, trials[2].reason = TrialStatus.FAILED, same
        assert failing_alike(session, sweep) == f"its first 3 trials failed alike: {same}"
        trials[2].reason = "DatasetError: another message"
        assert failing_alike(session, sweep) is None  # not alike
        trials[2].reason = same
        trials[3].status = TrialStatus.FINISHED
        assert failing_alike(session, sweep) is None  # one worked
        trials[3].status, trials[3].reason = TrialStatus.FAILED, "ValueError: a bug"
        for trial in trials:
            trial.reason = "ValueError: a bug"
        assert failing_alike(session, sweep) is None  # not an error of the sweep's inputs


RUNG_STAGES = [
    {"trials": 4, "epochs": 2},
    {"trials": 4, "epochs": 2, "keep_top": 1},  # the same epochs: one rung with stage 0
    {"trials": 3, "epochs": 6, "keep_top": 3, "promote": 3},
]


def test_a_promotion_ranks_every_stage_of_the_rung_before_it(db: Database) -> None:
    spec = SweepSpec.model_validate(example_spec(stages=RUNG_STAGES))
    with db.writing() as session:
        sweep_id = create_sweep(session, spec).id
    with db.writing() as session:
        for trial, val_acc in zip(
            stage_trials(session, sweep_id, 0), (0.9, 0.2, 0.6, 0.3), strict=True
        ):
            finish_trial(session, trial, val_acc)
        assert advance_if_stage_done(session, sweep_id)  # stage 1 sampled, nothing promoted
        assert stage_trials(session, sweep_id, 2) == []
    with db.writing() as session:
        second = stage_trials(session, sweep_id, 1)
        for trial, val_acc in zip(second[:3], (0.8, 0.1, 0.5), strict=True):
            finish_trial(session, trial, val_acc)
        # One trial of the rung still open: 0.9 (stage 0) and 0.8 are sure of the best 3.
        assert advance_if_stage_done(session, sweep_id)
        first = stage_trials(session, sweep_id, 0)
        early = stage_trials(session, sweep_id, 2)
        assert [t.parent_id for t in early] == [first[0].id, second[0].id]
    with db.writing() as session:
        finish_trial(session, stage_trials(session, sweep_id, 1)[3], 0.55)
        assert advance_if_stage_done(session, sweep_id)
    with db.reading() as session:
        first = stage_trials(session, sweep_id, 0)
        third = stage_trials(session, sweep_id, 2)
        # The best 3 of the 8 trials at 2 epochs, whichever of the two stages drew them:
        # stage 0's 0.6 beats stage 1's 0.55.
        assert [t.parent_id for t in third] == [first[0].id, second[0].id, first[2].id]
        # The stage is planned around them too: its ranges hold each one's values.
        planned = space_from_json(
            session.scalars(
                select(Stage.space).where(Stage.sweep_id == sweep_id, Stage.index == 2)
            ).one()
        )
        for top in (first[0], second[0], first[2]):
            for name, dist in planned.items():
                value = top.hyperparameters[name]
                if isinstance(dist, Choice):
                    assert value in dist.values, (name, value, dist)
                else:
                    assert dist.low <= value <= dist.high, (name, value, dist)
