"""The command line: one parser, a module per group of commands."""

from __future__ import annotations

import argparse

from handler import __version__
from handler.cli import backfill, basics, doctor, explain, runs
from handler.cli.common import CommandError, say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handler",
        description="Invoke, explain, backfill and check the Data Flow launcher from a checkout or a shell.",
    )
    parser.add_argument("--version", action="version", version=f"dataflow-launcher {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    basics.add_commands(commands)
    explain.add_commands(commands)
    backfill.add_commands(commands)
    runs.add_commands(commands)
    doctor.add_commands(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as exc:
        say(f"error: {exc}")
        return 2
