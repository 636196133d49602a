"""`hpsearch check-trainer NAME`: a user trainer checked against the contract on this
machine, as a worker here would run it, before a sweep relies on it (core.contract_check).

    hpsearch check-trainer digits-cnn --set learning_rate=3e-3 --epochs 2

Exit 0 when every check passes, 1 when one fails (each failure says what it saw).
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from core.contract import BUILTIN
from core.contract_check import check_trainer
from core.data import confine, load_dataset
from worker.settings import WorkerSettings
from worker.trainers import installed


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-trainer",
        help="check a user trainer against the contract: training, probabilities, exact resume",
        description="Build a user trainer as a worker here would (the entry point group "
        "hpsearch.trainers, or HPSEARCH_TRAINERS), train it a few epochs with the worker's "
        "loop, and check its probabilities and that it resumes exactly, from a state saved "
        "mid-epoch and from a checkpoint file. Exit 1 if a check fails.",
    )
    parser.add_argument("name", help="the trainer's registered name")
    parser.add_argument(
        "--dataset", default="digits", help="digits, npz:PATH or cifar10:DIR (default: digits)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a hyperparameter, its value as YAML reads it (0.01, [64, 64], adam); repeatable",
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs to train (default: 2)")
    parser.set_defaults(run=run_check_trainer)


def run_check_trainer(args: argparse.Namespace) -> int:
    settings = WorkerSettings()
    trainers = installed(settings)
    if args.name not in trainers:
        known = ", ".join(sorted(trainers)) or "none"
        hint = " (the built-in net: hpsearch check)" if args.name == BUILTIN else ""
        raise ValueError(f"trainer {args.name!r} is not installed here{hint} (installed: {known})")
    if args.epochs < 1:
        raise ValueError(f"--epochs: must be at least 1, got {args.epochs}")
    values = dict(_hyperparameter(text) for text in args.set)
    dtype = str(values.get("dtype", "float32"))
    preprocessing = str(values.get("preprocessing", "mean"))
    dataset = confine(args.dataset, settings.dataset_dirs)
    data = load_dataset(dataset, dtype=dtype, preprocessing=preprocessing)
    cls = trainers[args.name]
    print(f"trainer {args.name} (version {getattr(cls, 'version', '?')}) on {args.dataset}")
    findings = check_trainer(args.name, cls, data, values, epochs=args.epochs)
    for finding in findings:
        print(f"  {'ok  ' if finding.ok else 'FAIL'}  {finding.text}")
    failed = sum(not f.ok for f in findings)
    print("every check passed" if not failed else f"{failed} check(s) failed")
    return 1 if failed else 0


def _hyperparameter(text: str) -> tuple[str, Any]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise ValueError(f"--set: {text!r} is not NAME=VALUE")
    for number in (int, float):  # YAML 1.1 reads 3e-3 as text
        try:
            return name.strip(), number(value)
        except ValueError:
            pass
    try:
        return name.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {name.strip()}: {value!r} is no value ({exc})") from None
