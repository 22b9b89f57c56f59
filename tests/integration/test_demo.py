"""`make demo` works whatever the user's shell exports, and says briefly what it showed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

HOSTILE = {
    "DATAFLOW_JOB_ID": "not a job",
    "DATAFLOW_ROUTES": "[broken",
    "DATAFLOW_DRY_RUN": "true",
    "NCLOUD_ACCESS_KEY": "SOMEONE-ELSES",
    "POWERTOOLS_LOG_LEVEL": "DEBUG",
    "POWERTOOLS_SERVICE_NAME": "other",
}


def demo(**extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **HOSTILE, **extra}
    return subprocess.run(
        [sys.executable, "-m", "emulator.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_demo_ignores_exported_settings_and_prints_a_short_table() -> None:
    done = demo(VERBOSE="")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) < 80
    assert any(
        line.startswith("Ignored from your shell for this run: DATAFLOW_DRY_RUN, DATAFLOW_JOB_ID") for line in lines
    )
    assert any(line.startswith("sqs-s3.json (broken on purpose)") for line in lines)
    assert lines[-2].startswith("demo OK: 16 samples")
    assert '"message"' not in done.stdout  # no structured records by default


def test_verbose_shows_every_structured_record() -> None:
    done = demo(VERBOSE="1")
    assert done.returncode == 0, done.stderr
    assert '"message":"submitted"' in done.stdout
    assert "=== s3-put.json" in done.stdout


def test_the_first_run_says_it_is_building_the_environment(tmp_path: Path) -> None:
    dry = subprocess.run(
        [shutil.which("make") or "make", "-n", "demo", f"VENV={tmp_path}/venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Setting up" in dry.stdout and "first run" in dry.stdout
