"""Server time of the dashboard's pages with a large trials table.

    python benchmarks/leaderboard.py [--trials 100000] [--sweeps 20] [--repeats 30]
                                     [--database-url URL]

Fills an empty database (a new SQLite file, or the PostgreSQL database given, whose
hpsearch tables are dropped first) with --trials trials spread over --sweeps sweeps of 3
stages, as the master would write them: a mix of statuses, a best validation accuracy for
most, one epoch row each with update:weight ratios. Then asks the dashboard app (in this
process) for each page --repeats times and reports the server time it measured itself (the
Server-Timing header: request in to response headers out, queries and template included).
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

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fastapi.testclient import TestClient  # noqa: E402

from benchmarks.blas import describe_blas  # noqa: E402
from core.checkpoint import checkpoint_name  # noqa: E402
from dashboard.app import create_app  # noqa: E402
from master.db import Database
from master.migrate import drop_everything  # noqa: E402
from master.models import Stage, Sweep, Trial, TrialEpoch  # noqa: E402
from master.settings import Settings  # noqa: E402

SPACE = {
    "learning_rate": {"dist": "loguniform", "low": 1e-6, "high": 10},
    "reg": {"dist": "loguniform", "low": 1e-5, "high": 1e5},
    "dropout": {"dist": "uniform", "low": 0.0, "high": 0.5},
    "update": {"dist": "choice", "values": ["momentum", "nesterov", "adam"]},
}
STATUSES = ["finished"] * 6 + ["exploded"] * 3 + ["failed", "stopped", "queued", "running"]
CHUNK = 10_000


def checkpoint(sweep: int, stage: int, accuracy: float | None, trial_id: int) -> str:
    return f"sweep{sweep:06d}/stage{stage}/{checkpoint_name(accuracy or 0.0, trial_id, 1)}"


def fill(db: Database, trials: int, sweeps: int, seed: int = 0) -> None:
    """Insert the sweeps, stages, trials and epoch rows, in chunks, with bulk inserts."""
    rng = np.random.default_rng(seed)
    per_sweep = trials // sweeps
    with db.writing() as session:
        for s in range(1, sweeps + 1):
            spec = {"name": f"bench-{s}", "dataset": "digits", "space": SPACE}
            session.add(Sweep(id=s, name=f"bench-{s}", spec=spec, status="finished"))
            for k, share in enumerate((0.6, 0.3, 0.1)):
                session.add(
                    Stage(sweep_id=s, index=k, trials=int(per_sweep * share), epochs=k * 5 + 1,
                          keep_top=None, space=SPACE, status="finished")
                )  # fmt: skip
    trial_id = 0
    while trial_id < trials:
        n = min(CHUNK, trials - trial_id)
        rows, epochs = [], []
        for _ in range(n):
            trial_id += 1
            sweep = (trial_id - 1) // per_sweep % sweeps + 1
            stage = 0 if rng.random() < 0.6 else (1 if rng.random() < 0.75 else 2)
            status = STATUSES[rng.integers(len(STATUSES))]
            scored = status not in ("queued",) and rng.random() < 0.9
            accuracy = float(rng.beta(2, 2)) if scored else None
            rows.append(
                {
                    "id": trial_id, "sweep_id": sweep, "stage_index": stage, "index": trial_id,
                    "hyperparameters": {
                        "learning_rate": float(10 ** rng.uniform(-6, 1)),
                        "reg": float(10 ** rng.uniform(-5, 5)),
                        "dropout": float(rng.uniform(0, 0.5)),
                        "update": ["momentum", "nesterov", "adam"][rng.integers(3)],
                        "hidden_sizes": [100], "batch_size": 100,
                    },
                    "seed": int(rng.integers(2**32)), "num_epochs": stage * 5 + 1,
                    "status": status, "epochs_done": 1.0 if scored else 0.0,
                    "best_val_acc": accuracy, "best_epoch": 1.0 if scored else None,
                    "train_acc": min(1.0, accuracy + 0.02) if accuracy else None,
                    "val_acc": accuracy, "attempts": 1,
                    "explosion": {"iteration": 12, "cost": 9.1, "initial_cost": 2.3, "ratio": 3.96}
                    if status == "exploded" else None,
                    "checkpoints": [checkpoint(sweep, stage, accuracy, trial_id)] if scored else [],
                }
            )  # fmt: skip
            if scored:
                ratio = float(10 ** rng.uniform(-5, -1))
                epochs.append(
                    {"trial_id": trial_id, "epoch": 1.0, "cost": 1.0, "train_acc": accuracy,
                     "val_acc": accuracy, "average_val_acc": accuracy, "learning_rate": 1e-3,
                     "update_ratio": {"W1": ratio, "b1": 0.1, "W2": ratio / 2, "b2": 0.1},
                     "loss": [float(c) for c in rng.uniform(0.5, 2.5, 14)]}
                )  # fmt: skip
        with db.writing() as session:
            session.execute(insert(Trial), rows)
            if epochs:
                session.execute(insert(TrialEpoch), epochs)
        print(f"  {trial_id} trials written", file=sys.stderr, flush=True)


PAGES = {
    "leaderboard, first page": "/",
    "leaderboard, live part (polled every 2 s)": "/?part=live",
    "leaderboard, page 1000 (offset 49 950)": "/?offset=49950",
    "leaderboard, one sweep": "/?sweep=7",
    "leaderboard, status=exploded": "/?status=exploded",
    "leaderboard, sweep + stage + status": "/?sweep=7&stage=2&status=finished",
    "sweep page": "/sweeps/7",
    "sweep figures (JSON, every trial of the sweep)": "/api/sweeps/7/figures",
    "trial page": "/trials/123",
}


def measure(client: TestClient, url: str, repeats: int) -> dict[str, float]:
    server, wall = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        response = client.get(url)
        wall.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
        timing = response.headers["server-timing"]
        server.append(float(timing.split("dur=")[1]))
    server.sort()
    return {
        "median": statistics.median(server),
        "p95": server[int(0.95 * (len(server) - 1))],
        "max": server[-1],
        "wall": statistics.median(wall),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    args = parser.parse_args(argv)
    print(describe_blas())
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'hpsearch.db'}"
        db = Database(url)
        drop_everything(db.engine)
        db.create_tables()
        print(f"filling {db.engine.url.get_backend_name()} with {args.trials} trials...",
              file=sys.stderr)  # fmt: skip
        start = time.perf_counter()
        fill(db, args.trials, args.sweeps)
        print(f"  done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        db.dispose()
        settings = Settings(database_url=url, data_dir=Path(tmp))
        results: dict[str, Any] = {}
        with TestClient(create_app(settings)) as client:
            client.get("/")  # warm: connections, templates
            for name, page in PAGES.items():
                results[name] = measure(client, page, args.repeats)
    backend = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    print(f"\nDashboard server time, {args.trials} trials, {backend}, {args.repeats} requests each")
    print("| page | median | p95 | max |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['median']:.1f} ms | {r['p95']:.1f} ms | {r['max']:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
