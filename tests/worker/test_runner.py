"""The worker runs trials in its own process: datasets loaded once, a lease on each trial."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from core.messages import LEASE_SECONDS, TrialJob, job_id, lease_key
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
            [
                TrialJob(
                    trial_id=trial_id,
                    sweep_id=1,
                    stage_index=0,
                    dataset="digits",
                    hyperparameters={"learning_rate": 0.1},
                    num_epochs=0.5,
                    seed=trial_id,
                    explode_factor=3.0,
                )
            ],
        )
        for trial_id in (1, 2)
    ]
    queue.enqueue(jobs)
    worker = make_worker(redis, ["hpsearch"])
    worker.work(burst=True)

    # Loaded by the first trial, reused by the second, and kept by the worker's process.
    assert len(DATASETS) == 1
    assert len(list(tmp_path.rglob("*.npz"))) == 2  # both trials ran
    # Each job took a lease, left to expire (the master may not have read its end yet).
    leases = [lease_key(job_id(trial_id, 1)) for trial_id in (1, 2)]
    assert all(0 < redis.ttl(key) <= LEASE_SECONDS for key in leases)
    assert redis.get(leases[1]) == worker.name.encode()


def test_rq_s_own_heartbeats_go_out_at_most_once_a_second_and_re_register_the_worker(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import runner

    now = [1000.0]
    monkeypatch.setattr(runner, "_clock", lambda: now[0])
    worker = make_worker(redis, ["hpsearch"], name="beating")
    worker.register_birth()
    worker.heartbeat()
    assert redis.hexists(worker.key, "last_heartbeat")

    redis.delete(worker.key)  # as if Redis lost its data
    redis.srem("rq:workers", worker.key)
    now[0] += 0.5
    worker.heartbeat()  # RQ's own, within the second: not sent
    assert not redis.exists(worker.key)
    with redis.pipeline() as pipe:  # the lease thread's, in its own pipeline: always sent
        worker.heartbeat(30, pipeline=pipe)
        pipe.execute()
    assert redis.hexists(worker.key, "last_heartbeat")
    assert not redis.sismember("rq:workers", worker.key)  # re-registered once a second only

    now[0] += 0.6
    worker.heartbeat()  # a second after the first, but the lease thread's was just sent
    assert not redis.sismember("rq:workers", worker.key)
    now[0] += 0.5
    worker.heartbeat()
    assert redis.sismember("rq:workers", worker.key)
    assert redis.hget(worker.key, "state") is not None  # the whole registration again
