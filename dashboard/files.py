"""Checkpoint files as the dashboard may serve them: only a trial's own, only under
CHECKPOINT_DIR, whatever a URL or a database row says."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path, PurePosixPath

from core.checkpoint import CheckpointError, best_first, parse_checkpoint_name, trial_pattern
from master.models import Trial


class NoSuchFile(LookupError):
    """The trial has no such checkpoint, or it lies outside CHECKPOINT_DIR."""


def checkpoint_path(root: Path, trial: Trial, name: str) -> Path:
    """The file of the trial's checkpoint `name` (a bare file name, as listed on its page).

    The name must be a checkpoint name of this trial and one of the trial's recorded files;
    the resolved path (symbolic links followed) must still lie under `root`.
    """
    try:
        parsed = parse_checkpoint_name(name)
    except CheckpointError as exc:
        raise NoSuchFile(str(exc)) from None
    if PurePosixPath(name).name != name or parsed.trial_id != trial.id:
        raise NoSuchFile(f"{name}: not a checkpoint of trial {trial.id}")
    recorded = [p for p in trial.checkpoints if PurePosixPath(p).name == name]
    if not recorded:
        raise NoSuchFile(f"{name}: trial {trial.id} has no such checkpoint (it may be pruned)")
    return inside(root, recorded[0])


def inside(root: Path, relative: str) -> Path:
    """root / relative, resolved, if it is a regular file under root."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise NoSuchFile(f"{relative}: outside the checkpoint directory")
    if not path.is_file():
        raise NoSuchFile(f"{relative}: no such file in the checkpoint directory")
    return path


def best_on_disk(root: Path, trial: Trial) -> Path | None:
    """The best of the trial's checkpoint files that are on disk now, or None.

    The database lags the worker: by the time a page asks, the worker may have pruned the
    best file its last applied event recorded, for a better one its next event will report.
    So the recorded files are tried best first, then the trial's files beside them.
    """
    recorded = ranked_checkpoints(trial.checkpoints)

    def beside() -> Iterator[str]:
        for folder in sorted({str(PurePosixPath(p).parent) for p in recorded}):
            found = (root / folder).glob(trial_pattern(trial.id))
            yield from ranked_checkpoints([f"{folder}/{path.name}" for path in found])

    for relative in chain(recorded, beside()):
        try:
            return inside(root, relative)
        except NoSuchFile:
            continue
    return None


def ranked_checkpoints(paths: Iterable[str]) -> list[str]:
    """The paths whose names are checkpoint names, best first (core.checkpoint.best_first)."""
    named = []
    for path in paths:
        try:
            named.append((best_first(parse_checkpoint_name(path)), path))
        except CheckpointError:
            continue
    return [path for _, path in sorted(named, reverse=True)]
