"""The deployed package imports only what the platforms allow: no boto3, no emulator, no dev tools."""

from __future__ import annotations

from tests.conftest import fresh_python

FORBIDDEN = ("boto3", "emulator", "pytest", "hypothesis", "samtranslator")


def test_adapters_import_nothing_forbidden() -> None:
    # Powertools probes for the bare botocore package (to tag SDK user agents) when one is installed,
    # as the dev tools install it here and the Lambda runtime ships it; any deeper import is ours.
    code = (
        "import sys, handler.app, handler.ncp, handler.__main__\n"
        f"bad = [name for name in sys.modules if name.split('.')[0] in {FORBIDDEN!r} or name.startswith('botocore.')]\n"
        "print(','.join(bad))"
    )
    assert fresh_python(code) == ""
