"""A user's own model against the built-in net: the same sweep (stages, epochs, seeds) of
each trainer on the digits, through `hpsearch up`, and what each returns on the test split.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/trainers.py \\
        [--seeds 5] [--workers 2]

Needs the torch extra (pip install -e ".[torch]" -c constraints.txt). The trainers:
- mlp: the built-in NumPy net, one hidden layer of 100, Adam, batch 64;
- twolayer: examples/twolayer, the CS231n-style NumPy net, 100 hidden units, Adam, batch 64;
- digits-cnn: examples/torch_cnn, the PyTorch CNN on the 8x8 images (16 and 32 channels),
  AdamW, batch 64, one thread per worker.
Each searches its learning rate (1e-4 to 3e-2), its L2 (1e-6 to 1e-1) and, for mlp and the
CNN, dropout (0 to 0.5), in the same stages: 16 trials of 2 epochs, 6 of 8 (the best 4 of
stage 0 trained on, 2 new), 3 of 20 (the best 3 trained on). Per trainer: the best trial's
validation and test accuracy (the sweep's own test evaluation: the test split selects
nothing), the chosen top-k ensemble's test accuracy, epochs trained, and the wall time from
submission to the sweep's end, median (min-max) over seeds. Seeds interleave the trainers.
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
from sqlalchemy import func, select  # noqa: E402

from benchmarks.blas import describe_blas  # noqa: E402
from benchmarks.dispatch import System  # noqa: E402
from master.models import Trial  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STAGES = [
    {"trials": 16, "epochs": 2},
    {"trials": 6, "epochs": 8, "keep_top": 4, "promote": 4},
    {"trials": 3, "epochs": 20, "promote": 3},
]
LR = {"dist": "loguniform", "low": 1e-4, "high": 3e-2}
L2 = {"dist": "loguniform", "low": 1e-6, "high": 1e-1}
DROPOUT = {"dist": "uniform", "low": 0.0, "high": 0.5}
SWEEPS: dict[str, dict[str, Any]] = {
    "mlp": {
        "model": {"hidden_sizes": [100]},
        "fixed": {"update": "adam", "batch_size": 64},
        "space": {"learning_rate": LR, "reg": L2, "dropout": DROPOUT},
    },
    "twolayer": {
        "trainer": "twolayer",
        "fixed": {"update": "adam", "batch_size": 64, "hidden_size": 100},
        "space": {"learning_rate": LR, "reg": L2},
    },
    "digits-cnn": {
        "trainer": "digits-cnn",
        "fixed": {"batch_size": 64, "channels": 16},
        "space": {"learning_rate": LR, "weight_decay": L2, "dropout": DROPOUT},
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ["HPSEARCH_TRAINERS"] = (
        "twolayer=twolayer_trainer:TwoLayerTrainer,digits-cnn=digits_cnn:DigitsCNN"
    )
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(EXAMPLES / "twolayer"), str(EXAMPLES / "torch_cnn")]
    )
    print(describe_blas())
    results: dict[str, list[dict[str, float]]] = {name: [] for name in SWEEPS}
    with tempfile.TemporaryDirectory(prefix="hpsearch-trainers-") as tmp:
        system = System(args.workers, Path(tmp) / "up", None)
        try:
            for name in SWEEPS:  # each worker imports each trainer and loads digits once
                warm = {
                    "name": f"warm-{name}",
                    **SWEEPS[name],
                    "stages": [{"trials": 2, "epochs": 1}],
                }
                system.wait(system.submit(warm), poll=0.1)
            for seed in range(args.seeds):
                for name, sweep in SWEEPS.items():
                    row = one_sweep(system, {"name": f"{name}-{seed}", "seed": seed, **sweep})
                    results[name].append(row)
                    print(f"seed {seed} {name}: {row}", flush=True)
        finally:
            system.stop()
    print(f"\n{args.seeds} seeds, {args.workers} workers, digits: median (min-max)\n")
    print("| trainer | best val | its test | ensemble test | epochs | wall s |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        cells = [_spread([r[k] for r in rows], f) for k, f in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


COLUMNS = [
    ("val", ".4f"), ("test", ".4f"), ("ensemble", ".4f"), ("epochs", ".0f"), ("wall", ".1f"),
]  # fmt: skip


def one_sweep(system: System, spec: dict[str, Any]) -> dict[str, float]:
    started = time.monotonic()
    sweep_id = system.submit({**spec, "dataset": "digits", "stages": STAGES})
    system.wait(sweep_id, poll=0.05)
    wall = time.monotonic() - started
    while True:  # the test evaluation: a worker's job after the sweep's end
        test = system.get(f"/api/sweeps/{sweep_id}")["test"]
        if test is not None and test["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    with system.db.reading() as session:
        epochs = session.scalar(
            select(func.sum(Trial.epochs_done - Trial.start_epoch)).where(
                Trial.sweep_id == sweep_id
            )
        )
    return {
        "val": float(test["best_val_acc"]),
        "test": float(test["best_test_acc"]),
        "ensemble": float(test["ensemble_test_acc"]),
        "epochs": float(epochs or 0),
        "wall": wall,
    }


def _spread(values: list[float], spec: str) -> str:
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})"


if __name__ == "__main__":
    raise SystemExit(main())
