"""NAVER Cloud Functions adapter: main(args) -> dict."""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from handler.launcher import Launcher
from handler.settings import SETTING_NAMES, config_from

if TYPE_CHECKING:
    from handler.results import Result

CALLER_HEADER = "x-ncp-dataflow-payload"
# Messages are plain words: str skips the JSON decode Powertools tries on each.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "dataflow-launcher", json_deserializer=str)
copy_config_to_registered_loggers(source_logger=logger, include={"handler"})
launcher = Launcher()


def _remaining_ms(environ: dict[str, str] | os._Environ[str]) -> float | None:
    # OpenWhisk exports the activation deadline as epoch milliseconds; it may be absent.
    deadline = environ.get("__OW_DEADLINE", "")
    if not deadline.isdigit():
        return None
    return int(deadline) - launcher.clocks.wall() * 1000


def caller_headers(action_name: str, activation_id: str) -> dict[str, str]:
    """The header NAVER's own Cloud Functions sample sends, so Data Flow shows which action ran the job."""
    payload = {"cloudFunctions": {"actionName": action_name, "activationId": activation_id}}
    return {CALLER_HEADER: base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")}


def main(args: dict[str, Any]) -> Result:
    """Parameters named like settings override the environment and are not part of the event.

    Raises InvocationFailedError (carrying the result) when anything failed.
    """
    config = {**config_from(os.environ), **config_from(args)}
    event = {name: value for name, value in args.items() if name not in SETTING_NAMES}
    activation = os.environ.get("__OW_ACTIVATION_ID", "")
    action = os.environ.get("__OW_ACTION_NAME", "")
    logger.append_keys(activation_id=activation or None, action_name=action or None)
    report = launcher.invoke(
        event,
        config,
        platform="ncp",
        remaining_ms=_remaining_ms(os.environ),
        activation_id=activation,
        caller_headers=caller_headers(action, activation),
    )
    return report.returned()
