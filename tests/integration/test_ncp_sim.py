"""The NAVER Cloud simulation, short: one activation per upload, 5% failing for good, sweeps that catch up."""

from __future__ import annotations

import pytest

from bench.ncp_sim import CONCURRENCY, SCENARIOS, SHORT, Scenario, report, simulate
from emulator.s3_server import S3Server
from tests.conftest import SUMMARY


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
def test_every_file_runs_once_after_the_next_sweep(scenario: Scenario, s3_server: S3Server) -> None:
    figures = simulate(scenario, SHORT, s3_server)
    lines = report(figures)
    SUMMARY.extend(lines)
    assert all(line.endswith(": met") for line in lines[1:]), lines
    assert (figures.lost, figures.duplicates) == (0, 0)
    assert figures.failed >= 1  # failures happened, and the sweeps made up for them
    if scenario.trigger:
        # Every upload had its activation (one a file, none retried); never more than the limit at once.
        assert figures.activations == SHORT.files + figures.sweeps
        assert figures.dropped >= 1 and 1 < figures.peak <= CONCURRENCY
        assert figures.runs == SHORT.files
        # The sweeps started what never ran (dropped, or refused by Data Flow), not the files whose run was
        # created behind a lost answer.
        assert figures.dropped <= figures.swept < figures.dropped + figures.failed
    else:
        assert figures.activations == figures.sweeps
        assert figures.runs <= SHORT.files / 100 + figures.sweeps
        # A group's run created behind a lost answer counts as failed, then is found covered: never started twice.
        assert figures.swept < SHORT.files
