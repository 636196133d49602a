"""Models out of the system: a checkpoint, or several as an ensemble, predicting on raw inputs.

    from core.predict import load_model, load_ensemble, read_inputs

    model = load_model("checkpoints/sweep000001/stage2/val0.9540_trial000042_ep080.npz")
    X = read_inputs("new_images.npz")   # raw, in the dataset's format (e.g. 0-16 digits pixels)
    labels = model.predict(X)            # class ids, (N,)
    probabilities = model.probabilities(X)  # (N, C)

    ensemble = load_ensemble([path_1, path_2, path_3])  # the members' probabilities averaged
    labels = ensemble.predict(X)

    # A user trainer's checkpoint (core.run_checkpoint), with its class from core.registry:
    model = load_predictor(path, trainers=installed_trainers(settings.trainers_setting))

A checkpoint of format 3 or later holds the preprocessing its model expects (scaling, the
training mean), so nothing else is needed. An older file does not: pass the dataset it was
trained on (`dataset="digits"`) and its training mean is computed again.

Probabilities are the softmax of the class scores: calibrated for a softmax-trained model,
only a ranking for an SVM-trained one.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from core.contract import Trainer
from core.data import CIFAR10_TEST_BATCH, DatasetError, load_dataset, read_cifar_batch
from core.model import FullyConnectedNet, Params
from core.preprocessing import InputError, Preprocessing
from core.run import checked_probabilities
from core.run_checkpoint import RunCheckpoint, load_any_checkpoint

# Which parameters of a checkpoint predict: the ones of the epoch it was written at (its
# name's validation accuracy is theirs), or the running average the trainer keeps.
WEIGHTS = ("epoch", "average")
INPUT_ARRAYS = ("X", "X_test")  # what read_inputs looks for in an .npz, in this order


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Model:
    """One trained net and the preprocessing of its inputs."""

    net: FullyConnectedNet
    preprocessing: Preprocessing
    params: Params | None = None  # overrides the net's own (the running average)
    source: str = ""

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    def inputs(self, X_raw: np.ndarray) -> np.ndarray:
        """Raw inputs as the net takes them (preprocessed, in its dtype)."""
        return self.preprocessing.apply(X_raw, self.net.dtype)

    def scores(self, X_raw: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):  # an exploded model's scores may be inf
            return self.net.scores(self.inputs(X_raw), self.params)

    def probabilities(self, X_raw: np.ndarray) -> np.ndarray:
        return softmax(self.scores(X_raw))

    def predict(self, X_raw: np.ndarray) -> np.ndarray:
        return np.argmax(self.scores(X_raw), axis=1)


@dataclass(frozen=True)
class TrainerModel:
    """A user trainer's model (core.contract) and the preprocessing of its inputs."""

    trainer: Trainer
    name: str
    preprocessing: Preprocessing
    dtype: str
    num_classes: int
    source: str = ""

    def probabilities(self, X_raw: np.ndarray) -> np.ndarray:
        X = self.preprocessing.apply(X_raw, self.dtype)
        with np.errstate(all="ignore"):
            return checked_probabilities(self.name, self.trainer, X, self.num_classes)

    def predict(self, X_raw: np.ndarray) -> np.ndarray:
        return np.argmax(self.probabilities(X_raw), axis=1)


Predictor = Model | TrainerModel


@dataclass(frozen=True)
class Ensemble:
    """Several models voting with their averaged class probabilities (the notes' ensembles)."""

    members: tuple[Predictor, ...]

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one model")
        classes = {m.num_classes for m in self.members}
        if len(classes) > 1:
            raise ValueError(f"ensemble members disagree on the number of classes: {classes}")

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    def probabilities(self, X_raw: np.ndarray) -> np.ndarray:
        return np.mean([m.probabilities(X_raw) for m in self.members], axis=0)

    def predict(self, X_raw: np.ndarray) -> np.ndarray:
        return np.argmax(self.probabilities(X_raw), axis=1)


def load_predictor(
    path: str | Path,
    *,
    weights: str = "epoch",
    dataset: str | None = None,
    trainers: Mapping[str, Any] | None = None,
) -> Predictor:
    """The model a checkpoint of any trainer holds, ready for raw inputs: the built-in
    net's (load_model), or a user trainer's, built by its class in `trainers`
    (core.registry)."""
    _check_weights(weights)
    loaded = load_any_checkpoint(path, trainers or {})
    if isinstance(loaded, RunCheckpoint):
        return _trainer_model(path, weights, loaded)
    return _model(path, loaded, weights, dataset)


def load_model(path: str | Path, *, weights: str = "epoch", dataset: str | None = None) -> Model:
    """The model a checkpoint of the built-in net holds, ready for raw inputs; `dataset`
    recovers the preprocessing of a checkpoint written before format 3."""
    _check_weights(weights)
    return _model(path, load_checkpoint(path), weights, dataset)


def _check_weights(weights: str) -> None:
    if weights not in WEIGHTS:
        raise ValueError(f"weights: must be one of {', '.join(WEIGHTS)}, got {weights!r}")


def _model(path: str | Path, checkpoint: Checkpoint, weights: str, dataset: str | None) -> Model:
    preprocessing = checkpoint.preprocessing
    if preprocessing is None:
        preprocessing = _recovered_preprocessing(path, checkpoint.format, checkpoint.extra, dataset)
    if preprocessing.input_dim != checkpoint.model.input_dim:
        raise CheckpointError(
            f"{path}: its model takes {checkpoint.model.input_dim} inputs, but the "
            f"preprocessing gives {preprocessing.input_dim}"
        )
    params = None
    if weights == "average":
        if checkpoint.state.average_flat is None:
            raise CheckpointError(f"{path}: holds no running average of the parameters")
        params = checkpoint.model.views(checkpoint.state.average_flat)
    return Model(checkpoint.model, preprocessing, params, str(path))


def load_ensemble(
    paths: Sequence[str | Path],
    *,
    weights: str = "epoch",
    dataset: str | None = None,
    trainers: Mapping[str, Any] | None = None,
) -> Ensemble:
    return Ensemble(
        tuple(load_predictor(p, weights=weights, dataset=dataset, trainers=trainers) for p in paths)
    )


def _trainer_model(path: str | Path, weights: str, run: RunCheckpoint) -> TrainerModel:
    if weights != "epoch":
        raise CheckpointError(f"{path}: a user trainer's checkpoint holds no running average")
    if run.preprocessing is None:
        raise CheckpointError(f"{path}: holds no preprocessing of its inputs")
    return TrainerModel(
        run.trainer,
        run.state.trainer,
        run.preprocessing,
        str(run.state.hyperparameters.get("dtype", "float32")),
        run.problem.num_classes,
        str(path),
    )


def _recovered_preprocessing(
    path: str | Path, fmt: int, extra: dict[str, object], dataset: str | None
) -> Preprocessing:
    if dataset is None:
        trial = extra.get("trial")
        recorded = extra.get("dataset") or (
            trial.get("dataset") if isinstance(trial, dict) else None
        )
        hint = f" (it records {recorded!r})" if recorded else ""
        raise CheckpointError(
            f"{path}: a format {fmt} checkpoint does not hold the preprocessing its model "
            f"expects (written before format 3); give the dataset it was trained on{hint} "
            f"and its training mean is computed again"
        )
    try:
        return load_dataset(dataset).preprocessing
    except DatasetError as exc:
        raise CheckpointError(f"{path}: cannot recover its preprocessing: {exc}") from exc


def read_inputs(path: str | Path) -> np.ndarray:
    """Raw inputs from a file: an .npy array; an .npz with X (or X_test, or one array);
    a CIFAR-10 python batch file, or a CIFAR-10 folder (its test_batch)."""
    path = Path(path)
    if path.is_dir():
        path = path / CIFAR10_TEST_BATCH
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = archive.files
                name = next((n for n in INPUT_ARRAYS if n in names), None)
                if name is None and len(names) == 1:
                    name = names[0]
                if name is None:
                    raise InputError(
                        f"{path}: which array are the inputs? Name it X (the file has "
                        f"{', '.join(names) or 'no arrays'})"
                    )
                return archive[name]
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable array file ({exc})") from exc
    return _cifar_batch_images(path)


def _cifar_batch_images(path: Path) -> np.ndarray:
    try:  # the loader's own reader, with its unpickler that runs no code
        data, _ = read_cifar_batch(path)
    except (DatasetError, pickle.UnpicklingError) as exc:
        raise InputError(
            f"{path}: not inputs hpsearch reads (an .npy, an .npz with X, or a CIFAR-10 "
            f"batch): {exc}"
        ) from exc
    return data
