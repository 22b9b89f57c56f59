"""The one reader of a job's runs: every question about Data Flow's executions is asked of `Runs`."""

from __future__ import annotations
