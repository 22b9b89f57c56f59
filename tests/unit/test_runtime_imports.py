"""The deployed package imports only what the platforms allow: no boto3, no emulator, no dev tools."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

FORBIDDEN = ("boto3", "botocore", "emulator", "pytest", "hypothesis")


def test_adapters_import_nothing_forbidden() -> None:
    code = (
        "import sys, handler.app, handler.ncp, handler.__main__\n"
        f"bad = [name for name in {FORBIDDEN!r} if name in sys.modules]\n"
        "print(','.join(bad))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""
