"""The registry's thin database adapter: one transaction API over DuckDB and PostgreSQL.

The registry writes portable SQL with `?` placeholders and `{s}` for its schema; the adapter swaps in the
driver's placeholder and the validated schema name, and opens each transaction on a fresh connection:

- DuckDB lets one process at a time open a file read-write, so each transaction first takes an OS file lock
  (`<file>.lock`, fcntl.flock) and retries while anyone outside the registry holds the file. Dagster's
  multiprocess executor can then run several writers side by side without corrupting or failing.
- PostgreSQL writers take a transaction-scoped advisory lock per registry schema: writes are rare, and
  exclusive aliases and gap-free ids need them applied one at a time.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_SCHEMA = "mlops_registry"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class RegistryError(Exception):
    """A registry operation was refused or failed; the message says why in one line."""


class Transaction:
    """One open transaction; SQL is written with `?` placeholders and `{s}` for the registry's schema."""

    def __init__(self, cursor, schema: str, placeholder: str):
        self._cur, self._schema, self._placeholder = cursor, schema, placeholder
        self._next_ids: dict[str, int] = {}

    def rows(self, sql: str, params=()) -> list[tuple]:
        # The schema is a validated identifier (identifiers cannot be bound); values are always parameters.
        sql = sql.replace("{s}", self._schema).replace("?", self._placeholder)
        self._cur.execute(sql, tuple(params))
        return self._cur.fetchall() if self._cur.description else []

    def scalar(self, sql: str, params=()):
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def next_id(self, table: str, column: str = "id") -> int:
        """Gap-free ids without sequences (DDL differs); safe because writers are serialised."""
        if table not in self._next_ids:
            self._next_ids[table] = self.scalar(f"SELECT COALESCE(MAX({column}), 0) + 1 FROM {{s}}.{table}")
        self._next_ids[table] += 1
        return self._next_ids[table] - 1


class DuckDBBackend:
    def __init__(self, path: Path, schema: str, lock_timeout_s: float = 120.0):
        self.path, self.schema, self.lock_timeout_s = path, schema, lock_timeout_s
        self.lock_path = path.with_name(path.name + ".lock")

    @contextmanager
    def transaction(self, write: bool):
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # every process using the registry agrees on this lock
            try:
                con = self._connect(duckdb)
                try:
                    con.begin()
                    yield Transaction(con, self.schema, "?")
                    con.commit()
                except BaseException:
                    con.rollback()
                    raise
                finally:
                    con.close()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def change_token(self) -> tuple[tuple, float] | None:
        """(stat of the database file and its write-ahead log, newest mtime): every committed write changes the
        log or, at a checkpoint, the file (size, mtime, or inode when replaced)."""
        stats, newest = [], 0.0
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                st = path.stat()
            except FileNotFoundError:
                stats.append(None)
                continue
            stats.append((st.st_ino, st.st_size, st.st_mtime_ns))
            newest = max(newest, st.st_mtime_ns / 1e9)
        return tuple(stats), newest

    def _connect(self, duckdb):
        # Someone outside the registry (a DuckDB shell, say) may still hold the file: retry for a while.
        deadline, pause = time.monotonic() + self.lock_timeout_s, 0.05
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise RegistryError(f"cannot open the registry database {self.path}: {exc}") from exc
                time.sleep(pause)
                pause = min(pause * 2, 1.0)


class PostgresBackend:
    def __init__(self, dsn: str, schema: str):
        self.dsn, self.schema = dsn, schema
        digest = hashlib.sha256(f"mlops_assets.registry:{schema}".encode()).digest()
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)

    def change_token(self) -> None:
        return None  # no file to look at: readers query (a connection and a query cost a few ms)

    @contextmanager
    def transaction(self, write: bool):
        import psycopg2

        try:
            con = psycopg2.connect(self.dsn, connect_timeout=10)
        except psycopg2.OperationalError as exc:
            raise RegistryError(f"cannot connect to the registry database: {str(exc).strip()}") from exc
        try:
            with con:  # commits on success, rolls back on error
                with con.cursor() as cur:
                    if write:
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
                    yield Transaction(cur, self.schema, "%s")
        finally:
            con.close()


def backend_for(url: str) -> DuckDBBackend | PostgresBackend:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", DEFAULT_SCHEMA)
    if not _IDENTIFIER.fullmatch(schema):
        raise RegistryError(f"invalid registry schema {schema!r}: use lower-case letters, digits and '_'")
    if parts.scheme == "duckdb":
        if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise RegistryError(f"invalid DuckDB registry URL {url!r}: use duckdb:///relative or duckdb:////absolute")
        return DuckDBBackend(Path(parts.path[1:]), schema)
    if parts.scheme in ("postgresql", "postgres"):
        return PostgresBackend(urlunsplit(parts._replace(query=urlencode(query))), schema)
    raise RegistryError(f"unsupported registry URL {url!r}: expected duckdb:///... or postgresql://...")
