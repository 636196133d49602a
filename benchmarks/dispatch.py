"""What a trial costs beyond its training: the whole system, REST submit to finished in the DB.

    python benchmarks/dispatch.py [--trials 2000] [--workers 1 2] [--rounds 3]
                                  [--latency-runs 20] [--database-url URL]

Runs `hpsearch up` (its own Redis, the master, N workers) in a temporary data directory and
submits trials that train next to nothing: one iteration on an 8-example, 4-feature dataset,
so what is measured is the system: the REST call, the database rows, the RQ job, the worker
picking it up, the checkpoint write, the events, and the master applying them.

- throughput: --rounds sweeps of --trials such trials; trials/s from the sweep's creation to
  its last trial's end (both master timestamps in the database). Overhead per trial is what
  a trial costs one worker (wall time x workers / trials) minus what the same trial costs
  trained in this process (training and its checkpoint write); medians over the rounds.
  The CPU time each process (master, workers, Redis) spent per trial is read from /proc.
- latency: --latency-runs sweeps of a single trial, one after the other on an idle system;
  per trial, the time from the sweep's creation to the trial's end, both in the database.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.blas import describe_blas  # noqa: E402
from core.checkpoint import save_checkpoint  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.trainer import build_model, train  # noqa: E402
from master.db import Database
from master.migrate import drop_everything  # noqa: E402
from master.models import Sweep, Trial  # noqa: E402
from master.up import free_port, http_answers  # noqa: E402

LEARNING_RATE = {"dist": "loguniform", "low": 1e-3, "high": 1e-2}


def tiny_dataset(path: Path) -> str:
    rng = np.random.default_rng(0)
    arrays = {
        "X_train": rng.standard_normal((8, 4)),
        "y_train": np.arange(8) % 2,
        "X_val": rng.standard_normal((8, 4)),
        "y_val": np.arange(8) % 2,
    }
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return f"npz:{path}"


def sweep_spec(name: str, dataset: str, trials: int) -> dict[str, Any]:
    return {
        "name": name,
        "dataset": dataset,
        "model": {"hidden_sizes": [4]},
        "fixed": {"update": "sgd", "batch_size": 8},
        "space": {"learning_rate": LEARNING_RATE},
        "stages": [{"trials": trials, "epochs": 1}],
        "seed": 0,
    }


class System:
    """`hpsearch up` with N workers in a data directory of its own."""

    def __init__(self, workers: int, data_dir: Path, database_url: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ}
        env.pop("DATABASE_URL", None)
        # The benchmarks write their generated datasets beside the data directory.
        env.setdefault("HPSEARCH_DATASET_DIRS", str(data_dir.parent))
        if database_url:
            env["DATABASE_URL"] = database_url
        self.database_url = database_url or f"sqlite:///{data_dir / 'hpsearch.db'}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "master.cli", "up", "--workers", str(workers),
             "--port", str(self.port), "--dashboard-port", "0", "--data-dir", str(data_dir)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not http_answers(self.url + "/api/workers"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"hpsearch up did not start; see {data_dir / 'logs'}")
            time.sleep(0.1)
        while self.get("/api/workers")["count"] < workers:
            time.sleep(0.1)
        self.db = Database(self.database_url)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def submit(self, spec: dict[str, Any]) -> int:
        request = urllib.request.Request(
            self.url + "/api/sweeps",
            data=json.dumps(spec).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(json.loads(response.read())["id"])

    def wait(self, sweep_id: int, poll: float) -> None:
        while self.get(f"/api/sweeps/{sweep_id}")["status"] == "running":
            time.sleep(poll)

    def span(self, sweep_id: int) -> tuple[float, int]:
        """(seconds from the sweep's creation to its last trial's end, trials finished)."""
        with self.db.reading() as session:
            created = session.scalar(select(Sweep.created_at).where(Sweep.id == sweep_id))
            last, finished = session.execute(
                select(func.max(Trial.finished_at), func.count())
                .where(Trial.sweep_id == sweep_id)
                .where(Trial.status == "finished")
            ).one()
        assert created is not None and last is not None
        return (last - created).total_seconds(), int(finished)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by the master, the workers (together) and Redis (Linux)."""
        used = {"master": 0.0, "workers": 0.0, "redis": 0.0}
        for pid in _children(self.process.pid):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            kind = (
                "redis"
                if b"redis-server" in command[0]
                else "workers"
                if b"worker" in command
                else "master"
            )
            used[kind] += _cpu_seconds(pid)
        return used

    def stop(self) -> None:
        self.db.dispose()
        # SIGTERM, not SIGINT: a benchmark started as a background job of a script has
        # SIGINT ignored, and so does `hpsearch up` under it.
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(system: System, dataset: str, trials: int, workers: int) -> dict[str, float]:
    cpu_before = system.cpu_seconds()
    sweep_id = system.submit(sweep_spec("dispatch-throughput", dataset, trials))
    system.wait(sweep_id, poll=0.2)
    cpu_after = system.cpu_seconds()
    seconds, finished = system.span(sweep_id)
    if finished != trials:
        raise RuntimeError(f"only {finished} of {trials} trials finished")
    result = {
        "trials_per_s": trials / seconds,
        "ms_per_trial_per_worker": 1000 * seconds * workers / trials,
    }
    for name, used in cpu_after.items():
        result[f"cpu_ms_{name}"] = 1000 * (used - cpu_before[name]) / trials
    return result


def latency(system: System, dataset: str, runs: int) -> dict[str, float]:
    spans = []
    for i in range(runs):
        sweep_id = system.submit(sweep_spec(f"dispatch-latency-{i}", dataset, 1))
        system.wait(sweep_id, poll=0.005)
        spans.append(system.span(sweep_id)[0] * 1000)
    spans.sort()
    return {
        "median_ms": statistics.median(spans),
        "p90_ms": spans[int(0.9 * (len(spans) - 1))],
        "min_ms": spans[0],
    }


def in_process(dataset: str, directory: Path, repeats: int = 200) -> dict[str, float]:
    """The trial's own work, without the system: training (with its evaluation) and one
    checkpoint write."""
    data = load_dataset(dataset)
    config = TrainConfig.from_dict(
        {"learning_rate": 3e-3, "update": "sgd", "batch_size": 8, "num_epochs": 1.0,
         "hidden_sizes": [4], "seed": 0}
    )  # fmt: skip
    train_ms, save_ms = [], []
    for i in range(repeats):
        started = time.perf_counter()
        model = build_model(config, data)
        state = train(model, data, config)
        train_ms.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        save_checkpoint(directory / f"val0.5000_trial{i:06d}_ep001.npz", model, state)
        save_ms.append(1000 * (time.perf_counter() - started))
    return {"train_ms": statistics.median(train_ms), "checkpoint_ms": statistics.median(save_ms)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--database-url", help="default: SQLite in the temporary directory")
    args = parser.parse_args(argv)
    print(describe_blas())

    rows = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-dispatch-") as tmp:
        root = Path(tmp)
        dataset = tiny_dataset(root / "tiny.npz")
        alone = in_process(dataset, root / "in-process")
        trial_ms = alone["train_ms"] + alone["checkpoint_ms"]
        print(
            f"in process: training {alone['train_ms']:.2f} ms, "
            f"checkpoint write {alone['checkpoint_ms']:.2f} ms (medians)",
            flush=True,
        )
        for workers in args.workers:
            if args.database_url:  # a clean database for each run
                emptied = Database(args.database_url)
                drop_everything(emptied.engine)
                emptied.dispose()
            system = System(workers, root / f"up-{workers}", args.database_url)
            try:
                rounds = []
                for i in range(args.rounds):
                    rounds.append(throughput(system, dataset, args.trials, workers))
                    r = rounds[-1]
                    print(
                        f"{workers} worker(s), round {i + 1}: {r['trials_per_s']:.0f} trials/s",
                        flush=True,
                    )
                result = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
                result["overhead_ms"] = result["ms_per_trial_per_worker"] - trial_ms
                result.update(latency(system, dataset, args.latency_runs))
            finally:
                system.stop()
            rows.append((workers, result))

    database = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"\nSweeps of {args.trials} one-iteration trials, {database}, medians of "
        f"{args.rounds} rounds; a trial alone costs {trial_ms:.1f} ms in process.\n"
    )
    print(
        "| workers | trials/s | overhead per trial | CPU per trial: master / workers / redis "
        "| one-trial sweep, submit to done: median (p90) |"
    )
    print("|---|---|---|---|---|")
    for workers, r in rows:
        print(
            f"| {workers} | {r['trials_per_s']:.0f} | {r['overhead_ms']:.1f} ms "
            f"| {r['cpu_ms_master']:.1f} / {r['cpu_ms_workers']:.1f} / {r['cpu_ms_redis']:.1f} ms "
            f"| {r['median_ms']:.0f} ms ({r['p90_ms']:.0f} ms) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
