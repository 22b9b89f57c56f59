"""Cold start: what an invocation does not need is not imported (zoneinfo only for a named zone)."""

from __future__ import annotations

import pytest

from tests.conftest import fresh_python


@pytest.mark.parametrize(("zone", "imported"), [("UTC", False), ("+09:00", False), ("Asia/Seoul", True)])
def test_zoneinfo_is_imported_only_for_a_named_zone(zone: str, imported: bool) -> None:
    code = (
        "import sys, handler.app\n"
        "from handler.settings import parse_settings\n"
        f"parse_settings({{'DATAFLOW_JOB_ID': 'J1', 'DATAFLOW_DRY_RUN': 'true', 'DATAFLOW_TIMEZONE': {zone!r}}})\n"
        "print('zoneinfo' in sys.modules)"
    )
    assert fresh_python(code) == str(imported)


def test_a_cold_start_imports_no_thread_pool_dataclasses_or_typing_helpers() -> None:
    # Each is a millisecond or more of a cold start that serves one submission and needs none of them.
    unneeded = ("concurrent.futures", "dataclasses", "aws_lambda_powertools.utilities.typing")
    code = f"import sys, handler.app, handler.ncp\nprint(','.join(n for n in {unneeded!r} if n in sys.modules))"
    assert fresh_python(code) == ""


def test_types_for_the_checker_only_are_not_built_at_import() -> None:
    # A TypedDict class costs 0.05-0.25 ms at import and a Protocol 0.1 ms; at run time entries are
    # plain dicts and the exactly-once loop takes any submitter, so both live under TYPE_CHECKING.
    code = "import inspect, sys, typing, handler.app, handler.ncp\nprint(sorted(f'{n}.{c.__name__}' for n, m in "
    code += "list(sys.modules.items()) if n.startswith('handler') for _, c in inspect.getmembers(m, inspect.isclass) "
    code += "if c.__module__ == n and (typing.is_typeddict(c) or getattr(c, '_is_protocol', False))))"
    assert fresh_python(code) == "[]"


def test_no_value_type_is_a_named_tuple_built_at_import() -> None:
    # typing.NamedTuple evals a constructor per class at import: 0.25 ms each, 8 ms over the handler's records.
    code = "import inspect, sys, handler.app, handler.ncp\nprint(sorted(f'{n}.{c.__name__}' for n, m in "
    code += "list(sys.modules.items()) if n.startswith('handler') for _, c in inspect.getmembers(m, inspect.isclass) "
    code += "if c.__module__ == n and issubclass(c, tuple)))"
    assert fresh_python(code) == "[]"
