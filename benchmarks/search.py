"""Search quality for an equal budget of epochs: coarse-to-fine against its alternatives.

    python benchmarks/search.py [--seeds 5] [--workers 2]

On digits, over the notes' wide ranges (learning_rate 10**U(-6, 1), reg 10**U(-5, 5)), each
method gets the same budget of 370 training epochs, for each seed:
(a) coarse-to-fine: the 3-stage sweep of examples/digits.yaml (60 x 1 epoch, then 30 x 5
    around the best 10, then 8 x 20 around the best 5), through the real system
    (`hpsearch up`, its workers in separate processes);
(b) random search: one stage of 37 trials x 10 epochs, through the same system;
(c) (a) without the explosion kill (explode_factor 1e300: only a NaN cost ends a run), with
    the share of the epochs trained that went to runs whose cost exceeded 3x their first;
(d) Optuna's TPE sampler (when optuna is importable), 37 trials x 10 epochs driving the same
    core in this one process, with the same explosion kill (in-memory storage: Optuna's
    fastest).
It prints, per method, the best validation accuracy (median, min and max over seeds), the
wall time (median), and the share of trained epochs spent on exploding runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sqlalchemy import select  # noqa: E402

from benchmarks.blas import describe_blas  # noqa: E402
from benchmarks.dispatch import System  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.trainer import build_model, train  # noqa: E402
from master.models import Sweep, Trial, TrialEpoch  # noqa: E402

MODEL = {"hidden_sizes": [100], "loss": "softmax"}
FIXED = {"update": "momentum", "momentum": 0.9, "batch_size": 100, "lr_decay": 0.95}
LOW_HIGH = {"learning_rate": (1e-6, 10.0), "reg": (1e-5, 1e5)}
COARSE_TO_FINE = [
    {"trials": 60, "epochs": 1},
    {"trials": 30, "epochs": 5, "keep_top": 10},
    {"trials": 8, "epochs": 20, "keep_top": 5},
]
RANDOM_TRIALS, RANDOM_EPOCHS = 37, 10  # the same 370 epochs in one stage
EXPLODE_FACTOR = 3.0
NO_KILL = 1e300  # only a non-finite cost ends a run


def spec(name: str, seed: int, stages: list[dict[str, Any]], explode: float) -> dict[str, Any]:
    return {
        "name": name,
        "dataset": "digits",
        "model": MODEL,
        "fixed": FIXED,
        "space": {
            name: {"dist": "loguniform", "low": low, "high": high}
            for name, (low, high) in LOW_HIGH.items()
        },
        "stages": stages,
        "explode_factor": explode,
        "seed": seed,
    }


def through_system(system: System, sweep: dict[str, Any]) -> dict[str, float]:
    sweep_id = system.submit(sweep)
    system.wait(sweep_id, poll=0.2)
    with system.db.reading() as session:
        row = session.get(Sweep, sweep_id)
        assert row is not None and row.finished_at is not None, sweep_id
        wall = (row.finished_at - row.created_at).total_seconds()
        trials = session.scalars(select(Trial).where(Trial.sweep_id == sweep_id)).all()
        losses: dict[int, list[float | None]] = {}
        for trial_id, loss in session.execute(
            select(TrialEpoch.trial_id, TrialEpoch.loss)
            .join(Trial, Trial.id == TrialEpoch.trial_id)
            .where(Trial.sweep_id == sweep_id)
            .order_by(TrialEpoch.epoch)
        ):
            losses.setdefault(trial_id, []).extend(loss)
    epochs = sum(t.epochs_done for t in trials)
    wasted = sum(t.epochs_done for t in trials if _exploded(t, losses.get(t.id, [])))
    best = max((t.best_val_acc for t in trials if t.best_val_acc is not None), default=0.0)
    return {"best": best, "wall": wall, "epochs": epochs, "exploded_share": wasted / epochs}


def _exploded(trial: Trial, loss: list[float | None]) -> bool:
    """Killed for exploding, or (without the kill) a cost above 3x the first at some point."""
    if trial.status == "exploded":
        return True
    finite = [c for c in loss if c is not None]
    return len(finite) != len(loss) or bool(finite and max(finite) > EXPLODE_FACTOR * finite[0])


def optuna_tpe(seed: int) -> dict[str, float] | None:
    try:
        import optuna
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_dataset("digits")
    epochs_done: list[float] = []
    exploded: list[float] = []

    def objective(trial: Any) -> float:
        config = TrainConfig.from_dict(
            {
                **MODEL,
                **FIXED,
                **{n: trial.suggest_float(n, lo, hi, log=True) for n, (lo, hi) in LOW_HIGH.items()},
                "num_epochs": RANDOM_EPOCHS,
                "seed": seed * 1000 + trial.number,
                "explode_factor": EXPLODE_FACTOR,
            }
        )
        state = train(build_model(config, data), data, config)
        epochs_done.append(state.epoch)
        if state.explosion is not None:
            exploded.append(state.epoch)
        return max(state.history.val_acc, default=0.0)

    started = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=RANDOM_TRIALS)
    wall = time.perf_counter() - started
    epochs = sum(epochs_done)
    return {
        "best": float(study.best_value),
        "wall": wall,
        "epochs": epochs,
        "exploded_share": sum(exploded) / epochs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(describe_blas())
    seeds = range(args.seeds)
    methods = {
        "(a) coarse-to-fine, 3 stages": lambda s: spec("c2f", s, COARSE_TO_FINE, EXPLODE_FACTOR),
        "(b) random search, 1 stage": lambda s: spec(
            "random", s, [{"trials": RANDOM_TRIALS, "epochs": RANDOM_EPOCHS}], EXPLODE_FACTOR
        ),
        "(c) (a) without the explosion kill": lambda s: spec("nokill", s, COARSE_TO_FINE, NO_KILL),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    with tempfile.TemporaryDirectory(prefix="hpsearch-search-") as tmp:
        system = System(args.workers, Path(tmp) / "up", None)
        try:
            for seed in seeds:
                for name, make in methods.items():
                    results[name].append(through_system(system, make(seed)))
                    r = results[name][-1]
                    print(f"seed {seed} {name}: best {r['best']:.3f} in {r['wall']:.1f} s")
        finally:
            system.stop()
    tpe = [found for seed in seeds if (found := optuna_tpe(seed)) is not None]
    if tpe:
        results["(d) Optuna TPE, 1 process"] = tpe
        for seed, found in zip(seeds, tpe, strict=False):
            print(f"seed {seed} (d): best {found['best']:.3f} in {found['wall']:.1f} s")
    else:
        print("optuna is not importable: (d) skipped (pip install optuna)")

    print(f"\ndigits, 370 epochs per search, {args.seeds} seeds, {args.workers} workers:\n")
    print("| method | best val acc: median (min-max) | wall time, median | epochs trained "
          "| share on exploding runs |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        best = [r["best"] for r in runs]
        print(
            f"| {name} | {statistics.median(best):.3f} ({min(best):.3f}-{max(best):.3f}) "
            f"| {statistics.median(r['wall'] for r in runs):.1f} s "
            f"| {statistics.median(r['epochs'] for r in runs):.0f} "
            f"| {100 * statistics.median(r['exploded_share'] for r in runs):.0f}% |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
