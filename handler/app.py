"""AWS Lambda adapter: lambda_handler, with Powertools structured logging and EMF metrics."""

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from handler.errors import ConfigError, InvocationFailedError
from handler.secrets import KEY_NAMES, SECRET_SETTING, SecretReader
from handler.service import Launcher, Result
from handler.settings import config_from

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "dataflow-launcher"
# Our messages are plain words: str skips the JSON decode Powertools tries on each (a quarter of a record's cost).
logger = Logger(service=SERVICE, json_deserializer=str)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "DataflowLauncher", service=SERVICE)
# The core logs through logging.getLogger("handler.*"); give those loggers Powertools' JSON format.
copy_config_to_registered_loggers(source_logger=logger, include={"handler"})
launcher = Launcher()
secrets = SecretReader(os.environ)


def configuration() -> dict[str, str]:
    """The environment's settings, the NCP keys read from Secrets Manager when a secret is named."""
    config = config_from(os.environ)
    secret_id = config.get(SECRET_SETTING, "").strip()
    if secret_id and not any(config.get(name, "").strip() for name in KEY_NAMES):
        access, secret = secrets.keys(secret_id)
        del config[SECRET_SETTING]
        config |= {"NCLOUD_ACCESS_KEY": access, "NCLOUD_SECRET_KEY": secret}
    return config  # with both a secret and keys set, the settings check reports the conflict


def record_metrics(result: Mapping[str, Any]) -> None:
    for name, entries in (("Submitted", "submitted"), ("Skipped", "skipped"), ("Failed", "failed")):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=len(result.get(entries, [])))


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: "LambdaContext") -> Result:
    try:
        try:
            config = configuration()
        except ConfigError as exc:
            logger.error("invalid configuration", extra={"problems": [str(problem) for problem in exc.problems]})
            raise
        result = launcher.invoke(event, config, platform="aws", remaining_ms=context.get_remaining_time_in_millis())
    except InvocationFailedError as exc:
        record_metrics(exc.result)
        raise
    except ConfigError:
        metrics.add_metric(name="ConfigErrors", unit=MetricUnit.Count, value=1)
        raise
    record_metrics(result)
    return result
