"""The sweep spec a user submits, and its validation.

A sweep names a dataset, the hyperparameters every trial shares (`model` and `fixed`), the
search space (`space`: a distribution per hyperparameter; it overrides `fixed` where both name
one), and stages from coarse to fine. Every hyperparameter must be one core/ understands
(a TrainConfig field), every fixed value and both bounds of every range must be values a
trial can train with, and the stages must fit the configured maximum of trials. Problems are
reported as "field.path: what is wrong", one per problem.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.config import ConfigError, TrainConfig
from core.contract import BUILTIN, Declaration
from core.data import DatasetError, parse_dataset_spec
from core.registry import NAME
from master.budget import lay_out
from master.space import DIST_TAGS, Choice, Distribution

DEFAULT_MAX_TRIALS = 10_000
MAX_PARALLEL = 10_000  # a budget's trials that run at once, at most
MAX_BUDGET_EPOCHS = 10_000_000  # beyond any sweep's compute; keeps the layout's search short
# Set by the stages and the sweep itself, not per trial.
NOT_HYPERPARAMETERS = ("num_epochs", "explode_factor", "seed")
HYPERPARAMETERS = tuple(n for n in TrainConfig.field_names() if n not in NOT_HYPERPARAMETERS)


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int = Field(ge=1, description="trials sampled for this stage")
    epochs: float = Field(gt=0, description="epochs each trial trains (fractions allowed)")
    keep_top: int | None = Field(
        default=None, ge=1, description="best trials of the previous stage to narrow around"
    )
    promote: int = Field(
        default=0,
        ge=0,
        description="of `trials`, how many are the previous stage's best trained on from "
        "their checkpoints to `epochs` (the rest are sampled anew)",
    )


class BudgetSpec(BaseModel):
    """A budget of training epochs, in place of stages: the master lays out the stages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(
        gt=0, le=MAX_BUDGET_EPOCHS, description="training epochs of all trials together, at most"
    )
    max_epochs: int = Field(gt=0, le=MAX_BUDGET_EPOCHS, description="epochs the finalists train")
    min_epochs: int | None = Field(
        default=None, gt=0, description="epochs of the first stage (default: a 27th of max)"
    )
    reduction: float = Field(
        default=3.0, ge=1.5, le=10, description="each stage keeps 1/reduction of the one before"
    )
    parallel: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PARALLEL,
        description="trials that run at once, of which the finalists are a multiple "
        "(default: the workers registered when the sweep is submitted)",
    )

    @model_validator(mode="after")
    def _check_order(self) -> BudgetSpec:
        if self.max_epochs > self.epochs:
            raise ValueError(
                f"max_epochs: {self.max_epochs} is more than the budget of {self.epochs} epochs"
            )
        if self.min_epochs is not None and self.min_epochs > self.max_epochs:
            raise ValueError(
                f"min_epochs: {self.min_epochs} is more than max_epochs {self.max_epochs}"
            )
        return self


class DeclaredHyperparameter(BaseModel):
    """core.contract.Hyperparameter as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["bool", "int", "float", "str", "int_list"]
    default: bool | int | float | str | list[int]
    low: float | None = None
    high: float | None = None
    choices: list[bool | int | float | str] | None = None
    help: str = Field(default="", max_length=1000)


class DeclaredTrainer(BaseModel):
    """core.contract.Declaration as JSON: a user trainer as its workers declare it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME.pattern)
    version: str = Field(max_length=200)
    hyperparameters: dict[str, DeclaredHyperparameter]


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    trainer: str = Field(
        default=BUILTIN,
        pattern=NAME.pattern,
        description="what trains every trial, by the name its workers registered it under "
        "(core.registry); 'mlp', the default, is the built-in NumPy net",
    )
    # Filled in by the master at submission: what a client sends is replaced.
    declared: DeclaredTrainer | None = Field(
        default=None,
        description="the trainer's hyperparameters as its workers declared them when the "
        "sweep was submitted (set by the master; what a client sends is replaced)",
    )
    dataset: str = Field(default="digits", description="digits, npz:PATH or cifar10:DIR")
    model: dict[str, Any] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Distribution] = Field(default_factory=dict)
    # Either stages, or a budget from which the master lays them out (master.budget).
    stages: list[StageSpec] = Field(default_factory=list)
    budget: BudgetSpec | None = None
    sampler: Literal["random", "sobol"] = Field(
        default="random", description="how a stage's trials are drawn within its ranges"
    )
    explode_factor: float = Field(default=3.0, gt=1)
    seed: int = Field(default=0, ge=0)
    # "best_and_latest" keeps two checkpoint files per trial (three while it trains: the
    # one before the newest stays until the newest is on disk), so a long sweep does not fill
    # the disk; "all" keeps one per epoch.
    keep_checkpoints: Literal["best_and_latest", "all"] = "best_and_latest"

    @model_validator(mode="after")
    def _check_names_and_values(self) -> SweepSpec:
        problems: list[str] = []
        if self.declared is not None and self.declared.name != self.trainer:
            problems.append(f"declared: is trainer {self.declared.name}'s, not {self.trainer}'s")
        try:
            parse_dataset_spec(self.dataset)
        except DatasetError:
            problems.append("dataset: must be 'digits', 'npz:PATH' or 'cifar10:DIR'")
        # A user trainer's hyperparameters are checked by the master against its workers'
        # declaration (master.trainers), which a client cannot supply.
        builtin = self.trainer == BUILTIN
        if builtin:
            problems += self._name_problems()
        if problems:
            raise ValueError("; ".join(problems))
        if builtin:
            base_problems = self._base_problems()
            if base_problems:
                raise ValueError("; ".join(base_problems))
            problems += self._bound_problems()
        if self.budget is not None and self.stages:
            problems.append("budget: give either stages or a budget, not both")
        elif self.budget is not None:
            # Laid out once, here: the stored spec holds the stages the sweep runs.
            b = self.budget
            laid_out = lay_out(b.epochs, b.max_epochs, b.min_epochs, b.reduction, b.parallel or 1)
            stages = [StageSpec(**dataclasses.asdict(stage)) for stage in laid_out]
            object.__setattr__(self, "stages", stages)
        elif not self.stages:
            problems.append("stages: give at least one stage, or a budget")
        problems += _stage_problems(self.stages)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def declaration(self) -> Declaration | None:
        """The user trainer's declaration this sweep was validated against (None for the
        built-in net, or before the master filled it in)."""
        if self.trainer == BUILTIN or self.declared is None:
            return None
        return Declaration.from_json(self.declared.model_dump())

    def known_hyperparameters(self) -> Collection[str] | None:
        """What the trainer lets a sweep set; None: not known here (a user trainer whose
        declaration the master has not filled in yet)."""
        if self.trainer == BUILTIN:
            return HYPERPARAMETERS
        declaration = self.declaration()
        return None if declaration is None else declaration.hyperparameters

    def check_hyperparameters(self, values: dict[str, Any]) -> object:
        """ConfigError ("name: why") if the trainer cannot train with `values`."""
        if self.trainer == BUILTIN:
            return TrainConfig.from_dict(values)
        declaration = self.declaration()
        return values if declaration is None else declaration.resolve(values)

    def _unknown(self, known: Collection[str]) -> str:
        if self.trainer == BUILTIN:
            return "unknown hyperparameter"
        return (
            f"unknown hyperparameter of trainer {self.trainer} (known: {', '.join(sorted(known))})"
        )

    def hyperparameter_problems(self) -> list[str]:
        """What the trainer refuses of the sweep's hyperparameters ("section.name: why"
        each): names it does not know, else bad fixed values, else bad bounds of ranges."""
        return self._name_problems() or self._base_problems() or self._bound_problems()

    def _name_problems(self) -> list[str]:
        known = self.known_hyperparameters()
        if known is None:
            return []
        return [
            f"{section}.{name}: {self._unknown(known)}"
            for section in ("model", "fixed", "space")
            for name in getattr(self, section)
            if name not in known
        ]

    def _base_problems(self) -> list[str]:
        base = self.base_hyperparameters()
        try:
            self.check_hyperparameters(base)
        except ConfigError as exc:
            return [_in_section(base, self.model, p) for p in str(exc).split("; ")]
        return []

    def _bound_problems(self) -> list[str]:
        """Both bounds of every range, with the (valid) fixed values."""
        base = self.base_hyperparameters()
        problems: list[str] = []
        for name, dist in self.space.items():
            for bound, value in _bounds(dist):
                try:
                    self.check_hyperparameters({**base, name: value})
                except ConfigError as exc:
                    # Only the problem about this hyperparameter (the base is valid).
                    reason = str(exc).removeprefix(f"{name}: ").split("; ")[0]
                    problems.append(f"space.{name}.{bound}: {reason}")
        return problems

    @classmethod
    def stored(cls, data: dict[str, Any]) -> SweepSpec:
        """A spec as the database holds it: its stages are the ones laid out at submission,
        even if a later version would lay out its budget differently."""
        if data.get("budget") is not None and data.get("stages"):
            spec = cls.model_validate({**data, "budget": None})
            object.__setattr__(spec, "budget", BudgetSpec.model_validate(data["budget"]))
            return spec
        return cls.model_validate(data)

    def with_parallel(self, workers: int) -> SweepSpec:
        """A budget that does not say how many trials run at once is laid out for `workers`
        (those registered now); anything else is returned as it is."""
        if self.budget is None or self.budget.parallel is not None:
            return self
        data = self.model_dump(mode="json")
        data["stages"] = []
        data["budget"]["parallel"] = min(max(1, workers), MAX_PARALLEL)
        return SweepSpec.model_validate(data)

    @property
    def total_trials(self) -> int:
        return sum(stage.trials for stage in self.stages)

    def base_hyperparameters(self) -> dict[str, Any]:
        """What every trial shares before the space is sampled."""
        return {**self.model, **self.fixed}


class _Trains(Protocol):
    @property
    def epochs(self) -> float: ...


def rung_start(stages: Sequence[_Trains], index: int) -> int:
    """The first of the stages in a row, ending at `index`, that train as many epochs: one
    rung, whose trials compare, so the stage after it ranks them together (budget mode's
    first rung is drawn in three such stages, wide, narrowed and narrowed again)."""
    first = index
    while first > 0 and stages[first - 1].epochs == stages[index].epochs:
        first -= 1
    return first


def name_stages(first: int, last: int) -> str:
    """E.g. "stage 3", or "stages 0-2" for a rung of three."""
    return f"stage {last}" if first == last else f"stages {first}-{last}"


def _stage_problems(stages: Sequence[StageSpec]) -> list[str]:
    problems: list[str] = []
    for k, stage in enumerate(stages):
        if k == 0:
            for name in ("keep_top", "promote"):
                if getattr(stage, name):
                    problems.append(f"stages.0.{name}: the first stage has no previous stage")
            continue
        previous = stages[k - 1]
        first = rung_start(stages, k - 1)  # stage k ranks and promotes the whole rung
        ranked = sum(s.trials for s in stages[first:k])
        before = name_stages(first, k - 1)
        if stage.keep_top is not None and stage.keep_top > ranked:
            problems.append(
                f"stages.{k}.keep_top: {stage.keep_top} is more than the "
                f"{ranked} trials of {before}"
            )
        if not stage.promote:
            continue
        if stage.promote > stage.trials:
            problems.append(
                f"stages.{k}.promote: {stage.promote} is more than the stage's "
                f"{stage.trials} trials"
            )
        if stage.promote > ranked:
            problems.append(
                f"stages.{k}.promote: {stage.promote} is more than the {ranked} trials of {before}"
            )
        if stage.epochs <= previous.epochs:
            problems.append(
                f"stages.{k}.epochs: {stage.epochs:g} must be more than the {previous.epochs:g} "
                f"of stage {k - 1} to train its trials on"
            )
        if previous.epochs != int(previous.epochs):
            # A run that ended within an epoch cannot go on exactly (core.trainer.continue_to).
            problems.append(
                f"stages.{k}.promote: stage {k - 1} trains {previous.epochs:g} epochs, but "
                "trials can be trained on only from a whole number of epochs"
            )
    return problems


class SpecError(ValueError):
    """A sweep spec is invalid; `problems` holds one "field.path: what is wrong" each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_sweep_spec(data: Any, max_trials: int = DEFAULT_MAX_TRIALS) -> SweepSpec:
    """Validate plain JSON-able data as a sweep spec, or raise SpecError naming every problem."""
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_errors(exc)) from None
    check_trial_budget(spec, max_trials)
    return spec


def check_trial_budget(spec: SweepSpec, max_trials: int) -> None:
    """The one check a validated spec still needs: its stages fit the configured maximum."""
    if spec.total_trials > max_trials:
        raise SpecError(
            [f"stages: {spec.total_trials} trials in all, more than the maximum of {max_trials}"]
        )


_FIELD_PREFIX = re.compile(r"^(\w+(?:\.\w+)*): (.*)$")


def describe_errors(exc: ValidationError) -> list[str]:
    """Pydantic's errors as "field.path: problem" lines (our own checks may name several)."""
    return describe_error_list(exc.errors())


def describe_error_list(errors: Sequence[Any], strip_prefix: Collection[str] = ()) -> list[str]:
    """The same for a list of pydantic-style error dicts (FastAPI's come with the request
    part first, e.g. ("body", "space", ...): `strip_prefix` drops it)."""
    lines: list[str] = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc and loc[0] in strip_prefix:
            del loc[0]
        if len(loc) >= 3 and loc[0] == "space" and loc[2] in DIST_TAGS:
            del loc[2]  # the union's tag is not a field the user wrote
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        for part in message.split("; "):
            match = _FIELD_PREFIX.match(part)
            path, text = (loc + [match[1]], match[2]) if match else (loc, part)
            lines.append(f"{'.'.join(path) or 'body'}: {text}")
    return lines


def _bounds(dist: Any) -> list[tuple[str, Any]]:
    if isinstance(dist, Choice):
        return [(f"values.{i}", v) for i, v in enumerate(dist.values)]
    return [("low", dist.low), ("high", dist.high)]


def _in_section(base: dict[str, Any], model: dict[str, Any], problem: str) -> str:
    """Prefix a TrainConfig problem ("name: ...") with the section the user wrote it in."""
    name = problem.split(":", 1)[0]
    section = "fixed" if name in base and name not in model else "model"
    return f"{section}.{problem}"
