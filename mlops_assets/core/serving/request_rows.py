"""Rows of an online request, checked against the dataset spec one value at a time.

The rules are the spec's, as the ingestion schema applies them to a landed file (validation.build_schema and
refuse_timezone_offsets): every column of the features file present and no other, timestamps ISO 8601 without
an offset, an entity id, numeric features finite and within [min, max], categorical features among the spec's
categories (an integral number is the category "1", as in a CSV), nulls only where the spec allows them, no
key twice. They are applied here in plain Python per row rather than by the pandera schema: a request of one
row must cost microseconds, and each problem must name its row. tests/core/test_online_serving.py checks that
both reject the same values.

JSON is typed, so types are strict: a number sent as text is a wrong type, not a number to parse.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, NamedTuple

from mlops_assets.core.config.spec import DatasetSpec

MAX_CATEGORIES_NAMED = 10


class RowProblem(NamedTuple):
    row: int
    column: str | None
    reason: str

    def to_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "reason": self.reason}


class RowsRejected(ValueError):
    """Some rows break the spec; nothing of the request may be scored or recorded."""

    def __init__(self, problems: list[RowProblem]):
        self.problems = problems
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"row {first.row}, column {first.column!r}: {first.reason}{more}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RequestRows:
    """The checker of one model's request rows; `check(records)` returns the rows typed for the feature module
    (timestamps as datetimes, ids and categories as text, numbers as floats) or raises RowsRejected."""

    def __init__(self, spec: DatasetSpec):
        self.spec = spec
        self.columns = list(spec.batch_columns)
        self._column_set = frozenset(self.columns)
        self._features = {f.name: f for f in spec.features}
        self._categories = {f.name: frozenset(f.categories) for f in spec.features if not f.is_numeric}

    def check(self, records: list) -> list[dict]:
        problems: list[RowProblem] = []
        rows, seen = [], {}
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                problems.append(RowProblem(i, None, f"a row must be a JSON object of column: value, got "
                                                    f"{_json_type(record)}"))
                continue
            row, row_problems = self._check_row(i, record)
            problems += row_problems
            if row_problems:
                continue
            key = tuple(row[c] for c in self.spec.key_columns)
            if key in seen:
                column = self.spec.entity_id or self.spec.timestamp
                problems.append(RowProblem(i, column, f"duplicate key ({', '.join(self.spec.key_columns)}): the same "
                                                      f"as row {seen[key]}"))
            seen.setdefault(key, i)
            rows.append(row)
        if problems:
            raise RowsRejected(problems)
        return rows

    def _check_row(self, i: int, record: dict) -> tuple[dict, list[RowProblem]]:
        problems = [RowProblem(i, c, "missing column") for c in self.columns if c not in record]
        problems += [RowProblem(i, str(c), "unexpected column: not a column of the spec's features file "
                                           f"({', '.join(self.columns)})")
                     for c in record if c not in self._column_set]
        row = {}
        for column in self.columns:
            if column not in record:
                continue
            value, reason = self._value(column, record[column])
            if reason:
                problems.append(RowProblem(i, column, reason))
            row[column] = value
        return row, problems

    def _value(self, column: str, value: Any) -> tuple[Any, str | None]:
        spec = self.spec
        if column == spec.timestamp:
            return _timestamp(value)
        if column == spec.entity_id:
            if _is_number(value) and not (isinstance(value, float) and not math.isfinite(value)):
                return str(value), None
            if isinstance(value, str) and value.strip():
                return value, None
            return None, ("the entity id is empty" if isinstance(value, str) or value is None
                          else f"wrong type: expected text or a number, got {_json_type(value)}")
        feature = self._features.get(column)
        if feature is None:  # a slice column that is not a feature: carried as sent
            return value, None
        if value is None:
            return None, None if feature.nullable else "null, but the spec does not allow nulls in this column"
        if feature.is_numeric:
            if not _is_number(value):
                return None, f"wrong type: expected a number, got {_json_type(value)}"
            number = float(value)
            if not math.isfinite(number):
                return None, f"not finite ({value})"
            if feature.min is not None and number < feature.min:
                return None, f"out of range: {value} is below the minimum {feature.min:g}"
            if feature.max is not None and number > feature.max:
                return None, f"out of range: {value} is above the maximum {feature.max:g}"
            return number, None
        return self._category(column, value)

    def _category(self, column: str, value: Any) -> tuple[Any, str | None]:
        if isinstance(value, str):
            text = value
        elif _is_number(value) and math.isfinite(value):
            text = str(int(value)) if float(value).is_integer() else str(value)
        else:
            return None, f"wrong type: expected a category (text), got {_json_type(value)}"
        if text not in self._categories[column]:
            known = sorted(self._categories[column])
            listed = ", ".join(known[:MAX_CATEGORIES_NAMED]) + (", ..." if len(known) > MAX_CATEGORIES_NAMED else "")
            return None, f"unknown category {text!r} (the spec's categories: {listed})"
        return text, None


def _timestamp(value: Any) -> tuple[dt.datetime | None, str | None]:
    if not isinstance(value, str):
        return None, f"wrong type: expected an ISO 8601 timestamp (text), got {_json_type(value)}"
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None, f"not an ISO 8601 timestamp: {value!r}"
    if parsed.tzinfo is not None:
        return None, (f"the timestamp {value!r} carries a timezone offset; the spec's timestamps are naive: send it "
                      "without an offset or Z")
    return parsed, None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    return "an array" if isinstance(value, list) else "an object"
