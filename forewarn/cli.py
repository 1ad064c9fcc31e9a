"""The `forewarn` command line.

Each command group lives next to what it drives and registers itself here:
a module exposes ``register(subparsers)`` that adds its sub-command(s) and
sets ``func`` (a callable taking the parsed args, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from forewarn.runner import tune_gc

# Modules that contribute sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "forewarn.commands",
    "simulator.cli",
    "connectors.broker_cli",
    "connectors.kafka_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forewarn",
        description="Proactive customer care from network events.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet in this checkout
                continue
            raise
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
