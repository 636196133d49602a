"""The Optuna side of benchmarks/search.py: a seeded TPE sampler, alone or with Hyperband
pruning, driving core/ directly (no hpsearch in between), in this process or in N processes
that share a journal file.

Every study stops once the epochs its trials trained add up to the budget: a trial that
reaches it ends there (its best epoch still counts), and in N processes each one stops when
the shared count, kept in a file they lock in turn, says so (so up to N - 1 epochs more than
the budget may be trained: the other processes' epochs under way).

The test split: each process keeps in memory the weights of the epoch that gave its best
validation accuracy (a copy of the flat parameter array, at each new best) and, once its
study has ended (outside the timed part), scores them on the test split; the search's best
model is the process's with the best validation accuracy.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.storages.journal import JournalFileBackend

from benchmarks.search_problem import (
    EXPLODE_FACTOR,
    FIXED,
    MAX_EPOCHS,
    MODEL,
    SPACE,
    Outcome,
    TestOutcome,
)
from core.config import TrainConfig
from core.data import Dataset, load_dataset
from core.model import FullyConnectedNet
from core.state import TrainState
from core.trainer import build_model, train

# Hyperband's rungs at 3, 9, 27 and 80 epochs: the stages hpsearch's budget mode lays out.
HYPERBAND_MIN_EPOCHS = 3
HYPERBAND_REDUCTION = 3
TPE_ALONE_EPOCHS = 20  # each trial of TPE without pruning trains this long
SCRIPT = Path(__file__).resolve().parent / "search.py"


class EpochBudget(Protocol):
    def spend(self, epochs: float) -> bool:
        """Count epochs trained; True while some of the budget is left."""
        ...

    def left(self) -> bool: ...


class LocalBudget:
    """The epochs of one process's study."""

    def __init__(self, budget: float) -> None:
        self.budget, self.spent = budget, 0.0

    def spend(self, epochs: float) -> bool:
        self.spent += epochs
        return self.left()

    def left(self) -> bool:
        return self.spent < self.budget


class SharedBudget:
    """The epochs of every process of a study, in a file each locks to add its own."""

    def __init__(self, path: Path, budget: float) -> None:
        self.path, self.budget = path, budget

    def spend(self, epochs: float) -> bool:
        with open(self.path, "r+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # released when the file closes
            spent = float(file.read() or 0) + epochs
            file.seek(0)
            file.truncate()
            file.write(repr(spent))
        return spent < self.budget

    def left(self) -> bool:
        return self.spend(0.0)


@dataclass
class StudyShare:
    """What one process did of a study (JSON between the processes)."""

    best_val_acc: float = 0.0
    epochs: float = 0.0
    busy_seconds: float = 0.0  # inside the objective
    cpu_seconds: float = 0.0
    started: float = 0.0  # time.time(), comparable between processes
    ended: float = 0.0
    best_test_acc: float | None = None  # of the best_val_acc epoch's weights; None: no test split


@dataclass
class BestWeights:
    """The weights of the epoch with a process's best validation accuracy so far."""

    model: FullyConnectedNet | None = None
    flat: np.ndarray | None = None

    def keep(self, model: FullyConnectedNet) -> None:
        self.model, self.flat = model, model.flat.copy()

    def test_acc(self, data: Dataset) -> float | None:
        if self.model is None or self.flat is None or data.X_test is None:
            return None
        assert data.y_test is not None
        return self.model.accuracy(data.X_test, data.y_test, params=self.model.views(self.flat))


def hyperband() -> optuna.pruners.HyperbandPruner:
    return optuna.pruners.HyperbandPruner(
        min_resource=HYPERBAND_MIN_EPOCHS,
        max_resource=MAX_EPOCHS,
        reduction_factor=HYPERBAND_REDUCTION,
    )


def study_name(method: str, dataset: str, seed: int) -> str:
    """Fixed per method, dataset and seed: Hyperband puts a trial in its bracket by a hash of
    the study's name and the trial's number, so an unnamed (random) name varies run to run."""
    return f"hpsearch-bench-{method}-{Path(dataset).stem}-seed{seed}"


def tpe_hyperband(dataset: str, seed: int, budget: int) -> Outcome:
    return one_process("tpe-hyperband", dataset, seed, budget, hyperband(), MAX_EPOCHS)


def tpe_alone(dataset: str, seed: int, budget: int) -> Outcome:
    # Optuna's default pruner (median) would prune these: alone means no pruner at all.
    return one_process("tpe", dataset, seed, budget, optuna.pruners.NopPruner(), TPE_ALONE_EPOCHS)


def one_process(
    method: str,
    dataset: str,
    seed: int,
    budget: int,
    pruner: optuna.pruners.BasePruner,
    trial_epochs: int,
) -> Outcome:
    """A seeded TPE study with `pruner` in this process, in-memory storage."""
    quiet()
    study = optuna.create_study(
        study_name=study_name(method, dataset, seed),
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
    )
    share = run_study(study, load_dataset(dataset), LocalBudget(budget), trial_epochs, seed)
    return combine([share])


def tpe_hyperband_parallel(
    dataset: str, seed: int, budget: int, processes: int, directory: Path
) -> Outcome:
    """TPE + Hyperband in `processes` processes of this script, one journal file between them."""
    name = study_name("tpe-hyperband-parallel", dataset, seed)
    storage = directory / f"{name}.journal"
    counter = directory / f"{name}.epochs"
    counter.write_text("0")
    quiet()
    optuna.create_study(study_name=name, storage=journal(storage), direction="maximize")
    results = [directory / f"{name}.process{i}.json" for i in range(processes)]
    shared = {"dataset": dataset, "study": name, "storage": storage, "counter": counter}
    children = [
        subprocess.Popen(worker_command(**shared, budget=budget, seed=seed, process=i, result=r))
        for i, r in enumerate(results)
    ]
    for child in children:
        if child.wait() != 0:
            raise RuntimeError(f"an Optuna process ended with status {child.returncode}")
    return combine([StudyShare(**json.loads(r.read_text())) for r in results])


def worker_command(**options: Any) -> list[str]:
    """`python search.py --optuna-worker --name value ...`, as worker_main reads it."""
    flags = [part for name, value in options.items() for part in (f"--{name}", str(value))]
    return [sys.executable, str(SCRIPT), "--optuna-worker", *flags]


def journal(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def worker_main(argv: list[str]) -> int:
    """One process of tpe_hyperband_parallel: its share of the study, written as JSON."""
    parser = argparse.ArgumentParser(prog="search.py --optuna-worker")
    for option in ("--dataset", "--study", "--storage", "--counter", "--result"):
        parser.add_argument(option, required=True)
    for option in ("--budget", "--seed", "--process"):
        parser.add_argument(option, type=int, required=True)
    args = parser.parse_args(argv)
    quiet()
    study = optuna.load_study(
        study_name=args.study,
        storage=journal(Path(args.storage)),
        # Each process its own seed, or they would all sample the same points.
        sampler=optuna.samplers.TPESampler(seed=args.seed * 100 + args.process),
        pruner=hyperband(),
    )
    budget = SharedBudget(Path(args.counter), args.budget)
    share = run_study(study, load_dataset(args.dataset), budget, MAX_EPOCHS, args.seed)
    Path(args.result).write_text(json.dumps(asdict(share)))
    return 0


def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def run_study(
    study: optuna.Study, data: Dataset, budget: EpochBudget, epochs: int, seed: int
) -> StudyShare:
    """Trials of `epochs` each (Hyperband may prune them) until the budget is spent; then the
    test accuracy of the best epoch's weights."""
    share, best = StudyShare(), BestWeights()

    def objective(trial: optuna.Trial) -> float:
        started = time.perf_counter()
        try:
            return train_trial(trial, data, budget, epochs, seed, share, best)
        finally:
            share.busy_seconds += time.perf_counter() - started

    def stop_when_spent(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if not budget.left():
            study.stop()

    share.started, cpu = time.time(), time.process_time()
    if budget.left():  # another process may have spent it while this one started
        study.optimize(objective, callbacks=[stop_when_spent])
    share.ended, share.cpu_seconds = time.time(), time.process_time() - cpu
    share.best_test_acc = best.test_acc(data)
    return share


def train_trial(
    trial: optuna.Trial,
    data: Dataset,
    budget: EpochBudget,
    epochs: int,
    seed: int,
    share: StudyShare,
    best_weights: BestWeights,
) -> float:
    """Train one sampled config, reporting each epoch's validation accuracy to the pruner;
    the trial's value is its best epoch's, as hpsearch ranks a trial. An epoch better than
    any before it in this process has its weights kept in `best_weights`."""
    config = TrainConfig.from_dict(
        {
            **MODEL,
            **FIXED,
            **suggest(trial),
            "num_epochs": epochs,
            "seed": seed * 10_000 + trial.number,
            "explode_factor": EXPLODE_FACTOR,
        }
    )
    best, counted, spent = 0.0, 0.0, False

    def on_epoch_end(model: FullyConnectedNet, state: TrainState) -> None:
        nonlocal best, counted, spent
        val_acc = state.history.val_acc[-1]
        if val_acc > share.best_val_acc:
            best_weights.keep(model)
        best, share.best_val_acc = max(best, val_acc), max(share.best_val_acc, val_acc)
        spent = not budget.spend(state.epoch - counted)
        share.epochs += state.epoch - counted
        counted = state.epoch
        trial.report(val_acc, round(state.epoch))
        if trial.should_prune():
            raise optuna.TrialPruned()

    state = train(
        build_model(config, data), data, config, should_stop=lambda: spent,
        on_epoch_end=on_epoch_end,
    )  # fmt: skip
    # An exploded run ends within an epoch: its part of that epoch was trained too.
    budget.spend(state.epoch - counted)
    share.epochs += state.epoch - counted
    return best


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    return {
        name: trial.suggest_float(name, d["low"], d["high"], log=d["dist"] == "loguniform")
        for name, d in SPACE.items()
    }


def combine(shares: list[StudyShare]) -> Outcome:
    wall = max(s.ended for s in shares) - min(s.started for s in shares)
    best = max(shares, key=lambda s: s.best_val_acc)  # ties: the first process's
    test = None
    if best.best_test_acc is not None:
        test = TestOutcome(best_val_acc=best.best_val_acc, best_test_acc=best.best_test_acc)
    return Outcome(
        best_val_acc=max(s.best_val_acc for s in shares),
        wall_seconds=wall,
        cpu_seconds=sum(s.cpu_seconds for s in shares),
        epochs=sum(s.epochs for s in shares),
        utilization=sum(s.busy_seconds for s in shares) / (len(shares) * wall),
        test=test,
    )
