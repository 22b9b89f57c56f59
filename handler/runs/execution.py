"""One listed execution, parsed once at the boundary into what every question about it reads."""

from __future__ import annotations

import base64
import binascii
import hashlib
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from handler.records import Record

# A fingerprint is big-endian on every machine: any process reads what another wrote.
_LITTLE_ENDIAN = sys.byteorder == "little"

# Field names seen for name/value items in NCP APIs; the Data Flow docs show none.
_NAME_FIELDS = ("key", "name", "parameterName", "paramKey", "paramName")
_VALUE_FIELDS = ("value", "parameterValue", "paramValue")
# jobCondition fields a service may store in another spelling: compared as it would store them.
_PATH_FIELDS = frozenset({"nrn", "scriptPath", "logPath"})
# An echoed value longer than this (a coalesced file list of up to 256 KiB) is kept as its digest: a
# kept run costs a few hundred bytes, whatever it echoes. Coverage keeps the file names apart (view.py).
LONG_VALUE = 256
# The separator `parse` is given for a coalesce parameter that carries a fingerprint, not the keys (a route
# with a manifest): no route may have it, validate refuses an empty separator.
FINGERPRINTED = ""
# Marks a fingerprint (and its format's version): each key's 8-byte hash, sorted, base64url without padding.
FINGERPRINT_PREFIX = "h1:"
HASH_BYTES = 8
# Statuses of a run that is still going; every other status is final.
GOING = frozenset({"READY", "RUNNING"})


class Execution(Record):
    """A run as the list (or its own page) shows it: id, status, creation time, echo, job condition.

    `parameters` is None where the answer echoes none; long values are digests (`comparable`).
    """

    __slots__ = ("execution_id", "status", "created", "parameters", "condition", "files", "shape", "minutes")

    def __init__(
        self,
        execution_id: str | None,
        status: str,
        created: datetime | None,
        parameters: Mapping[str, str] | None,
        *,
        condition: Mapping[str, Any] | None,
        files: Mapping[str, array[int]] | None = None,
        shape: str = "object",
        minutes: int | None = None,
    ) -> None:
        self.execution_id: Final = execution_id
        self.status: Final = status
        self.created: Final = created
        self.parameters: Final = parameters
        self.condition: Final = condition
        # For each coalesce parameter it echoes, the sorted 64-bit hashes of the file names it lists (see
        # `splits`): 8 bytes a name, where the names themselves take up to 256 KiB a run.
        self.files: Final = files
        # How the answer echoed the parameters: "object", "items" (name/value) or "none".
        self.shape: Final = shape
        self.minutes: Final = minutes  # runningTime, as the service says it

    @property
    def going(self) -> bool:
        return self.status in GOING


def parse(item: Mapping[str, Any], splits: Mapping[str, str] | None = None) -> Execution:
    """A listing item as an Execution (long echoed values digested); `splits` names the coalesce
    parameters (name -> separator) whose file lists are kept as hashes of each name."""
    echoed = echoed_parameters(item)
    condition = item.get("jobCondition")
    execution_id = item.get("jobExecutionId")
    files = None
    if echoed is not None and splits:
        files = {name: _hashes(echoed[name], separator) for name, separator in splits.items() if name in echoed} or None
    return Execution(
        execution_id if isinstance(execution_id, str) else None,
        str(item.get("status") or "?"),
        created(item),
        None if echoed is None else {name: comparable(value) for name, value in echoed.items()},
        condition=condition if isinstance(condition, dict) else None,
        files=files,
        shape="none" if echoed is None else "object" if isinstance(item.get("parsedParameters"), dict) else "items",
        minutes=running
        if isinstance(running := item.get("runningTime"), int) and not isinstance(running, bool)
        else None,
    )


def echo_of(runs: Sequence[Execution]) -> str:
    """How a listing echoes parameters: object, items (name/value), none, or unknown (no runs to tell)."""
    if not runs:
        return "unknown"
    shapes = {run.shape for run in runs if run.parameters}
    if not shapes:
        return "none"
    return shapes.pop() if len(shapes) == 1 else "object"


def _hashes(value: str, separator: str) -> array[int]:
    """The sorted hashes of the files a coalesce parameter names: its keys split, or its fingerprint read."""
    if separator != FINGERPRINTED:
        return array("q", sorted(map(file_hash, value.split(separator))))
    try:
        packed = base64.urlsafe_b64decode(value.removeprefix(FINGERPRINT_PREFIX) + "==")
    except (binascii.Error, ValueError):
        packed = b""
    if not value.startswith(FINGERPRINT_PREFIX) or len(packed) % HASH_BYTES:
        return array("q")  # not a fingerprint this launcher wrote: the run covers no file
    hashes = array("q", packed)
    if _LITTLE_ENDIAN:
        hashes.byteswap()
    return array("q", sorted(hashes))  # sorted as written; sorted again, should another tool have written it


def file_hash(key: str) -> int:
    """A key's 64-bit hash, the same in every process (Python's hash() of a str is salted per process)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=HASH_BYTES).digest()
    return int.from_bytes(digest, "big", signed=True)


def fingerprint(keys: Iterable[str]) -> str:
    """The files a run covers in 8 bytes a key: what a coalesce parameter carries where a manifest lists them."""
    hashes = array("q", sorted({file_hash(key) for key in keys}))
    if _LITTLE_ENDIAN:
        hashes.byteswap()
    return FINGERPRINT_PREFIX + base64.urlsafe_b64encode(hashes.tobytes()).decode("ascii").rstrip("=")


def fingerprint_length(count: int) -> int:
    """How many characters the fingerprint of `count` keys takes."""
    return len(FINGERPRINT_PREFIX) + -(-count * HASH_BYTES * 4 // 3)


def fingerprint_capacity(length: int) -> int:
    """The most keys whose fingerprint takes at most `length` characters (4 characters for 3 bytes)."""
    return (length - len(FINGERPRINT_PREFIX)) * 3 // (HASH_BYTES * 4)


def lists(hashes: array[int], wanted: int) -> bool:
    """Whether a run's file list (its sorted hashes) holds the file whose `file_hash` is `wanted`."""
    at = bisect_left(hashes, wanted)
    return at < len(hashes) and hashes[at] == wanted


def comparable(value: str) -> str:
    """A value as kept: itself, or past LONG_VALUE characters its digest (compared the same way on both sides)."""
    if len(value) <= LONG_VALUE:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def echoed_parameters(item: Mapping[str, Any]) -> dict[str, str] | None:
    """The parameters an execution echoes, as an object or as name/value items; None when it echoes none."""
    value = item.get("parsedParameters")
    if isinstance(value, dict):
        return {str(name): _text(echo) for name, echo in value.items()}
    if not isinstance(value, list):
        return None
    echoed: dict[str, str] = {}
    for entry in value:
        if not isinstance(entry, dict):
            continue
        name = next((entry[field] for field in _NAME_FIELDS if isinstance(entry.get(field), str)), None)
        echo = next((entry[field] for field in _VALUE_FIELDS if field in entry), None)
        if name is not None:
            echoed[name] = _text(echo)
    return echoed or None


def _text(value: object) -> str:
    """An echoed value as the string that was sent: a service may store "true" as JSON true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else "" if value is None else str(value)


def same_condition(ours: Mapping[str, Any] | None, theirs: Mapping[str, Any] | None) -> bool:
    if not ours or theirs is None:
        return True
    return all(_stored(name, value) == _stored(name, theirs[name]) for name, value in ours.items() if name in theirs)


def _stored(name: str, value: object) -> object:
    """A jobCondition value as a service may store it: upper-cased words, paths without a trailing slash."""
    if name == "workerType" and isinstance(value, str):
        return value.upper()
    if name in _PATH_FIELDS and isinstance(value, str):
        return value.rstrip("/")
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def created(item: Mapping[str, Any]) -> datetime | None:
    value = item.get("createdDate") or item.get("startDate")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
