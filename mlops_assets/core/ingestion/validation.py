"""Reading a landed CSV into a typed batch, and the pandera schema that validates it, both built from the spec:
the in-memory reference. Ingestion streams the file instead (streaming.py: DuckDB and SQL, bounded memory),
with the same rejections, messages and failure table, tested against this module; the structure check
(`check_rows`) is shared. read_batch and validate_batch remain for small in-memory frames (history loading,
benchmarks).

Two kinds of bad input, two outcomes:
- a file that cannot be read as a table at all (empty, header only, truncated mid-row, a row with too few or
  too many fields, malformed, not UTF-8, a NUL byte, a blank or duplicated header name, timestamps with a
  timezone offset) raises `BatchRejected` naming the file, partition, column (when one is to blame) and
  reason. CRLF line endings and a UTF-8 byte-order mark are read like the plain file;
- a readable file whose content breaks the spec (missing or renamed column, wrong dtype, NaN/inf, out of
  range, duplicates, timestamps outside the day) is typed as far as possible and kept as it is, and the
  schema reports each failure with its column, check, count and examples.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

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


_BOMS = (  # longest first: a UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian)"), (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)"), (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)"),
)
SEND_UTF8 = "send the file as UTF-8 text"


def _line_of(content: bytes, offset: int) -> int:
    return content.count(b"\n", 0, offset) + 1


def decode_text(content: bytes, file: str, partition: str) -> str:
    """The file as text: UTF-8 only (a UTF-8 byte-order mark is dropped). Other encodings are named rather than
    guessed, and a NUL byte (binary data, or UTF-16 without its byte-order mark) is refused."""
    for bom, encoding in _BOMS:
        if content.startswith(bom):
            raise BatchRejected(file, partition, f"not UTF-8: a {encoding} byte-order mark was found; {SEND_UTF8}")
    if content.startswith(codecs.BOM_UTF8):
        content = content[len(codecs.BOM_UTF8):]
    nul = content.find(b"\x00")
    if nul >= 0:
        raise BatchRejected(file, partition, f"NUL byte at line {_line_of(content, nul)} (byte {nul}): binary data, or "
                                             f"UTF-16 text without a byte-order mark; {SEND_UTF8}")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchRejected(file, partition, f"not UTF-8: byte 0x{content[exc.start]:02x} at line "
                                             f"{_line_of(content, exc.start)} (byte {exc.start}) is not valid UTF-8 "
                                             f"(Latin-1 or Windows-1252 text?); {SEND_UTF8}") from None


@dataclass(frozen=True)
class TextEnd:
    """What the structure check needs to know about the end of a file's text, so it can run over a stream of
    lines as well as over the whole text: whether it ends with a line end, the number of its last line (trailing
    line ends not counted), and whether that last line ends in an empty field."""

    ends_with_newline: bool
    last_line: int
    last_field_empty: bool

    @classmethod
    def of_text(cls, text: str) -> "TextEnd":
        stripped = text.rstrip("\r\n")
        last = stripped.rsplit("\n", 1)[-1].rstrip("\r")
        return cls(text.endswith("\n"), stripped.count("\n") + 1, last.split(",")[-1] == "")


def check_structure(text: str, file: str, partition: str) -> list[str]:
    """The header, after checking the file is one whole table: a header with distinct, non-blank names, at
    least one row, and every row with as many fields as the header (a short row would otherwise be padded with
    nulls, a duplicated column renamed `x.1`)."""
    return check_rows(io.StringIO(text, newline=""), TextEnd.of_text(text), file, partition)[0]


def check_rows(lines: Iterable[str], end: TextEnd, file: str, partition: str,
               write_row: Callable[[list[str]], object] | None = None) -> tuple[list[str], int]:
    """`check_structure` over any iterable of lines (split as `newline=""` splits them), so a file can be checked
    as a stream: (header, number of rows). `write_row`, if given, receives the header and each row kept (blank
    lines are skipped), to write a normalised copy in the same pass."""
    reader = csv.reader(lines)
    header: list[str] | None = None
    rows = 0
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank and whitespace-only lines are skipped, as pandas does
            if header is None:
                header = row
                _check_header(header, file, partition)
                if write_row is not None:
                    write_row(row)
                continue
            rows += 1
            if len(row) != len(header):
                _short_or_long_row(end, reader.line_num, row, header, file, partition)
            if write_row is not None:
                write_row(row)
    except csv.Error as exc:
        raise BatchRejected(file, partition, f"malformed CSV at line {reader.line_num}: {exc}") from None
    if header is None:
        raise BatchRejected(file, partition, "empty file (0 rows, no header)")
    if rows == 0:
        raise BatchRejected(file, partition, "header only, no rows")
    check_last_field(end, header, file, partition)
    return header, rows


def check_last_field(end: TextEnd, header: list[str], file: str, partition: str) -> None:
    if not end.ends_with_newline and end.last_field_empty:
        raise BatchRejected(file, partition, "truncated: the last line ends in an empty field and has no line end",
                            column=header[-1])


def _check_header(header: list[str], file: str, partition: str) -> None:
    for i, name in enumerate(header):
        if not name.strip():
            raise BatchRejected(file, partition, f"blank column name in the header (column {i + 1} of {len(header)}; "
                                                 "a trailing comma?)")
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        seen.setdefault(name, []).append(i + 1)
    for name, places in seen.items():
        if len(places) > 1:
            raise BatchRejected(file, partition, f"duplicate column: {name!r} appears {len(places)} times in the "
                                                 f"header (columns {', '.join(map(str, places))})", column=name)


def _short_or_long_row(end: TextEnd, line: int, row: list[str], header: list[str], file: str, partition: str):
    if not end.ends_with_newline and end.last_line == line:
        raise BatchRejected(
            file, partition, f"truncated: the last line has {len(row)} of {len(header)} fields and no line end",
            column=header[len(row) - 1] if len(row) <= len(header) else None,
        )
    missing = f"; missing {', '.join(header[len(row):])}" if len(row) < len(header) else ""
    raise BatchRejected(file, partition, f"line {line} has {len(row)} of {len(header)} fields{missing}",
                        column=header[len(row)] if len(row) < len(header) else None)


def parse_csv(content: bytes, file: str, partition: str) -> pd.DataFrame:
    """Read CSV bytes as strings-first, rejecting files that are not a whole UTF-8 table."""
    text = decode_text(content, file, partition)
    check_structure(text, file, partition)
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, ValueError) as exc:
        raise BatchRejected(file, partition, f"malformed CSV: {exc}") from None


# An ISO time of day followed by a UTC designator or an offset: 10:30, 10:30:00.5 then Z, +01, +0100, +01:00.
_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)\s*$")


def refuse_timezone_offsets(raw: pd.DataFrame, spec: DatasetSpec, file: str, partition: str) -> None:
    """The spec's timestamps are naive (no offset, compared with the naive bounds of the day): a timestamp
    with an offset or a Z would be converted silently, so the file is refused with the column named."""
    if spec.timestamp not in raw.columns:
        return
    values = raw[spec.timestamp].dropna().astype(str)
    offset = values[values.str.contains(_OFFSET)]
    if len(offset):
        examples = ", ".join(repr(v) for v in offset.head(3))
        raise BatchRejected(file, partition, f"{len(offset)} of {len(values)} timestamps carry a timezone offset "
                                             f"(e.g. {examples}); the spec's timestamps are naive: send them "
                                             "without an offset or Z", column=spec.timestamp)


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
    refuse_timezone_offsets(raw, spec, file, partition)
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
