"""Records: every field in __slots__ is an __init__ parameter, in order, past four by keyword; none is subclassed."""

import importlib
import inspect
import pkgutil
from datetime import UTC, datetime

import pytest

import handler
from handler.events import ObjectTrigger, ScheduleTrigger
from handler.jobs import JobSpec
from handler.records import Record

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def all_records() -> list[type[Record]]:
    # Every handler module imported, the command line's included: every record defined.
    for module in pkgutil.walk_packages(handler.__path__, "handler."):
        importlib.import_module(module.name)
    # Only the handler's: a test may keep a frozen copy of older code (tests/unit/old_reconcile.py).
    return [record for record in Record.__subclasses__() if record.__module__.startswith("handler.")]


def test_every_record_declares_its_init_parameters_as_its_slots_in_order() -> None:
    # Equality and repr read __slots__, so they must name every field, in the constructor's order.
    records = all_records()
    assert len(records) >= 30
    for record in records:
        parameters = tuple(inspect.signature(record).parameters)
        assert (record.__name__, record.__slots__) == (record.__name__, parameters)


def test_a_record_with_more_than_four_fields_takes_the_others_by_keyword_only() -> None:
    # Past four, a positional value is read by counting: a bare False in Failed(...) was "retryable".
    counted = {}
    for record in all_records():
        parameters = inspect.signature(record).parameters.values()
        if any(parameter.kind is parameter.VAR_POSITIONAL for parameter in parameters):
            counted[record.__name__] = "*args"
        positional = [parameter.name for parameter in parameters if parameter.kind in POSITIONAL]
        if len(record.__slots__) > 4 and len(positional) > 4:
            counted[record.__name__] = ", ".join(positional)
    assert counted == {}


def test_no_record_is_subclassed() -> None:
    # A subclass's own __slots__ would hide its parent's fields from equality and repr.
    assert [(record.__name__, record.__subclasses__()) for record in all_records() if record.__subclasses__()] == []


def test_records_compare_by_type_and_every_field() -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    assert ObjectTrigger("b", "k", "e", now, size=1) == ObjectTrigger("b", "k", "e", now, size=1)
    assert ObjectTrigger("b", "k", "e", now, size=1) != ObjectTrigger("b", "k", "e", now, size=2)
    assert ScheduleTrigger("s", now) != ("s", now, "")
    assert repr(JobSpec("J1")) == "JobSpec(job_id='J1', workflow_id=None, trigger_id=None, job_condition=None)"
    with pytest.raises(TypeError, match="unhashable"):
        hash(JobSpec("J1"))
