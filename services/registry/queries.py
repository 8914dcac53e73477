"""Which versions to list and in what order: `?order_by=metrics.accuracy&desc=true&limit=1` is the
best version by accuracy; `?where=metrics.accuracy>=0.9&where=task=multiclass` filters.

Only the fields a version document has are accepted, so a typo is a 400 naming the field
rather than an empty list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from visiondock.errors import InvalidInput
from visiondock.storage import Filter, InvalidQueryError, Query
from visiondock.storage.documents import FilterOp

# Top-level fields of a version that hold one comparable value.
SCALAR_FIELDS = ("version", "created_at", "task", "project_id", "run_id", "description")
# Fields holding objects whose members (`metrics.accuracy`, `params.mode`, ...) may be queried.
NESTED_FIELDS = ("metrics", "params")
_CONDITION = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(>=|<=|!=|=|>|<)\s*(.*?)\s*$")
_OPS: dict[str, FilterOp] = {"=": "eq", "!=": "ne", ">": "gt", ">=": "ge", "<": "lt", "<=": "le"}


def version_field(name: str) -> str:
    """A field of a version document a query may use, or a 400 saying which are."""
    head, _, rest = name.partition(".")
    if (head in SCALAR_FIELDS and not rest) or (head in NESTED_FIELDS and rest):
        try:
            return Query(order_by=name).order_by
        except InvalidQueryError as exc:
            raise InvalidInput(str(exc), code="unknown_field") from None
    known = ", ".join([*SCALAR_FIELDS, *(f"{n}.<name>" for n in NESTED_FIELDS)])
    raise InvalidInput(f"unknown field {name!r}; versions can be queried by {known}", code="unknown_field")


def _value(text: str) -> Any:
    """A condition's value: a JSON number, true/false/null, or else the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, bool | int | float | str) else text


def parse_condition(condition: str) -> Filter:
    """`metrics.accuracy>=0.9` as a storage filter."""
    match = _CONDITION.match(condition)
    if not match:
        raise InvalidInput(f"cannot read the condition {condition!r}; write FIELD OP VALUE with OP one of "
                         f"{', '.join(_OPS)}, e.g. metrics.accuracy>=0.9")
    field, op, text = match.groups()
    try:
        return Filter(version_field(field), _OPS[op], _value(text))
    except InvalidQueryError as exc:
        raise InvalidInput(f"condition {condition!r}: {exc}") from None


def version_query(model: str, *, order_by: str = "version", descending: bool = True,
                  where: Sequence[str] = ()) -> Query:
    return Query(partition_key=model, filters=tuple(parse_condition(c) for c in where),
                 order_by=version_field(order_by), descending=descending)
