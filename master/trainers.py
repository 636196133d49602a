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


def advertised_trainers(redis: Redis) -> dict[str, Declaration]:
    """Name -> declaration of every user trainer a live worker has (the first worker's, by
    name, where workers of different versions disagree)."""
    found: dict[str, Declaration] = {}
    for worker in sorted(Worker.all(connection=redis), key=lambda w: w.name):
        for declaration in worker_trainers(redis, worker):
            found.setdefault(declaration.name, declaration)
    return found


def worker_trainers(redis: Redis, worker: BaseWorker) -> list[Declaration]:
    """The user trainers one worker advertises (none if it advertises nothing readable)."""
    raw = redis.hget(worker.key, TRAINERS_FIELD)
    if not raw:
        return []
    try:
        return [Declaration.from_json(data) for data in json.loads(raw)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("worker %s advertises unreadable trainers: %s", worker.name, exc)
        return []


def with_declaration(spec: SweepSpec, advertised: dict[str, Declaration]) -> SweepSpec:
    """`spec` validated against its trainer's declaration, which it then holds; SpecError
    naming the trainers there are if no live worker has it."""
    if spec.trainer == BUILTIN:
        return spec if spec.declared is None else spec.model_copy(update={"declared": None})
    declaration = advertised.get(spec.trainer)
    if declaration is None:
        known = ", ".join([BUILTIN, *sorted(advertised)])
        raise SpecError(
            [
                f"trainer: {spec.trainer!r} is no trainer of a live worker (known: {known}); "
                f"a worker offers the trainers its operator registered (the entry point "
                f"group hpsearch.trainers, or HPSEARCH_TRAINERS)"
            ]
        )
    data = spec.model_dump(mode="json")
    data["declared"] = declaration.to_json()
    if spec.budget is not None:  # laid out again from the budget, as submitted
        data["stages"] = []
    try:
        declared = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_errors(exc)) from None
    problems = declared.hyperparameter_problems()
    if problems:
        raise SpecError(problems)
    return declared
