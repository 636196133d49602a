"""The health badge of a trial, from its update:weight ratios (the notes: about 1e-3).

Only weight matrices count: a bias starts at zero, so its ratio says nothing about the
learning rate. The badge is the worst weight of the trial's latest epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TOO_LOW = 1e-4
TOO_HIGH = 1e-2
REFERENCE = 1e-3


@dataclass(frozen=True)
class Health:
    label: str  # "too low", "ok", "too high", "unknown"
    detail: str  # for the badge's tooltip

    @property
    def css(self) -> str:
        return self.label.replace(" ", "-")


def health_of(update_ratio: Mapping[str, float | None] | None) -> Health:
    """Too high if any weight's ratio is > 1e-2, too low if any is < 1e-4, else ok."""
    weights = {
        name: ratio
        for name, ratio in (update_ratio or {}).items()
        if name.startswith("W") and ratio is not None and ratio == ratio  # not NaN
    }
    if not weights:
        return Health("unknown", "no update:weight ratio reported yet")
    described = ", ".join(f"{name} {ratio:.1e}" for name, ratio in sorted(weights.items()))
    if max(weights.values()) > TOO_HIGH:
        return Health("too high", f"update:weight {described}: above {TOO_HIGH:.0e}")
    if min(weights.values()) < TOO_LOW:
        return Health("too low", f"update:weight {described}: below {TOO_LOW:.0e}")
    return Health("ok", f"update:weight {described}: near {REFERENCE:.0e}")
