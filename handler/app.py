"""AWS Lambda adapter: lambda_handler, with Powertools structured logging and EMF metrics."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from handler.errors import ConfigError
from handler.launcher import Launcher
from handler.outcomes import Outcome
from handler.results import counts
from handler.secrets import KEY_NAMES, SECRET_SETTING, SecretReader
from handler.settings import config_from

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from handler.results import Result

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


METRIC_NAMES = {
    "submitted": "Submitted",
    "skipped": "Skipped",
    "failed": "Failed",
    "unverifiable": "DedupUnverifiable",
}


# Counters of what should not happen, emitted only when it does (as ConfigErrors): each metric costs
# about 5 us of every warm call; an alarm on one wants TreatMissingData notBreaching (docs/results.md).
SPARSE_METRICS = frozenset({"unverifiable"})


def record_metrics(outcomes: Sequence[Outcome]) -> None:
    # Every outcome counts, including those the result's capped lists leave out.
    for name, count in counts(outcomes).items():
        if count or name not in SPARSE_METRICS:
            metrics.add_metric(name=METRIC_NAMES[name], unit=MetricUnit.Count, value=count)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Result:
    """Raises InvocationFailedError (carrying the result) when a failure lies outside batchItemFailures."""
    try:
        try:
            config = configuration()
        except ConfigError as exc:  # the secret's problems; the launcher logs those of the settings
            logger.error("invalid configuration", extra={"problems": [str(problem) for problem in exc.problems]})
            raise
        report = launcher.invoke(event, config, platform="aws", remaining_ms=context.get_remaining_time_in_millis())
    except ConfigError:
        metrics.add_metric(name="ConfigErrors", unit=MetricUnit.Count, value=1)
        raise
    record_metrics(report.outcomes)
    return report.returned()
