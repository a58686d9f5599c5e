"""Conditions on documents, for a search restricted to the documents that meet them
(``qa ask --where "publish_time>=2021"``).

A condition is ``FIELD OP VALUE``. FIELD is ``id``, ``title``, ``source`` or a key of the
document's metadata (a CORD-19 release keeps ``publish_time``, ``journal``, ``authors``, ``doi``…;
a JSON record keeps its other fields). OP is one of

- ``=`` and ``!=``: equal or not, ignoring case; ``*`` and ``?`` in VALUE are wildcards;
- ``~``: contains VALUE, ignoring case;
- ``<``, ``<=``, ``>``, ``>=``: as numbers when both sides are numbers, else as text compared at
  the length of VALUE, so that dates compare at the precision written (``publish_time<=2020``
  holds for 2020-12-31, ``publish_time>=2020-06`` from June 2020 on).

A field the document lacks reads as empty text, which meets no ``<``, ``<=``, ``>`` or ``>=`` (a
paper without a date is neither before nor after one); a list field meets a condition when one of
its items does. Several conditions must all hold.
"""

from __future__ import annotations

import fnmatch
import functools
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from qa.errors import QAError

OPERATORS = ("!=", "<=", ">=", "=", "~", "<", ">")
"""Longest first, so that ``a<=b`` is read as ``<=``, not ``<``."""
DOCUMENT_FIELDS = ("id", "title", "source")
_SPLIT = re.compile(r"^\s*([^!<>=~]+?)\s*(" + "|".join(re.escape(op) for op in OPERATORS) + r")\s*(.*?)\s*$", re.S)


@dataclass(frozen=True)
class Condition:
    """``field op value`` (see the module's documentation)."""

    field: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``"publish_time>=2021"`` → ``Condition("publish_time", ">=", "2021")``."""
        match = _SPLIT.match(text)
        if match and '"' in match.group(1):
            raise QAError(f"cannot read the condition {text!r}: a field name cannot hold a double quote")
        if not match or not match.group(3):
            raise QAError(
                f"cannot read the condition {text!r}: write FIELD OP VALUE with OP one of "
                f"{' '.join(OPERATORS)}, e.g. --where \"publish_time>=2021\" or --where \"journal=Lancet*\""
            )
        return cls(*match.groups())

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"

    @functools.cached_property
    def _folded(self) -> str:
        return self.value.casefold()

    @functools.cached_property
    def _glob(self) -> re.Pattern | None:
        return re.compile(fnmatch.translate(self._folded), re.S) if "*" in self.value or "?" in self.value else None

    @functools.cached_property
    def _as_number(self) -> float | None:
        return _number(self.value)

    def holds(self, value: object) -> bool:
        """Whether a document whose field is ``value`` (None when it has none) meets the condition."""
        if isinstance(value, (list, tuple)):
            return any(self.holds(item) for item in value) if value else self.holds(None)
        text = "" if value is None else str(value)
        if self.op in ("=", "!="):
            folded = text.casefold()
            equal = bool(self._glob.match(folded)) if self._glob else folded == self._folded
            return equal if self.op == "=" else not equal
        if self.op == "~":
            return self._folded in text.casefold()
        if not text.strip():
            return False  # a missing date is neither before nor after one
        left, right = _number(value), self._as_number
        if left is None or right is None:
            left, right = text[: len(self.value)], self.value
        return _ORDER[self.op](left, right)


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def parse_where(conditions: Iterable[str | Condition]) -> tuple[Condition, ...]:
    """The conditions written as ``FIELD OP VALUE`` (conditions already read are kept as they are)."""
    if isinstance(conditions, str):
        raise QAError(f"where takes a list of conditions, got the string {conditions!r}: write [{conditions!r}]")
    return tuple(c if isinstance(c, Condition) else Condition.parse(c) for c in conditions)


def searchable_fields(metadata_keys: Iterable[str]) -> list[str]:
    """The fields a condition can name in an index whose documents' metadata has ``metadata_keys``:
    id, title and source, then the keys (a metadata ``title`` is shadowed by the title)."""
    return [*DOCUMENT_FIELDS, *sorted(set(metadata_keys) - set(DOCUMENT_FIELDS))]


def fields_named(conditions: Iterable[Condition]) -> list[str]:
    """The fields ``conditions`` name, each once, in order."""
    return list(dict.fromkeys(c.field for c in conditions))


def row_test(conditions: Sequence[Condition]) -> Callable[[Sequence[object]], bool]:
    """A test of a row of the values of :func:`fields_named` (in that order): whether a document
    with those values meets every condition (the store runs it over every document)."""
    at = {field: i for i, field in enumerate(fields_named(conditions))}
    checks = [(c.holds, at[c.field]) for c in conditions]
    if len(checks) == 1:
        holds, i = checks[0]
        return lambda row: holds(row[i])
    return lambda row: all(holds(row[i]) for holds, i in checks)
