"""The burst simulation, short: uploads in SQS batches through container processes into a rate-limited gateway."""

from __future__ import annotations

import pytest

from bench.burst import SHORT, Variant, report, simulate
from tests.conftest import SUMMARY


@pytest.mark.parametrize(
    "variant",
    [
        Variant("no coalescing", None, 400.0, client_limit=False),
        Variant("coalescing at 100, DATAFLOW_RATE_LIMIT", 100, 40.0, client_limit=True),
    ],
    ids=lambda variant: variant.name,
)
def test_a_burst_loses_nothing_and_starts_nothing_twice(variant: Variant) -> None:
    figures = simulate(variant, SHORT)
    lines = report(figures, judged=False)
    # A passing `make test` prints these: the one target a short run judges, and no "not judged" lines.
    assert lines[1:] == ["  target files lost 0, duplicate runs 0: met"]
    SUMMARY.extend(lines)
    assert (figures.lost, figures.duplicates, figures.dead_letters) == (0, 0, 0)
    assert figures.covered == SHORT.files
    if variant.coalesce is not None:
        assert figures.runs <= SHORT.files / variant.coalesce + figures.invocations
        assert figures.throttled == 0
