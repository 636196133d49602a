"""How numbers read on the pages: Jinja filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from master.space import format_number


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return format_number(value)


def accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def epochs(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    if moment.tzinfo is None:  # SQLite hands back naive UTC times
        moment = moment.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 60:
        return f"{max(0, seconds):.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def install_filters(env: Environment) -> None:
    env.filters.update(number=number, accuracy=accuracy, signed=signed, epochs=epochs, ago=ago)
