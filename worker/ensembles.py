"""The RQ job that evaluates an ensemble: its members' checkpoints on validation and test.

Evaluation is a worker's job, never the master's: it loads the dataset (which may be
CIFAR-sized) and runs every member forward over two splits. `run_ensemble(ensemble)` takes
a core.messages.EnsembleJob as plain JSON and returns an EnsembleResult as the RQ job's
result, which the master reads (master.evaluating). It is deterministic, so a re-run after
a lost worker gives the same numbers.

For the first k members, for every k, the class probabilities are averaged (the notes'
model ensembles); each member is also scored alone, with its epoch's parameters and with
their running average (the fourth kind the notes name), side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from redis import Redis
from rq import get_current_job

from core.data import confine
from core.messages import (
    EnsembleJob,
    EnsemblePoint,
    EnsembleResult,
    MemberScore,
    ensemble_stop_key,
)
from core.predict import softmax
from core.run import checked_probabilities
from core.run_checkpoint import RunCheckpoint, load_any_checkpoint
from worker.datasets import DATASETS
from worker.settings import WorkerSettings
from worker.trainers import installed

log = logging.getLogger(__name__)


def run_ensemble(ensemble: dict[str, Any]) -> dict[str, Any]:
    job = EnsembleJob.from_dict(ensemble)
    settings = WorkerSettings()
    rq_job = get_current_job()
    redis = rq_job.connection if rq_job is not None else Redis.from_url(settings.redis_url)

    def stopped() -> bool:
        return bool(redis.exists(ensemble_stop_key(job.ensemble_id)))

    return evaluate(job, settings, stopped).to_dict()


def evaluate(job: EnsembleJob, settings: WorkerSettings, stopped: Any) -> EnsembleResult:
    members: list[MemberScore] = []
    val_sum: np.ndarray | None = None
    test_sum: np.ndarray | None = None
    curve: list[EnsemblePoint] = []
    has_test = False
    for k, relative in enumerate(job.members, start=1):
        if stopped():
            return EnsembleResult("stopped", members, curve, has_test)
        member = _load_member(settings, relative)
        dataset = confine(job.dataset, settings.dataset_dirs)
        data = DATASETS.get(dataset, member.dtype, member.preprocessing)
        if data.input_dim != member.input_dim:
            raise ValueError(
                f"{relative}: its model takes {member.input_dim} inputs, but {job.dataset} "
                f"has {data.input_dim} features"
            )
        has_test = data.X_test is not None and data.y_test is not None
        with np.errstate(all="ignore"):  # an exploded member's scores may be inf or NaN
            val = member.probabilities(data.X_val)
            average_val = None
            if member.average is not None:
                average_val = _accuracy(member.average(data.X_val), data.y_val)
            test = average_test = None
            if data.X_test is not None and data.y_test is not None:
                test = member.probabilities(data.X_test)
                if member.average is not None:
                    average_test = _accuracy(member.average(data.X_test), data.y_test)
        members.append(
            MemberScore(
                _accuracy(val, data.y_val),
                None if test is None else _accuracy(test, data.y_test),
                average_val,
                average_test,
            )
        )
        val_sum = val if val_sum is None else val_sum + val
        if test is not None:
            test_sum = test if test_sum is None else test_sum + test
        curve.append(
            EnsemblePoint(
                k,
                _accuracy(val_sum, data.y_val),
                None if test_sum is None else _accuracy(test_sum, data.y_test),
            )
        )
    return EnsembleResult("finished", members, curve, has_test)


@dataclass(frozen=True)
class _Member:
    """One member as evaluation needs it, whichever trainer wrote its checkpoint."""

    input_dim: int
    dtype: str
    preprocessing: str  # the kind its dataset is loaded with (core.preprocessing)
    probabilities: Callable[[np.ndarray], np.ndarray]  # of prepared inputs, (N, C)
    # Class scores of the running average of its parameters (None: it keeps none).
    average: Callable[[np.ndarray], np.ndarray] | None


def _load_member(settings: WorkerSettings, relative: str) -> _Member:
    loaded = load_any_checkpoint(settings.checkpoint_dir / relative, installed(settings))
    if isinstance(loaded, RunCheckpoint):
        run = loaded
        name, trainer, classes = run.state.trainer, run.trainer, run.problem.num_classes
        hyperparameters = run.state.hyperparameters
        return _Member(
            run.problem.input_dim,
            str(hyperparameters.get("dtype", "float32")),
            str(hyperparameters.get("preprocessing", "mean")),
            lambda X: checked_probabilities(name, trainer, X, classes),
            None,
        )
    model, state = loaded.model, loaded.state
    params = None if state.average_flat is None else model.views(state.average_flat)
    return _Member(
        model.input_dim,
        str(model.dtype),
        state.config.preprocessing,
        lambda X: softmax(model.scores(X)),
        None if params is None else lambda X: model.scores(X, params),
    )


def _accuracy(probabilities: np.ndarray, y: Any) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == y))
