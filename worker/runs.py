"""A trial's run, ready to train (PreparedRun), and where a re-run goes on from (resume).

The built-in net (worker.jobs) and a user's trainer (worker.trainers) each prepare one; the
job then drives either the same way: report, train, write its end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.checkpoint import CheckpointError, CheckpointName
from core.data import Dataset
from core.messages import TrialJob
from core.state import TrainStatus
from worker.attempt import StopFlag
from worker.checkpoints import trial_checkpoints
from worker.writer import AnyRun, Snapshot

log = logging.getLogger(__name__)
DAMAGED_SUFFIX = ".damaged"  # added to a checkpoint's name that cannot be loaded
Files = list[tuple[Path, CheckpointName]]
Run = TypeVar("Run", bound=tuple[Any, Any])


@dataclass
class PreparedRun:
    model: Any  # what `snapshot` and `train` act on: the net, or the user's trainer
    state: AnyRun
    data: Dataset
    existing: Files  # the trial's files still in use (a re-run's)
    damaged: list[str]  # "NAME: why" of the files set aside
    snapshot: Snapshot
    train: Callable[[StopFlag, Any], AnyRun]  # (should_stop, on_epoch_end) -> the end state
    val_accuracy: Callable[[], float]  # of the model as it is now


def listed_for_resume(checkpoint_dir: Path, trial: TrialJob) -> Files:
    """The trial's files a re-run may go on from. A first attempt has none yet: only a
    re-run lists the directory for them."""
    if trial.attempt <= 1:
        return []
    return trial_checkpoints(checkpoint_dir / trial.checkpoint_subdir, trial.trial_id)


def resume(
    existing: Files, load: Callable[[Path], Run | None], trial_id: int
) -> tuple[Run | None, Files, list[str]]:
    """The (model, state) to go on from: the newest intact checkpoint's, loaded by `load`
    (None: it was trained with other hyperparameters), else None. Also returns the trial's
    files still in use and what was set aside as damaged."""
    damaged: list[str] = []
    while existing:
        path = existing[-1][0]
        try:
            loaded = load(path)
        except CheckpointError as exc:
            # Truncated or corrupted (a full disk, a bad volume): set it aside under a name
            # that is no checkpoint's, so it is kept for a look but never listed or loaded
            # again, and try the one before it.
            path.rename(path.with_name(path.name + DAMAGED_SUFFIX))
            log.warning("trial %s: %s; set aside as %s%s", trial_id, exc, path.name, DAMAGED_SUFFIX)
            damaged.append(str(exc).replace(str(path), path.name))
            existing = existing[:-1]
            continue
        if loaded is None:
            log.warning("trial %s: checkpoint config differs; starting over", trial_id)
            break
        state = loaded[1]
        if state.status is TrainStatus.STOPPED:
            # Stopped by a worker shutdown (a user's stop is caught by the stop flag
            # before this): go on from where it was.
            state.status = TrainStatus.RUNNING
        return loaded, existing, damaged
    return None, existing, damaged
