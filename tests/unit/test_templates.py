"""The parameter template renderer: exactly the contract's placeholders, nothing evaluated."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from handler.templates import ALL_FIELDS, TemplateError, Time, parse_template

EVENT_TIME = datetime(2026, 11, 27, 23, 10, 5, tzinfo=UTC)
VALUES = {"bucket": "raw-data", "key": "incoming/orders/a b.csv", "route": "orders"}


def render(text: str, zone: timezone | ZoneInfo = UTC, groups: dict[str, str] | None = None) -> str:
    return parse_template(text).render(VALUES, groups or {}, EVENT_TIME, zone)


def test_named_placeholders_and_literals() -> None:
    assert render("{bucket}/{key}") == "raw-data/incoming/orders/a b.csv"
    assert render("route={route}!") == "route=orders!"


def test_absent_values_render_empty() -> None:
    assert render("[{etag}][{schedule}][{match.table}]") == "[][][]"


def test_default_time_format_is_iso_seconds_with_offset() -> None:
    assert render("{time}") == "2026-11-27T23:10:05+00:00"
    assert render("{time}", timezone(timedelta(hours=9))) == "2026-11-28T08:10:05+09:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{time:%Y-%m-%d}", "2026-11-27"),
        ("{time-1d:%Y-%m-%d}", "2026-11-26"),
        ("{time+6h:%Y-%m-%dT%H}", "2026-11-28T05"),
        ("{time-90m:%H:%M}", "21:40"),
        ("{time+1d}", "2026-11-28T23:10:05+00:00"),
    ],
)
def test_time_formats_and_offsets(text: str, expected: str) -> None:
    assert render(text) == expected


def test_time_offsets_are_wall_clock_arithmetic_in_the_zone() -> None:
    # 2026-03-08 is the US DST change: "-1d" from 12:00 local must stay at 12:00 local.
    template = parse_template("{time-1d}")
    noon = datetime(2026, 3, 9, 16, 0, tzinfo=UTC)  # 12:00 EDT
    assert template.render({}, {}, noon, ZoneInfo("America/New_York")) == "2026-03-08T12:00:00-04:00"


def test_match_groups_render() -> None:
    assert render("{match.table}", groups={"table": "orders"}) == "orders"


def test_doubled_braces_are_literal() -> None:
    assert render("{{bucket}} {{{bucket}}}") == "{bucket} {raw-data}"


@pytest.mark.parametrize(
    "text",
    [
        "{bucket.__class__}",
        "{key[0]}",
        "{0}",
        "{}",
        "{unknown}",
        "{time:}",
        "{time-1w:%Y}",
        "{time-1d%Y}",
        "{bucket!r}",
        "{bucket:>10}",
        "open {",
        "close }",
        "{a{b}",
    ],
)
def test_anything_but_the_contract_placeholders_is_rejected(text: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(text)


def test_field_and_group_names_are_reported() -> None:
    template = parse_template("{bucket}{match.table}{time}{schedule}")
    assert template.fields == {"bucket", "schedule"}
    assert template.match_groups == {"table"}


@given(st.text().filter(lambda text: "{" not in text and "}" not in text))
def test_text_without_braces_renders_as_itself(text: str) -> None:
    assert render(text) == text


@given(st.text())
def test_escaped_text_always_renders_back_to_itself(text: str) -> None:
    escaped = text.replace("{", "{{").replace("}", "}}")
    assert render(escaped) == text


@given(st.lists(st.one_of(st.text(alphabet="abc/{} ._-"), st.sampled_from(sorted(ALL_FIELDS))), max_size=8))
def test_parse_either_succeeds_or_raises_template_error(pieces: list[str]) -> None:
    text = "".join(f"{{{piece}}}" if piece in ALL_FIELDS else piece for piece in pieces)
    try:
        template = parse_template(text)
    except TemplateError:
        return
    assert isinstance(template.render({}, {}, EVENT_TIME, UTC), str)


# The {time} grammar as the contract states it, written as the pattern the parser once was: the
# hand-written reader (no pattern compiled at every cold start) must accept and read exactly this.
TIME_GRAMMAR = re.compile(r"time(?:(?P<sign>[+-])(?P<amount>\d{1,6})(?P<unit>[dhm]))?(?::(?P<format>.*))?", re.S)
LATE_OFFSET = re.compile(r"[+-]\d{1,6}[dhm]\Z")
TIME_ALPHABET = st.sampled_from([*"time+-0123456789dhm:%Y ", "\u0663", "\n", "x"])


def grammar_reading(body: str) -> tuple[timedelta, str | None] | str | None:
    """What the grammar makes of a placeholder body: (offset, format), an error's start, or None."""
    found = TIME_GRAMMAR.fullmatch(body)
    if found is None:
        return None
    offset = timedelta()
    if found["sign"]:
        amount = int(found["amount"]) * (-1 if found["sign"] == "-" else 1)
        offset = timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[found["unit"]]: amount})
    fmt = found["format"]
    if fmt == "":
        return "{time:} needs a format"
    if not found["sign"] and LATE_OFFSET.search(fmt or ""):
        return f"{{{body}}}: an offset after the format"
    return offset, fmt


DIGITS = st.text(st.sampled_from([*"0123456789", "\u0663"]), max_size=8)
SHAPED = st.tuples(
    st.sampled_from(["", "+", "-", "x"]),
    DIGITS,
    st.sampled_from(["", "d", "h", "m", "s"]),
    st.sampled_from(["", ":"]),
    st.text(TIME_ALPHABET, max_size=6),
    st.sampled_from(["", "-"]),
    DIGITS,
    st.sampled_from(["", "d", "m"]),
).map(lambda parts: "time" + "".join(parts))


@given(st.text(TIME_ALPHABET, max_size=14).map(lambda rest: "time" + rest) | SHAPED)
@example("time+123456d")
@example("time+1234567d")
@example("time-1h:%H")
@example("time:%Y-%m-%d-1d")
@example("time:%Y-123456d")
@example("time:%Y-1234567d")
@example("time:%Y+1m")
@example("time:")
@example("time+1d:")
@example("time+\u0663d")
@example("time+\u00b2d")
@example("time+")
@example("timex")
@example("time-1d:%d-2d")
def test_time_placeholders_are_read_as_the_grammar_says(body: str) -> None:
    expected = grammar_reading(body)
    try:
        part = parse_template("{" + body + "}").parts[0]
    except TemplateError as exc:
        assert isinstance(expected, str) or expected is None, (body, str(exc))
        assert str(exc).startswith(expected or "unknown placeholder")
        return
    assert isinstance(part, Time), body
    assert (part.offset, part.strftime) == expected
