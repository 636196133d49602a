"""The `hpsearch` command: one entry point whose subcommands belong to the packages.

Each package that has commands exposes `register(subparsers)` in the module named below; a
subcommand sets `run`, a function from the parsed arguments to an exit code. The modules are
named by import path so that the master's own code never imports the worker's (DESIGN.md).
Errors a user can cause are printed as one line naming the problem, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from core import cli as core_cli

EXIT_USAGE = 2
COMMAND_MODULES = (
    "core.cli",
    "master.commands",
    "master.evaluation_cli",
    "worker.cli",
    "worker.check_cli",
    "dashboard.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpsearch",
        description="Coarse-to-fine random hyperparameter search for neural networks.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except core_cli.USER_ERRORS as exc:
        print(f"hpsearch {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"hpsearch {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
