"""NAVER Cloud Functions adapter: main(args) -> dict."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from handler.service import Launcher
from handler.settings import CONFIG_NAMES, config_from

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "dataflow-launcher")
copy_config_to_registered_loggers(source_logger=logger, include={"handler"})
launcher = Launcher()


def _remaining_ms(environ: dict[str, str] | os._Environ[str]) -> float | None:
    # OpenWhisk exports the activation deadline as epoch milliseconds; it may be absent.
    deadline = environ.get("__OW_DEADLINE", "")
    if not deadline.isdigit():
        return None
    return int(deadline) - launcher.clocks.wall() * 1000


def main(args: dict[str, Any]) -> dict[str, Any]:
    """Parameters named like settings override the environment and are not part of the event."""
    config = {**config_from(os.environ), **config_from(args)}
    event = {name: value for name, value in args.items() if name not in CONFIG_NAMES}
    activation = os.environ.get("__OW_ACTIVATION_ID", "")
    logger.append_keys(activation_id=activation or None, action_name=os.environ.get("__OW_ACTION_NAME") or None)
    return launcher.invoke(
        event, config, platform="ncp", remaining_ms=_remaining_ms(os.environ), activation_id=activation
    )
