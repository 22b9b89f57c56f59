"""Cold start: what an invocation does not need is not imported (zoneinfo only for a named zone)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(("zone", "imported"), [("UTC", False), ("+09:00", False), ("Asia/Seoul", True)])
def test_zoneinfo_is_imported_only_for_a_named_zone(zone: str, imported: bool) -> None:
    code = (
        "import sys, handler.app\n"
        "from handler.settings import parse_settings\n"
        f"parse_settings({{'DATAFLOW_JOB_ID': 'J1', 'DATAFLOW_DRY_RUN': 'true', 'DATAFLOW_TIMEZONE': {zone!r}}})\n"
        "print('zoneinfo' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == str(imported)
