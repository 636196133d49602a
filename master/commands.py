"""`hpsearch master`, `hpsearch up`, `hpsearch submit` and `hpsearch reindex`."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal

DEFAULT_PORT = 8000
DEFAULT_DASHBOARD_PORT = 8080


def register(subparsers: argparse._SubParsersAction) -> None:
    master = subparsers.add_parser(
        "master",
        help="run the REST API and the scheduler",
        description="Run the master: REST API (OpenAPI at /docs) and the sweep scheduler. "
        "Settings come from REDIS_URL, DATABASE_URL, CHECKPOINT_DIR, HPSEARCH_API_TOKEN.",
    )
    master.add_argument("--host", default="127.0.0.1", help="address to listen on")
    master.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    master.set_defaults(run=run_master)

    up = subparsers.add_parser(
        "up",
        help="run everything on this machine: Redis, the master, workers and the dashboard",
        description="Start an embedded Redis, the master (SQLite under --data-dir), N "
        "workers and the dashboard; Ctrl-C or SIGTERM stops them all.",
    )
    up.add_argument(
        "--workers", type=_count, default=None, help="workers (default: CPU count; 0 for none)"
    )
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help="master port")
    up.add_argument(
        "--dashboard-port",
        type=int,
        default=DEFAULT_DASHBOARD_PORT,
        help=f"dashboard port (default {DEFAULT_DASHBOARD_PORT}; 0: no dashboard)",
    )
    up.add_argument("--redis-port", type=int, default=0, help="default: a free port")
    up.add_argument("--data-dir", default="hpsearch-data", help="database, checkpoints, Redis")
    up.set_defaults(run=run_up)

    submit = subparsers.add_parser(
        "submit",
        help="submit a sweep file (YAML or JSON) to a master",
        description="POST a sweep spec to the master; with --watch, show each stage's "
        "progress until the sweep ends, then the top 5 trials.",
    )
    submit.add_argument("file", help="sweep spec, .yaml/.yml or .json")
    submit.add_argument(
        "--url",
        default=None,
        help=f"master URL (default: HPSEARCH_URL or http://127.0.0.1:{DEFAULT_PORT})",
    )
    submit.add_argument("--watch", action="store_true", help="follow the sweep until it ends")
    submit.set_defaults(run=run_submit)

    db = subparsers.add_parser(
        "db",
        help="bring the database's schema to this version (the master also does it on start)",
        description="Run the schema migrations the database lacks (Alembic): an empty database "
        "gets every revision, one made before migrations keeps its rows and is stamped.",
    )
    db.add_argument("action", choices=("upgrade", "revision"), help="upgrade, or show the revision")
    db.add_argument(
        "--database-url", default=None, help="default: DATABASE_URL, else SQLite in the data dir"
    )
    db.set_defaults(run=run_db)

    reindex = subparsers.add_parser(
        "reindex",
        help="rebuild a lost database from the checkpoint volume",
        description="Write the sweeps, stages, trials and epochs that the checkpoints under "
        "CHECKPOINT_DIR (and each sweep's sweep.json) hold into an empty database.",
    )
    reindex.add_argument("checkpoint_dir", help="the volume's checkpoint folder")
    reindex.add_argument(
        "--database-url", default=None, help="the database to write into (default: DATABASE_URL)"
    )
    reindex.set_defaults(run=run_reindex)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def run_master(args: argparse.Namespace) -> int:
    import uvicorn

    from master.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stuck master is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")
    return 0


def run_up(args: argparse.Namespace) -> int:
    from master.up import run_up as up

    return up(args)


def run_db(args: argparse.Namespace) -> int:
    from master.db import Database
    from master.migrate import current_revision, head_revision, upgrade
    from master.settings import Settings

    db = Database(args.database_url or Settings().database)
    try:
        if args.action == "upgrade":
            print(f"database schema: {upgrade(db.engine)}")
        else:
            print(f"revision {current_revision(db.engine) or 'none'} (newest: {head_revision()})")
    finally:
        db.dispose()
    return 0


def run_reindex(args: argparse.Namespace) -> int:
    from master.reindex import run_reindex as reindex

    return reindex(args)


def run_submit(args: argparse.Namespace) -> int:
    from master.submit import run_submit as submit

    return submit(args)
