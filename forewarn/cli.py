"""The `forewarn` command line.

Each command group lives next to what it drives and registers itself here:
a module exposes ``register(subparsers)`` that adds its sub-command(s) and
sets ``func`` (a callable taking the parsed args, returning an exit code).

These modules are the application layer, above the stages and connectors
(nothing below imports them; ``tests/test_layers.py`` checks it).
"""

from __future__ import annotations

import argparse
import sys

from forewarn import commands, status_service
from forewarn.connectors import broker_cli, kafka_cli
from forewarn.runner import tune_gc
from forewarn.simulator import cli as simulator_cli

# Modules that contribute sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (commands, simulator_cli, broker_cli, kafka_cli, status_service)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forewarn",
        description="Proactive customer care from network events.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    tune_gc()  # every command runs a flow or builds a large heap
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
