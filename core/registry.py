"""Which trainers this installation can run, by name: what the operator installed, never
what a sweep or a job says.

Two sources, both the operator's:
- the entry point group `hpsearch.trainers` of the installed packages: a user's package
  declares `[project.entry-points."hpsearch.trainers"] my-cnn = "mypkg.train:CNN"`;
- the setting HPSEARCH_TRAINERS for code that is not packaged: `name=module:attr,...`,
  the modules importable where the worker runs.

The built-in net is always there as `mlp` (core.contract.BUILTIN). A name is looked up
here and only here: nothing that arrives over the network is ever imported.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from core.contract import BUILTIN, Declaration, TrainerError

GROUP = "hpsearch.trainers"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class RegistryError(ValueError):
    """HPSEARCH_TRAINERS or an installed entry point cannot be used; the message says which."""


@dataclass(frozen=True)
class Registered:
    name: str
    target: str  # module:attr, as the operator wrote it
    source: str  # "entry point" or "HPSEARCH_TRAINERS"


def parse_setting(setting: str) -> list[Registered]:
    """HPSEARCH_TRAINERS's entries, `name=module:attr` separated by commas."""
    found: list[Registered] = []
    for part in (p.strip() for p in setting.split(",")):
        if not part:
            continue
        name, equals, target = (s.strip() for s in part.partition("="))
        if not equals or not NAME.match(name) or not TARGET.match(target):
            raise RegistryError(
                f"HPSEARCH_TRAINERS: {part!r} is not name=module:attr (e.g. "
                f"my-net=mypackage.train:MyTrainer)"
            )
        if name == BUILTIN:
            raise RegistryError(f"HPSEARCH_TRAINERS: {name!r} is the built-in net's name")
        found.append(Registered(name, target, "HPSEARCH_TRAINERS"))
    return found


def registered(setting: str = "") -> list[Registered]:
    """Every trainer name the installation declares (not imported yet); the setting wins
    over an entry point of the same name."""
    found: dict[str, Registered] = {}
    for ep in entry_points(group=GROUP):
        if ep.name == BUILTIN:
            continue
        if not NAME.match(ep.name):  # a sweep could not name it
            raise RegistryError(
                f"entry point {ep.name!r} of {GROUP} ({ep.value}): a trainer's name is "
                f"letters, digits and . _ - (at most 64)"
            )
        found[ep.name] = Registered(ep.name, ep.value, "entry point")
    found.update({r.name: r for r in parse_setting(setting)})
    return sorted(found.values(), key=lambda r: r.name)


def load_target(entry: Registered) -> Any:
    module_name, _, attribute = entry.target.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:  # whatever its module raises while it is imported
        raise RegistryError(
            f"trainer {entry.name} ({entry.source} {entry.target}): cannot be loaded: {exc}"
        ) from exc
    return target


def installed_trainers(setting: str = "") -> dict[str, Any]:
    """Name -> trainer class of every registered trainer but the built-in net (imported
    now); RegistryError naming the first that cannot be loaded or declares badly."""
    trainers: dict[str, Any] = {}
    for entry in registered(setting):
        target = load_target(entry)
        try:
            Declaration.of(entry.name, target)
        except TrainerError as exc:
            raise RegistryError(str(exc)) from None
        trainers[entry.name] = target
    return trainers
