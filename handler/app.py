"""AWS Lambda adapter: lambda_handler, with Powertools structured logging."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler.service import Launcher
from handler.settings import config_from

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "dataflow-launcher")
# The core logs through logging.getLogger("handler.*"); give those loggers Powertools' JSON format.
copy_config_to_registered_loggers(source_logger=logger, include={"handler"})
launcher = Launcher()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return launcher.invoke(
        event,
        config_from(os.environ),
        platform="aws",
        remaining_ms=context.get_remaining_time_in_millis(),
        invocation_id=context.aws_request_id,
    )
