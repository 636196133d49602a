"""`hpsearch worker`: run trials from the queue until stopped (or, with --burst, until empty)."""

from __future__ import annotations

import argparse
import logging

from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import StopRequested

from core.messages import worker_shutdown_key
from core.registry import RegistryError
from worker.lifecycle import SHUTTING_DOWN
from worker.memory import keep_freed_memory
from worker.runner import make_worker
from worker.settings import WorkerSettings
from worker.trainers import declarations

log = logging.getLogger(__name__)
MAX_RESTART_BACKOFF_SECONDS = 30.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run trials from Redis (needs REDIS_URL and CHECKPOINT_DIR)",
        description="Run an RQ worker for hpsearch trials. Settings come from REDIS_URL, "
        "CHECKPOINT_DIR and HPSEARCH_QUEUE.",
    )
    parser.add_argument(
        "--queue", action="append", help="queue to serve (repeatable; default HPSEARCH_QUEUE)"
    )
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's, unique per process)")
    parser.set_defaults(run=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    """Serve the queue; when RQ's loop ends because Redis went away (RQ quits on some
    connection errors), start it again with back-off instead of exiting."""
    settings = WorkerSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    keep_freed_memory()
    try:  # at start, so that a broken HPSEARCH_TRAINERS or entry point says so at once
        trainers = declarations(settings)
    except RegistryError as exc:
        log.error("%s", exc)
        return 2
    if trainers:
        log.info("user trainers: %s", ", ".join(t["name"] for t in trainers))
    redis = Redis.from_url(settings.redis_url)
    if args.name:
        try:  # a request for an earlier process of this name is not for this one
            redis.delete(worker_shutdown_key(args.name))
        except RedisError:
            pass  # Redis not up yet: nothing can have been asked of this name meanwhile
    backoff = 1.0
    try:
        while True:
            worker = None
            try:  # RQ talks to Redis as soon as a worker is made, not only in work()
                worker = make_worker(
                    redis,
                    args.queue or [settings.queue],
                    name=args.name,
                    heartbeat_ttl_seconds=settings.heartbeat_ttl_seconds,
                    trainers=trainers,
                )
                worker.work(burst=args.burst, with_scheduler=False)
            except (RedisError, ValueError) as exc:
                # ValueError: RQ refuses a name whose last registration has not expired yet.
                log.warning("worker could not run: %s", exc)
            if args.burst or SHUTTING_DOWN.is_set():
                return 0
            log.warning("the worker loop ended; starting it again in %.0f s", backoff)
            SHUTTING_DOWN.wait(backoff)
            try:  # free our name: the next registration would be refused while it lives
                if worker is not None:
                    worker.register_death()
            except RedisError:
                pass
            backoff = min(backoff * 2, MAX_RESTART_BACKOFF_SECONDS)
    except StopRequested:  # a signal between two runs of the loop
        return 0
