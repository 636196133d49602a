"""The worker loads a job's dataset in its main process, before forking the work horse."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from core.messages import TrialJob, job_id
from master.queueing import TrialQueue
from worker.datasets import DATASETS
from worker.runner import make_worker


def test_the_dataset_is_loaded_once_in_the_worker_not_per_trial(
    redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setattr(DATASETS, "_loaded", {})
    queue = TrialQueue(redis, "hpsearch")
    jobs = [
        (
            job_id(trial_id, 1),
            TrialJob(
                trial_id=trial_id,
                sweep_id=1,
                stage_index=0,
                dataset="digits",
                hyperparameters={"learning_rate": 0.1},
                num_epochs=0.5,
                seed=trial_id,
                explode_factor=3.0,
            ),
        )
        for trial_id in (1, 2)
    ]
    queue.enqueue(jobs)
    worker = make_worker(redis, ["hpsearch"])
    worker.work(burst=True)  # forks a work horse per job, as in production

    # The main process holds the arrays every horse inherited; without the preload the
    # horses would each load it and this process would hold nothing.
    assert len(DATASETS) == 1
    assert len(list(tmp_path.rglob("*.npz"))) == 2  # both trials ran
