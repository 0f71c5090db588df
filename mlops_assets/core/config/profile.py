"""Profiling a CSV of history for `mlops spec draft`: one DuckDB pass per question, never the file in pandas.

Every column is read as text (as ingestion reads it) and tested for what it converts to, so a column is numeric
only if every value is a number. Aggregates stream through DuckDB, so a 5-million-row file costs seconds and
a bounded amount of memory.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

# More distinct text values than this and a column is free text or an identifier, not a category.
MAX_CATEGORIES = 50


class ProfileError(ValueError):
    """The CSV cannot be drafted from (a named column is missing, the timestamp does not parse...)."""


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    non_null: int
    numeric: int  # values that convert to a finite number
    whole: int  # numeric values that are whole numbers
    timestamps: int  # values that convert to a timestamp
    distinct: int  # approximate above MAX_CATEGORIES, unless every value is a whole number
    low: float | None
    high: float | None
    mean: float | None
    std: float | None
    values: tuple[str, ...] = ()  # every distinct value, when there are at most MAX_CATEGORIES
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def is_numeric(self) -> bool:
        return self.non_null > 0 and self.numeric == self.non_null

    @property
    def is_timestamp(self) -> bool:
        return self.non_null > 0 and not self.is_numeric and self.timestamps == self.non_null


@dataclass(frozen=True)
class CsvProfile:
    path: str
    rows: int
    columns: dict[str, ColumnProfile]
    first_day: dt.date
    last_day: dt.date
    days_with_rows: int
    median_rows_per_day: float
    duplicate_keys: int  # rows sharing their (timestamp, entity id) with an earlier row


def profile_csv(path: str | Path, timestamp: str, entity_id: str | None = None) -> CsvProfile:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such file")
    con = duckdb.connect()
    con.execute("SET memory_limit = '512MB'")  # spills to disk beyond it instead of growing with the file
    source = str(path).replace("'", "''")
    try:
        con.execute(f"CREATE VIEW data AS SELECT * FROM read_csv('{source}', all_varchar = true, header = true)")
        names = [row[0] for row in con.execute("DESCRIBE data").fetchall()]
    except duckdb.Error as exc:
        raise ProfileError(f"{path}: not a readable CSV ({exc})") from None
    for role, column in (("--timestamp", timestamp), ("--entity-id", entity_id)):
        if column and column not in names:
            raise ProfileError(f"{role} {column!r} is not a column of {path.name} (columns: {', '.join(names)})")

    columns = {name: profile for name, profile in zip(names, _profile_columns(con, names))}
    rows = con.execute("SELECT count(*) FROM data").fetchone()[0]
    ts = _q(timestamp)
    bad = con.execute(f"SELECT count(*) FROM data WHERE TRY_CAST({ts} AS TIMESTAMP) IS NULL").fetchone()[0]
    if bad:
        raise ProfileError(f"--timestamp {timestamp!r}: {bad} of {rows} values are not ISO 8601 timestamps")
    first, last, days, median = con.execute(
        f"SELECT min(day), max(day), count(*), median(n) FROM (SELECT CAST(TRY_CAST({ts} AS TIMESTAMP) AS DATE) "
        "AS day, count(*) AS n FROM data GROUP BY 1)").fetchone()
    keys = ", ".join(_q(c) for c in (timestamp, entity_id) if c)
    distinct_keys = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM data)").fetchone()[0]
    return CsvProfile(str(path), rows, columns, first, last, days, float(median), rows - distinct_keys)


def _profile_columns(con, names: list[str]) -> list[ColumnProfile]:
    parts = []
    for name in names:
        c, x = _q(name), f"TRY_CAST({_q(name)} AS DOUBLE)"
        finite = f"CASE WHEN isfinite({x}) THEN {x} END"
        parts += [f"count({c})", f"count({finite})", f"count(CASE WHEN {finite} = round({finite}) THEN 1 END)",
                  f"count(TRY_CAST({c} AS TIMESTAMP))", f"approx_count_distinct({c})", f"min({finite})",
                  f"max({finite})", f"avg({finite})", f"stddev_samp({finite})"]
    stats = con.execute(f"SELECT {', '.join(parts)} FROM data").fetchone()
    out = []
    for i, name in enumerate(names):
        non_null, numeric, whole, stamps, distinct, low, high, mean, std = stats[i * 9:(i + 1) * 9]
        values, counts = (), {}
        if distinct <= MAX_CATEGORIES * 1.1:  # HyperLogLog errs by a few per cent: count exactly near the cap
            found = con.execute(f"SELECT {_q(name)}, count(*) FROM data WHERE {_q(name)} IS NOT NULL GROUP BY 1 "
                                f"ORDER BY 1 LIMIT {MAX_CATEGORIES + 1}").fetchall()
            if len(found) <= MAX_CATEGORIES:
                values, counts, distinct = tuple(v for v, _ in found), dict(found), len(found)
        elif whole == non_null and distinct >= 0.9 * non_null:  # maybe an identifier: count exactly
            distinct = con.execute(f"SELECT count(DISTINCT {_q(name)}) FROM data").fetchone()[0]
        out.append(ColumnProfile(name, non_null, numeric, whole, stamps, distinct, low, high, mean, std,
                                 values, counts))
    return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
