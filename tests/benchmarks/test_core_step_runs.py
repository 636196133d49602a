"""The benchmark script runs and reports sane numbers (its timings are not judged here)."""

from __future__ import annotations

import math

from benchmarks import core_step


def test_step_benchmark_runs_on_a_small_shape() -> None:
    result = core_step.bench_shape((64, 100, 10, 50), "float32", rounds=1, seconds=0.02)
    assert result["examples_per_s"] > 0 and 0 < result["fraction"] < 1
    assert result["vs_torch"] is None or result["vs_torch"] > 0


def test_overhead_benchmark_runs_and_reports() -> None:
    o = core_step.trainer_overhead(rounds=1)
    assert all(math.isfinite(v) for v in o.values())
    # Each is positive; which is larger is a timing, which a loaded machine can flip.
    assert o["train_ms"] > 0 and o["no_eval_ms"] > 0 and o["bare_ms"] > 0
    report = core_step.overhead_report(o)
    assert "without evaluation" in report and "per-layer statistics" in report
    # Restored after patching:
    assert core_step.trainer.record_epoch.__name__ == "record_epoch"
    assert core_step.trainer.layer_statistics.__name__ == "layer_statistics"


def test_batchnorm_benchmark_times_both_nets() -> None:
    result = core_step.batchnorm_cost((64, 100, 10, 50), "float32", rounds=1, seconds=0.02)
    assert result["plain_ms"] > 0 and result["batchnorm_ms"] > 0
    assert math.isfinite(result["cost"])
