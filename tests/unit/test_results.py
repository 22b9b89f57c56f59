"""Typed outcomes into the contract's JSON: entries, one namespace of codes, capped lists, every failed message."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from handler.errors import InvocationFailedError
from handler.outcomes import Failed, Skipped, Submitted
from handler.results import counts, report

if TYPE_CHECKING:
    from handler.events import EventSource

SOURCE: EventSource = {"kind": "object", "bucket": "b", "key": "k", "eventName": "ObjectCreated:Put"}


def failed(code: str, status: int | None = None, messages: tuple[str, ...] = ()) -> Failed:
    return Failed("r", "J1", code, "why", retryable=True, source=SOURCE, messages=messages, status=status)


def test_codes_are_one_namespace_for_the_handler_the_service_and_the_gateway() -> None:
    assert failed("unknown-outcome").machine_code == "unknown-outcome"
    assert failed("bad-parameter", 400).machine_code == "bad-parameter"
    assert failed("200", 401).machine_code == "gateway-200"  # gateway code 200 is never read as HTTP 200
    assert failed("502", 502).machine_code == "http-502"
    assert report([failed("200", 401)], from_sqs=False, dry_run=False).result["failed"][0]["code"] == "gateway-200"


def test_a_failure_outside_batch_item_failures_keeps_the_event() -> None:
    assert report([failed("x")], from_sqs=False, dry_run=False).keep
    sqs = report([failed("x", messages=("m1",))], from_sqs=True, dry_run=False)
    assert (sqs.keep, sqs.result["batchItemFailures"]) == (False, [{"itemIdentifier": "m1"}])
    assert report([failed("x", messages=())], from_sqs=True, dry_run=False).keep  # no message id to report


def test_the_adapters_raise_with_the_result_exactly_when_the_event_must_be_kept() -> None:
    # The one keep-or-raise policy that app.py, ncp.py and the command line call.
    reported = report([failed("x", messages=("m1",))], from_sqs=True, dry_run=False)
    assert reported.returned() is reported.result
    kept = report([failed("x")], from_sqs=False, dry_run=False)
    with pytest.raises(InvocationFailedError, match=r"^1 failed: x: why$") as raised:
        kept.returned()
    assert raised.value.result == kept.result


def test_lists_are_capped_but_every_outcome_is_counted() -> None:
    outcomes = [failed("x", messages=(f"m{index}",)) for index in range(130)]
    result = report(outcomes, from_sqs=True, dry_run=False).result
    assert (len(result["failed"]), result["omitted"], len(result["batchItemFailures"])) == (100, {"failed": 30}, 130)
    assert counts(outcomes)["failed"] == 130


def test_a_coalesced_run_names_up_to_twenty_files_and_counts_the_rest() -> None:
    few = Submitted("r", "J1", "E1", "READY", dedup_key="k", source=SOURCE, objects=("a", "b"), closed="end of batch")
    many = Submitted("r", "J1", "E2", "READY", dedup_key="k", source=SOURCE, objects=tuple("x" * 30), closed="size")
    first, second = report([few, many], from_sqs=False, dry_run=False).result["submitted"]
    assert (first["objects"], first["closed"], first["keys"]) == (2, "end of batch", ["a", "b"])
    assert (second["objects"], "keys" in second) == (30, False)


def test_a_duplicate_skip_carries_the_run_that_covers_it() -> None:
    skip = Skipped("r", "duplicate", SOURCE, (), dedup_key="key1", execution_id="E7")
    [entry] = report([skip], from_sqs=False, dry_run=False).result["skipped"]
    assert (entry["dedupKey"], entry["jobExecutionId"]) == ("key1", "E7")
