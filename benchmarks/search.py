"""Search quality at equal compute: hpsearch's stages against random search and Optuna.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/search.py [--seeds 5]
        [--first-seed 0] [--budget 800] [--workers 2]
        [--datasets classification shells friedman digits]
        [--methods budget budget-sobol stages promote random tpe-hyperband tpe
                   tpe-hyperband-parallel]

Every method searches the same space for a 256x256 MLP trained with Adam (learning_rate
10**U(-5, -1), reg 10**U(-7, 0), dropout U(0, 0.7); benchmarks/search_problem.py) with the
same budget of --budget training epochs (800), no trial longer than 80, for each of --seeds
seeds from --first-seed (0) on (the sweep's seed, or the sampler's and the runs' for Optuna):
  budget                 (1) hpsearch's budget mode: `"budget": {"epochs": 800, "max_epochs":
                         80}` in place of stages, laid out by the master (for --workers)
  budget-sobol           (1s) (1) with `"sampler": "sobol"`
  stages                 (2) hpsearch, 3 hand-written stages without promotion: 40 x 2 epochs,
                         16 x 15 around the best 8, 6 x 80 around the best 4
  promote                (3) hpsearch, 4 hand-written stages with promotion: 71 x 3 epochs,
                         then 26 x 9 of which the best 16 go on from their checkpoints, 8 x 27
                         (6 go on), 4 x 80 (3 go on); the new trials sample narrowed ranges
  random                 (4) hpsearch, random search: one stage of 10 x 80 epochs
  tpe-hyperband          (5) Optuna: seeded TPE + Hyperband (rungs 3, 9, 27, 80 epochs),
                         trials of up to 80 epochs, in this one process
  tpe                    (6) Optuna: seeded TPE alone, 40 trials x 20 epochs, in this process
  tpe-hyperband-parallel (7) (5) in --workers processes sharing a journal file
hpsearch runs as a user runs it (`hpsearch up` with --workers workers, each in its own
process; benchmarks/dispatch.py's System); Optuna drives core/ directly. The seeds run one
after the other, each on both sides before the next (hpsearch first on even seeds, Optuna
first on odd ones), so that a drift of the machine's speed falls on both; each seed's
hpsearch runs have an `hpsearch up` of their own, stopped before Optuna's runs. Another --budget
scales the trial counts. Datasets (generated, no network): classification, shells and
friedman, which are not saturated (friedman was added after budget mode's layout was chosen
on the other two, to check it on data it was not tuned on); digits (saturated) as a quick
smoke row. Each has a test split (the
generated ones: 1500 new draws from the same generator), which no method selects on.

Per method and dataset it prints the best validation accuracy of any epoch of any trial
(median, min and max over seeds), the wall time (hpsearch: the sweep's creation to its end
in the database; Optuna: the optimize calls, without starting Python), the CPU time of every
process (hpsearch: master, workers and Redis, from /proc), the epochs trained (a promoted
trial's inherited epochs not counted) and the worker utilization: the time spent training
trials (hpsearch: each trial's start to its end; Optuna: inside the objective) over workers
(or processes) x wall time; then, when (7) ran, a line per hpsearch method against it
seed by seed (seeds at or above it, the median and worst difference, the means, and the
wall time ratio). A method whose sweep is refused (e.g. a spec field this version
of the master does not know) prints the error and is skipped.

A second table per dataset is the test split: the test accuracy of the best model by
validation (its best epoch's weights; hpsearch: the best checkpoint of the sweep's best run,
as the sweep's own test evaluation scores it; Optuna: the weights of the epoch that gave the
study's best validation accuracy, kept in memory and scored once the study ends) and, for
hpsearch, of the top-k ensemble of the sweep's 5 best runs (averaged class probabilities)
with k chosen on validation, ties to the smaller: median, min and max over seeds, the gain
ensemble - best model (median and min over seeds), the k chosen per seed, and, as information
only, the k that was best on test. hpsearch's numbers are the sweep's `test` object
(`GET /api/sweeps/{id}`, the evaluation a worker makes when the sweep ends; waited for after
the sweep's wall and CPU time are taken) and its ensemble's curve (`GET /api/ensembles/{id}`).
Optuna's searches keep no checkpoints: no ensemble for them.
"""

from __future__ import annotations

import os

# CPU-seconds would count the spinning of idle BLAS threads: one thread per process on both
# sides. Set before NumPy is first imported; `hpsearch up`'s workers and the Optuna
# processes inherit it (hpsearch up keeps the thread count a user sets).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sqlalchemy import select  # noqa: E402

from benchmarks.blas import describe_blas  # noqa: E402
from benchmarks.dispatch import System  # noqa: E402
from benchmarks.search_problem import (  # noqa: E402
    DATASETS,
    DEFAULT_DATASETS,
    EXPLODE_FACTOR,
    FIXED,
    MAX_EPOCHS,
    MODEL,
    SPACE,
    Outcome,
    TestOutcome,
)
from master.models import Sweep, Trial  # noqa: E402

DESIGN_BUDGET = 800  # the hand-written stages below spend this; another budget scales them
THREE_STAGES = [  # 80 + 240 + 480 epochs
    {"trials": 40, "epochs": 2},
    {"trials": 16, "epochs": 15, "keep_top": 8},
    {"trials": 6, "epochs": 80, "keep_top": 4},
]
PROMOTING_STAGES = [  # 213 + (16 x 6 + 10 x 9) + (6 x 18 + 2 x 27) + (3 x 53 + 80) = 800
    {"trials": 71, "epochs": 3},
    {"trials": 26, "epochs": 9, "keep_top": 16, "promote": 16},
    {"trials": 8, "epochs": 27, "keep_top": 6, "promote": 6},
    {"trials": 4, "epochs": 80, "keep_top": 3, "promote": 3},
]
STALL_SECONDS = 180.0  # a sweep none of whose trials progressed this long is given up
# As often as `hpsearch submit --watch` asks: each answer costs the master CPU that the
# workers, on the same cores, would otherwise train with.
POLL_SECONDS = 1.0
EVALUATION_WAIT_SECONDS = 300.0  # for a finished sweep's test evaluation (a worker's job)
HPSEARCH_METHODS = {
    "budget": "(1) hpsearch, budget mode",
    "budget-sobol": "(1s) hpsearch, budget mode, Sobol sampler",
    "stages": "(2) hpsearch, 3 stages",
    "promote": "(3) hpsearch, 4 stages with promotion",
    "random": "(4) hpsearch, random search",
}
OPTUNA_METHODS = {
    "tpe-hyperband": "(5) Optuna TPE + Hyperband",
    "tpe": "(6) Optuna TPE alone",
    "tpe-hyperband-parallel": "(7) Optuna TPE + Hyperband, N processes",
}


@dataclass
class Results:
    """Every method's outcomes on one dataset, and the methods that could not run."""

    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def stage_plan(method: str, budget: int) -> dict[str, Any]:
    """The part of the sweep spec that says how `method` spends the budget."""
    if method in ("budget", "budget-sobol"):
        return {"budget": {"epochs": budget, "max_epochs": MAX_EPOCHS}}
    if method == "stages":
        return {"stages": scaled(THREE_STAGES, budget / DESIGN_BUDGET)}
    if method == "promote":
        return {"stages": scaled(PROMOTING_STAGES, budget / DESIGN_BUDGET)}
    # random search: trials of the most epochs one trial trains
    return {"stages": [{"trials": max(1, budget // MAX_EPOCHS), "epochs": min(MAX_EPOCHS, budget)}]}


def scaled(stages: list[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    """The stages with `factor` times the trials (and kept and promoted ones), each count
    kept within what the stage and the one before it have."""
    out: list[dict[str, Any]] = []
    for stage in stages:
        new = {**stage, "trials": max(1, round(stage["trials"] * factor))}
        for name in ("keep_top", "promote"):
            if name in stage:
                new[name] = max(1, min(round(stage[name] * factor), out[-1]["trials"]))
        if "promote" in new:
            new["promote"] = min(new["promote"], new["trials"])
        out.append(new)
    return out


def planned_epochs(stages: list[dict[str, Any]]) -> float:
    """What stages train if no trial ends early: new trials train the stage's epochs,
    promoted ones only those beyond the stage before."""
    total, previous = 0.0, 0.0
    for stage in stages:
        promoted = stage.get("promote", 0)
        total += (stage["trials"] - promoted) * stage["epochs"]
        total += promoted * (stage["epochs"] - previous)
        previous = stage["epochs"]
    return total


def describe_stages(stages: list[dict[str, Any]]) -> str:
    """E.g. "71x3, 26x9 (16 on), 8x27 (6 on)": trials x epochs, how many trained on."""
    return ", ".join(
        f"{s['trials']}x{s['epochs']:g}" + (f" ({s['promote']} on)" if s.get("promote") else "")
        for s in stages
    )


def sweep_spec(dataset: str, seed: int, method: str, budget: int) -> dict[str, Any]:
    return {
        "name": f"search-{method}-seed{seed}",
        "dataset": dataset,
        "model": MODEL,
        "fixed": FIXED,
        "space": SPACE,
        **stage_plan(method, budget),
        "sampler": "sobol" if method.endswith("-sobol") else "random",
        "explode_factor": EXPLODE_FACTOR,
        "seed": seed,
    }


class Skipped(RuntimeError):
    """A method could not run: the master refused its sweep (e.g. a field this version does
    not know) or the sweep stopped making progress."""


def through_system(
    system: System, workers: int, spec: dict[str, Any], logs: Path
) -> tuple[Outcome, str]:
    """One sweep, submitted over REST and waited for: its outcome and a line on its trials."""
    cpu_before = sum(system.cpu_seconds().values())
    try:
        sweep_id = system.submit(spec)
    except urllib.error.HTTPError as exc:
        raise Skipped(f"sweep refused, {exc.code}: {error_detail(exc)}") from None
    wait_for(system, sweep_id, logs)
    cpu = sum(system.cpu_seconds().values()) - cpu_before
    with system.db.reading() as session:
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None and sweep.finished_at is not None, sweep_id
        wall = (sweep.finished_at - sweep.created_at).total_seconds()
        stages = sweep.spec["stages"]  # as laid out, in budget mode
        trials = session.scalars(select(Trial).where(Trial.sweep_id == sweep_id)).all()
        busy = sum(
            (t.finished_at - t.started_at).total_seconds()
            for t in trials
            if t.started_at is not None and t.finished_at is not None
        )
        best_val_acc = max((t.best_val_acc or 0.0 for t in trials), default=0.0)
        epochs = sum(t.epochs_trained for t in trials)
        counts = Counter(str(t.status) for t in trials)
        reasons = {t.reason for t in trials if t.status == "failed" and t.reason}
    test, test_note = test_evaluation(system, sweep_id)
    outcome = Outcome(
        best_val_acc=best_val_acc,
        wall_seconds=wall,
        cpu_seconds=cpu,
        epochs=epochs,
        utilization=busy / (workers * wall),
        test=test,
    )
    note = (
        f"sweep {sweep.status}, stages {describe_stages(stages)}, planned "
        f"{planned_epochs(stages):g} epochs; trials "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + (f"; failed: {sorted(reasons)[0][:200]}" if reasons else "")
        + (f"; {test_note}" if test_note else "")
    )
    return outcome, note


def test_evaluation(system: System, sweep_id: int) -> tuple[TestOutcome | None, str]:
    """The finished sweep's test evaluation, once its worker has made it, with the ensemble's
    curve (the k best on test, for information); None and why if there is none."""
    deadline = time.monotonic() + EVALUATION_WAIT_SECONDS
    while True:
        test = system.get(f"/api/sweeps/{sweep_id}").get("test")
        if test is not None and test["status"] not in ("queued", "running"):
            break
        if time.monotonic() > deadline:
            state = "none made" if test is None else f"still {test['status']}"
            return None, f"no test evaluation: {state} after {EVALUATION_WAIT_SECONDS:.0f} s"
        time.sleep(0.2)
    ensemble = system.get(f"/api/ensembles/{test['ensemble_id']}")
    if test["status"] != "finished" or test["best_test_acc"] is None:
        reason = ensemble.get("reason") or "the dataset has no test split"
        return None, f"no test evaluation: {test['status']}, {reason}"
    curve = [p for p in ensemble["curve"] if p.get("test_acc") is not None]
    top = max(curve, key=lambda p: (p["test_acc"], -p["k"]))  # ties to the smaller k
    return TestOutcome(
        best_val_acc=test["best_val_acc"],
        best_test_acc=test["best_test_acc"],
        k=test["k"],
        ensemble_test_acc=test["ensemble_test_acc"],
        test_best_k=top["k"],
        test_best_k_acc=top["test_acc"],
    ), ""


def error_detail(exc: urllib.error.HTTPError) -> str:
    """The API's one-line `detail`, or the whole body if it is not the API's JSON."""
    body = exc.read().decode(errors="replace")
    try:
        return str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        return body


def wait_for(system: System, sweep_id: int, logs: Path) -> None:
    """Until the sweep ends; one whose trials stop progressing (a master that fails to
    schedule them, say) is cancelled instead of waited for forever."""
    last: Any = None
    since = time.monotonic()
    while (sweep := system.get(f"/api/sweeps/{sweep_id}"))["status"] == "running":
        progress = (sweep["counts"], sweep.get("epochs_trained"))
        if progress != last:
            last, since = progress, time.monotonic()
        elif time.monotonic() - since > STALL_SECONDS:
            post(system, f"/api/sweeps/{sweep_id}/cancel")
            raise Skipped(
                f"sweep {sweep_id} made no progress for {STALL_SECONDS:.0f} s and was "
                f"cancelled; the master's last error: {last_error(logs / 'master.log')}"
            )
        time.sleep(POLL_SECONDS)


def post(system: System, path: str) -> None:
    request = urllib.request.Request(system.url + path, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30):
        pass


def last_error(log: Path) -> str:
    """The log's last line that names an exception (the log goes with the temporary dir)."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return next((line for line in reversed(lines) if "Error" in line), "none logged")


def run_hpsearch(
    methods: list[str],
    dataset: str,
    seed: int,
    args: argparse.Namespace,
    data_dir: Path,
    results: Results,
) -> None:
    """One seed of every hpsearch method, on an `hpsearch up` of its own (stopped before
    Optuna's runs: they get a machine as quiet as ours had)."""
    system = System(args.workers, data_dir, None)
    try:
        for method in methods:
            if method in results.skipped:
                continue
            label = HPSEARCH_METHODS[method]
            spec = sweep_spec(dataset, seed, method, args.budget)
            try:
                outcome, note = through_system(system, args.workers, spec, data_dir / "logs")
            except Skipped as exc:
                results.skipped[method] = str(exc)
                print(f"  {label}: {exc}; skipped", flush=True)
                continue
            results.outcomes.setdefault(method, []).append(outcome)
            report(seed, label, outcome, note)
    finally:
        system.stop()


def run_optuna(
    methods: list[str],
    dataset: str,
    seed: int,
    args: argparse.Namespace,
    directory: Path,
    results: Results,
) -> None:
    """One seed of every Optuna method."""
    methods = [m for m in methods if m not in results.skipped]
    if not methods:
        return
    try:
        from benchmarks import search_optuna
    except ImportError:
        reason = "optuna is not importable (pip install -e '.[bench]' -c constraints.txt)"
        print(f"  {reason}: the Optuna methods are skipped")
        results.skipped.update(dict.fromkeys(methods, reason))
        return
    runs: dict[str, Callable[[int], Outcome]] = {
        "tpe-hyperband": lambda s: search_optuna.tpe_hyperband(dataset, s, args.budget),
        "tpe": lambda s: search_optuna.tpe_alone(dataset, s, args.budget),
        "tpe-hyperband-parallel": lambda s: search_optuna.tpe_hyperband_parallel(
            dataset, s, args.budget, args.workers, directory
        ),
    }
    for method in methods:
        outcome = runs[method](seed)
        results.outcomes.setdefault(method, []).append(outcome)
        report(seed, OPTUNA_METHODS[method], outcome, "")


def report(seed: int, label: str, r: Outcome, note: str) -> None:
    print(
        f"  seed {seed} {label}: best {r.best_val_acc:.3f}, {r.wall_seconds:.1f} s, "
        f"{r.cpu_seconds:.0f} CPU-s, {r.epochs:.0f} epochs, utilization "
        f"{100 * r.utilization:.0f}%"
        + (f"; {describe_test(r.test)}" if r.test else "")
        + (f" ({note})" if note else ""),
        flush=True,
    )


def describe_test(t: TestOutcome) -> str:
    """E.g. "test: best model val 0.817 test 0.809, top-3 ensemble 0.823 (best on test: k 5
    (0.828))"."""
    text = f"test: best model val {t.best_val_acc:.3f} test {t.best_test_acc:.3f}"
    if t.k is not None and t.ensemble_test_acc is not None:
        text += f", top-{t.k} ensemble {t.ensemble_test_acc:.3f}"
        text += f" (best on test: k {on_test(t)})"
    return text


def table(dataset: str, results: Results, args: argparse.Namespace) -> str:
    labels = {**HPSEARCH_METHODS, **OPTUNA_METHODS}
    lines = [
        f"{dataset}: {args.budget} epochs per search (at most {MAX_EPOCHS} per trial), "
        f"{args.seeds} seed(s), {args.workers} hpsearch workers / Optuna processes for (7):",
        "",
        "| method | best val acc: median (min-max) | wall, median | CPU-s, median "
        "| epochs trained, median | worker utilization, median |",
        "|---|---|---|---|---|---|",
    ]
    for method in args.methods:
        if method in results.skipped:
            reason = results.skipped[method][:120].replace("|", "/")
            lines.append(f"| {labels[method]} | skipped: {reason} | | | | |")
            continue
        runs = results.outcomes.get(method)
        if not runs:
            continue
        best = [r.best_val_acc for r in runs]
        lines.append(
            f"| {labels[method]} | {statistics.median(best):.3f} ({min(best):.3f}-{max(best):.3f}) "
            f"| {statistics.median(r.wall_seconds for r in runs):.1f} s "
            f"| {statistics.median(r.cpu_seconds for r in runs):.0f} "
            f"| {statistics.median(r.epochs for r in runs):.0f} "
            f"| {100 * statistics.median(r.utilization for r in runs):.0f}% |"
        )
    return "\n".join(lines)


def seed_for_seed(results: Results, args: argparse.Namespace) -> str:
    """Each hpsearch method against the parallel Optuna peer (7), seed by seed (both ran each
    seed's searches back to back): on how many seeds it found a model at least as good, and
    its wall time over the peer's."""
    peer = results.outcomes.get("tpe-hyperband-parallel")
    if not peer:
        return ""
    lines = []
    for method in args.methods:
        runs = results.outcomes.get(method)
        if method not in HPSEARCH_METHODS or not runs or len(runs) != len(peer):
            continue
        ahead = sum(r.best_val_acc >= p.best_val_acc for r, p in zip(runs, peer, strict=True))
        gaps = [r.best_val_acc - p.best_val_acc for r, p in zip(runs, peer, strict=True)]
        ratios = [r.wall_seconds / p.wall_seconds for r, p in zip(runs, peer, strict=True)]
        means = (
            statistics.mean(r.best_val_acc for r in runs),
            statistics.mean(p.best_val_acc for p in peer),
        )
        lines.append(
            f"- {HPSEARCH_METHODS[method]} against (7), seed for seed: best val acc at or "
            f"above on {ahead} of {len(runs)} seeds (difference median "
            f"{statistics.median(gaps):+.3f}, worst {min(gaps):+.3f}; means {means[0]:.3f} "
            f"against {means[1]:.3f}); wall time ratio median {statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}), faster on "
            f"{sum(r < 1 for r in ratios)} of {len(runs)} seeds"
        )
    return "\n".join(lines)


def test_table(dataset: str, results: Results, args: argparse.Namespace) -> str:
    """The test split: the best model by validation, and the top-k ensemble with k chosen on
    validation (hpsearch only), per method over the seeds."""
    labels = {**HPSEARCH_METHODS, **OPTUNA_METHODS}
    lines = [
        f"{dataset}, test split ({args.seeds} seed(s); nothing was selected on it):",
        "",
        "| method | best model, test acc: median (min-max) | top-k ensemble, k on val, test acc: "
        "median (min-max) | gain ensemble - best model: median (min) | k chosen, per seed "
        "| k best on test (not chosen), per seed |",
        "|---|---|---|---|---|---|",
    ]

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    for method in args.methods:
        runs = results.outcomes.get(method)
        if method in results.skipped or not runs:
            continue
        tests = [r.test for r in runs if r.test is not None]
        missing = len(runs) - len(tests)
        if not tests:
            lines.append(f"| {labels[method]} | not measured | | | | |")
            continue
        single = spread([t.best_test_acc for t in tests])
        if missing:
            single += f", {missing} seed(s) without"
        # (k chosen, its test acc, gain over the best model, "k best on test (its acc)")
        ensembles = [
            (t.k, t.ensemble_test_acc, t.ensemble_test_acc - t.best_test_acc, on_test(t))
            for t in tests
            if t.k is not None and t.ensemble_test_acc is not None
        ]
        if not ensembles:
            lines.append(f"| {labels[method]} | {single} | no ensemble | | | |")
            continue
        gains = [gain for _, _, gain, _ in ensembles]
        lines.append(
            f"| {labels[method]} | {single} | {spread([acc for _, acc, _, _ in ensembles])} "
            f"| {statistics.median(gains):+.3f} ({min(gains):+.3f}) "
            f"| {', '.join(str(k) for k, _, _, _ in ensembles)} "
            f"| {', '.join(best for _, _, _, best in ensembles)} |"
        )
    return "\n".join(lines)


def on_test(t: TestOutcome) -> str:
    """E.g. "5 (0.828)": the k that was best on test, and its test accuracy."""
    if t.test_best_k is None or t.test_best_k_acc is None:
        return "?"
    return f"{t.test_best_k} ({t.test_best_k_acc:.3f})"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds from this one on")
    parser.add_argument("--budget", type=int, default=DESIGN_BUDGET, help="epochs per search")
    parser.add_argument("--workers", type=int, default=2, help="hpsearch workers, and (7)'s")
    methods = [*HPSEARCH_METHODS, *OPTUNA_METHODS]
    parser.add_argument("--methods", nargs="+", choices=methods, default=methods)
    parser.add_argument(
        "--datasets", nargs="+", choices=list(DATASETS), default=list(DEFAULT_DATASETS)
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--optuna-worker"]:  # one process of (7), started by search_optuna
        from benchmarks.search_optuna import worker_main

        return worker_main(argv[1:])
    args = parse_args(argv)
    print(describe_blas())
    print(
        "BLAS pinned to one thread per process: "
        + ", ".join(f"{v}=1" for v in BLAS_THREAD_VARIABLES)
        + " (this process, hpsearch up's workers, the Optuna processes)"
    )
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    tables = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-search-") as tmp:
        root = Path(tmp)
        for name in args.datasets:
            dataset = DATASETS[name](root)
            print(f"\n{name} ({dataset}):", flush=True)
            results = Results()
            hpsearch = [m for m in args.methods if m in HPSEARCH_METHODS]
            optuna = [m for m in args.methods if m in OPTUNA_METHODS]
            for seed in seeds:
                # Seed by seed, hpsearch first on even seeds and Optuna first on odd ones:
                # this machine's speed drifts by up to 30% within minutes, and a drift then
                # falls on both sides alike instead of on whichever ran all its seeds later.
                hpsearch_first = seed % 2 == 0
                for side in ("hpsearch", "optuna") if hpsearch_first else ("optuna", "hpsearch"):
                    if side == "hpsearch" and hpsearch:
                        run_hpsearch(hpsearch, dataset, seed, args, root / f"up-{name}", results)
                    elif side == "optuna" and optuna:
                        run_optuna(optuna, dataset, seed, args, root, results)
            tables.append(table(name, results, args))
            if comparison := seed_for_seed(results, args):
                tables.append(comparison)
            tables.append(test_table(name, results, args))
    print("\n" + "\n\n".join(tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
