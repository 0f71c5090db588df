"""The prediction ledger: every score served, which model gave it, by which route, and whether it was acted on.

It answers "which model decided entity X on day D, and what did it say" — including what a shadow model
said about the same row, marked as not acted on. Layout: one Parquet file per day, `<root>/<day>.parquet`,
holding every version and route that scored the day. A day is written whole to a temporary file in the same
folder, flushed to disk, then renamed over the old one: replacing a day (a new champion re-scoring it) is a
single rename, so a process killed at any point leaves either the old day or the new one, never both (two
acted-on decisions for one entity). Parallel writers of different days never contend.

Rows scored online (`mlops serve`) are appended, never rewritten: each flush of the service's buffer is one
more part file, `<root>/online/<day>/<part>.parquet` (part names sort in flush order), written atomically
like a day file. Every query reads a day's part files together with its day file, and batch scoring's
replacing a day leaves them alone: they are decisions already acted on.

Ledgers written before kept one file per (version, route, day), `<root>/<version>/<route>/<day>.parquet`.
They are still read, for the days that have no day file yet; a day file, once present, is the whole day (a
write replaces the day's older files with its day file, then removes them).

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
    latency_ms_per_1k DOUBLE  this model's CPU time per 1,000 rows (median of the batch's interleaved repeats);
                              only while a canary serves (the canary's rows and the champion's shadow rows), else
                              NULL; the repeats themselves are in the day's scoring stats (canary_latency)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import time
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pandas as pd

from mlops_assets.core.ingestion.landing import check_partition_key, safe_join
from mlops_assets.core.registry.model_registry import VERSION_NAME
from mlops_assets.core.io.objects import ObjectStore, as_object_store
from mlops_assets.core.io.storage import scratch_connection

ROUTES = ("champion", "canary", "shadow")
ONLINE_FOLDER = "online"
ACTING_ROUTES = ("champion", "canary")
LEDGER_COLUMNS = ("day", "entity", "timestamp", "score", "decision", "threshold", "model_version", "route",
                  "acted_on", "scored_at", "latency_ms_per_1k")
_OPTIONAL_COLUMNS = ("threshold", "latency_ms_per_1k")  # NULL when absent (regression; no canary)
# Acted-on rows first, then champion before canary before shadow: the order a reader wants the story in.
_ROUTE_ORDER = "CASE route WHEN 'champion' THEN 0 WHEN 'canary' THEN 1 ELSE 2 END"
_PART_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_STALE_TEMP_SECONDS = 3600  # a temporary day file this old was left by a killed writer


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
    ts = timestamps if pd.api.types.is_datetime64_any_dtype(timestamps) else pd.to_datetime(timestamps)
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    values = np.asarray(ts.to_numpy(dtype="datetime64[us]"))
    whole = np.datetime_as_string(values, unit="s")
    fraction = values != values.astype("datetime64[s]")  # a microsecond part (NaT: "NaT" either way)
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
    """The ledger in an object store: a local folder (a Path, as before) or any `ObjectStore` (S3, where a day
    is published by one PUT, so readers see the old day or the new one)."""

    def __init__(self, root: Path | ObjectStore):
        self.objects = as_object_store(root)
        self.root = self.objects.root if self.objects.is_local else None  # the folder, for a local ledger

    # ----------------------------------------------------------------------------------------- paths
    def day_path(self, day: dt.date | str) -> Path:
        """The file holding every row of `day` (local ledgers only)."""
        return safe_join(self.root, _day_key(day) + ".parquet")

    def days(self) -> list[str]:
        """Every day with rows, in any layout."""
        online = set(self.objects.list_folders(ONLINE_FOLDER))
        return sorted(set(self._day_files()) | {_stem(k) for k in self._legacy_files()}
                      | {d for d in online if _is_day(d)})

    def versions(self) -> list[str]:
        """Every model version with rows in the ledger."""
        files = self._files()
        if not files:
            return []
        with self._reading(files) as (con, paths):
            rows = con.execute("SELECT DISTINCT model_version FROM read_parquet(?, union_by_name = true) "
                               "ORDER BY model_version", [paths]).fetchall()
        return [r[0] for r in rows]

    @contextlib.contextmanager
    def _reading(self, keys: list[str]) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[str]]]:
        """A DuckDB connection and local files of `keys` (the files themselves, or one GET each from S3)."""
        with self.objects.readable(keys) as paths, scratch_connection() as con:
            con.execute("SET TimeZone = 'UTC'")  # scored_at comes back in UTC whatever the machine's zone
            yield con, paths

    def _day_files(self) -> dict[str, str]:
        """{day: key} of the day files."""
        return {_stem(n): n for n in self.objects.list_names() if n.endswith(".parquet") and _is_day(_stem(n))}

    def _legacy_files(self, day: str | None = None) -> list[str]:
        """Keys of the previous layout, <version>/<route>/<day>.parquet."""
        keys = []
        for folder in self.objects.list_folders():
            if not VERSION_NAME.fullmatch(folder) or folder == ONLINE_FOLDER:
                continue
            for route in self.objects.list_folders(folder):
                if route in ROUTES:
                    keys += [f"{folder}/{route}/{n}" for n in self.objects.list_names(f"{folder}/{route}")
                             if n.endswith(".parquet") and _is_day(_stem(n)) and (day is None or _stem(n) == day)]
        return sorted(keys)

    def _online_files(self, start: str | None = None, end: str | None = None, day: str | None = None) -> list[str]:
        """Keys of the online part files of the days asked for, day by day in flush order."""
        if day is not None:  # one day: only its own folder is listed, so the cost does not grow with history
            days = [day]
        else:
            days = [d for d in self.objects.list_folders(ONLINE_FOLDER) if _is_day(d)
                    and not (start and d < start) and not (end and d > end)]
        return [f"{ONLINE_FOLDER}/{d}/{n}" for d in sorted(days)
                for n in self.objects.list_names(f"{ONLINE_FOLDER}/{d}") if n.endswith(".parquet")]

    def _files(self, start: str | None = None, end: str | None = None, day: str | None = None) -> list[str]:
        """Every key holding rows of the days asked for: batch files and online parts."""
        return self._batch_files(start, end, day) + self._online_files(start, end, day)

    def _batch_files(self, start: str | None = None, end: str | None = None, day: str | None = None) -> list[str]:
        """The keys holding the days asked for: a day's file when it has one, else its legacy files."""
        if day is not None and self.objects.exists(f"{day}.parquet"):
            return [f"{day}.parquet"]  # one day: no listing, so its cost does not grow with history
        current = self._day_files()
        files = list(current.values()) + [k for k in self._legacy_files(day) if _stem(k) not in current]
        return sorted((k for k in files if (day is None or _stem(k) == day) and not (start and _stem(k) < start)
                       and not (end and _stem(k) > end)), key=lambda k: (_stem(k), k))

    # ----------------------------------------------------------------------------------------- writes
    def write(self, rows: pd.DataFrame, *, replace_days: bool = False) -> list[str]:
        """Store ledger rows; returns the locations of the day files written, one per day present.

        Each day is rewritten whole in one atomic step (temporary file, fsync, rename; one PUT on S3). Without
        `replace_days`, the day keeps its rows from other (version, route) pairs, and a pair written again is
        replaced (re-scoring a day is idempotent). With `replace_days`, the day holds exactly the rows given,
        so a re-scored day does not keep decisions from a model that no longer serves it.
        """
        rows = _checked_rows(rows)
        written = []
        for day, group in rows.groupby("day", sort=True):
            key = day.date().isoformat()
            group = group[list(LEDGER_COLUMNS)].reset_index(drop=True)
            written.append(self._replace_day(key, group, keep_others=not replace_days))
            for legacy in self._legacy_files(key):  # superseded by the day file: readers no longer look at them
                self.objects.delete(legacy)
        return written

    def _replace_day(self, day: str, rows: pd.DataFrame, keep_others: bool) -> str:
        key = f"{_day_key(day)}.parquet"
        self._remove_stale_temporaries(day)
        tmp = self.objects.staging_path(key)
        if "'" in str(tmp):  # COPY's target cannot be a bound parameter; our paths never hold quotes
            raise LedgerError(f"refusing to write to a path with a quote: {tmp}")
        sources = ["SELECT * REPLACE (CAST(day AS DATE) AS day) FROM new_rows"]
        params: list = []
        old_files = self._batch_files(day=day) if keep_others else []
        try:
            with self._reading(old_files) as (con, old_paths):
                con.register("new_rows", rows)
                if old_files:
                    con.register("written", rows[["model_version", "route"]].drop_duplicates())
                    sources.insert(0, "SELECT * FROM read_parquet(?, union_by_name = true) AS old WHERE NOT EXISTS "
                                      "(SELECT 1 FROM written w WHERE w.model_version = old.model_version "
                                      "AND w.route = old.route)")
                    params.append(old_paths)
                    # COPY takes no parameters: build the day's rows first, then write them
                    con.execute(f"CREATE TEMP TABLE day_rows AS {' UNION ALL BY NAME '.join(sources)}", params)
                    sources = ["SELECT * FROM day_rows"]
                con.execute(f"COPY ({sources[0]}) TO '{tmp}' (FORMAT PARQUET)")
            _fsync(tmp)
            self.objects.put_file(key, tmp, move=True)  # the one step that switches readers to the new day
        finally:
            tmp.unlink(missing_ok=True)
        if self.root is not None:
            _fsync(self.root)
        return self.objects.url(key)

    def append_online(self, rows: pd.DataFrame, part: str) -> list[str]:
        """Store rows scored online as new part files, one per day present, named `part` (letters, digits,
        `-`, `_`; the caller makes names sort in the order it flushes). Each part is published atomically
        (temporary file, fsync, rename; one PUT on S3), so a crash leaves it whole or absent; existing files are
        never touched. Returns the parts' locations."""
        if not _PART_NAME.fullmatch(part):
            raise LedgerError(f"invalid online part name {part!r}: use letters, digits, '-' and '_'")
        rows = _checked_rows(rows)
        written = []
        for day, group in rows.groupby("day", sort=True):
            key = f"{ONLINE_FOLDER}/{day.date().isoformat()}/{part}.parquet"
            if self.objects.exists(key):
                raise LedgerError(f"online part {part}.parquet of {day.date()} already exists")
            tmp = self.objects.staging_path(key)
            if "'" in str(tmp):  # COPY's target cannot be a bound parameter
                raise LedgerError(f"refusing to write to a path with a quote: {tmp}")
            try:
                with scratch_connection() as con:
                    con.register("new_rows", group[list(LEDGER_COLUMNS)].reset_index(drop=True))
                    con.execute("COPY (SELECT * REPLACE (CAST(day AS DATE) AS day) FROM new_rows) "
                                f"TO '{tmp}' (FORMAT PARQUET)")
                _fsync(tmp)
                self.objects.put_file(key, tmp, move=True)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(self.objects.url(key))
        return written

    def _remove_stale_temporaries(self, day: str) -> None:
        if self.root is None:  # staging files of an S3 ledger live in the temporary folder, not beside the days
            return
        now = time.time()
        for path in self.root.glob(f".{day}.parquet.*"):
            try:
                if now - path.stat().st_mtime > _STALE_TEMP_SECONDS:
                    path.unlink()
            except FileNotFoundError:
                pass

    # ----------------------------------------------------------------------------------------- queries
    def by_version(self, version: str, start: dt.date | str | None = None,
                   end: dt.date | str | None = None) -> pd.DataFrame:
        """Every row scored by `version` (all routes), optionally within [start, end] days inclusive."""
        files = self._files(_opt_day(start), _opt_day(end))
        return self._query(files, "model_version = ?", [check_version(version)])

    def day(self, day: dt.date | str) -> pd.DataFrame:
        """Every row of one day, all versions and routes."""
        return self._query(self._files(day=_day_key(day)), "TRUE", [])

    def for_entity(self, entity: str, day: dt.date | str) -> pd.DataFrame:
        """Which model decided `entity` on `day` and what it said: the acted-on row(s) first, then the
        opinions of models that were only watching (shadow rows, acted_on False)."""
        files = self._files(day=_day_key(day))
        alternatives = _entity_alternatives(entity)
        return self._query(files, "list_contains(?, entity)", [alternatives])

    def summary(self, version: str, start: dt.date | str | None = None,
                end: dt.date | str | None = None) -> pd.DataFrame:
        """Per route: rows, rows acted on, days, first and last day, mean score (computed in DuckDB)."""
        files = self._files(_opt_day(start), _opt_day(end))
        check_version(version)
        if not files:
            return pd.DataFrame(columns=["route", "rows", "acted_on", "days", "first_day", "last_day",
                                         "mean_score"])
        sql = (f"SELECT route, count(*) AS rows, count(*) FILTER (WHERE acted_on) AS acted_on, "
               "count(DISTINCT day) AS days, min(day) AS first_day, max(day) AS last_day, avg(score) AS mean_score "
               "FROM read_parquet(?, union_by_name = true) WHERE model_version = ? "
               f"GROUP BY route ORDER BY {_ROUTE_ORDER}")
        with self._reading(files) as (con, paths):
            return con.execute(sql, [paths, version]).df()

    def totals(self, version: str, start: dt.date | str | None = None, end: dt.date | str | None = None) -> dict:
        """All routes together: rows, distinct days, first and last day, mean score."""
        files = self._files(_opt_day(start), _opt_day(end))
        check_version(version)
        out = {"rows": 0, "days": 0, "first_day": None, "last_day": None, "mean_score": None}
        if files:
            sql = ("SELECT count(*), count(DISTINCT day), min(day), max(day), avg(score) "
                   "FROM read_parquet(?, union_by_name = true) WHERE model_version = ?")
            with self._reading(files) as (con, paths):
                rows, days, first, last, mean = con.execute(sql, [paths, version]).fetchone()
            out = {"rows": int(rows), "days": int(days), "first_day": first and first.isoformat(),
                   "last_day": last and last.isoformat(), "mean_score": mean}
        return out

    def _query(self, files: list[str], where: str, params: list) -> pd.DataFrame:
        if not files:
            return _empty_rows()
        sql = (f"SELECT {', '.join(LEDGER_COLUMNS)} FROM read_parquet(?, union_by_name = true) WHERE {where} "
               f"ORDER BY day, timestamp, acted_on DESC, {_ROUTE_ORDER}, model_version, entity")
        with self._reading(files) as (con, paths):
            return con.execute(sql, [paths, *params]).df()


def _stem(key: str) -> str:
    """`2024-01-01` of `.../2024-01-01.parquet`."""
    return key.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _is_day(name: str) -> bool:
    try:
        return check_partition_key(name) == name
    except ValueError:
        return False


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, so a rename survives a power cut, not just a kill."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
