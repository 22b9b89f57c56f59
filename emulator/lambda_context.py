"""A stand-in for the Lambda context object, for the demo and the tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LambdaContextStub:
    """The attributes of a Lambda context that the handler and Powertools read."""

    function_name: str = "dataflow-launcher"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:ap-northeast-2:123456789012:function:dataflow-launcher"
    aws_request_id: str = "0c7f9c3e-test"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
