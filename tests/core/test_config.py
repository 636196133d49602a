from __future__ import annotations

import pytest

from core.config import ConfigError, TrainConfig


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"reg": -1e-3}, "reg"),
        ({"dropout": 1.0}, "dropout"),
        ({"momentum": 1.5}, "momentum"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"hidden_sizes": ()}, "hidden_sizes"),
        ({"hidden_sizes": (100, -1)}, "hidden_sizes"),
        ({"update": "lbfgs"}, "update"),
        ({"loss": "hinge"}, "loss"),
        ({"weight_scale": "xavier"}, "weight_scale"),
        ({"num_epochs": 0}, "num_epochs"),
        ({"lr_decay": 0}, "lr_decay"),
        ({"dtype": "float16"}, "dtype"),
        ({"learning_rate": "fast"}, "learning_rate"),
    ],
)
def test_bad_values_name_their_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        TrainConfig(**changes)


def test_from_dict_rejects_unknown_names_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="^lr: unknown hyperparameter"):
        TrainConfig.from_dict({"lr": 0.1})
    config = TrainConfig(hidden_sizes=(50, 20), update="adam", learning_rate=3e-3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["hidden_sizes"] == [50, 20]
