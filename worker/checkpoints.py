"""Where a trial's checkpoints go, which ones it keeps, and finding the one to resume from.

Files live under CHECKPOINT_DIR/<sweep>/<stage>/ with core's names, so `ls | sort -r` in a
stage directory ranks its trials. A trial keeps its best and its latest checkpoint (or every
one, if the sweep asks): the best as core.checkpoint.best_first ranks them.
"""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.checkpoint import (
    CheckpointError,
    CheckpointName,
    best_first,
    parse_checkpoint_name,
    trial_pattern,
)

# Puts written checkpoints on disk (core.checkpoint.make_durable) while their trial trains
# on: the trainer used to wait for the fsync, 4 ms of every epoch of the search benchmark's
# model on a local disk, and far more on a network volume. One thread per worker process.
SYNCER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-sync")


def trial_checkpoints(directory: Path, trial_id: int) -> list[tuple[Path, CheckpointName]]:
    """This trial's checkpoint files in `directory`, oldest epoch first."""
    found = []
    for path in directory.glob(trial_pattern(trial_id)):
        try:
            found.append((path, parse_checkpoint_name(path)))
        except CheckpointError:
            continue
    return sorted(found, key=lambda item: item[1].epoch)


def best_of(checkpoints: list[tuple[Path, CheckpointName]]) -> tuple[Path, CheckpointName]:
    return max(checkpoints, key=lambda item: best_first(item[1]))


def prune(
    checkpoints: list[tuple[Path, CheckpointName]], keep: Collection[Path]
) -> list[tuple[Path, CheckpointName]]:
    """Delete all of a trial's `checkpoints` but the best and those in `keep`; return those
    kept, oldest epoch first."""
    keep = {*keep, best_of(checkpoints)[0]}
    for path, _ in checkpoints:
        if path not in keep:
            path.unlink(missing_ok=True)
    return [item for item in checkpoints if item[0] in keep]
