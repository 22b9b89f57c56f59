"""`backfill` of an object route: the objects modified in the range, run where no run covers them (a sweep)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from handler.cli.common import CommandError, emit, out, reach, say, settings
from handler.errors import RequestError
from handler.events import SweepTrigger
from handler.launcher import Launcher
from handler.routes import Route
from handler.settings import Settings
from handler.wiring import Wiring

DAY_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def object_backfill(args: argparse.Namespace, route: Route, config: Mapping[str, str], span: list[datetime]) -> int:
    """Lists the route's bucket for objects modified from the first time to the last, then sends them through
    the pipeline as a sweep does: what a run covers is skipped, the rest starts once (run it again to resume)."""
    if route.match.bucket is None:
        raise CommandError(f"route {route.name!r} matches any bucket: an object backfill lists one (set match.bucket)")
    start, end = span[0], span[-1]
    if DAY_ONLY.fullmatch(args.end.strip()):  # --to 2026-11-01 takes that day's objects, to its end
        end += timedelta(days=1)
    reached = reach(dict(config), start, settings(config).dedup_window)
    loaded = settings(reached)
    if args.dry_run:
        say(
            "note: a dry run reads no runs (it sends nothing): it lists every file of the range it would send on; "
            "those a run covers are skipped when it runs"
        )
    else:
        _confirm(args, route, loaded, SweepTrigger(route.name, start, end, datetime.now(UTC)))
    event = {"sweep": route.name, "since": start.isoformat(), "until": end.isoformat()}
    result = dict(Launcher(Wiring()).invoke(event, reached, platform=args.platform).result)
    _said(result, args.json)
    return 1 if result["failed"] else 0


def _confirm(args: argparse.Namespace, route: Route, loaded: Settings, trigger: SweepTrigger) -> None:
    """Above the confirmation bound, the number of objects in the range is asked about (or --yes given)."""
    from handler.cli.backfill import confirm  # the one rule for every backfill

    if args.yes:  # nothing to ask: the sweep lists the bucket itself, once
        return
    try:
        store = Wiring().objects(loaded, args.platform)
    except RequestError as exc:
        raise CommandError(f"cannot list the route's bucket: {exc}") from exc
    listed = store.swept(route, trigger, loaded.dedup_window, None)
    if listed.error is not None:
        raise CommandError(f"cannot list s3://{listed.bucket}/{listed.prefix}: {listed.error}")
    confirm(len(listed.objects), f"route {route.name} (objects in s3://{listed.bucket}/{listed.prefix})", yes=args.yes)


def _said(result: Mapping[str, Any], as_json: bool) -> None:
    """The sweep's account, then a line per object started, left unproven or failed (covered ones are counted)."""
    if as_json:
        emit(result)
        return
    for summary in result.get("sweeps", ()):
        kept = ("listed", "sent", "covered", "unproven", "runs", "started", "failed")
        out(
            f"{summary['route']}: s3://{summary['bucket']}/{summary['prefix']} from {summary['since']} to "
            f"{summary['until']}: " + ", ".join(f"{summary[name]} {name}" for name in kept if name in summary)
        )
        if "clamped" in summary:
            say(f"warning: {summary['clamped']}")
    for entry in result["submitted"]:
        outcome = "dry-run" if result["dryRun"] else "submitted"
        more = entry.get("objects", 1) - 1
        key = entry["source"].get("key", "") + (f" (+{more} more)" if more > 0 else "")
        out(f"  {outcome:10} {entry['jobExecutionId'] or '-':14} {key}")
    for entry in result["skipped"]:
        if entry["reason"] != "duplicate":
            out(f"  {entry['reason']:10} {'-':14} {entry['source'].get('key', '')}")
    for entry in result["failed"]:
        out(f"  {'failed':10} {'-':14} {entry['source'].get('key', '')} {entry['error']}")
