"""What a mistyped word was probably meant to be, and the likely cause of a JSON error."""

from __future__ import annotations

import json
from collections.abc import Iterable


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for a known word one edit away (or differing only in case), else ''."""
    folded = word.casefold()
    for candidate in sorted(known):
        if candidate.casefold() == folded or _one_edit(folded, candidate.casefold()):
            return f" (did you mean {candidate}?)"
    return ""


# Abbreviations people write for a zone, which are not zones themselves (or not the one meant: EST is a
# fixed UTC-5, so KST is one edit from it): the zone each most likely means.
ZONE_ABBREVIATIONS = {
    "KST": "Asia/Seoul",
    "JST": "Asia/Tokyo",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "CET": "Europe/Paris",
    "IST": "Asia/Kolkata",
    "SGT": "Asia/Singapore",
}


def zone_hint(name: str, known: Iterable[str]) -> str:
    """' (did you mean Asia/Seoul? KST is an abbreviation, not a zone)' for an abbreviation, else a typo's hint."""
    meant = ZONE_ABBREVIATIONS.get(name.strip().upper())
    if meant is not None:
        return f" (did you mean {meant}? {name.strip().upper()} is an abbreviation, not a time zone)"
    return did_you_mean(name, known)


def _one_edit(left: str, right: str) -> bool:
    """One insertion, deletion, substitution or swap of neighbours turns `left` into `right`."""
    if left == right or abs(len(left) - len(right)) > 1:
        return False
    if len(left) > len(right):
        left, right = right, left
    start = next((index for index, (a, b) in enumerate(zip(left, right, strict=False)) if a != b), len(left))
    if len(left) < len(right):
        return left[start:] == right[start + 1 :]
    if left[start + 1 :] == right[start + 1 :]:
        return True
    return left[start : start + 2] == right[start : start + 2][::-1] and left[start + 2 :] == right[start + 2 :]


def json_problem(text: str, exc: json.JSONDecodeError) -> str:
    """The parser's words, where they are, and the likely cause of the usual mistakes."""
    where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    before, after = text[: exc.pos].rstrip(), text[exc.pos :].lstrip(",").lstrip()
    if exc.msg.startswith("Invalid \\escape"):
        return f'{where}: a backslash in a JSON string must be doubled (a regular expression\'s \\d is "\\\\d")'
    trailing = before.endswith(",") or text[exc.pos : exc.pos + 1] == ","  # 3.13 points at the comma itself
    if trailing and after[:1] in ("}", "]"):
        return f"{where}: a comma before a closing {after[0]} (JSON allows no trailing comma)"
    if text[exc.pos : exc.pos + 1] == "'":
        return f"{where}: JSON strings and names take double quotes, not single ones"
    return where
