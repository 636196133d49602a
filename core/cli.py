"""`hpsearch train` and `hpsearch check`: one run, or the notes' checks, from the shell.

Hyperparameter flags are made from TrainConfig's fields (learning_rate -> --learning-rate),
so every hyperparameter core/ understands can be set here and none can drift out of sync.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from core.checkpoint import CheckpointError, checkpoint_name, save_checkpoint
from core.config import TrainConfig
from core.contract import TrainerError
from core.data import DatasetError, load_dataset
from core.gradcheck import (
    STEP_FACTOR,
    UNCOMFORTABLE,
    WRONG,
    GradCheckReport,
    check_model_gradients,
    diagnose,
)
from core.model import FullyConnectedNet
from core.sanity import run_sanity_checks
from core.state import TrainState, TrainStatus
from core.trainer import build_model, train

EXIT_FAILED = 1  # a check failed, or the input was unusable
EXIT_EXPLODED = 3  # the run ended as "exploded": an outcome, told apart from errors
GRADCHECK_EXAMPLES = 3
BAR_WIDTH = 30
DEFAULT_HIDDEN = ",".join(map(str, TrainConfig().hidden_sizes))
# A user trainer that breaks its contract (core.contract) is the user's too.
USER_ERRORS = (DatasetError, CheckpointError, ValueError, OSError, TrainerError)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", default="digits", help="digits, npz:PATH or cifar10:DIR (default: digits)"
    )
    parser.add_argument(
        "--num-val",
        type=int,
        default=None,
        help="validation examples held out (digits: 500, cifar10: 1000)",
    )
    group = parser.add_argument_group("hyperparameters (defaults: TrainConfig)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if field.name == "hidden_sizes":
            group.add_argument(
                flag,
                type=_hidden_sizes,
                default=None,
                metavar="H[,H...]",
                help=f"hidden layer widths (default: {DEFAULT_HIDDEN})",
            )
        elif field.name == "num_epochs":
            group.add_argument(
                flag,
                "--epochs",
                type=float,
                default=None,
                dest="num_epochs",
                help=f"epochs, fractional allowed (default: {default:g})",
            )
        else:
            kind = {"int": int, "float": float}.get(str(field.type), _number_or_text)
            group.add_argument(flag, type=kind, default=None, help=f"(default: {default})")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    return TrainConfig.from_dict(values)


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", ",").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected widths like 100 or 100,50, got {text!r}"
        ) from None


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def register(subparsers: Any) -> None:
    train_parser = subparsers.add_parser(
        "train",
        help="train one model and print its progress",
        description="Train one fully connected net and print one line per epoch.",
    )
    add_config_arguments(train_parser)
    train_parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="write a checkpoint after every epoch into this folder",
    )
    train_parser.add_argument(
        "--trial-id", type=int, default=0, help="trial number in checkpoint names (default: 0)"
    )
    train_parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON object on stdout"
    )
    train_parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar within epochs"
    )
    train_parser.set_defaults(run=run_train)

    check_parser = subparsers.add_parser(
        "check",
        help="gradient check and sanity checks",
        description="Run the notes' gradient check and sanity checks; exit 1 if any fails.",
    )
    add_config_arguments(check_parser)
    check_parser.add_argument(
        "--h", type=float, default=1e-5, help="finite-difference step (default: 1e-5)"
    )
    check_parser.add_argument("--json", action="store_true", help="print the report as JSON")
    check_parser.set_defaults(run=run_check)


def run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    data = load_dataset(
        args.dataset, dtype=config.dtype, num_val=args.num_val, preprocessing=config.preprocessing
    )
    log = sys.stderr if args.json else sys.stdout
    for warning in data.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    show_bar = not args.no_progress and sys.stderr.isatty()
    checkpoints: list[str] = []

    def on_epoch_end(model: FullyConnectedNet, state: TrainState) -> None:
        if show_bar:
            sys.stderr.write("\r" + " " * (BAR_WIDTH + 24) + "\r")
        history = state.history
        print(
            f"Finished epoch {state.epoch:g} / {config.num_epochs:g}: "
            f"cost {history.cost[-1]:.6f}, train: {history.train_acc[-1]:.6f}, "
            f"val {history.val_acc[-1]:.6f}, lr {history.lr[-1]:.6e}",
            file=log,
            flush=True,
        )
        if args.checkpoint_dir is not None:
            name = checkpoint_name(history.val_acc[-1], args.trial_id, state.epoch)
            path = save_checkpoint(
                args.checkpoint_dir / name,
                model,
                state,
                {"dataset": args.dataset, "trial_id": args.trial_id},
                preprocessing=data.preprocessing,
            )
            checkpoints.append(str(path))

    def on_progress(done: int, total: int) -> None:
        filled = BAR_WIDTH * done // total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] iteration {done}/{total}")
        sys.stderr.flush()

    started = time.perf_counter()
    model = build_model(config, data)
    state = train(
        model,
        data,
        config,
        on_epoch_end=on_epoch_end,
        on_progress=on_progress if show_bar else None,
    )
    result = _result(state, time.perf_counter() - started, checkpoints, args.dataset)
    if args.json:
        print(json.dumps(result))
    else:
        _print_summary(result, log)
    return EXIT_EXPLODED if state.status is TrainStatus.EXPLODED else 0


def _result(
    state: TrainState, seconds: float, checkpoints: list[str], dataset: str
) -> dict[str, Any]:
    history = state.history
    explosion = state.explosion
    return {
        "status": state.status.value,
        "dataset": dataset,
        "epochs": state.epoch,
        "iterations": state.iteration,
        "best_val_acc": state.best_val_acc if history.val_acc else None,
        "best_epoch": state.best_epoch if history.val_acc else None,
        "final_val_acc": history.val_acc[-1] if history.val_acc else None,
        "final_train_acc": history.train_acc[-1] if history.train_acc else None,
        "average_val_acc": history.average_val_acc[-1] if history.average_val_acc else None,
        "explosion": None if explosion is None else explosion.to_json(),
        "seconds": round(seconds, 3),
        "checkpoints": checkpoints,
        "config": state.config.to_dict(),
    }


def _print_summary(result: dict[str, Any], out: TextIO) -> None:
    if result["status"] == "exploded":
        e = result["explosion"]
        cost = "inf/nan" if e["cost"] is None else f"{e['cost']:.4g}"
        first = "inf/nan" if e["initial_cost"] is None else f"{e['initial_cost']:.4f}"
        print(
            f"Exploded at iteration {e['iteration']}: cost {cost} > "
            f"{result['config']['explode_factor']:g} x initial cost {first}",
            file=out,
        )
    else:
        print(
            f"{result['status'].capitalize()} in {result['seconds']:.2f}s: "
            f"best val {result['best_val_acc']:.4f} (epoch {result['best_epoch']:g}), "
            f"running-average params val {result['average_val_acc']:.4f}",
            file=out,
        )
    for path in result["checkpoints"][-1:]:
        print(f"Last checkpoint: {path}", file=out)


def run_check(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    data = load_dataset(
        args.dataset, dtype="float64", num_val=args.num_val, preprocessing=config.preprocessing
    )
    if not args.json:
        for warning in data.warnings:
            print(f"warning: {warning}")
    model = build_model(config.replace(dtype="float64"), data)
    grad_report = check_model_gradients(
        model,
        data.X_train[:GRADCHECK_EXAMPLES],
        data.y_train[:GRADCHECK_EXAMPLES],
        h=args.h,
        seed=config.seed,
    )
    reports = {args.h: grad_report}
    if any(c.verdict in (UNCOMFORTABLE, WRONG) for c in grad_report.checks):
        for h in (args.h * STEP_FACTOR, args.h / STEP_FACTOR):  # to tell why (diagnose)
            reports[h] = check_model_gradients(
                model,
                data.X_train[:GRADCHECK_EXAMPLES],
                data.y_train[:GRADCHECK_EXAMPLES],
                h=h,
                seed=config.seed,
            )
    diagnosis = diagnose(reports, data.warnings)
    sanity = run_sanity_checks(
        load_dataset(
            args.dataset,
            dtype=config.dtype,
            num_val=args.num_val,
            preprocessing=config.preprocessing,
        ),
        config,
    )
    # ReLU nets have kinks, for which the notes call errors below 1e-4 okay.
    grad_ok = all(c.verdict not in (UNCOMFORTABLE, WRONG) for c in grad_report.checks)
    passed = grad_ok and all(s.passed for s in sanity)
    if args.json:
        print(
            json.dumps(
                {
                    "passed": passed,
                    "gradient_check": {
                        "h": grad_report.h,
                        "examples": grad_report.num_examples,
                        "params": [
                            dict(dataclasses.asdict(c), verdict=c.verdict)
                            for c in grad_report.checks
                        ],
                    },
                    "sanity_checks": [dataclasses.asdict(s) for s in sanity],
                    "diagnosis": None if diagnosis is None else dataclasses.asdict(diagnosis),
                    "warnings": list(data.warnings),
                }
            )
        )
    else:
        _print_check_tables(grad_report, sanity)
        if diagnosis is not None:
            print(f"Gradient check {diagnosis.verdict}: {diagnosis.text}")
        print("PASSED" if passed else "FAILED")
    return 0 if passed else EXIT_FAILED


def _print_check_tables(report: GradCheckReport, sanity: list[Any]) -> None:
    print(
        f"Gradient check: float64, {report.num_examples} examples, h={report.h:g}, "
        "relative error |a-n|/max(|a|+|n|, tiny)"
    )
    print(f"  {'phase':<6}{'param':<7}{'checked':>8}{'kinks':>7}  {'max rel error':<15}verdict")
    for c in report.checks:
        print(
            f"  {c.phase:<6}{c.name:<7}{c.checked:>8}{c.kinks:>7}  {c.max_error:<15.2e}{c.verdict}"
        )
    print("  bands: < 1e-7 good, < 1e-4 okay (with kinks), < 1e-2 uncomfortable, else wrong")
    print("Sanity checks:")
    for s in sanity:
        print(f"  {'pass' if s.passed else 'FAIL'}  {s.name}: {s.measured} (expected {s.expected})")
