"""Partitioned table storage: one Parquet file per asset partition, written atomically, queried with DuckDB.

One file per partition means parallel writers never contend for a lock (a backfill with the multiprocess
executor writes 30 days at once), and a crash mid-write leaves the previous file in place: DuckDB writes to
a temporary file in the same folder, then it is renamed over the old one.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import threading
import uuid
from pathlib import Path

import duckdb
import pandas as pd

from mlops_assets.core.io.atomic import write_atomic
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
    def __init__(self, root: Path):
        self.root = Path(root)

    # ----------------------------------------------------------------------------------------- paths
    def folder(self, asset: str) -> Path:
        return safe_join(self.root, _check_asset_name(asset))

    def path(self, asset: str, partition: str, suffix: str = ".parquet") -> Path:
        return safe_join(self.folder(asset), check_partition_key(partition) + suffix)

    def exists(self, asset: str, partition: str) -> bool:
        return self.path(asset, partition).exists()

    def partitions(self, asset: str) -> list[str]:
        folder = self.folder(asset)
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.exists() else []

    # ----------------------------------------------------------------------------------------- tables
    def staging_path(self, asset: str, partition: str) -> Path:
        """A private file beside the partition's table, for a table written elsewhere (DuckDB straight from a
        CSV) and then put in place by `write(asset, partition, that_path)`. Not a `.parquet` name, so never
        read as a partition."""
        target = self.path(asset, partition)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.staged-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}")

    def write(self, asset: str, partition: str, frame: pd.DataFrame | Path) -> Path:
        """Replace the partition's table atomically with `frame`, or with the Parquet file at a staging path
        (which is moved, not copied)."""
        target = self.path(asset, partition)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(frame, (str, os.PathLike)):
            staged = Path(frame)
            if staged.parent.resolve() != target.parent:
                raise ValueError(f"a staged table must be beside its partition (in {target.parent}), not {staged}")
            os.replace(staged, target)
            return target
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        if "'" in str(tmp):  # COPY's target cannot be a bound parameter; our paths never hold quotes
            raise ValueError(f"refusing to write to a path with a quote: {tmp}")
        with scratch_connection() as con:
            con.register("frame", frame)
            con.execute(f"COPY frame TO '{tmp}' (FORMAT PARQUET)")
        os.replace(tmp, target)
        return target

    def read(self, asset: str, partition: str) -> pd.DataFrame:
        path = self.path(asset, partition)
        if not path.exists():
            raise MissingPartition(f"no {asset} table for partition {partition} (looked for {path.name} in {path.parent})")
        with scratch_connection() as con:
            return con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()

    def read_many(self, asset: str, partitions: list[str]) -> pd.DataFrame:
        """Several partitions as one frame, in partition order, with a `partition` column."""
        paths = [self.path(asset, p) for p in partitions]
        missing = [p for p, path in zip(partitions, paths) if not path.exists()]
        if missing:
            raise MissingPartition(f"no {asset} table for partitions {', '.join(missing)}")
        if not paths:
            return pd.DataFrame()
        with scratch_connection() as con:
            frame = con.execute(
                "SELECT *, regexp_extract(filename, '(\\d{4}-\\d{2}-\\d{2})\\.parquet$', 1) AS partition "
                "FROM read_parquet(?, filename = true, union_by_name = true) ORDER BY partition",
                [[str(p) for p in paths]],
            ).df()
        return frame.drop(columns=["filename"])

    def fingerprint(self, asset: str, partition: str) -> str:
        """A content hash of a stored table (column names and types, row count, every value in its row's
        position), computed by DuckDB without loading the table: the data version of a raw table, however large.
        DuckDB's hash() may change between DuckDB versions (the data version would then change once)."""
        path = self.path(asset, partition)
        if not path.exists():
            raise MissingPartition(f"no {asset} table for partition {partition}")
        source = f"read_parquet('{_quoted(path)}', file_row_number = true)"
        with scratch_connection() as con:
            schema = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{_quoted(path)}')").fetchall()
            found = con.execute(f"SELECT count(*), bit_xor(hash(t)), sum(hash(t)::HUGEINT) FROM {source} t").fetchone()
        return fingerprint_digest(schema, *found)

    def remove(self, asset: str, partition: str) -> None:
        self.path(asset, partition).unlink(missing_ok=True)

    # ----------------------------------------------------------------------------------------- documents
    def write_json(self, asset: str, partition: str, document) -> Path:
        target = self.path(asset, partition, ".json")
        return write_atomic(target, json.dumps(document, indent=2, sort_keys=True, default=str).encode())

    def has_document(self, asset: str, partition: str) -> bool:
        return self.path(asset, partition, ".json").exists()

    def documents(self, asset: str) -> list[str]:
        folder = self.folder(asset)
        return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []

    def read_json(self, asset: str, partition: str):
        path = self.path(asset, partition, ".json")
        if not path.exists():
            raise MissingPartition(f"no {asset} document for partition {partition}")
        return json.loads(path.read_text())

    # ----------------------------------------------------------------------------------------- SQL
    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per stored table (`raw_batch`, `feature_table`, ...),
        each row carrying its `partition`."""
        con = duckdb.connect()
        if self.root.exists():
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
                if set(folder.name) <= _ASSET_NAME_CHARS and any(folder.glob("*.parquet")):
                    pattern = str(folder / "*.parquet").replace("'", "''")
                    con.execute(
                        f"CREATE VIEW {folder.name} AS SELECT * EXCLUDE (filename), "
                        "regexp_extract(filename, '(\\d{4}-\\d{2}-\\d{2})\\.parquet$', 1) AS partition "
                        f"FROM read_parquet('{pattern}', filename = true, union_by_name = true)"
                    )
        return con


def fingerprint_digest(schema, rows: int, xor, total) -> str:
    """PartitionStore.fingerprint from DESCRIBE's rows and the aggregates count(*), bit_xor(hash(t)),
    sum(hash(t)::HUGEINT) over `read_parquet(path, file_row_number = true) t` (the ingest computes them while it
    checks the table)."""
    digest = hashlib.sha256(json.dumps([[name, kind] for name, kind, *_ in schema]).encode())
    digest.update(f"{rows}:{xor}:{total}".encode())
    return digest.hexdigest()


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a frame (values, column names and dtypes), stable across runs and machines."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
