"""A run's file list as a fingerprint (a route with a manifest) reads as the same hashes as the keys themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from handler.runs.execution import (
    FINGERPRINTED,
    file_hash,
    fingerprint,
    fingerprint_capacity,
    fingerprint_length,
    parse,
)
from handler.runs.view import Covering, JobView, Member
from tests.conftest import fresh_python

CREATED = datetime(2026, 11, 28, tzinfo=UTC)
KEYS = st.lists(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40), max_size=30)


def run(files: str) -> dict[str, object]:
    return {
        "jobExecutionId": "E1",
        "status": "READY",
        "createdDate": CREATED.isoformat(),
        "parsedParameters": {"$f": files},
    }


@given(KEYS)
def test_a_fingerprint_and_the_keys_it_stands_for_parse_into_the_same_hashes(keys: list[str]) -> None:
    listed = [key for key in dict.fromkeys(keys) if "," not in key]
    by_keys = parse(run(",".join(listed)), {"$f": ","}).files
    by_fingerprint = parse(run(fingerprint(listed)), {"$f": FINGERPRINTED}).files
    if listed:
        assert by_keys == by_fingerprint
    assert len(fingerprint(listed)) == fingerprint_length(len(set(listed)))


def test_a_key_hashes_alike_in_every_process() -> None:
    # Python's own hash() of a str is salted per process: a fingerprint written in one container must read in another.
    code = "from handler.runs.execution import file_hash; print(file_hash('landing/dt=2026-12-05/a.json'))"
    assert {fresh_python(code) for _ in range(2)} == {str(file_hash("landing/dt=2026-12-05/a.json"))}


def test_a_value_that_is_no_fingerprint_covers_no_file() -> None:
    for value in ("landing/a.csv", "h1:not*base64", "h1:AAAA"):  # not ours, not base64url, not 8 bytes a key
        assert list(parse(run(value), {"$f": FINGERPRINTED}).files["$f"]) == []  # type: ignore[index]


def test_a_run_that_echoes_a_fingerprint_covers_the_files_it_names_and_no_other() -> None:
    view = JobView(CREATED - timedelta(days=1), True, None, 1)
    view.add([parse(run(fingerprint(["in/a.csv", "in/b.csv"])), {"$f": FINGERPRINTED})])
    members = [Member(f"k-{name}", name, CREATED - timedelta(minutes=1)) for name in ("in/a.csv", "in/c.csv")]
    cover = view.cover(Covering("$f", {}, frozenset({"$f"}), None), members, {})
    assert (dict(cover.covered), cover.unknown) == ({"k-in/a.csv": "E1"}, frozenset())


def test_the_capacity_is_the_most_keys_whose_fingerprint_fits() -> None:
    for length in (3, 14, 262_144):
        most = fingerprint_capacity(length)
        assert fingerprint_length(most) <= length < fingerprint_length(most + 1)
