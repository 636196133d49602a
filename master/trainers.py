"""The trainers a sweep may name: the built-in net, and the user trainers that live workers
advertise with their registration (core.messages.TRAINERS_FIELD).

The master never imports a trainer: it validates a sweep's hyperparameters against the
declaration the workers sent, and stores that declaration with the sweep, so that planning
its later stages checks values the same way.
"""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError
from redis import Redis
from rq import Worker
from rq.worker import BaseWorker

from core.contract import BUILTIN, Declaration
from core.messages import TRAINERS_FIELD
from master.spec import SpecError, SweepSpec, describe_errors

log = logging.getLogger(__name__)


def advertised_trainers(redis: Redis) -> dict[str, dict[str, Declaration | None]]:
    """Trainer name -> {worker name: its declaration, or None where that worker lacks it},
    for every user trainer a live worker has."""
    workers = {
        name: {d.name: d for d in declared}
        for name, declared in workers_trainers(redis, Worker.all(connection=redis)).items()
    }
    names = sorted({name for has in workers.values() for name in has})
    return {name: {w: has.get(name) for w, has in sorted(workers.items())} for name in names}


def workers_trainers(redis: Redis, workers: list[BaseWorker]) -> dict[str, list[Declaration]]:
    """Worker name -> the user trainers it advertises (none if nothing readable), read in
    one round trip however many workers there are."""
    with redis.pipeline(transaction=False) as pipe:
        for worker in workers:
            pipe.hget(worker.key, TRAINERS_FIELD)
        replies = pipe.execute()
    return {w.name: _declarations(w.name, raw) for w, raw in zip(workers, replies, strict=True)}


def _declarations(worker: str, raw: bytes | None) -> list[Declaration]:
    if not raw:
        return []
    try:
        return [Declaration.from_json(data) for data in json.loads(raw)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("worker %s advertises unreadable trainers: %s", worker, exc)
        return []


def with_declaration(
    spec: SweepSpec, advertised: dict[str, dict[str, Declaration | None]]
) -> SweepSpec:
    """`spec` validated against its trainer's declaration, which it then holds. SpecError
    naming the trainers there are if no live worker has it, and naming the workers that
    lack it or declare another version: every worker serving the queue takes the sweep's
    trials, and one without the trainer would fail them."""
    if spec.trainer == BUILTIN:
        return spec if spec.declared is None else spec.model_copy(update={"declared": None})
    by_worker = advertised.get(spec.trainer)
    if by_worker is None:
        known = ", ".join([BUILTIN, *advertised])
        raise SpecError(
            [
                f"trainer: {spec.trainer!r} is no trainer of a live worker (known: {known}); "
                f"a worker offers the trainers its operator registered (the entry point "
                f"group hpsearch.trainers, or HPSEARCH_TRAINERS)"
            ]
        )
    lacking = [worker for worker, declared in by_worker.items() if declared is None]
    if lacking:
        raise SpecError(
            [
                f"trainer: {spec.trainer!r} is not installed on worker(s) "
                f"{', '.join(lacking)}, which would take some of its trials: install it "
                f"there too, or stop them"
            ]
        )
    declarations: list[Declaration] = []
    for declared in by_worker.values():
        if declared is not None and declared not in declarations:
            declarations.append(declared)
    if len(declarations) > 1:
        versions = ", ".join(f"{w}: {d.version}" for w, d in by_worker.items() if d is not None)
        raise SpecError(
            [
                f"trainer: the workers declare {spec.trainer!r} differently ({versions}): "
                f"install one version on all of them"
            ]
        )
    [declaration] = declarations
    data = spec.model_dump(mode="json")
    data["declared"] = declaration.to_json()
    if spec.budget is not None:  # laid out again from the budget, as submitted
        data["stages"] = []
    try:
        validated = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_errors(exc)) from None
    problems = validated.hyperparameter_problems()
    if problems:
        raise SpecError(problems)
    return validated
