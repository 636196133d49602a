"""What the REST API sends back (the request body of a sweep is master.spec.SweepSpec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

MAX_ENSEMBLE_MEMBERS = 50


class Message(BaseModel):
    detail: str = Field(description="what went wrong, in words")
    problems: list[str] = Field(default_factory=list, description="one per invalid field")


class StagePublic(BaseModel):
    index: int
    status: str
    trials: int
    epochs: float
    keep_top: int | None
    promote: int = Field(
        default=0, description="of `trials`, the previous stage's best trained on to `epochs`"
    )
    ranked_from: list[int] = Field(
        default_factory=list,
        description="the stages whose trials this one promotes from and is planned around: "
        "the stage before it and those right before that train as many epochs (budget "
        "mode's first rung is three stages)",
    )
    space: dict[str, Any] | None = Field(description="the distributions this stage samples")
    ranges: dict[str, str] = Field(description="each range in words, e.g. [1.00e-06, 10]")
    warnings: list[str]
    counts: dict[str, int] = Field(description="trials per status")
    planned_at: datetime | None


class TestEvaluation(BaseModel):
    """A finished sweep's models on its held-out test split, which nothing selected on."""

    status: str = Field(description="of the evaluation's ensemble: queued, running, finished...")
    ensemble_id: int
    best_trial_id: int | None = Field(description="the sweep's best trial (by validation)")
    best_val_acc: float | None
    best_test_acc: float | None = Field(description="None: the dataset has no test split")
    k: int | None = Field(description="members of the top-k ensemble chosen on validation")
    ensemble_val_acc: float | None
    ensemble_test_acc: float | None


class SweepPublic(BaseModel):
    id: int
    name: str
    status: str
    dataset: str
    created_at: datetime
    finished_at: datetime | None
    reason: str | None = Field(default=None, description="why a failed sweep failed")
    total_trials: int = Field(description="trials over all stages, as planned")
    done_trials: int = Field(description="trials that reached a final status")
    progress: float = Field(description="done_trials / total_trials")
    counts: dict[str, int]
    stages: list[StagePublic]
    epochs_trained: float = Field(
        default=0.0, description="epochs trained by all trials (a promoted one's own only)"
    )
    final_warnings: list[str] = Field(
        default_factory=list,
        description="once finished: where the best trial of the last stage sits on a border",
    )
    diagnoses: list[str] = Field(
        default_factory=list, description="the trials' findings summed up, in words"
    )
    test: TestEvaluation | None = Field(
        default=None, description="once finished: the best trial and ensemble on the test split"
    )
    spec: dict[str, Any]


class SweepsPublic(BaseModel):
    data: list[SweepPublic]
    count: int


class TrialPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sweep_id: int
    stage: int = Field(validation_alias=AliasChoices("stage_index", "stage"))
    index: int
    parent_id: int | None = Field(
        default=None, description="the trial this one was promoted from and trains on"
    )
    start_epoch: float = Field(
        default=0.0, description="epochs inherited from parent_id, not trained by this trial"
    )
    status: str
    reason: str | None
    hyperparameters: dict[str, Any]
    seed: int
    num_epochs: float
    epochs_done: float
    best_val_acc: float | None
    best_epoch: float | None
    train_acc: float | None = Field(description="train accuracy at the best epoch")
    val_acc: float | None = Field(description="validation accuracy at the latest epoch")
    explosion: dict[str, Any] | None
    checkpoints: list[str] = Field(description="paths under CHECKPOINT_DIR")
    worker: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RankedTrial(TrialPublic):
    rank: int = 0


class EpochPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: float
    cost: float | None
    train_acc: float
    val_acc: float
    average_val_acc: float | None
    learning_rate: float | None
    update_ratio: dict[str, float | None]
    distributions: dict[str, Any] | None = Field(
        default=None,
        description="per hidden layer: ReLU output shares in fixed bins (activations), the "
        "share of units that never fired (dead_units); per weight matrix the mean gradient "
        "norm (grad_norm)",
    )


class FindingPublic(BaseModel):
    kind: str = Field(
        description="learning_rate_too_high, learning_rate_too_low, initial_loss, dead_units, "
        "overfitting or underfitting"
    )
    text: str


class TrialDetail(TrialPublic):
    best_checkpoint: str | None = Field(
        default=None,
        description="the file of the best epoch, under CHECKPOINT_DIR (a promoted trial's "
        "may be its parent's); the dashboard serves it at /files/PATH",
    )
    history: list[EpochPublic]
    loss: list[float | None] = Field(description="cost per iteration")
    diagnoses: list[FindingPublic] = Field(
        default_factory=list, description="what the trial's numbers suggest, in words"
    )


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int


class LeaderboardPublic(BaseModel):
    data: list[RankedTrial]
    count: int


class WorkerPublic(BaseModel):
    name: str
    host: str | None
    state: str
    queues: list[str]
    current_job: str | None
    current_trial: int | None
    last_heartbeat: datetime | None
    trainers: list[str] = Field(
        default_factory=list, description="the trainers it can run: mlp and those it advertises"
    )


class WorkersPublic(BaseModel):
    data: list[WorkerPublic]
    count: int


class ComponentHealth(BaseModel):
    ok: bool
    detail: str


class SchedulerHealth(BaseModel):
    ok: bool = Field(description="a scheduler is active: this master's, passing, or another's")
    active: bool = Field(description="whether this master's scheduler is the active one")
    this_master: str
    active_master: str | None = Field(description="who holds the scheduler lease")
    last_pass_seconds_ago: float | None = Field(description="this master's scheduler loop")


class EventBacklog(BaseModel):
    waiting: int = Field(description="worker events not applied yet")
    oldest_age_seconds: float | None
    unapplied: int = Field(description="events that failed to apply, kept with their error")


class HealthPublic(BaseModel):
    status: str = Field(description="ok, or unavailable when a component is down")
    redis: ComponentHealth
    database: ComponentHealth
    checkpoint_dir: ComponentHealth
    scheduler: SchedulerHealth | None = Field(description="null when Redis cannot be reached")
    events: EventBacklog | None = Field(description="null when Redis cannot be reached")


class EnsembleRequest(BaseModel):
    """POST /api/sweeps/{id}/ensembles."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["top-k", "checkpoints", "seeds"] = Field(
        description="top-k: the sweep's best trials; checkpoints: one trial's checkpoints; "
        "seeds: one trial's hyperparameters re-trained from new seeds, as a new stage"
    )
    max_k: int = Field(
        default=5,
        ge=1,
        le=MAX_ENSEMBLE_MEMBERS,
        description="members at most; every k up to it is scored",
    )
    trial_id: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="kinds checkpoints and seeds: the trial (default: the sweep's best)",
    )
    seeds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ENSEMBLE_MEMBERS - 1,
        description="kind seeds: new seeds to re-train the trial from (default: 4)",
    )

    @model_validator(mode="after")
    def _fields_of_their_kind(self) -> EnsembleRequest:
        if self.trial_id is not None and self.kind == "top-k":
            raise ValueError("trial_id: only for kinds checkpoints and seeds")
        if self.seeds is not None and self.kind != "seeds":
            raise ValueError("seeds: only for kind seeds")
        return self


class EnsembleMember(BaseModel):
    trial_id: int
    checkpoint: str = Field(description="path under CHECKPOINT_DIR")
    val_acc: float | None = None
    test_acc: float | None = None
    average_val_acc: float | None = Field(
        default=None, description="with the running average of its parameters"
    )
    average_test_acc: float | None = None


class EnsemblePoint(BaseModel):
    k: int
    val_acc: float
    test_acc: float | None = None


class EnsemblePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sweep_id: int
    kind: str
    params: dict[str, Any]
    automatic: bool = Field(description="the sweep's own test evaluation, made when it finished")
    status: str
    reason: str | None
    members: list[EnsembleMember] = Field(description="best first")
    curve: list[EnsemblePoint] = Field(description="the first k members together, every k")
    k: int | None = Field(description="chosen on validation accuracy (ties: the smaller)")
    val_acc: float | None
    test_acc: float | None
    attempts: int
    created_at: datetime
    finished_at: datetime | None


class EnsemblesPublic(BaseModel):
    data: list[EnsemblePublic]
    count: int
