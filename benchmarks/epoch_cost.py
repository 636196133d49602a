"""What an epoch costs the system beyond its training: CPU-seconds per trained epoch, through
`hpsearch up`, against the same trials trained in this one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/epoch_cost.py \
        [--trials 6] [--epochs 20] [--workers 1]

The model and data are benchmarks/search.py's (a 256x256 Adam MLP on a 4500-example,
40-feature make_classification problem), BLAS pinned to one thread in every process, so that
CPU-seconds count work and not spinning threads. A warm-up sweep first lets each worker load
the dataset. Then one sweep of --trials x --epochs; the CPU time of every process of the
system (master, workers, Redis; from /proc) over that sweep, divided by the epochs trained,
is compared with the CPU time of training the very same trials (hyperparameters and seeds read
back from the database) with core/ here, with no checkpoint, event or row.
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy loads, here and in every process of the system

import argparse  # noqa: E402
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
from core.data import load_dataset  # noqa: E402
from core.trainer import build_model, train  # noqa: E402
from master.models import Trial  # noqa: E402


def spec(dataset: str, trials: int, epochs: int, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "dataset": dataset,
        "model": MODEL,
        "fixed": {**FIXED, "reg": 1e-4, "dropout": 0.2},
        "space": {"learning_rate": {"dist": "loguniform", "low": 3e-4, "high": 3e-3}},
        "stages": [{"trials": trials, "epochs": epochs}],
    }


def in_process_cpu(dataset: str, trials: list[Trial]) -> tuple[float, float]:
    """(CPU-seconds, epochs) of training these trials here with core/ alone."""
    data = load_dataset(dataset)
    cpu, epochs = 0.0, 0.0
    for trial in trials:
        config = TrainConfig.from_dict(
            {**trial.hyperparameters, "num_epochs": trial.num_epochs, "seed": trial.seed}
        )
        started = time.process_time()
        state = train(build_model(config, data), data, config)
        cpu += time.process_time() - started
        epochs += state.epoch
    return cpu, epochs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    print(describe_blas())
    print("BLAS pinned to 1 thread per process (OPENBLAS/OMP/MKL_NUM_THREADS=1)")
    with tempfile.TemporaryDirectory(prefix="hpsearch-epoch-cost-") as tmp:
        dataset = classification(Path(tmp))
        system = System(args.workers, Path(tmp) / "up", None)
        try:
            warm = system.submit(spec(dataset, 2 * args.workers, 1, "warm-up"))
            system.wait(warm, poll=0.1)
            before = system.cpu_seconds()
            sweep_id = system.submit(spec(dataset, args.trials, args.epochs, "epoch-cost"))
            system.wait(sweep_id, poll=1.0)  # a watcher polls less often than this
            after = system.cpu_seconds()
            with system.db.reading() as session:
                trials = list(session.scalars(select(Trial).where(Trial.sweep_id == sweep_id)))
        finally:
            system.stop()
        used = {kind: after[kind] - before[kind] for kind in after}
        epochs = sum(t.epochs_done for t in trials)
        alone, alone_epochs = in_process_cpu(dataset, trials)
    per_epoch = {kind: 1000 * seconds / epochs for kind, seconds in used.items()}
    system_per_epoch = sum(per_epoch.values())
    alone_per_epoch = 1000 * alone / alone_epochs
    print(f"\n{len(trials)} trials, {epochs:g} epochs, {args.workers} worker(s)\n")
    print("| | CPU ms per epoch |")
    print("|---|---|")
    for kind, ms in per_epoch.items():
        print(f"| {kind} | {ms:.1f} |")
    print(f"| system, all processes | {system_per_epoch:.1f} |")
    print(f"| the same training in one process | {alone_per_epoch:.1f} |")
    print(f"| ratio | {system_per_epoch / alone_per_epoch:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
