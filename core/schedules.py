"""Learning-rate schedules: pure functions of the time t in epochs (fractional within an epoch).

step: learning_rate * lr_decay ** floor(t / lr_step)   (the notes' "step decay")
exp:  learning_rate * exp(-lr_k * t)
inv:  learning_rate / (1 + lr_k * t)                   (the notes' "1/t decay")
"""

from __future__ import annotations

import math

from core.config import TrainConfig


def lr_at(epoch: float, config: TrainConfig) -> float:
    """The learning rate in force at time `epoch` (0 = the first iteration)."""
    if config.lr_schedule == "step":
        # The nudge keeps e.g. 0.3 / 0.1 = 2.9999999999999996 in the third step, not the second.
        return config.learning_rate * config.lr_decay ** math.floor(epoch / config.lr_step + 1e-9)
    if config.lr_schedule == "exp":
        return config.learning_rate * math.exp(-config.lr_k * epoch)
    if config.lr_schedule == "inv":
        return config.learning_rate / (1.0 + config.lr_k * epoch)
    raise ValueError(f"lr_schedule: unknown schedule {config.lr_schedule!r}")
