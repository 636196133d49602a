"""Pure parts of the dashboard: health badges, PNG encoding, weight tiles, number formats."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.checkpoint import parse_checkpoint_name
from dashboard.formatting import epochs, number
from dashboard.health import health_of
from dashboard.leaderboard import best_checkpoint
from dashboard.weights import (
    NoImage,
    _tile,
    describe_first_layer,
    encode_png,
    first_layer_png,
    grid,
)
from worker.checkpoints import best_of


@pytest.mark.parametrize(
    ("ratios", "label"),
    [
        ({"W1": 1e-3, "W2": 2e-3, "b1": 5.0}, "ok"),  # biases do not count
        ({"W1": 1e-3, "W2": 3e-2}, "too high"),
        ({"W1": 5e-5, "W2": 1e-3}, "too low"),
        ({"W1": 5e-5, "W2": 3e-2}, "too high"),  # the worse problem wins
        ({"b1": 1e-3}, "unknown"),
        ({}, "unknown"),
        (None, "unknown"),
        ({"W1": float("nan")}, "unknown"),
    ],
)
def test_health_badge_follows_the_notes_thresholds(
    ratios: dict[str, float] | None, label: str
) -> None:
    assert health_of(ratios).label == label


def decode_png(data: bytes) -> np.ndarray:
    """Just enough of a PNG reader for our own files (one IDAT, filter 0, RGB)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20]), int.from_bytes(data[20:24])
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4])
    raw = zlib.decompress(data[start : start + length])
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, 3)


def test_png_round_trips_pixels() -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png(image)), image)


def test_tiles_scale_each_unit_to_its_own_range_and_unflatten_channels_first() -> None:
    gray = _tile(np.arange(64, dtype=np.float32), (8, 8))
    assert gray.shape == (8, 8, 3) and gray.min() == 0 and gray.max() == 255
    assert (gray[0, 0] == 0).all() and (gray[7, 7] == 255).all()
    column = np.zeros(3 * 4 * 4)
    column[:16] = 1.0  # the red plane, channels first as CIFAR rows are stored
    rgb = _tile(column, (3, 4, 4))
    assert (rgb[:, :, 0] == 255).all() and (rgb[:, :, 1:] == 0).all()
    assert (_tile(np.ones(64), (8, 8)) == 0).all()  # a constant unit: no division by zero


def test_grid_is_near_square_with_gaps() -> None:
    tiles = [np.full((2, 2, 3), k, dtype=np.uint8) for k in range(5)]
    out = grid(tiles)
    assert out.shape == (2 * 3 + 1, 3 * 3 + 1, 3)  # 3 columns, 2 rows
    assert (out[1:3, 4:6] == 1).all() and (out[4:6, 4:6] == 4).all()
    assert (out[4:6, 7:9] == 255).all()  # the empty sixth cell


def test_the_dashboard_and_the_worker_call_the_same_checkpoint_best() -> None:
    paths = [
        "s/stage0/val0.5000_trial000001_ep001.npz",
        "s/stage0/val0.9000_trial000001_ep002.npz",
        "s/stage0/val0.9000_trial000001_ep004.npz",
        "s/stage0/not-a-checkpoint.npz",
    ]
    # Ties go to the earlier epoch: the one the trainer reports as the best epoch.
    assert best_checkpoint(paths) == paths[1]
    named = [(Path(p), parse_checkpoint_name(p)) for p in paths[:3]]
    assert str(best_of(named)[0]) == paths[1]
    assert best_checkpoint([]) is None


def test_numbers_read_as_people_write_them() -> None:
    assert number(1e-6) == "1.00e-06" and number(0.05) == "0.05" and number(None) == "-"
    assert number(100) == "100" and number("adam") == "adam" and number([100]) == "[100]"
    assert epochs(2.0) == "2" and epochs(0.25) == "0.25"


def fake_checkpoint(path: Path, inputs: int, extra: dict[str, Any] | None) -> Path:
    meta = {} if extra is None else {"extra": extra}
    arrays = {
        "params/W1": np.random.default_rng(0).standard_normal((inputs, 5)),
        "meta.json": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    }
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_weights_are_images_only_when_the_input_is_one(tmp_path: Path) -> None:
    recorded = fake_checkpoint(tmp_path / "a.npz", 12, {"image_shape": [3, 2, 2]})
    assert describe_first_layer(recorded) == (5, 5, (3, 2, 2))
    tabular = fake_checkpoint(tmp_path / "b.npz", 64, {"image_shape": None})
    with pytest.raises(NoImage, match="not an image"):
        describe_first_layer(tabular)
    older = fake_checkpoint(tmp_path / "c.npz", 64, None)  # before shapes were recorded
    assert describe_first_layer(older)[2] == (8, 8)
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(NoImage, match="not a readable checkpoint"):
        first_layer_png(tmp_path / "d.npz")


def test_distribution_figures_hold_every_epoch_with_gaps_where_none_was_recorded() -> None:
    from dashboard.trial_figures import distribution_figures
    from master.models import TrialEpoch

    epochs = [
        TrialEpoch(epoch=1.0, train_acc=0.5, val_acc=0.5, loss=[], update_ratio={},
                   distributions={"dead_units": {"layer1": 0.1, "layer2": 0.4},
                                  "activations": {"layer1": [0.5] + [0.05] * 9},
                                  "grad_norm": {"W1": 0.2}}),
        TrialEpoch(epoch=2.0, train_acc=0.5, val_acc=0.5, loss=[], update_ratio={},
                   distributions={"dead_units": {"layer1": 0.2, "layer2": 0.75}}),
        TrialEpoch(epoch=3.0, train_acc=0.5, val_acc=0.5, loss=[], update_ratio={},
                   distributions=None),  # an epoch recorded before distributions were
    ]  # fmt: skip
    figures = distribution_figures(epochs)
    assert figures["plot-dead"]["data"][1]["y"] == [0.4, 0.75, None]
    heat = figures["plot-activations-layer1"]["data"][0]
    assert heat["z"][0] == [0.5, None, None] and heat["x"] == [1.0, 2.0, 3.0]
    assert figures["plot-gradients"]["data"][0]["y"] == [0.2, None, None]


def test_importance_finds_the_hyperparameter_that_explains_the_accuracy() -> None:
    from dashboard.glance import MIN_TRIALS_FOR_IMPORTANCE, importances

    rng = np.random.default_rng(0)
    space = {
        "learning_rate": {"dist": "loguniform", "low": 1e-5, "high": 1e-1},
        "dropout": {"dist": "uniform", "low": 0.0, "high": 0.5},
        "update": {"dist": "choice", "values": ["sgd", "adam"]},
    }
    trials = [
        {"learning_rate": 10 ** rng.uniform(-5, -1), "dropout": rng.uniform(0, 0.5),
         "update": rng.choice(["sgd", "adam"])}
        for _ in range(60)
    ]  # fmt: skip
    # Accuracy peaks at learning_rate 1e-3 (in log space); the rest is noise.
    accuracy = [0.9 - 0.1 * (np.log10(t["learning_rate"]) + 3) ** 2 for t in trials]
    ranked = importances(space, trials, accuracy)
    assert [name for name, _ in ranked][0] == "learning_rate"
    assert dict(ranked)["learning_rate"] > 0.8 and abs(sum(dict(ranked).values()) - 1) < 1e-9
    assert importances(space, trials[: MIN_TRIALS_FOR_IMPORTANCE - 1], accuracy[:7]) == []


def test_plots_of_what_a_trainer_does_not_report_say_so() -> None:
    """A user trainer need not report ratios, activations or gradients: its plots say
    "not reported", where the built-in net's are drawn."""
    from dashboard.trial_figures import NOT_REPORTED, trial_figures
    from master.models import TrialEpoch

    silent = [
        TrialEpoch(epoch=e, train_acc=0.5, val_acc=0.5, loss=[1.0], update_ratio={},
                   distributions=None)
        for e in (1.0, 2.0)
    ]  # fmt: skip
    figures = trial_figures(silent)
    for plot in ("plot-ratios", "plot-dead", "plot-gradients"):
        assert figures[plot]["layout"]["annotations"][0]["text"] == NOT_REPORTED, plot
    assert "annotations" not in figures["plot-loss"]["layout"]
    reporting = [
        TrialEpoch(epoch=1.0, train_acc=0.5, val_acc=0.5, loss=[1.0], update_ratio={"W1": 1e-3},
                   distributions={"dead_units": {"layer1": 0.1}, "grad_norm": {"W1": 0.2}})
    ]  # fmt: skip
    drawn = trial_figures(reporting)
    assert all("annotations" not in drawn[p]["layout"] for p in ("plot-ratios", "plot-dead"))
