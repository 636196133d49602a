"""What an epoch costs the system beyond its training: CPU-seconds per trained epoch, through
`hpsearch up`, against the same trials trained in this one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/epoch_cost.py \
        [--trials 3] [--epochs 20] [--workers 1] [--rounds 8] [--trainer mlp]

The model and data are benchmarks/search.py's (a 256x256 Adam MLP on a 4500-example,
40-feature make_classification problem), BLAS pinned to one thread in every process, so that
CPU-seconds count work and not spinning threads. A warm-up sweep first lets each worker load
the dataset. Then, each round, one sweep of --trials x --epochs; the CPU time of every process
of the system (master, workers, Redis; from /proc) over that sweep, divided by the epochs
trained, is compared with the CPU time of training the very same trials (hyperparameters and
seeds read back from the database) with core/ here, with no checkpoint, event or row. The
sweep's CPU includes its test evaluation at the end (a worker's job), waited for. The table
gives the median over rounds, and their range.

--trainer twolayer or digits-cnn measures a user trainer (examples/) the same way, given to
the workers by HPSEARCH_TRAINERS: the two-layer NumPy net (256 hidden units, Adam) on the same
data, or the PyTorch CNN (16 and 32 channels, one thread) on the digits images; "alone" is
core.run's loop around the same trainer here, with no checkpoint, event or row.
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy loads, here and in every process of the system

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sqlalchemy import select  # noqa: E402

from benchmarks.blas import describe_blas  # noqa: E402
from benchmarks.dispatch import System  # noqa: E402
from benchmarks.search_problem import FIXED, MODEL, classification  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.contract import BUILTIN, Declaration  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.run import new_run, problem_of, run  # noqa: E402
from core.run_checkpoint import build_trainer  # noqa: E402
from core.trainer import build_model, train  # noqa: E402
from master.models import Trial  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# A user trainer: HPSEARCH_TRAINERS, its folder, its module and class, what it trains.
USER_TRAINERS = {
    "twolayer": (
        "twolayer=twolayer_trainer:TwoLayerTrainer", EXAMPLES / "twolayer", "twolayer_trainer",
        "TwoLayerTrainer", {"hidden_size": 256, "batch_size": 100, "update": "adam", "reg": 1e-4},
    ),
    "digits-cnn": (
        "digits-cnn=digits_cnn:DigitsCNN", EXAMPLES / "torch_cnn", "digits_cnn", "DigitsCNN",
        {"channels": 16, "batch_size": 64, "dropout": 0.2},
    ),
}  # fmt: skip


def spec(dataset: str, trials: int, epochs: int, name: str, trainer: str) -> dict[str, Any]:
    if trainer != BUILTIN:
        return {
            "name": name,
            "trainer": trainer,
            "dataset": dataset,
            "fixed": USER_TRAINERS[trainer][4],
            "space": {"learning_rate": {"dist": "loguniform", "low": 3e-4, "high": 3e-3}},
            "stages": [{"trials": trials, "epochs": epochs}],
        }
    return {
        "name": name,
        "dataset": dataset,
        "model": MODEL,
        "fixed": {**FIXED, "reg": 1e-4, "dropout": 0.2},
        "space": {"learning_rate": {"dist": "loguniform", "low": 3e-4, "high": 3e-3}},
        "stages": [{"trials": trials, "epochs": epochs}],
    }


def in_process_cpu(dataset: str, trials: list[Trial], trainer: str) -> tuple[float, float]:
    """(CPU-seconds, epochs) of training these trials here with core/ alone."""
    data = load_dataset(dataset)
    cpu, epochs = 0.0, 0.0
    if trainer != BUILTIN:
        _, folder, module, attribute, _ = USER_TRAINERS[trainer]
        sys.path.insert(0, str(folder))
        cls = getattr(__import__(module), attribute)
        declaration = Declaration.of(trainer, cls)
    for trial in trials:
        if trainer != BUILTIN:
            values = declaration.resolve(trial.hyperparameters)
            started = time.process_time()
            model = build_trainer(cls, trainer, values, problem_of(data), trial.seed)
            begun = new_run(
                trainer, declaration.version, values, model, len(data.X_train),
                seed=trial.seed, num_epochs=trial.num_epochs, explode_factor=3.0,
            )  # fmt: skip
            epochs += run(model, data, begun).epoch
            cpu += time.process_time() - started
            continue
        config = TrainConfig.from_dict(
            {**trial.hyperparameters, "num_epochs": trial.num_epochs, "seed": trial.seed}
        )
        started = time.process_time()
        state = train(build_model(config, data), data, config)
        cpu += time.process_time() - started
        epochs += state.epoch
    return cpu, epochs


def wait_for_test(system: System, sweep_id: int) -> None:
    """Until the finished sweep's test evaluation (a worker's job) has ended: its CPU is in
    every round alike, not in some."""
    while True:
        test = system.get(f"/api/sweeps/{sweep_id}").get("test")
        if test is None or test["status"] not in ("queued", "running"):
            return
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--trainer", choices=[BUILTIN, *USER_TRAINERS], default=BUILTIN)
    args = parser.parse_args(argv)
    if args.trainer != BUILTIN:  # the workers of `hpsearch up` inherit these
        os.environ["HPSEARCH_TRAINERS"] = USER_TRAINERS[args.trainer][0]
        os.environ["PYTHONPATH"] = str(USER_TRAINERS[args.trainer][1])
    print(describe_blas())
    print("BLAS pinned to 1 thread per process (OPENBLAS/OMP/MKL_NUM_THREADS=1)")
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-epoch-cost-") as tmp:
        dataset = "digits" if args.trainer == "digits-cnn" else classification(Path(tmp))
        system = System(args.workers, Path(tmp) / "up", None)
        try:
            warm = system.submit(spec(dataset, 2 * args.workers, 1, "warm-up", args.trainer))
            system.wait(warm, poll=0.1)
            # Short rounds alternate the system's sweep and the same training here: this
            # machine's speed drifts by up to 10% within a minute, and a drift then shifts
            # both sides of a round alike.
            for number in range(1, args.rounds + 1):
                before = system.cpu_seconds()
                name = f"epoch-cost-{number}"
                sweep_id = system.submit(
                    spec(dataset, args.trials, args.epochs, name, args.trainer)
                )
                system.wait(sweep_id, poll=1.0)  # a watcher polls less often than this
                wait_for_test(system, sweep_id)
                after = system.cpu_seconds()
                with system.db.reading() as session:
                    trials = list(session.scalars(select(Trial).where(Trial.sweep_id == sweep_id)))
                epochs = sum(t.epochs_done for t in trials)
                alone, alone_epochs = in_process_cpu(dataset, trials, args.trainer)
                row = {kind: 1000 * (after[kind] - before[kind]) / epochs for kind in after}
                row["system"] = sum(row.values())
                row["alone"] = 1000 * alone / alone_epochs
                row["ratio"] = row["system"] / row["alone"]
                rounds.append(row)
                print(f"round {number}: {epochs:g} epochs, ratio {row['ratio']:.3f}", flush=True)
        finally:
            system.stop()
    print(f"\n{args.trainer}: {args.trials} trials x {args.epochs} epochs, "
          f"{args.workers} worker(s), {args.rounds} rounds: median (min-max) "
          "over rounds\n")  # fmt: skip
    labels = {
        "master": "master",
        "workers": "workers",
        "redis": "Redis",
        "system": "the system, all processes",
        "alone": "the same training in one process",
    }
    print("| | CPU ms per epoch |")
    print("|---|---|")
    for key, label in labels.items():
        print(f"| {label} | {_spread([r[key] for r in rounds], '.1f')} |")
    print(f"| ratio | {_spread([r['ratio'] for r in rounds], '.3f')} |")
    return 0


def _spread(values: list[float], spec: str) -> str:
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})"


if __name__ == "__main__":
    raise SystemExit(main())
