"""What the commands share: one-line errors, reading files and settings from where the command runs."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from handler.errors import ConfigError, HandlerError
from handler.hints import json_problem
from handler.settings import Settings, config_from, parse_settings
from handler.templates import UNITS

CHECKOUT = Path(__file__).resolve().parent.parent.parent
# DATAFLOW_DEDUP_WINDOW_HOURS' largest value: how far back a command's duplicate check can read.
MAX_REACH_HOURS = 24 * 14
_SPAN = re.compile(r"(?P<amount>\d{1,6})(?P<unit>[dhm])")
_WRITING = threading.Lock()


class CommandError(HandlerError):
    """A command cannot go on (a missing or malformed file, a bad option): one line, exit status 2."""


# The command line's only writers: what a command answers goes to stdout, what it says on the way to stderr.
def out(text: str, *, flush: bool = False) -> None:
    # One write of the whole line under one lock: print() writes the text and its newline apart, so lines
    # written from several threads at once (the emulator's request records) would interleave.
    with _WRITING:
        sys.stdout.write(text + "\n")
        if flush:
            sys.stdout.flush()


def emit(data: Any) -> None:
    out(json.dumps(data, indent=2, ensure_ascii=False))


def say(line: object, *, end: str = "\n") -> None:
    print(line, file=sys.stderr, end=end, flush=True)


def read_json(path: str, what: str = "event file") -> object:
    """A JSON file; a missing or malformed one is a CommandError saying what and where, never a traceback."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CommandError(f"the {what} {path} is not UTF-8 text") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"the {what} {path} is not JSON: {json_problem(text, exc)}") from exc


def configuration(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment's settings, a relative `@routes` file read from where the command runs."""
    config = config_from(os.environ if environ is None else environ)
    routes = config.get("DATAFLOW_ROUTES", "").strip()
    if routes.startswith("@") and not Path(routes[1:]).is_absolute() and Path(routes[1:]).is_file():
        config["DATAFLOW_ROUTES"] = "@" + str(Path(routes[1:]).resolve())
    return config


def with_parameters(args: argparse.Namespace) -> dict[str, str]:
    """The environment's settings with those of `--parameters FILE` over them: a Cloud Functions action's default
    parameters (or any payload), as the platform merges them into every activation."""
    return {**configuration(), **parameters_file(args)}


def parameters_file(args: argparse.Namespace) -> dict[str, str]:
    """The settings `--parameters FILE` holds (none without it)."""
    if getattr(args, "parameters", None) is None:
        return {}
    given = read_json(args.parameters, "parameters file")
    if not isinstance(given, dict):
        raise CommandError(f"the parameters file {args.parameters} is not a JSON object")
    return config_from(given)


def add_parameters_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--parameters",
        metavar="FILE",
        help="a JSON object of settings over the environment's: an NCP action's default parameters, or a payload",
    )


def settings(config: Mapping[str, str] | None = None) -> Settings:
    """Validated settings; invalid ones are a CommandError listing every problem."""
    try:
        return parse_settings(configuration() if config is None else config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc


def as_json(args: argparse.Namespace) -> bool:
    """JSON for machines: asked for with --json, or wherever stdout is not a terminal (a pipe, a file)."""
    return bool(args.json) or not sys.stdout.isatty()


def iso_time(text: str) -> datetime:
    """An ISO 8601 time option; one without an offset is UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time (2026-12-05T17:00:00Z): {text!r}") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def span(text: str, option: str, examples: str) -> timedelta:
    """'2h', '30m', '1d' as a duration; anything else is a CommandError naming the option."""
    found = _SPAN.fullmatch(text.strip())
    if found is None:
        raise CommandError(f"{option} takes a number and d, h or m ({examples}), got {text!r}")
    return timedelta(**{UNITS[found["unit"]]: int(found["amount"])})


def reach(config: Mapping[str, str], oldest: datetime, window: timedelta) -> dict[str, str]:
    """The configuration with a dedup window that reaches back to `oldest` (at least the configured one), so
    that a command's lookups read as far as its question goes; past MAX_REACH_HOURS it says what it cannot."""
    hours = max(
        math.ceil((datetime.now(UTC) - oldest) / timedelta(hours=1)) + 1, math.ceil(window / timedelta(hours=1))
    )
    if hours > MAX_REACH_HOURS:
        say(f"warning: runs older than {MAX_REACH_HOURS // 24} days are not read: what was started before is not seen")
    return {**config, "DATAFLOW_DEDUP_WINDOW_HOURS": str(min(hours, MAX_REACH_HOURS))}
