"""`hpsearch worker`: run trials from the queue until stopped (or, with --burst, until empty)."""

from __future__ import annotations

import argparse
import logging

from redis import Redis

from worker.runner import make_worker
from worker.settings import WorkerSettings


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
    settings = WorkerSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    redis = Redis.from_url(settings.redis_url)
    worker = make_worker(redis, args.queue or [settings.queue], name=args.name)
    worker.work(burst=args.burst, with_scheduler=False)
    return 0
