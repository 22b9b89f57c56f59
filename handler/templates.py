"""A tiny parameter template language: named placeholders and {time} only, nothing evaluated."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Final

from handler.errors import HandlerError
from handler.records import Record

OBJECT_FIELDS = frozenset(
    {"bucket", "key", "key_dir", "key_name", "key_stem", "key_ext", "size", "etag", "version_id", "event_name"}
)
SCHEDULE_FIELDS = frozenset({"schedule"})
COMMON_FIELDS = frozenset({"event_id", "route"})
# What the objects of one coalesced group share (with {time...}, the newest object's time).
GROUP_FIELDS = frozenset({"bucket", "route", "count"})
# The path (bucket/key) of the object listing a coalesced group's keys, where its route writes one.
MANIFEST_FIELD = "manifest"
ALL_FIELDS = OBJECT_FIELDS | SCHEDULE_FIELDS | COMMON_FIELDS | GROUP_FIELDS | {MANIFEST_FIELD}

# Placeholders are read by hand and by one pattern compiled on first use (re caches it): compiled at
# import, the three patterns this took cost 0.25 ms of every cold start.
_MATCH = r"match\.(?P<group>[A-Za-z_][A-Za-z0-9_]*)"
# The units of a time offset ({time-1d}), and of the command line's spans (--every 6h, --since 30m).
UNITS = {"d": "days", "h": "hours", "m": "minutes"}
MAX_OFFSET_DIGITS = 6


class TemplateError(HandlerError):
    """A template that cannot be parsed; the message says why."""


class Field(Record):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name: Final = name


class MatchGroup(Record):
    __slots__ = ("group",)

    def __init__(self, group: str) -> None:
        self.group: Final = group


class Time(Record):
    __slots__ = ("offset", "strftime")

    def __init__(self, offset: timedelta, strftime: str | None) -> None:
        self.offset: Final = offset
        # the format after "{time:", None for ISO 8601
        self.strftime: Final = strftime


Part = str | Field | MatchGroup | Time


class Template(Record):
    """A parsed parameter value: literal text and placeholders, in order."""

    __slots__ = ("text", "parts")

    def __init__(self, text: str, parts: tuple[Part, ...]) -> None:
        self.text: Final = text
        self.parts: Final = parts

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(part.name for part in self.parts if isinstance(part, Field))

    @property
    def renders_time(self) -> bool:
        return any(isinstance(part, Time) for part in self.parts)

    @property
    def match_groups(self) -> frozenset[str]:
        return frozenset(part.group for part in self.parts if isinstance(part, MatchGroup))

    def render(self, values: Mapping[str, str], groups: Mapping[str, str], time: datetime, zone: tzinfo) -> str:
        """Absent values render empty; time is converted to `zone` before any offset is added."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Field):
                out.append(values.get(part.name, ""))
            elif isinstance(part, MatchGroup):
                out.append(groups.get(part.group) or "")
            else:
                out.append(render_time(time, zone, part))
        return "".join(out)


def render_time(time: datetime, zone: tzinfo, part: Time) -> str:
    # Aware datetime + timedelta is wall-clock arithmetic in Python: "-1d" across a DST change
    # keeps the local hour, which is what a data engineer writing {time-1d:%Y-%m-%d} means.
    try:
        local = time.astimezone(zone) + part.offset
        if part.strftime is None:
            return local.isoformat(timespec="seconds")
        return local.strftime(part.strftime)
    except (OverflowError, ValueError) as exc:
        raise TemplateError(f"the event time {time.isoformat()} with this offset is out of range ({exc})") from exc


def _placeholder(body: str) -> Part:
    if body in ALL_FIELDS:
        return Field(body)
    match = re.fullmatch(_MATCH, body) if body.startswith("match.") else None
    if match:
        return MatchGroup(match["group"])
    time = _time(body)
    if time is not None:
        return time
    from handler.hints import did_you_mean  # the error path only

    hint = did_you_mean(body, [*ALL_FIELDS, "time"])
    raise TemplateError(f"unknown placeholder {{{body}}}{hint}")


def _time(body: str) -> Time | None:
    """{time}, then an optional offset ({time-1d}: a sign, 1-6 digits, a unit), then an optional ':format'."""
    if not body.startswith("time"):
        return None
    written, colon, fmt = body.removeprefix("time").partition(":")
    offset = _offset(written) if written else timedelta()
    if offset is None:
        return None
    if colon and not fmt:
        raise TemplateError("{time:} needs a format after ':'")
    late = _late_offset(fmt)
    if late is not None and not written:
        raise TemplateError(
            f"{{{body}}}: an offset after the format renders as literal text; did you mean "
            f"{{time{fmt[late:]}:{fmt[:late]}}}? (text meant literally goes outside the braces)"
        )
    return Time(offset, fmt if colon else None)


def _offset(written: str) -> timedelta | None:
    sign, amount, unit = written[0], written[1:-1], written[-1]
    if sign not in ("+", "-") or unit not in UNITS or not amount.isdecimal() or len(amount) > MAX_OFFSET_DIGITS:
        return None
    return timedelta(**{UNITS[unit]: int(amount) * (-1 if sign == "-" else 1)})


def _late_offset(fmt: str) -> int | None:
    """Where an offset ends the format ({time:%Y-%m-%d-1d}), almost surely meant before it; None if none does."""
    digits = len(fmt) - 1  # before the unit
    while digits > 0 and fmt[digits - 1].isdecimal():
        digits -= 1
    count = len(fmt) - 1 - digits
    if fmt[-1:] in UNITS and 0 < count <= MAX_OFFSET_DIGITS and fmt[digits - 1 : digits] in ("+", "-"):
        return digits - 1
    return None


def parse_template(text: str) -> Template:
    """Parses `text`; `{{` and `}}` are literal braces and anything else in braces is a placeholder."""
    parts: list[Part] = []
    literal: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        pair = text[index : index + 2]
        if pair in ("{{", "}}"):
            literal.append(char)
            index += 2
        elif char == "}":
            raise TemplateError(f"single '}}' at position {index}; write '}}}}' for a literal brace")
        elif char == "{":
            end = text.find("}", index + 1)
            inner_open = text.find("{", index + 1)
            if end == -1 or (inner_open != -1 and inner_open < end):
                raise TemplateError(f"unclosed '{{' at position {index}; write '{{{{' for a literal brace")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_placeholder(text[index + 1 : end]))
            index = end + 1
        else:
            literal.append(char)
            index += 1
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))
