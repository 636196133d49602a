"""`hpsearch predict` and `hpsearch ensemble`: the models out of the system, from the shell.

    hpsearch predict --checkpoint FILE [--checkpoint FILE ...] --input X.npz --output p.npy
    hpsearch predict --ensemble ID --input cifar-10-batches-py --output p.npy
    hpsearch ensemble SWEEP --kind top-k [--max-k 5] [--watch]

`predict` runs core.predict on this machine: several --checkpoint files are an ensemble
(their class probabilities averaged), and --ensemble takes the members of a stored
ensemble, as many as its chosen k, from the master, read under --checkpoint-dir.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.checkpoint import read_summary, trainer_name
from core.contract import BUILTIN
from core.predict import WEIGHTS, load_ensemble, read_inputs
from core.registry import installed_trainers
from master.settings import ClientSettings
from master.submit import POLL_SECONDS, SubmitError, request

ENSEMBLE_WAIT_SECONDS = 3600  # a seeds ensemble trains its re-trainings first


def register(subparsers: Any) -> None:
    predict = subparsers.add_parser(
        "predict",
        help="predict classes of raw inputs with a checkpoint or an ensemble",
        description="Load checkpoints (one, several as an ensemble, or a stored ensemble's "
        "members) and write the predicted class ids of raw inputs (in the dataset's format: "
        "e.g. 0-16 digits pixels, 0-255 CIFAR-10 pixels) to an .npy file.",
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", type=Path, action="append", help="a checkpoint file (repeat: ensemble)"
    )
    source.add_argument("--ensemble", type=int, help="a stored ensemble's id (the master's)")
    predict.add_argument(
        "--input", type=Path, required=True, help=".npy, .npz (array X), or a CIFAR-10 batch/folder"
    )
    predict.add_argument("--output", type=Path, required=True, help="the .npy file to write")
    predict.add_argument(
        "--probabilities",
        action="store_true",
        help="write the (N, classes) class probabilities instead of the class ids",
    )
    predict.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="epoch",
        help="the checkpoint's own parameters (epoch) or their running average",
    )
    predict.add_argument(
        "--dataset",
        default=None,
        help="only for checkpoints written before format 3: the dataset they were trained on",
    )
    predict.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="with --ensemble: where the checkpoints are (default: CHECKPOINT_DIR, else "
        "HPSEARCH_DATA_DIR/checkpoints, as for the other services)",
    )
    predict.add_argument("--url", default=None, help="with --ensemble: the master's URL")
    predict.set_defaults(run=run_predict)

    ensemble = subparsers.add_parser(
        "ensemble",
        help="evaluate an ensemble of a finished sweep's models on a worker",
        description="Ask the master for an ensemble of a finished (or cancelled) sweep: top-k "
        "(its best trials), checkpoints (one trial's) or seeds (one trial re-trained from new "
        "seeds: a new stage of the sweep, which runs again). A worker scores every k on "
        "validation and test; k is chosen on validation.",
    )
    ensemble.add_argument("sweep", type=int, help="the sweep's id")
    ensemble.add_argument("--kind", choices=("top-k", "checkpoints", "seeds"), default="top-k")
    ensemble.add_argument("--max-k", type=int, default=5, help="members at most (default: 5)")
    ensemble.add_argument(
        "--trial", type=int, default=None, help="checkpoints, seeds: the trial (default: best)"
    )
    ensemble.add_argument(
        "--seeds", type=int, default=None, help="seeds: new seeds to re-train from (default: 4)"
    )
    ensemble.add_argument("--url", default=None, help="master URL (default: HPSEARCH_URL)")
    ensemble.add_argument("--watch", action="store_true", help="wait for it and print it")
    ensemble.set_defaults(run=run_ensemble)


def _url(given: str | None) -> str:
    return ClientSettings().api(given)


def run_predict(args: argparse.Namespace) -> int:
    if args.ensemble is not None:
        paths, what = _ensemble_paths(args)
    else:
        paths, what = list(args.checkpoint), ", ".join(map(str, args.checkpoint))
    # The user trainers installed here (core.registry), imported only for checkpoints of
    # theirs: a broken one must not stop predictions with the built-in net.
    trainers = {}
    if any(trainer_name(read_summary(path)) != BUILTIN for path in paths):
        trainers = installed_trainers(ClientSettings().trainers_setting)
    model = load_ensemble(paths, weights=args.weights, dataset=args.dataset, trainers=trainers)
    inputs = read_inputs(args.input)
    if args.probabilities:
        result = model.probabilities(inputs)
    else:
        result = model.predict(inputs)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.output, result)
    counts = np.bincount(model.predict(inputs), minlength=model.num_classes)
    kind = "class probabilities" if args.probabilities else "class ids"
    print(f"{len(inputs)} inputs from {args.input}, predicted by {what}")
    print(f"{kind} {result.shape} -> {args.output}")
    print("predictions per class: " + " ".join(f"{c}:{n}" for c, n in enumerate(counts)))
    return 0


def _ensemble_paths(args: argparse.Namespace) -> tuple[list[Path], str]:
    url = _url(args.url)
    ensemble = request(url, "GET", f"/api/ensembles/{args.ensemble}")
    if ensemble["status"] != "finished" or not ensemble["k"]:
        raise SubmitError(
            f"ensemble {args.ensemble} is {ensemble['status']}: only a finished one has a "
            f"chosen k to predict with"
        )
    root = args.checkpoint_dir or ClientSettings().checkpoint_dir
    members = ensemble["members"][: ensemble["k"]]
    paths = [root / m["checkpoint"] for m in members]
    trials = ", ".join(str(m["trial_id"]) for m in members)
    return paths, f"ensemble {args.ensemble} (top {ensemble['k']}: trials {trials})"


def run_ensemble(args: argparse.Namespace) -> int:
    url = _url(args.url)
    body: dict[str, Any] = {"kind": args.kind, "max_k": args.max_k}
    if args.trial is not None:
        body["trial_id"] = args.trial
    if args.seeds is not None:
        body["seeds"] = args.seeds
    ensemble = request(url, "POST", f"/api/sweeps/{args.sweep}/ensembles", body)
    if ensemble["kind"] == "seeds":
        print(
            f"ensemble {ensemble['id']} of sweep {args.sweep}: trial "
            f"{ensemble['params']['trial_id']} re-trained from {ensemble['params']['seeds']} "
            f"new seeds in stage {ensemble['params']['stage']}; evaluated once that ends"
        )
    else:
        print(
            f"ensemble {ensemble['id']} of sweep {args.sweep}: {len(ensemble['members'])} members"
        )
    if not args.watch:
        return 0
    deadline = time.monotonic() + ENSEMBLE_WAIT_SECONDS
    while ensemble["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            print(f"still {ensemble['status']}: {url}/api/ensembles/{ensemble['id']}")
            return 1
        time.sleep(POLL_SECONDS)
        ensemble = request(url, "GET", f"/api/ensembles/{ensemble['id']}")
    print_ensemble(ensemble)
    return 0 if ensemble["status"] == "finished" else 1


def print_ensemble(ensemble: dict[str, Any]) -> None:
    if ensemble["status"] != "finished":
        print(f"ensemble {ensemble['id']} {ensemble['status']}: {ensemble['reason']}")
    print("   k  val     test")
    for point in ensemble["curve"]:
        mark = "  <- chosen on val" if point["k"] == ensemble["k"] else ""
        print(f"  {point['k']:2d}  {point['val_acc']:.4f}  {_acc(point['test_acc'])}{mark}")
    print("members (alone; with the running average of their parameters):")
    for member in ensemble["members"]:
        print(
            f"  trial {member['trial_id']}: val {_acc(member.get('val_acc'))} test "
            f"{_acc(member.get('test_acc'))}; average val {_acc(member.get('average_val_acc'))} "
            f"test {_acc(member.get('average_test_acc'))}  {member['checkpoint']}"
        )
    if ensemble["reason"]:
        print(ensemble["reason"])


def _acc(value: float | None) -> str:
    return "  -   " if value is None else f"{value:.4f}"
