"""Checkpoint files: one .npz per checkpoint, named so that `ls | sort -r` ranks them.

The name is made and parsed here and nowhere else:

    val0.9540_trial000042_ep005.npz      (fractional epochs: ep000.50)

validation accuracy first, fixed width, so names sort by accuracy. The file holds plain
arrays (parameters, best and running-average parameters, optimizer state, the cost of every
iteration, the training mean its inputs are centred with) and one JSON entry with the
config, the training state and per-epoch history, the rest of the preprocessing, and the
caller's extra metadata:
no pickles, so any version of the code can read it. Writes go to a hidden temporary file
in the same directory and are renamed into place, so a crash never leaves a partial file
under a checkpoint's name.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.config import TrainConfig
from core.contract import BUILTIN
from core.model import FullyConnectedNet
from core.npz import write_npz
from core.preprocessing import Preprocessing
from core.state import Explosion, History, TrainState, TrainStatus

# 2: the per-iteration costs are an array (as JSON they cost a long run more to write each
# epoch than the rest of the checkpoint), the best and averaged parameters flat.
# 3: the preprocessing the model expects (core.preprocessing), so that it predicts on raw
# inputs. Files of formats 1 and 2 still load, without it.
# 4: the per-epoch history in one array (EPOCHS_KEY), laid out in the JSON: as JSON it grew
# with every epoch, and cost an 80-epoch run's checkpoint more to write than its parameters.
FORMAT_VERSION = 4
READABLE_FORMATS = (1, 2, 3, 4)
LOSS_KEY = "history/loss"
ORDER_KEY = "order"  # the batch order of an epoch under way
EPOCHS_KEY = "history/epochs"
MEAN_KEY = "preprocessing/mean"
STD_KEY = "preprocessing/std"
BATCHNORM = "batchnorm"  # the prefix of the running statistics' entries
BEST_KEY, AVERAGE_KEY = "best", "average"  # flat; format 1 stored them per parameter
NAME_PATTERN = re.compile(
    r"^val(?P<val_acc>[01]\.\d{4})_trial(?P<trial_id>\d{6,})_ep(?P<epoch>\d{3,}(?:\.\d{2})?)\.npz$"
)
META_KEY = "meta.json"


class CheckpointError(ValueError):
    """A checkpoint file or name cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class CheckpointName:
    val_acc: float
    trial_id: int
    epoch: float


def best_first(name: CheckpointName) -> tuple[float, float]:
    """Sort key, highest first, of "the best checkpoint": the highest validation accuracy,
    the earlier epoch on ties (the epoch the trainer reports as the best)."""
    return name.val_acc, -name.epoch


def reported_best(
    names: Iterable[CheckpointName],
    run_best_val_acc: float,
    run_best_epoch: float,
    promoted: bool,
) -> tuple[float | None, float | None]:
    """A trial's best (validation accuracy, epoch), as its worker reports it and reindex
    rebuilds it: the best of its own files (best_first), or, for a promoted trial whose best
    epoch is one of its parent's (whose file holds it), the run's own best, as if it had been
    trained from the start."""
    best = max(names, key=best_first, default=None)
    best_val_acc = None if best is None else best.val_acc
    best_epoch = None if best is None else best.epoch
    inherited = round(run_best_val_acc, 4)  # as a checkpoint's name rounds it
    if promoted and inherited > (best_val_acc if best_val_acc is not None else -1.0):
        return inherited, run_best_epoch
    return best_val_acc, best_epoch


def trial_pattern(trial_id: int) -> str:
    """The glob pattern of every checkpoint name of one trial (checkpoint_name)."""
    return f"val*_trial{trial_id:06d}_ep*.npz"


def checkpoint_name(val_acc: float, trial_id: int, epoch: float) -> str:
    """The file name of a checkpoint: `val{acc:.4f}_trial{id:06d}_ep{epoch}.npz`."""
    if not 0.0 <= val_acc <= 1.0:
        raise CheckpointError(f"val_acc: must be in [0, 1], got {val_acc}")
    if trial_id < 0 or epoch < 0:
        raise CheckpointError(f"trial_id and epoch: must be >= 0, got {trial_id} and {epoch}")
    whole = float(epoch).is_integer()
    epoch_text = f"{int(epoch):03d}" if whole else f"{epoch:06.2f}"
    return f"val{val_acc:.4f}_trial{trial_id:06d}_ep{epoch_text}.npz"


def parse_checkpoint_name(name: str | Path) -> CheckpointName:
    """The inverse of checkpoint_name (takes a bare name or a path)."""
    match = NAME_PATTERN.match(Path(name).name)
    if match is None:
        raise CheckpointError(
            f"{name}: not a checkpoint name (expected e.g. val0.9540_trial000042_ep005.npz)"
        )
    return CheckpointName(float(match["val_acc"]), int(match["trial_id"]), float(match["epoch"]))


@dataclass
class Checkpoint:
    model: FullyConnectedNet
    state: TrainState
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. trial id, sweep, dataset
    # None in files written before format 3 (core.predict says how to recover it).
    preprocessing: Preprocessing | None = None
    format: int = FORMAT_VERSION


def save_checkpoint(
    path: str | Path,
    model: FullyConnectedNet,
    state: TrainState,
    extra: dict[str, Any] | None = None,
    preprocessing: Preprocessing | None = None,
    durable: bool = True,
) -> Path:
    """Write atomically to `path`: the file is either absent or complete. Pass the
    dataset's `preprocessing` so that the model can predict on raw inputs (core.predict).
    `durable`: on disk before this returns (fsync), else only safe from a crash of this
    process until make_durable(path) is called.

    Parameters (and the best and running-average ones) are stored per name, e.g. `params/W1`,
    so that `np.load` alone reads a model; optimizer state is stored flat, as the rule keeps it.
    """
    path = Path(path)
    write_checkpoint(path, checkpoint_arrays(model, state, extra, preprocessing), durable)
    return path


def checkpoint_arrays(
    model: FullyConnectedNet,
    state: TrainState,
    extra: dict[str, Any] | None = None,
    preprocessing: Preprocessing | None = None,
    copy: bool = False,
) -> dict[str, np.ndarray]:
    """What save_checkpoint writes, as the archive's entries. `copy`: every array the
    training goes on to change in place is copied, so that the entries can be written
    later and still hold this moment's run (a worker keeps a trial's best epoch so, and
    writes it only if no better epoch comes before its next write)."""
    params = model.flat.copy() if copy else model.flat
    arrays: dict[str, np.ndarray] = {
        f"params/{name}": array for name, array in model.views(params).items()
    }
    # Batchnorm's running statistics: state the test-mode passes need, and a resumed run.
    arrays.update({f"{BATCHNORM}/{name}": a for name, a in model.running_stats().items()})
    # The trainer's copies, flat as it keeps them: fewer archive entries to write every epoch.
    # At an epoch that set a new best (most epochs of a short trial) the best copy is the
    # parameters themselves: the JSON says so instead of storing them twice (a fifth of the
    # file of an Adam model). A reader that does not know the flag sees no best copy, which
    # training never reads back.
    best_is_params = state.best_flat is not None and np.array_equal(state.best_flat, model.flat)
    best = None if best_is_params else state.best_flat
    for key, flat in ((BEST_KEY, best), (AVERAGE_KEY, state.average_flat)):
        if flat is not None:
            arrays[key] = flat
    optim_scalars: dict[str, Any] = {}
    for key, value in state.optim_config.items():
        if isinstance(value, np.ndarray):
            arrays[f"optim/{key}"] = value
        else:
            optim_scalars[key] = value
    shared, layout, unpacked = run_arrays(state.history, state.order, preprocessing)
    arrays.update(shared)
    meta = {
        "format": FORMAT_VERSION,
        "model": {"input_dim": model.input_dim, "num_classes": model.num_classes},
        "preprocessing": None if preprocessing is None else preprocessing.to_meta(),
        "config": state.config.to_dict(),
        "state": {
            **_state_to_dict(state, optim_scalars, unpacked),
            "history_layout": layout,
            "best_is_params": best_is_params,
        },
        "extra": extra or {},
    }
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    if copy:  # the parameters' views are of the copy already; the rest change in place
        arrays = {
            key: a if key.startswith("params/") else np.array(a, copy=True)
            for key, a in arrays.items()
        }
    return arrays


def run_arrays(
    history: History, order: np.ndarray | None, preprocessing: Preprocessing | None
) -> tuple[dict[str, np.ndarray], list[list[Any]], dict[str, Any]]:
    """The entries every trainer's checkpoint holds alike (the batch order of an epoch under
    way, the costs, the per-epoch history packed, the preprocessing), with the history's
    layout and what of it stays in the JSON (pack_history)."""
    arrays: dict[str, np.ndarray] = {}
    if order is not None:
        arrays[ORDER_KEY] = order
    arrays[LOSS_KEY] = np.asarray(history.loss, dtype=np.float64)
    packed, layout, unpacked = pack_history(history)
    arrays[EPOCHS_KEY] = packed
    if preprocessing is not None:
        arrays[MEAN_KEY] = preprocessing.mean
        if preprocessing.std is not None:
            arrays[STD_KEY] = preprocessing.std
    return arrays, layout, unpacked


def write_checkpoint(path: str | Path, arrays: dict[str, np.ndarray], durable: bool) -> Path:
    """Write checkpoint_arrays' entries atomically to `path` (see save_checkpoint)."""
    path = Path(path)
    _write_atomically(path, arrays, durable)
    return path


class Progress(Protocol):
    """How far a run is, as every trainer's loop keeps it: a TrainState, or core.run's
    RunState."""

    iterations_per_epoch: int
    total_iterations: int
    iteration: int
    status: TrainStatus
    initial_cost: float | None
    explosion: Explosion | None
    rng_state: dict[str, Any] | None
    best_val_acc: float
    best_epoch: float


def progress_to_dict(state: Progress) -> dict[str, Any]:
    """A run's progress as a checkpoint's JSON holds it (under "state"), for every trainer."""
    explosion = state.explosion
    return {
        "iterations_per_epoch": state.iterations_per_epoch,
        "total_iterations": state.total_iterations,
        "iteration": state.iteration,
        "status": state.status.value,
        "initial_cost": state.initial_cost,
        "explosion": None if explosion is None else vars(explosion),
        "rng_state": state.rng_state,
        "best_val_acc": state.best_val_acc,
        "best_epoch": state.best_epoch,
    }


def progress_from_dict(
    s: dict[str, Any], arrays: dict[str, np.ndarray], history: dict[str, Any]
) -> dict[str, Any]:
    """The inverse of progress_to_dict, with the batch order and the history: keyword
    arguments of a TrainState or a RunState."""
    return {
        "iterations_per_epoch": s["iterations_per_epoch"],
        "total_iterations": s["total_iterations"],
        "iteration": s["iteration"],
        "status": TrainStatus(s["status"]),
        "initial_cost": s["initial_cost"],
        "explosion": None if s["explosion"] is None else Explosion(**s["explosion"]),
        "rng_state": s["rng_state"],
        "order": arrays.get(ORDER_KEY),
        "history": History.from_dict(history),
        "best_val_acc": s["best_val_acc"],
        "best_epoch": s["best_epoch"],
    }


def _state_to_dict(
    state: TrainState, optim_scalars: dict[str, Any], history: dict[str, Any]
) -> dict[str, Any]:
    return {
        **progress_to_dict(state),
        "optim": optim_scalars,
        "history": history,
        "average_every": state.average_every,
        "average_keep": state.average_keep,
    }


def pack_history(history: History) -> tuple[np.ndarray, list[list[Any]], dict[str, Any]]:
    """The per-epoch series as one float64 array, and where each lies in it: [field, key
    (None for a plain list), shape]. A series that is no rectangle of numbers (ragged, or
    with a None in it; none is, today) is returned apart, to be kept in the JSON as it is."""
    parts: list[np.ndarray] = []
    layout: list[list[Any]] = []
    unpacked: dict[str, Any] = {}
    for name, value in history.to_dict().items():
        if name == "loss":  # per iteration: its own array (LOSS_KEY)
            continue
        if isinstance(value, dict):
            unpacked[name] = {}  # a field with no series yet is still there
        series = value.items() if isinstance(value, dict) else [(None, value)]
        for key, values in series:
            try:
                array = np.asarray(values)
            except ValueError:  # ragged
                array = np.asarray(None)
            if array.dtype.kind not in "fiu":  # ragged, or holding a None (no NaN here)
                if key is None:
                    unpacked[name] = values
                else:
                    unpacked[name][key] = values
                continue
            layout.append([name, key, list(array.shape)])
            parts.append(array.ravel().astype(np.float64, copy=False))
    packed = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
    return packed, layout, unpacked


def unpack_history(
    packed: np.ndarray, layout: list[list[Any]], history: dict[str, Any]
) -> dict[str, Any]:
    """The inverse of pack_history, into `history` (what the JSON kept)."""
    offset = 0
    for name, key, shape in layout:
        size = int(np.prod(shape, dtype=np.int64))
        if offset + size > packed.size:
            raise ValueError(f"the history's {name} lies past the end of its array")
        values = packed[offset : offset + size].reshape(shape).tolist()
        offset += size
        if key is None:
            history[name] = values
        else:
            history.setdefault(name, {})[key] = values
    return history


def _write_atomically(path: Path, arrays: dict[str, np.ndarray], durable: bool) -> None:
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    # Hidden and without the .npz ending: never mistaken for a checkpoint by ls or a parser.
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write_npz(f, arrays)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    if durable:
        _fsync(directory)  # make the rename itself durable


def make_durable(path: str | Path) -> None:
    """Put a checkpoint written with durable=False on disk, and its name in its folder: what
    save_checkpoint would have waited for. It survives a power loss from then on."""
    path = Path(path)
    _fsync(path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_archive(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A checkpoint's JSON entry and its arrays; CheckpointError naming the file if it is
    missing, unreadable or no hpsearch checkpoint."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such file") from exc
    # What a truncated, emptied or bit-flipped file raises from zipfile, zlib and numpy.
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if META_KEY not in arrays:
        raise CheckpointError(f"{path}: not an hpsearch checkpoint (no {META_KEY} entry)")
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes())
    except ValueError as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({exc!r})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: damaged checkpoint (its {META_KEY} is no object)")
    return meta, arrays


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild the model and training state a checkpoint holds."""
    path = Path(path)
    return rebuild_checkpoint(path, *read_archive(path))


@contextmanager
def damaged_file(path: Path) -> Iterator[None]:
    """What a checkpoint's contents raise while it is rebuilt, as a CheckpointError naming
    the file (one that is already a CheckpointError passes as it is)."""
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({exc!r})") from exc


def rebuild_checkpoint(
    path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Checkpoint:
    """The built-in net's checkpoint from its file's contents (read_archive)."""
    with damaged_file(path):
        trainer = trainer_name(meta)
        if trainer != BUILTIN:
            raise CheckpointError(
                f"{path}: written by trainer {trainer!r}, not the built-in net: load it "
                f"with core.run_checkpoint (on a machine where that trainer is installed)"
            )
        if meta.get("format") not in READABLE_FORMATS:
            raise CheckpointError(
                f"{path}: format {meta.get('format')!r} is not one this version reads "
                f"({', '.join(map(str, READABLE_FORMATS))})"
            )
        return _rebuild(meta, arrays)


def trainer_name(meta: dict[str, Any]) -> str:
    """Which trainer wrote a checkpoint, from its JSON entry (the built-in net's files,
    of every format, name none)."""
    trainer = meta.get("trainer")
    return str(trainer["name"]) if isinstance(trainer, dict) else BUILTIN


def read_summary(path: str | Path) -> dict[str, Any]:
    """A checkpoint's JSON entry (config, state with its history, extra), with the history's
    per-iteration costs put back: what a checkpoint says of its run, without reading its
    parameters. CheckpointError naming the file if it cannot be read."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta: dict[str, Any] = json.loads(archive[META_KEY].tobytes())
            history = meta["state"]["history"]
            if LOSS_KEY in archive.files:
                history["loss"] = archive[LOSS_KEY].tolist()
            if EPOCHS_KEY in archive.files:
                unpack_history(archive[EPOCHS_KEY], meta["state"]["history_layout"], history)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such file") from exc
    except KeyError as exc:
        raise CheckpointError(f"{path}: not an hpsearch checkpoint ({exc})") from exc
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if meta.get("format") not in READABLE_FORMATS:
        raise CheckpointError(
            f"{path}: format {meta.get('format')!r} is not one this version reads"
        )
    return meta


def _rebuild(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Checkpoint:
    config = TrainConfig.from_dict(meta["config"])
    groups: dict[str, dict[str, np.ndarray]] = {
        "params": {},
        "best": {},
        "average": {},
        BATCHNORM: {},
    }
    s = meta["state"]
    history = dict(s["history"])
    if LOSS_KEY in arrays:  # format 2; format 1 kept the costs in the JSON
        history["loss"] = arrays.pop(LOSS_KEY).tolist()
    if EPOCHS_KEY in arrays:  # format 4; before, the JSON held the per-epoch series
        unpack_history(arrays.pop(EPOCHS_KEY), s["history_layout"], history)
    preprocessing = None
    if meta.get("preprocessing") is not None:
        preprocessing = Preprocessing.from_meta(
            meta["preprocessing"], arrays.pop(MEAN_KEY), arrays.pop(STD_KEY, None)
        )
        if preprocessing.input_dim != meta["model"]["input_dim"]:
            raise ValueError(
                f"a mean of {preprocessing.input_dim} features for a model of "
                f"{meta['model']['input_dim']} inputs"
            )
    optim_config: dict[str, Any] = dict(s["optim"])
    for key, array in arrays.items():
        prefix, _, rest = key.partition("/")
        if prefix == "optim":
            optim_config[rest] = array
        elif prefix in groups and rest:
            groups[prefix][rest] = array
    model = FullyConnectedNet(
        meta["model"]["input_dim"],
        meta["model"]["num_classes"],
        config.hidden_sizes,
        loss=config.loss,
        reg=config.reg,
        dropout=config.dropout,
        dtype=config.dtype,
        params=groups["params"],
        normalization=config.normalization,
    )
    if model.bn_running:
        model.load_running_stats(groups[BATCHNORM])
    state = TrainState(
        config=config,
        **progress_from_dict(s, arrays, history),
        optim_config=optim_config,
        best_flat=(
            model.flat.copy()
            if s.get("best_is_params")
            else _flat(model, arrays.get(BEST_KEY), groups["best"])
        ),
        average_flat=_flat(model, arrays.get(AVERAGE_KEY), groups["average"]),
        average_every=s["average_every"],
        average_keep=s["average_keep"],
    )
    return Checkpoint(model, state, meta["extra"], preprocessing, meta["format"])


def _flat(
    model: FullyConnectedNet, flat: np.ndarray | None, per_name: dict[str, np.ndarray]
) -> np.ndarray | None:
    """A parameter-shaped copy, stored flat (format 2) or per parameter (format 1)."""
    if flat is not None:
        if flat.shape != model.flat.shape:
            raise ValueError(f"{flat.shape} parameters where the model has {model.flat.shape}")
        return np.array(flat, dtype=model.flat.dtype)
    return model.flatten(per_name) if per_name else None
