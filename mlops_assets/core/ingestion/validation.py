"""Reading a landed CSV into a typed batch, and the pandera schema that validates it, both built from the spec.

Two kinds of bad input, two outcomes:
- a file that cannot be read as a table at all (empty, header only, truncated mid-row, malformed) raises
  `BatchRejected` naming the file, partition, column (when one is to blame) and reason;
- a readable file whose content breaks the spec (missing or renamed column, wrong dtype, NaN/inf, out of
  range, duplicates, timestamps outside the day) is typed as far as possible and kept as it is, and the
  schema reports each failure with its column, check, count and examples.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mlops_assets.core.features.engineering import as_category_strings
from mlops_assets.core.config.spec import DatasetSpec

MAX_EXAMPLES = 5


class BatchRejected(ValueError):
    def __init__(self, file: str, partition: str, reason: str, column: str | None = None):
        self.file, self.partition, self.reason, self.column = file, partition, reason, column
        where = f", column {column!r}" if column else ""
        super().__init__(f"{file} (partition {partition}{where}): {reason}")


# --------------------------------------------------------------------------------------------- parsing


def parse_csv(content: bytes, file: str, partition: str) -> pd.DataFrame:
    """Read CSV bytes as strings-first, rejecting files that are not a whole table."""
    text = content.decode("utf-8", errors="replace")
    if not text.strip():
        raise BatchRejected(file, partition, "empty file (0 rows, no header)")
    lines = text.splitlines()
    header = lines[0].split(",")
    if len([ln for ln in lines[1:] if ln.strip()]) == 0:
        raise BatchRejected(file, partition, "header only, no rows")
    if not text.endswith("\n"):
        last = lines[-1].split(",")
        if len(last) != len(header) or last[-1] == "":
            raise BatchRejected(
                file, partition,
                f"truncated: the last line has {len(last)} of {len(header)} fields and no line end",
                column=header[len(last) - 1] if len(last) <= len(header) else None,
            )
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, ValueError) as exc:
        raise BatchRejected(file, partition, f"malformed CSV: {exc}") from None


def type_batch(raw: pd.DataFrame, spec: DatasetSpec, columns: list[str]) -> pd.DataFrame:
    """Type each spec column that converts cleanly; leave any that does not as text, so the schema can
    report its bad values instead of this step silently turning them into NaN. Unknown columns are kept."""
    out = raw.copy()
    for col in columns:
        if col not in out.columns:
            continue
        values = out[col]
        try:
            if col == spec.timestamp:
                out[col] = pd.to_datetime(values, format="ISO8601")
            elif col == spec.entity_id:
                out[col] = values.astype(object)
            elif col == spec.target:
                out[col] = pd.to_numeric(values) if not spec.is_classification else as_category_strings(pd.to_numeric(values))
            elif spec.feature(col).is_numeric:
                out[col] = pd.to_numeric(values).astype("float64")
            else:
                out[col] = as_category_strings(_maybe_numeric(values))
        except (ValueError, TypeError):
            out[col] = values.astype(object)
    return out


def _maybe_numeric(values: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(values)
    except (ValueError, TypeError):
        return values


def read_batch(content: bytes, file: str, partition: str, spec: DatasetSpec, kind: str) -> pd.DataFrame:
    raw = parse_csv(content, file, partition)
    columns = spec.batch_columns if kind == "features" else spec.label_columns
    return type_batch(raw, spec, columns)


# --------------------------------------------------------------------------------------------- schema


def build_schema(spec: DatasetSpec, partition: str, kind: str = "features") -> pa.DataFrameSchema:
    day = dt.date.fromisoformat(partition)
    start, end = pd.Timestamp(day), pd.Timestamp(day + dt.timedelta(days=1))
    columns = {
        spec.timestamp: pa.Column(
            "datetime64[us]", coerce=True, nullable=False,
            checks=pa.Check(lambda s: (s >= start) & (s < end), error=f"timestamp within partition {partition}"),
        ),
    }
    if spec.entity_id:
        columns[spec.entity_id] = pa.Column(str, coerce=True, nullable=False)
    if kind == "features":
        for f in spec.features:
            if f.is_numeric:
                checks = [pa.Check(lambda s: np.isfinite(s) | s.isna(), error="finite (no inf)")]
                if f.min is not None:
                    checks.append(pa.Check.ge(f.min))
                if f.max is not None:
                    checks.append(pa.Check.le(f.max))
                columns[f.name] = pa.Column("float64", coerce=True, nullable=f.nullable, checks=checks)
            else:
                columns[f.name] = pa.Column(
                    str, coerce=True, nullable=f.nullable, checks=pa.Check.isin(list(f.categories)),
                )
    else:
        if spec.is_classification:
            columns[spec.target] = pa.Column(str, coerce=True, nullable=False, checks=pa.Check.isin(["0", "1"]))
        else:
            columns[spec.target] = pa.Column(
                "float64", coerce=True, nullable=False,
                checks=pa.Check(lambda s: np.isfinite(s), error="finite (no inf)"),
            )
    return pa.DataFrameSchema(
        columns, unique=spec.key_columns, report_duplicates="all",
        name=f"{spec.name} {kind} {partition}", strict=False,
    )


@dataclass
class ValidationResult:
    rows: int
    failures: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failed_rows(self) -> int:
        return sum(f["count"] for f in self.failures)

    def summary(self) -> str:
        if self.passed:
            return f"{self.rows} rows passed every check"
        parts = [f"{f['column']}: {f['check']} ({f['count']} cases, e.g. {f['examples']})" for f in self.failures]
        return "; ".join(parts)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.failures, columns=["column", "check", "count", "examples"])


def validate_batch(batch: pd.DataFrame, spec: DatasetSpec, partition: str, kind: str = "features") -> ValidationResult:
    schema = build_schema(spec, partition, kind)
    try:
        schema.validate(batch, lazy=True)
    except SchemaErrors as exc:
        return ValidationResult(rows=len(batch), failures=summarise_failures(exc.failure_cases))
    return ValidationResult(rows=len(batch))


def summarise_failures(cases: pd.DataFrame) -> list[dict]:
    """Group pandera's failure cases into one entry per (column, check), with a count and a few examples."""
    out = []
    cases = cases.copy()
    # A missing column is reported against the schema; name the column instead.
    missing = cases["check"].astype(str) == "column_in_dataframe"
    cases.loc[missing, "column"] = cases.loc[missing, "failure_case"]
    cases["column"] = cases["column"].fillna(cases["schema_context"]).astype(str)
    cases["check"] = cases["check"].astype(str)
    # A column that is not of its dtype also "fails" every value check with a TypeError; those are echoes
    # of the dtype failure, not findings of their own.
    echoes = cases["failure_case"].astype(str).str.startswith("TypeError(")
    cases = cases[~echoes]
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        examples = [str(v) for v in group["failure_case"].head(MAX_EXAMPLES)]
        out.append({"column": column, "check": check, "count": int(len(group)), "examples": examples})
    return out
