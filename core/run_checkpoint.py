"""Checkpoints of a user's trainer (core.run): the same names, folders and layout as the
built-in net's (core.checkpoint), so `ls | sort -r`, reindex, the dashboard's curves and
the worker's resume treat them alike.

The archive holds the trainer's state() under `trainer/<key>`, the batch order of an epoch
under way, the per-iteration costs and per-epoch history as core.checkpoint packs them, the
preprocessing of the inputs, and one JSON entry with the trainer's name and version, its
resolved hyperparameters, the problem it was built for, the loop's state and the caller's
extra metadata. Loading builds the trainer anew from its registered class (by name: the
file never names code) and hands it its state back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.checkpoint import (
    EPOCHS_KEY,
    FORMAT_VERSION,
    LOSS_KEY,
    MEAN_KEY,
    META_KEY,
    STD_KEY,
    Checkpoint,
    CheckpointError,
    damaged_file,
    progress_from_dict,
    progress_to_dict,
    read_archive,
    rebuild_checkpoint,
    run_arrays,
    trainer_name,
    unpack_history,
)
from core.contract import BUILTIN, Problem, Trainer, TrainerError
from core.preprocessing import Preprocessing
from core.run import RunState, call

log = logging.getLogger(__name__)
TRAINER_PREFIX = "trainer/"
FIRST_LAYER_KEY = "params/W1"  # where the dashboard reads first-layer weights (fan_in, units)


@dataclass
class RunCheckpoint:
    trainer: Trainer
    state: RunState
    problem: Problem
    extra: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None


def trainer_arrays(state: RunState, trainer: Trainer, copy: bool) -> dict[str, np.ndarray]:
    """The trainer's state() as archive entries; TrainerError if it is not named arrays."""
    got = call(state.trainer, "state", trainer.state)
    if not isinstance(got, Mapping):
        raise TrainerError(
            f"trainer {state.trainer}: state() returned {type(got).__name__}, not a dict of "
            f"NumPy arrays"
        )
    arrays: dict[str, np.ndarray] = {}
    for key, value in got.items():
        if not isinstance(key, str) or not key or not isinstance(value, np.ndarray):
            raise TrainerError(
                f"trainer {state.trainer}: state()[{key!r}] is {type(value).__name__}; "
                f"state() must map non-empty names to NumPy arrays"
            )
        if value.dtype.kind not in "biufc":
            raise TrainerError(
                f"trainer {state.trainer}: state()[{key!r}] has dtype {value.dtype}; only "
                f"numbers and booleans are stored (no pickles)"
            )
        arrays[TRAINER_PREFIX + key] = np.array(value, copy=True) if copy else value
    return arrays


def run_checkpoint_arrays(
    trainer: Trainer,
    state: RunState,
    problem: Problem,
    extra: dict[str, Any] | None = None,
    preprocessing: Preprocessing | None = None,
    copy: bool = False,
) -> dict[str, np.ndarray]:
    """What a checkpoint of this moment of the run holds, as archive entries (`copy`: safe
    to write later while training goes on, as core.checkpoint.checkpoint_arrays)."""
    arrays = trainer_arrays(state, trainer, copy)
    first_layer = getattr(trainer, "first_layer_weights", None)
    if callable(first_layer):  # drawn by the dashboard as images, as the built-in net's W1
        weights = np.array(call(state.trainer, "first_layer_weights", first_layer))
        if weights.ndim != 2 or weights.shape[0] != problem.input_dim or weights.dtype.kind != "f":
            raise TrainerError(
                f"trainer {state.trainer}: first_layer_weights returned {weights.dtype} "
                f"{weights.shape}, not floats of ({problem.input_dim}, units)"
            )
        arrays[FIRST_LAYER_KEY] = weights
    order = None if state.order is None else state.order.copy() if copy else state.order
    shared, layout, unpacked = run_arrays(state.history, order, preprocessing)
    arrays.update(shared)
    meta = {
        "format": FORMAT_VERSION,
        "trainer": {"name": state.trainer, "version": state.version},
        "hyperparameters": state.hyperparameters,
        "model": {
            "input_dim": problem.input_dim,
            "num_classes": problem.num_classes,
            "image_shape": None if problem.image_shape is None else list(problem.image_shape),
        },
        "preprocessing": None if preprocessing is None else preprocessing.to_meta(),
        # As core.checkpoint lays out the built-in net's, so that read_summary and reindex
        # read both alike.
        "state": {
            **progress_to_dict(state),
            "seed": state.seed,
            "explode_factor": state.explode_factor,
            "num_epochs": state.num_epochs,
            "history": unpacked,
            "history_layout": layout,
        },
        "extra": extra or {},
    }
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return arrays


def load_run_checkpoint(path: str | Path, trainers: Mapping[str, Any]) -> RunCheckpoint:
    """Rebuild a user trainer's run from its checkpoint: its class is looked up by the name
    the file records in `trainers` (core.registry); CheckpointError naming the file, or the
    trainer that is not installed."""
    path = Path(path)
    return rebuild_run_checkpoint(path, *read_archive(path), trainers)


def load_any_checkpoint(
    path: str | Path, trainers: Mapping[str, Any]
) -> Checkpoint | RunCheckpoint:
    """A checkpoint of whichever trainer wrote it, its file read once: the built-in net's
    (core.checkpoint), or a user trainer's, built by its class in `trainers`."""
    path = Path(path)
    meta, arrays = read_archive(path)
    if trainer_name(meta) == BUILTIN:
        return rebuild_checkpoint(path, meta, arrays)
    return rebuild_run_checkpoint(path, meta, arrays, trainers)


def rebuild_run_checkpoint(
    path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], trainers: Mapping[str, Any]
) -> RunCheckpoint:
    """A user trainer's checkpoint from its file's contents (read_archive)."""
    with damaged_file(path):
        name = trainer_name(meta)
        if name not in trainers:
            raise CheckpointError(
                f"{path}: written by trainer {name!r}, which is not installed here "
                f"(installed: {', '.join(sorted(trainers)) or 'none'})"
            )
        return _rebuild(meta, arrays, trainers[name])


def _rebuild(meta: dict[str, Any], arrays: dict[str, np.ndarray], cls: Any) -> RunCheckpoint:
    s = meta["state"]
    version = str(meta["trainer"].get("version", ""))
    name = meta["trainer"]["name"]
    installed = str(getattr(cls, "version", ""))
    if installed != version:
        log.warning(
            "trainer %s: a checkpoint of version %s, loaded by %s", name, version, installed
        )
    history = dict(s["history"])
    history["loss"] = arrays.pop(LOSS_KEY).tolist()
    unpack_history(arrays.pop(EPOCHS_KEY), s["history_layout"], history)
    preprocessing = None
    if meta.get("preprocessing") is not None:
        preprocessing = Preprocessing.from_meta(
            meta["preprocessing"], arrays.pop(MEAN_KEY), arrays.pop(STD_KEY, None)
        )
    shape = meta["model"].get("image_shape")
    problem = Problem(
        int(meta["model"]["input_dim"]),
        int(meta["model"]["num_classes"]),
        None if shape is None else tuple(shape),
    )
    state = RunState(
        trainer=name,
        version=version,
        hyperparameters=dict(meta["hyperparameters"]),
        seed=int(s["seed"]),
        explode_factor=float(s["explode_factor"]),
        num_epochs=float(s["num_epochs"]),
        **progress_from_dict(s, arrays, history),
    )
    own = {
        key.removeprefix(TRAINER_PREFIX): array
        for key, array in arrays.items()
        if key.startswith(TRAINER_PREFIX)
    }
    trainer = build_trainer(cls, name, state.hyperparameters, problem, state.seed)
    call(name, "load_state", trainer.load_state, own)
    return RunCheckpoint(trainer, state, problem, meta["extra"], preprocessing)


def build_trainer(
    cls: Any, name: str, hyperparameters: dict[str, Any], problem: Problem, seed: int
) -> Trainer:
    """cls(hyperparameters, problem, seed); TrainerError naming the trainer if it raises."""
    trainer: Trainer = call(name, "setup", cls, dict(hyperparameters), problem, seed)
    return trainer
