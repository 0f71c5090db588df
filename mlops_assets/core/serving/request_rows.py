"""Rows of an online request, checked against the dataset spec one value at a time.

The rules are the spec's, as the ingestion schema applies them to a landed file (validation.build_schema and
refuse_timezone_offsets): every column of the features file present and no other, timestamps ISO 8601 without
an offset, an entity id, numeric features finite and within [min, max], categorical features among the spec's
categories (an integral number is the category "1", as in a CSV), nulls only where the spec allows them, no
key twice. They are applied here in plain Python rather than by the pandera schema: a request of one row must
cost microseconds, and each problem must name its row. tests/core/test_online_serving.py checks that both
reject the same values.

`check_columns` checks a batch column by column (type sets, numpy range checks) and returns the typed columns;
only when something is wrong does it run the row-by-row check (`check`'s), whose problems name every row,
column and reason. So a valid batch of 100 rows costs a pass per column, and the messages are those of the
row-by-row check by construction.

JSON is typed, so types are strict: a number sent as text is a wrong type, not a number to parse.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, NamedTuple

import numpy as np

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


class CheckedRows:
    """A request's rows checked and typed, held by column (what the feature module's DataFrame is built from)."""

    __slots__ = ("columns", "size")

    def __init__(self, columns: dict[str, Any], size: int):
        self.columns, self.size = columns, size  # column -> list of values, or a float64 array for numbers

    def __len__(self) -> int:
        return self.size

    def records(self) -> list[dict]:
        names = list(self.columns)
        values = (v.tolist() if isinstance(v, np.ndarray) else v for v in self.columns.values())
        return [dict(zip(names, row)) for row in zip(*values)]

    @staticmethod
    def concat(parts: list["CheckedRows"]) -> dict[str, Any]:
        """The columns of several requests' rows, one after the other."""
        if len(parts) == 1:
            return parts[0].columns
        out = {}
        for name, first in parts[0].columns.items():
            if isinstance(first, np.ndarray):
                out[name] = np.concatenate([p.columns[name] for p in parts])
            else:
                out[name] = [v for p in parts for v in p.columns[name]]
        return out


class _Invalid(Exception):
    """A column's fast check found a problem: the row-by-row check names it."""


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
        """The rows typed, one dict per row, or RowsRejected naming every problem."""
        return self.check_columns(records).records()

    def check_columns(self, records: list) -> CheckedRows:
        """The rows typed, by column, or RowsRejected naming every problem (row, column, reason)."""
        columns = self._column_set
        if not all(isinstance(r, dict) and r.keys() == columns for r in records):
            self._check_rows(records)  # raises: a row is not an object, or lacks or adds a column
        try:
            typed = {c: self._typed_column(c, [r[c] for r in records]) for c in self.columns}
        except _Invalid:
            self._check_rows(records)  # raises, naming each bad value
            raise  # unreachable unless the two checks disagree
        keys = list(zip(*(typed[c] for c in self.spec.key_columns)))
        if len(set(keys)) < len(keys):
            self._check_rows(records)  # raises, naming the duplicates
        return CheckedRows(typed, len(records))

    def _typed_column(self, column: str, values: list) -> Any:
        """The column's typed values, checked as `_value` checks one (raises _Invalid at the first problem)."""
        spec, types = self.spec, set(map(type, values))
        try:
            if column == spec.timestamp and types == {str}:
                stamps = [dt.datetime.fromisoformat(v.strip()) for v in values]
                if all(t.tzinfo is None for t in stamps):
                    return stamps
            elif column == spec.entity_id and types == {str}:
                if all(v.strip() for v in values):
                    return values
            elif (feature := self._features.get(column)) is None and column != spec.timestamp \
                    and column != spec.entity_id:
                return values  # a slice column that is not a feature: carried as sent
            elif feature is not None and feature.is_numeric and types <= {float, int}:
                numbers = np.array(values, dtype=np.float64)
                ok = np.isfinite(numbers)
                if feature.min is not None:
                    ok &= numbers >= feature.min
                if feature.max is not None:
                    ok &= numbers <= feature.max
                if ok.all():
                    return numbers
                raise _Invalid
            elif feature is not None and not feature.is_numeric and types == {str}:
                if self._categories[column].issuperset(values):
                    return values
                raise _Invalid
        except (ValueError, OverflowError):
            raise _Invalid from None
        out = []  # mixed types, nulls, numbers as categories: value by value
        for value in values:
            typed, reason = self._value(column, value)
            if reason:
                raise _Invalid
            out.append(typed)
        return np.array(out, dtype=np.float64) if (feature := self._features.get(column)) is not None \
            and feature.is_numeric and None not in out else out

    def _check_rows(self, records: list) -> list[dict]:
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
