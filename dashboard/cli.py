"""`hpsearch dashboard`."""

from __future__ import annotations

import argparse
import logging

DEFAULT_PORT = 8080


def register(subparsers: argparse._SubParsersAction) -> None:
    dashboard = subparsers.add_parser(
        "dashboard",
        help="run the web dashboard: leaderboard, sweeps, trials, workers",
        description="Serve the read-only dashboard over the master's database (DATABASE_URL) "
        "and checkpoints (CHECKPOINT_DIR); the workers page also reads REDIS_URL.",
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dashboard.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    dashboard.set_defaults(run=run_dashboard)


def run_dashboard(args: argparse.Namespace) -> int:
    import uvicorn

    from dashboard.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"hpsearch dashboard on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
    return 0
