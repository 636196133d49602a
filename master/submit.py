"""`hpsearch submit FILE [--url URL] [--watch]`: a small client of the master's REST API."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from master.settings import ClientSettings

POLL_SECONDS = 1.0
EVALUATION_WAIT_SECONDS = 300  # for a finished sweep's test evaluation (a worker's job)
BAR_WIDTH = 30
FINAL = ("finished", "exploded", "failed", "stopped")


class SubmitError(ValueError):
    """Something the user can fix: a bad file, an unreachable master, a refused spec."""


def run_submit(args: argparse.Namespace) -> int:
    url = ClientSettings().api(args.url)
    spec = load_spec_file(Path(args.file))
    sweep = request(url, "POST", "/api/sweeps", spec)
    print(
        f"sweep {sweep['id']} '{sweep['name']}': {sweep['total_trials']} trials in "
        f"{len(sweep['stages'])} stages; {url}/api/sweeps/{sweep['id']}"
    )
    if not args.watch:
        return 0
    sweep = watch(url, sweep["id"])
    print_top(url, sweep["id"])
    if sweep["status"] == "finished":
        print_test(url, sweep["id"])
    return 0 if sweep["status"] == "finished" else 1


def load_spec_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SubmitError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)  # YAML is a superset of JSON
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SubmitError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None


def request(url: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    token = ClientSettings().api_token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SubmitError(_describe_http_error(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SubmitError(f"cannot reach the master at {url}: {reason}") from None


def _describe_http_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
    except (ValueError, OSError):
        return f"the master answered {exc.code} {exc.reason}"
    problems = body.get("problems") or []
    if problems:
        return f"the master refused the sweep ({exc.code}):\n  " + "\n  ".join(problems)
    return f"the master answered {exc.code}: {body.get('detail', exc.reason)}"


def watch(url: str, sweep_id: int) -> dict[str, Any]:
    """Show a bar per stage until the sweep ends; returns its last state. On a terminal the
    bars are redrawn in place; otherwise a stage's line is printed each time it changes."""
    tty = sys.stdout.isatty()
    shown: list[str] = []
    while True:
        sweep = request(url, "GET", f"/api/sweeps/{sweep_id}")
        lines = [stage_line(stage) for stage in sweep["stages"]]
        if tty:
            if shown:
                sys.stdout.write(f"\x1b[{len(shown)}F")  # back to the first bar
            sys.stdout.write("".join(f"\x1b[2K{line}\n" for line in lines))
        else:
            for i, line in enumerate(lines):
                if i >= len(shown) or shown[i] != line:
                    print(line)
        sys.stdout.flush()
        shown = lines
        if sweep["status"] != "running":
            for stage in sweep["stages"]:
                for warning in stage["warnings"]:
                    print(f"stage {stage['index']}: {warning}")
            for warning in sweep.get("final_warnings", []):
                print(f"final: {warning}")
            reason = f": {sweep['reason']}" if sweep.get("reason") else ""
            print(f"sweep {sweep_id} {sweep['status']}{reason}")
            return sweep
        time.sleep(POLL_SECONDS)


def stage_line(stage: dict[str, Any]) -> str:
    counts = stage["counts"]
    done = sum(counts.get(s, 0) for s in FINAL)
    filled = round(BAR_WIDTH * done / stage["trials"]) if stage["trials"] else 0
    detail = ", ".join(f"{counts[s]} {s}" for s in (*FINAL, "running") if counts.get(s))
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return (
        f"stage {stage['index']} [{bar}] {done}/{stage['trials']} "
        f"({stage['epochs']:g} epochs) {stage['status']}{': ' + detail if detail else ''}"
    )


def print_top(url: str, sweep_id: int, count: int = 5) -> None:
    board = request(url, "GET", f"/api/leaderboard?sweep={sweep_id}&limit={count}")
    if not board["data"]:
        print("no trial has a validation accuracy")
        return
    print(f"top {len(board['data'])}:")
    for trial in board["data"]:
        hp = trial["hyperparameters"]
        chosen = {k: hp[k] for k in trial_space_names(trial) if k in hp}
        params = " ".join(f"{k}={_fmt(v)}" for k, v in chosen.items())
        print(
            f"  {trial['rank']}. val {trial['best_val_acc']:.4f}  trial {trial['id']} "
            f"stage {trial['stage']} ep {trial['epochs_done']:g} {trial['status']}  {params}"
        )


def print_test(url: str, sweep_id: int) -> None:
    """The finished sweep's test evaluation, once a worker has made it."""
    deadline = time.monotonic() + EVALUATION_WAIT_SECONDS
    said_waiting = False
    while True:
        test = request(url, "GET", f"/api/sweeps/{sweep_id}").get("test")
        if test is None:
            print("no test evaluation: no trial has a checkpoint to evaluate")
            return
        if test["status"] not in ("queued", "running"):
            break
        if time.monotonic() > deadline:
            print(f"the test evaluation is still {test['status']}: {url}/api/ensembles/"
                  f"{test['ensemble_id']}")  # fmt: skip
            return
        if not said_waiting:
            print("evaluating the best models on the test split...")
            said_waiting = True
        time.sleep(POLL_SECONDS)
    if test["status"] != "finished":
        ensemble = request(url, "GET", f"/api/ensembles/{test['ensemble_id']}")
        print(f"the test evaluation {test['status']}: {ensemble['reason']}")
        return
    if test["best_test_acc"] is None:
        print("the dataset has no test split: no test accuracy to report")
        return
    print("test split (held out: nothing was selected on it):")
    print(
        f"  best trial {test['best_trial_id']}: val {test['best_val_acc']:.4f}  "
        f"test {test['best_test_acc']:.4f}"
    )
    print(
        f"  top-{test['k']} ensemble (k chosen on val): val {test['ensemble_val_acc']:.4f}  "
        f"test {test['ensemble_test_acc']:.4f}  ({url}/api/ensembles/{test['ensemble_id']})"
    )


def trial_space_names(trial: dict[str, Any]) -> list[str]:
    preferred = ["learning_rate", "reg", "dropout", "update", "momentum", "batch_size"]
    return [k for k in preferred if k in trial["hyperparameters"]]


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
