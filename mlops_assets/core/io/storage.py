"""Partitioned table storage: one Parquet file per asset partition, written atomically, queried with DuckDB.

One file per partition means parallel writers never contend for a lock (a backfill with the multiprocess
executor writes 30 days at once), and a crash mid-write leaves the previous file in place: DuckDB writes to
a temporary file in the same folder, then it is renamed over the old one.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from mlops_assets.core.io.objects import ObjectNotFound, ObjectStore, as_object_store
from mlops_assets.core.ingestion.landing import check_partition_key, safe_join

_ASSET_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class MissingPartition(LookupError):
    pass


_SCRATCH: tuple[int, duckdb.DuckDBPyConnection] | None = None


def _close_scratch() -> None:
    """Close and drop the shared database before interpreter teardown, which would report it leaked."""
    global _SCRATCH
    if _SCRATCH is not None:
        _SCRATCH[1].close()
        _SCRATCH = None


def scratch_connection() -> duckdb.DuckDBPyConnection:
    """A fresh connection to this process's in-memory DuckDB, for one query over Parquet files.

    Opening a new in-memory database costs ~25 ms; a cursor on a shared one ~0.3 ms, and a replay reads
    thousands of partitions. Each cursor is its own connection, so threads do not share state; the database
    is recreated after a fork."""
    global _SCRATCH
    if _SCRATCH is None or _SCRATCH[0] != os.getpid():
        _SCRATCH = (os.getpid(), duckdb.connect())
        atexit.register(_close_scratch)
    return _SCRATCH[1].cursor()


def _check_asset_name(asset: str) -> str:
    if not asset or not set(asset) <= _ASSET_NAME_CHARS:
        raise ValueError(f"table name {asset!r} must be lower-case letters, digits and underscores")
    return asset


class PartitionStore:
    """Tables (`<asset>/<partition>.parquet`) and documents (`<asset>/<partition>.json`) in an object store: a
    local folder (a Path, as before) or any `ObjectStore` (S3). A table is written by DuckDB to a local staging
    file, then published in one step (a rename locally, one PUT on S3); DuckDB reads it where it is."""

    def __init__(self, root: Path | ObjectStore):
        self.objects = as_object_store(root)
        self.root = self.objects.root if self.objects.is_local else None  # the folder, for a local store

    # ----------------------------------------------------------------------------------------- keys
    def key(self, asset: str, partition: str, suffix: str = ".parquet") -> str:
        return f"{_check_asset_name(asset)}/{check_partition_key(partition)}{suffix}"

    def location(self, asset: str, partition: str, suffix: str = ".parquet") -> str:
        """Where a partition is, for people and DuckDB (a path, or an s3:// URL)."""
        return self.objects.duckdb_path(self.key(asset, partition, suffix))

    def folder(self, asset: str) -> Path:
        """The asset's folder (local stores only)."""
        return safe_join(self._local_root(), _check_asset_name(asset))

    def path(self, asset: str, partition: str, suffix: str = ".parquet") -> Path:
        """The partition's file (local stores only)."""
        return safe_join(self.folder(asset), check_partition_key(partition) + suffix)

    def _local_root(self) -> Path:
        if self.root is None:
            raise TypeError(f"{self.objects!r} is not a local folder: use keys and location(), not paths")
        return self.root

    def exists(self, asset: str, partition: str) -> bool:
        return self.objects.exists(self.key(asset, partition))

    def partitions(self, asset: str) -> list[str]:
        return _stems(self.objects.list_names(_check_asset_name(asset)), ".parquet")

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB cursor that can read this store's `location`s."""
        return self.objects.connection()

    # ----------------------------------------------------------------------------------------- tables
    def staging_path(self, asset: str, partition: str) -> Path:
        """A private local file for a table written elsewhere (DuckDB straight from a CSV) and then put in place
        by `write(asset, partition, that_path)`: beside the partition's file locally (so publishing is a rename).
        Not a `.parquet` name, so never read as a partition."""
        return self.objects.staging_path(self.key(asset, partition))

    def write(self, asset: str, partition: str, frame: pd.DataFrame | Path) -> str:
        """Replace the partition's table atomically with `frame`, or with the Parquet file at a staging path
        (which is consumed). Returns its location."""
        key = self.key(asset, partition)
        if isinstance(frame, (str, os.PathLike)):
            staged = Path(frame)
            if self.objects.is_local and staged.parent.resolve() != self.path(asset, partition).parent:
                raise ValueError(f"a staged table must be beside its partition (in {self.folder(asset)}), not {staged}")
            self.objects.put_file(key, staged, move=True)
            return self.location(asset, partition)
        tmp = self.objects.staging_path(key)
        if "'" in str(tmp):  # COPY's target cannot be a bound parameter; our paths never hold quotes
            raise ValueError(f"refusing to write to a path with a quote: {tmp}")
        try:
            with scratch_connection() as con:
                con.register("frame", frame)
                con.execute(f"COPY frame TO '{tmp}' (FORMAT PARQUET)")
            self.objects.put_file(key, tmp, move=True)
        finally:
            tmp.unlink(missing_ok=True)
        return self.location(asset, partition)

    def read(self, asset: str, partition: str) -> pd.DataFrame:
        with self._readable(asset, [partition]) as [path], scratch_connection() as con:
            return con.execute("SELECT * FROM read_parquet(?)", [path]).df()

    def read_many(self, asset: str, partitions: list[str]) -> pd.DataFrame:
        """Several partitions as one frame, in partition order, with a `partition` column."""
        if not partitions:
            return pd.DataFrame()
        with self._readable(asset, partitions) as paths, scratch_connection() as con:
            frame = con.execute(
                "SELECT *, regexp_extract(filename, '(\\d{4}-\\d{2}-\\d{2})\\.parquet$', 1) AS partition "
                "FROM read_parquet(?, filename = true, union_by_name = true) ORDER BY partition", [paths],
            ).df()
        return frame.drop(columns=["filename"])

    @contextlib.contextmanager
    def _readable(self, asset: str, partitions: list[str]) -> Iterator[list[str]]:
        """Local files of the partitions' tables (see ObjectStore.readable), or MissingPartition naming them."""
        keys = [self.key(asset, p) for p in partitions]
        try:
            with self.objects.readable(keys) as paths:
                yield paths
        except ObjectNotFound:
            present = set(self.partitions(asset))
            missing = [p for p in partitions if p not in present] or partitions
            raise MissingPartition(f"no {asset} table for partition{'s' if len(missing) > 1 else ''} "
                                   f"{', '.join(missing)} (looked in {self.objects.url(asset)})") from None

    def fingerprint(self, asset: str, partition: str) -> str:
        """A content hash of a stored table (column names and types, row count, every value in its row's
        position), computed by DuckDB without loading the table: the data version of a raw table, however large.
        DuckDB's hash() may change between DuckDB versions (the data version would then change once)."""
        with self._readable(asset, [partition]) as [path], scratch_connection() as con:
            where = _quoted(path)
            schema = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{where}')").fetchall()
            found = con.execute(f"SELECT count(*), bit_xor(hash(t)), sum(hash(t)::HUGEINT) FROM "
                                f"read_parquet('{where}', file_row_number = true) t").fetchone()
        return fingerprint_digest(schema, *found)

    def row_counts(self, asset: str, partitions: list[str]) -> dict[str, int]:
        """Rows of each stored partition among `partitions`, from the Parquet footers (no data read)."""
        stored = set(self.partitions(asset))
        present = [p for p in partitions if p in stored]
        if not present:
            return {}
        with self._readable(asset, present) as paths, scratch_connection() as con:
            return {p: int(con.execute("SELECT count(*) FROM read_parquet(?)", [path]).fetchone()[0])
                    for p, path in zip(present, paths)}

    def remove(self, asset: str, partition: str) -> None:
        self.objects.delete(self.key(asset, partition))

    # ----------------------------------------------------------------------------------------- documents
    def write_json(self, asset: str, partition: str, document) -> str:
        key = self.key(asset, partition, ".json")
        self.objects.put_bytes(key, json.dumps(document, indent=2, sort_keys=True, default=str).encode())
        return self.objects.url(key)

    def has_document(self, asset: str, partition: str) -> bool:
        return self.objects.exists(self.key(asset, partition, ".json"))

    def documents(self, asset: str) -> list[str]:
        return _stems(self.objects.list_names(_check_asset_name(asset)), ".json")

    def document_signatures(self, asset: str) -> dict[str, list]:
        """{partition: what changes when its document is rewritten}, from a listing (no document read)."""
        out = {}
        for key, signature in self.objects.list_entries(_check_asset_name(asset)).items():
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".json") and _is_partition(name[:-5]) and "/" not in key[len(asset) + 1:]:
                out[name[:-5]] = signature
        return out

    def read_json(self, asset: str, partition: str):
        try:
            return json.loads(self.objects.get_bytes(self.key(asset, partition, ".json")))
        except ObjectNotFound:
            raise MissingPartition(f"no {asset} document for partition {partition}") from None

    # ----------------------------------------------------------------------------------------- SQL
    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection of its own (the caller closes it) with one view per stored table (`raw_batch`,
        `feature_table`, ...), each row carrying its `partition`."""
        con = self.objects.new_connection()
        for folder in self.objects.list_folders():
            if set(folder) <= _ASSET_NAME_CHARS and self.partitions(folder):
                pattern = _quoted(self.objects.duckdb_path(f"{folder}/*.parquet"))
                con.execute(
                    f"CREATE VIEW {folder} AS SELECT * EXCLUDE (filename), "
                    "regexp_extract(filename, '(\\d{4}-\\d{2}-\\d{2})\\.parquet$', 1) AS partition "
                    f"FROM read_parquet('{pattern}', filename = true, union_by_name = true)"
                )
        return con


def _stems(names: list[str], suffix: str) -> list[str]:
    """Partition keys of the `<key><suffix>` names (temporary and staging files start with a dot)."""
    return sorted(n[:-len(suffix)] for n in names if n.endswith(suffix) and not n.startswith("."))


def _is_partition(key: str) -> bool:
    try:
        return check_partition_key(key) == key
    except ValueError:
        return False


def fingerprint_digest(schema, rows: int, xor, total) -> str:
    """PartitionStore.fingerprint from DESCRIBE's rows and the aggregates count(*), bit_xor(hash(t)),
    sum(hash(t)::HUGEINT) over `read_parquet(path, file_row_number = true) t` (the ingest computes them while it
    checks the table)."""
    digest = hashlib.sha256(json.dumps([[name, kind] for name, kind, *_ in schema]).encode())
    digest.update(f"{rows}:{xor}:{total}".encode())
    return digest.hexdigest()


def _quoted(path) -> str:
    return str(path).replace("'", "''")


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a frame (values, column names and dtypes), stable across runs and machines."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
