"""The first commands: invoke an event file, validate the configuration, sign a request, run the emulator."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from handler.cli.common import (
    CHECKOUT,
    CommandError,
    add_parameters_option,
    as_json,
    configuration,
    emit,
    out,
    parameters_file,
    read_json,
    say,
    with_parameters,
)
from handler.dataflow.signing import Credentials, masked, signed_headers, string_to_sign
from handler.errors import ConfigError, InvocationFailedError
from handler.exactly_once import delivery_guarantee
from handler.routes import route_warnings
from handler.settings import parse_settings


def invoke(args: argparse.Namespace) -> int:
    event = read_json(args.event)
    if args.runtime == "lambda":
        return _under_the_lambda_runtime(event, args.dry_run)
    from handler import app, ncp

    run: Callable[[], Mapping[str, Any]]
    if args.platform == "ncp" and isinstance(event, dict):
        # As the Cloud Functions runtime does: settings in the event file are parameters that
        # override the environment, and are removed from the event.
        # The action's default parameters (--parameters) under the payload's own, as Cloud Functions merges them.
        arguments = {**parameters_file(args), **event, **({"DATAFLOW_DRY_RUN": "true"} if args.dry_run else {})}
        os.environ.setdefault("__OW_ACTIVATION_ID", f"cli-{int(time.time())}")
        # A relative @routes file is read from where the command runs, as every other command reads it.
        os.environ.update({name: value for name, value in configuration().items() if name == "DATAFLOW_ROUTES"})
        logger = ncp.logger
        run = lambda: ncp.main(arguments)  # noqa: E731 - one call, chosen here
    else:
        config = with_parameters(args) | ({"DATAFLOW_DRY_RUN": "true"} if args.dry_run else {})
        logger = app.logger
        # The adapters' policy, so the command line fails where the platform would keep the event.
        run = lambda: app.launcher.invoke(event, config, platform=args.platform).returned()  # noqa: E731
    # The adapter's structured logging, sent to stderr so stdout carries only the result.
    for log_handler in logger.handlers:
        if isinstance(log_handler, logging.StreamHandler):
            log_handler.setStream(sys.stderr)
    try:
        emit(run())
    except ConfigError as exc:
        say(exc)
        return 2
    except InvocationFailedError as exc:
        emit(exc.result)
        say(f"error: {exc}")
        return 1
    return 0


def _under_the_lambda_runtime(event: object, dry_run: bool) -> int:
    """As `sam local invoke` does, without Docker: the template's handler under the real Runtime Interface Client."""
    if not (CHECKOUT / "emulator" / "runtime_api.py").exists():
        raise CommandError("--runtime lambda runs from a checkout (emulator/runtime_api.py)")
    import importlib.util

    if importlib.util.find_spec("awslambdaric") is None:  # a dev dependency: the checkout's venv has it
        raise CommandError("--runtime lambda needs awslambdaric (the checkout's venv has it: make .venv/.stamp)")
    sys.path.insert(0, str(CHECKOUT))
    from emulator.runtime_api import LambdaRuntime

    config = configuration() | ({"DATAFLOW_DRY_RUN": "true"} if dry_run else {})
    with LambdaRuntime(dict(config)) as runtime:
        answer = runtime.invoke(event)
    say(runtime.output, end="")
    emit(answer.body)
    return 0 if answer.kind == "response" else 1


def validate(args: argparse.Namespace) -> int:
    try:
        settings = parse_settings(with_parameters(args))
    except ConfigError as exc:
        say(exc)
        return 2
    routes = [
        {
            "name": route.name,
            "source": route.match.source or "object/schedule",
            "jobId": route.job.job_id,
            "warnings": route_warnings(route, settings.zone),
            "guarantee": delivery_guarantee(route, settings.dedup_check, settings.dedup_unverifiable),
        }
        for route in settings.routes
    ]
    summary = {"valid": True, "endpoint": settings.endpoint, "dryRun": settings.dry_run}
    checks = {"dedupCheck": settings.dedup_check, "dedupUnverifiable": settings.dedup_unverifiable}
    if as_json(args):
        emit(summary | checks | {"routes": routes})
    else:
        out(_validated(summary | checks, routes))
    return 0


def _validated(summary: Mapping[str, Any], routes: list[dict[str, Any]]) -> str:
    """What a person reads: the settings in a line, then each route with its warnings and guarantees."""
    lines = [
        f"valid: {len(routes)} route(s) for {summary['endpoint']}; dedup check {summary['dedupCheck']}"
        f" (unverifiable: {summary['dedupUnverifiable']}){'; DRY RUN' if summary['dryRun'] else ''}"
    ]
    for route in routes:
        lines.append(f"{route['name']}: {route['source']} -> job {route['jobId']}")
        lines += [f"  warning: {warning}" for warning in route["warnings"]]
        lines += [f"  {reading}: {said}" for reading, said in route["guarantee"].items()]
    return "\n".join(lines)


def sign(args: argparse.Namespace) -> int:
    access = os.environ.get("NCLOUD_ACCESS_KEY", "")
    secret = os.environ.get("NCLOUD_SECRET_KEY", "")
    if not access or not secret:
        say("set NCLOUD_ACCESS_KEY and NCLOUD_SECRET_KEY to sign")
        return 2
    if args.timestamp is not None and not (args.timestamp.isascii() and args.timestamp.isdigit()):
        say(f"--timestamp must be epoch milliseconds (digits only), got {args.timestamp!r}")
        return 2
    if not args.path.startswith("/") or "://" in args.path:
        say(
            f"give the path and query exactly as sent, starting with '/' (e.g. /api/v1/jobs/ID/executions), "
            f"not {args.path!r}: the scheme and host are not signed"
        )
        return 2
    timestamp = args.timestamp or str(int(time.time() * 1000))
    headers = signed_headers(Credentials(access, secret), args.method, args.path, timestamp)
    emit(
        {
            "stringToSign": string_to_sign(args.method, args.path, timestamp, access),
            "headers": headers if args.show_signature else masked(headers),
        }
    )
    return 0


def emulate(args: argparse.Namespace) -> int:
    if not (CHECKOUT / "emulator" / "server.py").exists():
        say("the emulator ships with the source checkout, not with the deployed package")
        return 2
    sys.path.insert(0, str(CHECKOUT))
    from emulator.rehearsal import Rehearsal

    # Each rehearsal flag's destination is the field's name (--max-concurrent-runs: max_concurrent_runs).
    rehearsal = Rehearsal(**{option.name: getattr(args, option.name) for option in fields(Rehearsal)})
    try:
        api = rehearsal.emulator({args.access_key: args.secret_key}, host=args.host, port=args.port, on_request=show)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        say(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; choose another --port")
        return 2
    out(
        f"Data Flow emulator on {api.url}; it accepts access key {args.access_key} with secret key "
        f"{args.secret_key} (export them as NCLOUD_ACCESS_KEY / NCLOUD_SECRET_KEY, and DATAFLOW_ENDPOINT={api.url}). "
        "Ctrl-C stops it.",
        flush=True,
    )
    try:
        api.start()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
    return 0


def show(request: Any) -> None:
    """Prints one request the emulator answered (an emulator.server.Received) as one JSON line."""
    line = {"method": request.method, "path": request.path, "status": request.status, "verdict": request.verdict}
    if request.expected_string_to_sign is not None:
        line["expectedStringToSign"] = request.expected_string_to_sign
    out(json.dumps(line | {"body": request.json}), flush=True)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("invoke", help="run the handler on an event file with the environment's configuration")
    run.add_argument("event", help="a JSON event file, e.g. events/s3-put.json")
    run.add_argument("--dry-run", action="store_true", help="build, sign and log requests; send nothing")
    run.add_argument("--platform", choices=("aws", "ncp"), default="aws", help="which platform's event rules apply")
    run.add_argument(
        "--runtime",
        choices=("lambda",),
        help="run under the AWS Lambda Runtime Interface Client against a local Runtime API (sam local invoke, "
        "without Docker); the handler string is template.yaml's",
    )
    add_parameters_option(run)
    run.set_defaults(func=invoke)

    check = commands.add_parser("validate", help="validate the environment's configuration and list the routes")
    check.add_argument("--json", action="store_true", help="JSON (the default where stdout is not a terminal)")
    add_parameters_option(check)
    check.set_defaults(func=validate)

    signer = commands.add_parser("sign", help="sign a request with NCLOUD_ACCESS_KEY/NCLOUD_SECRET_KEY")
    signer.add_argument("method")
    signer.add_argument("path", help="path and query exactly as sent, e.g. /api/v1/jobs/ID/executions")
    signer.add_argument("--timestamp", help="epoch milliseconds (default: now)")
    signer.add_argument("--show-signature", action="store_true", help="print the signature instead of masking it")
    signer.set_defaults(func=sign)

    emulator = commands.add_parser(
        "emulate",
        help="run the local Data Flow emulator (from a checkout)",
        description="Runs the local Data Flow emulator. It accepts the access key DEMOACCESSKEY with the secret key "
        "demo-secret-key unless --access-key and --secret-key say otherwise, and prints every request it "
        "receives with its outcome (for a signature mismatch, the string it expected to be signed).",
    )
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8930)
    emulator.add_argument("--access-key", default="DEMOACCESSKEY")
    emulator.add_argument("--secret-key", default="demo-secret-key")
    _rehearsal_options(emulator)
    emulator.set_defaults(func=emulate)


def _rehearsal_options(emulator: argparse.ArgumentParser) -> None:
    runs = emulator.add_argument_group("runs that end, faults, limits and history (docs/command-line.md#emulate)")
    runs.add_argument(
        "--finish",
        action="append",
        default=[],
        metavar="STATUS[,after=30s][,when=NAME=VALUE][,every=N]",
        help="created runs end COMPLETED, FAILED or CANCELED after a delay, for the runs picked (repeatable: the "
        "first that picks a run decides; a run none picks stays READY)",
    )
    runs.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[,times=N][,on=POST|GET][,hold=15s]",
        help="the next requests meet a fault: throttle, lost (done, answer lost), drop, cut, timeout (answers after "
        "hold) or an HTTP status 400-599 (repeatable, taken in order)",
    )
    runs.add_argument("--rate-limit", type=float, metavar="RPS", help="the gateway's requests per second (429 beyond)")
    runs.add_argument(
        "--max-concurrent-runs", action="append", default=[], metavar="JOB=N", help="the job's maxConcurrentRuns"
    )
    runs.add_argument(
        "--at-limit", choices=("refuse", "queue"), default="refuse", help="a create at the job's limit: 400 or READY"
    )
    runs.add_argument("--history", metavar="FILE", help="start with these runs: a JSON array as the API lists them")
    runs.add_argument(
        "--seed", action="append", default=[], metavar="JOB,runs=N[,over=24h][,status=S]", help="N runs over a span"
    )
    reading = emulator.add_argument_group("the service's reading where its docs leave it open")
    reading.add_argument("--echo", choices=("object", "list", "none"), default="object", help="parsedParameters shape")
    reading.add_argument("--echo-only", metavar="NAME,NAME", help="echo only these parameters (the declared ones)")
    reading.add_argument("--order", choices=("newest", "oldest"), default="newest", help="which run a listing starts")
    reading.add_argument("--limit-cap", type=int, metavar="N", help="serve at most N runs a page, whatever is asked")
    reading.add_argument(
        "--count", choices=("total", "page", "missing", "string"), default="total", help="what a listing's count is"
    )
