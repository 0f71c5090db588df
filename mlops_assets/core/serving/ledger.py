"""The prediction ledger: every score served, which model gave it, by which route, and whether it was acted on.

It answers "which model decided entity X on day D, and what did it say" — including what a shadow model
said about the same row, marked as not acted on. Layout: one Parquet file per (model version, route, day),
`<root>/<version>/<route>/<day>.parquet`, written through `PartitionStore` (temporary file, then rename),
so a re-scored day replaces its file whole and parallel writers of different days never contend.

Row schema (the ledger's own columns; the dataset's columns come from the spec when the rows are made):

    day            DATE       the feature-table partition the row belongs to (its timestamp's date)
    entity         VARCHAR    the spec's entity id, or the row's ISO timestamp when the spec has none
    timestamp      TIMESTAMP  the row's timestamp
    score          DOUBLE     probability of the positive class, or the regression prediction
    decision       DOUBLE     1.0 / 0.0 (score >= threshold) for classification; the prediction for regression
    threshold      DOUBLE     the decision threshold (NULL for regression)
    model_version  VARCHAR
    route          VARCHAR    "champion" | "canary" | "shadow"
    acted_on       BOOLEAN    False for every shadow row
    scored_at      TIMESTAMPTZ (UTC)
    latency_ms_per_1k DOUBLE  this model's scoring time per 1,000 rows on the batch's canary rows; measured
                              only while a canary serves (canary rows and the champion's shadow rows), else NULL
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from mlops_assets.core.ingestion.landing import check_partition_key, safe_join
from mlops_assets.core.registry.model_registry import VERSION_NAME
from mlops_assets.core.io.storage import PartitionStore, scratch_connection

ROUTES = ("champion", "canary", "shadow")
ACTING_ROUTES = ("champion", "canary")
LEDGER_COLUMNS = ("day", "entity", "timestamp", "score", "decision", "threshold", "model_version", "route",
                  "acted_on", "scored_at", "latency_ms_per_1k")
_OPTIONAL_COLUMNS = ("threshold", "latency_ms_per_1k")  # NULL when absent (regression; no canary)
# Acted-on rows first, then champion before canary before shadow: the order a reader wants the story in.
_ROUTE_ORDER = "CASE route WHEN 'champion' THEN 0 WHEN 'canary' THEN 1 ELSE 2 END"


class LedgerError(ValueError):
    """Rows that cannot go into the ledger, or a query argument that cannot name a ledger file."""


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_NAME.fullmatch(version) or version in (".", ".."):
        raise LedgerError(f"invalid model version {version!r}: use letters, digits and . _ - : +")
    return version


def _day_key(day: dt.date | str) -> str:
    return day.isoformat() if isinstance(day, dt.date) else check_partition_key(str(day))


def entity_keys(timestamps: pd.Series, entity_ids: pd.Series | None = None) -> pd.Series:
    """The ledger's `entity` for each row: the entity id as text, else the timestamp in ISO format
    (datetime.isoformat's convention: no fraction when the microseconds are zero)."""
    if entity_ids is not None:
        return entity_ids.astype(str).reset_index(drop=True)
    ts = pd.to_datetime(timestamps).reset_index(drop=True)
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    values = ts.to_numpy(dtype="datetime64[us]")
    whole = np.datetime_as_string(values, unit="s")
    fraction = ts.dt.microsecond.to_numpy() != 0
    if fraction.any():
        whole = np.where(fraction, np.datetime_as_string(values, unit="us"), whole)
    return pd.Series(whole, dtype=object)


def _entity_alternatives(entity: str) -> list[str]:
    """The entity as typed, plus its canonical ISO form when it reads as a timestamp ("2025-01-05 10:30")."""
    out = [str(entity)]
    try:
        out.append(dt.datetime.fromisoformat(str(entity)).replace(tzinfo=None).isoformat())
    except ValueError:
        pass
    return list(dict.fromkeys(out))


class PredictionLedger:
    def __init__(self, root: Path):
        self.root = Path(root)

    # ----------------------------------------------------------------------------------------- paths
    def _version_store(self, version: str) -> PartitionStore:
        return PartitionStore(safe_join(self.root, check_version(version)))

    def path(self, version: str, route: str, day: dt.date | str) -> Path:
        return self._version_store(version).path(_check_route(route), _day_key(day))

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and VERSION_NAME.fullmatch(p.name))

    def _files(self, versions: list[str], start: str | None = None, end: str | None = None,
               day: str | None = None) -> list[Path]:
        out = []
        for version in versions:
            folder = safe_join(self.root, check_version(version))
            for route in ROUTES:
                for path in sorted((folder / route).glob("*.parquet")):
                    key = path.stem
                    if day is not None and key != day:
                        continue
                    if (start and key < start) or (end and key > end):
                        continue
                    out.append(path)
        return out

    # ----------------------------------------------------------------------------------------- writes
    def write(self, rows: pd.DataFrame, *, replace_days: bool = False) -> list[Path]:
        """Store ledger rows, one file per (version, route, day) present; returns the files written.

        A file present again is replaced (re-scoring a day is idempotent). With `replace_days`, every other
        ledger file of the days written is removed too, so a re-scored day does not keep decisions from a
        model that no longer serves it.
        """
        rows = _checked_rows(rows)
        written = []
        for (version, route, day), group in rows.groupby(["model_version", "route", "day"], sort=True):
            day = day.date()
            group = group[list(LEDGER_COLUMNS)].reset_index(drop=True).assign(day=day)  # stored as a DATE
            written.append(self._version_store(version).write(route, day.isoformat(), group))
        if replace_days:
            keep = {p.resolve() for p in written}
            for day in sorted({d.date().isoformat() for d in rows["day"].unique()}):
                for path in self._files(self.versions(), day=day):
                    if path.resolve() not in keep:
                        path.unlink(missing_ok=True)
        return written

    # ----------------------------------------------------------------------------------------- queries
    def by_version(self, version: str, start: dt.date | str | None = None,
                   end: dt.date | str | None = None) -> pd.DataFrame:
        """Every row scored by `version` (all routes), optionally within [start, end] days inclusive."""
        files = self._files([version], _opt_day(start), _opt_day(end))
        return self._query(files, "model_version = ?", [version])

    def day(self, day: dt.date | str) -> pd.DataFrame:
        """Every row of one day, all versions and routes."""
        return self._query(self._files(self.versions(), day=_day_key(day)), "TRUE", [])

    def for_entity(self, entity: str, day: dt.date | str) -> pd.DataFrame:
        """Which model decided `entity` on `day` and what it said: the acted-on row(s) first, then the
        opinions of models that were only watching (shadow rows, acted_on False)."""
        files = self._files(self.versions(), day=_day_key(day))
        alternatives = _entity_alternatives(entity)
        return self._query(files, "list_contains(?, entity)", [alternatives])

    def summary(self, version: str, start: dt.date | str | None = None,
                end: dt.date | str | None = None) -> pd.DataFrame:
        """Per route: rows, rows acted on, days, first and last day, mean score (computed in DuckDB)."""
        files = self._files([version], _opt_day(start), _opt_day(end))
        if not files:
            return pd.DataFrame(columns=["route", "rows", "acted_on", "days", "first_day", "last_day",
                                         "mean_score"])
        sql = (f"SELECT route, count(*) AS rows, count(*) FILTER (WHERE acted_on) AS acted_on, "
               "count(DISTINCT day) AS days, min(day) AS first_day, max(day) AS last_day, avg(score) AS mean_score "
               "FROM read_parquet(?, union_by_name = true) WHERE model_version = ? "
               f"GROUP BY route ORDER BY {_ROUTE_ORDER}")
        with _connect() as con:
            return con.execute(sql, [[str(p) for p in files], version]).df()

    def totals(self, version: str, start: dt.date | str | None = None, end: dt.date | str | None = None) -> dict:
        """All routes together: rows, distinct days, first and last day, mean score."""
        files = self._files([version], _opt_day(start), _opt_day(end))
        out = {"rows": 0, "days": 0, "first_day": None, "last_day": None, "mean_score": None}
        if files:
            sql = ("SELECT count(*), count(DISTINCT day), min(day), max(day), avg(score) "
                   "FROM read_parquet(?, union_by_name = true) WHERE model_version = ?")
            with _connect() as con:
                rows, days, first, last, mean = con.execute(sql, [[str(p) for p in files], version]).fetchone()
            out = {"rows": int(rows), "days": int(days), "first_day": first and first.isoformat(),
                   "last_day": last and last.isoformat(), "mean_score": mean}
        return out

    def _query(self, files: list[Path], where: str, params: list) -> pd.DataFrame:
        if not files:
            return _empty_rows()
        sql = (f"SELECT {', '.join(LEDGER_COLUMNS)} FROM read_parquet(?, union_by_name = true) WHERE {where} "
               f"ORDER BY day, timestamp, acted_on DESC, {_ROUTE_ORDER}, model_version, entity")
        with _connect() as con:
            return con.execute(sql, [[str(p) for p in files], *params]).df()


def _connect() -> duckdb.DuckDBPyConnection:
    con = scratch_connection()
    con.execute("SET TimeZone = 'UTC'")  # scored_at comes back in UTC whatever the machine's zone
    return con


def _opt_day(day: dt.date | str | None) -> str | None:
    return None if day is None else _day_key(day)


def _check_route(route: str) -> str:
    if route not in ROUTES:
        raise LedgerError(f"unknown route {route!r}; expected one of {list(ROUTES)}")
    return route


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
        ("day", "datetime64[us]"), ("entity", object), ("timestamp", "datetime64[us]"), ("score", "float64"),
        ("decision", "float64"), ("threshold", "float64"), ("model_version", object), ("route", object),
        ("acted_on", "bool"), ("scored_at", "datetime64[us, UTC]"), ("latency_ms_per_1k", "float64"))})


def _checked_rows(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in LEDGER_COLUMNS if c not in rows.columns and c not in _OPTIONAL_COLUMNS]
    if missing:
        raise LedgerError(f"ledger rows lack columns {missing}")
    rows = rows.assign(**{c: np.nan for c in _OPTIONAL_COLUMNS if c not in rows.columns})
    bad_routes = sorted(set(rows["route"].unique()) - set(ROUTES))
    if bad_routes:
        raise LedgerError(f"unknown routes {bad_routes}; expected {list(ROUTES)}")
    acted, route = rows["acted_on"].astype(bool), rows["route"]
    if (acted & (route == "shadow")).any():
        raise LedgerError("a shadow row is marked acted_on: shadow models are never acted on")
    if (~acted & route.isin(ACTING_ROUTES)).any():
        raise LedgerError("a champion or canary row is marked not acted_on: they decide the rows they serve")
    for version in rows["model_version"].unique():
        check_version(version)
    if pd.to_datetime(rows["scored_at"]).dt.tz is None:
        raise LedgerError("scored_at must be timezone-aware (UTC)")
    day = _naive(pd.to_datetime(rows["day"])).dt.normalize()
    if (_naive(pd.to_datetime(rows["timestamp"])).dt.normalize() != day).any():
        raise LedgerError("some rows' timestamps fall outside their `day`")
    return rows.assign(day=day)


def _naive(values: pd.Series) -> pd.Series:
    """Wall-clock time: a zone-aware timestamp belongs to the day its own clock shows."""
    return values.dt.tz_localize(None) if values.dt.tz is not None else values
