"""Record: the base of the handler's immutable values, with equality and repr read from __slots__."""

from __future__ import annotations


class Record:
    """A value: its fields are its `__slots__`, each set once by a hand-written `__init__` as `Final`.

    mypy keeps the fields immutable (nothing does at run time), and records are never subclassed:
    equality and repr read the class's own `__slots__`. A record with more than four fields takes the
    others by keyword only (`*`), so no bare value, a `False` say, is read by counting its place
    (tests/unit/test_records.py checks these rules).

    This replaces typing.NamedTuple, which builds every class at import (an eval'd constructor and
    type checks per field): about 0.25 ms a class on 3.13, some 8 ms over the handler's 30 records at
    every cold start. A hand-written `__init__` is compiled into the shipped bytecode instead, and is
    as fast per call. No record is a tuple: none can be unpacked, indexed, hashed or dumped as a list.
    """

    __slots__: tuple[str, ...] = ()
    # Records hold dicts (parameters, executions): equal ones could not hash alike, so none hashes.
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"
