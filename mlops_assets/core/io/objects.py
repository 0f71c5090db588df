"""Where every piece of state lives: one object-store interface, two backends.

`LocalObjectStore(root)` keeps objects as files under a folder (the default, exactly the layout of before);
`S3ObjectStore(client, bucket, prefix)` (objects_s3.py) keeps them under an S3 prefix through boto3. The stores
above this line (partitions, ledger, archive, quarantine, artifacts, deployment state) speak in keys
(`feature_table/2024-01-01.parquet`) and never learn which backend they use.

Atomicity: a reader never sees half an object. Locally an object is written to a temporary file in its folder
and renamed over the old one; on S3 it is published by one PUT (put_object, or upload_file whose multipart
upload only becomes visible when it completes), so a failed write leaves the previous object in place.

DuckDB reads objects where they are: a local path, or an `s3://` URL through an s3fs file system registered
on the connection (DuckDB's own httpfs extension would have to be downloaded; autoinstall is switched off).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Iterator

import duckdb


class ObjectNotFound(FileNotFoundError):
    """No object under that key."""


class UnsafeKey(ValueError):
    """A key that could leave its store (`..`, absolute, empty parts)."""


class StorageUrlError(ValueError):
    """A storage URL that names no usable location."""


def check_key(key: str, *, allow_empty: bool = False) -> str:
    """`key` if it is a relative, normalised POSIX path inside the store; UnsafeKey otherwise."""
    if not isinstance(key, str):
        raise UnsafeKey(f"object key {key!r} must be text")
    if key == "" and allow_empty:
        return key
    parts = key.split("/")
    if key.startswith("/") or "\\" in key or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise UnsafeKey(f"object key {key!r} must be a relative path without '..', '.', empty or absolute parts")
    return key


def join_key(*parts: str) -> str:
    return check_key("/".join(p.strip("/") for p in parts if p.strip("/")), allow_empty=True)


class ObjectStore:
    """The interface. Keys are POSIX-style paths relative to the store's root."""

    is_local = False

    def child(self, prefix: str) -> "ObjectStore":  # a store rooted at `prefix` inside this one
        raise NotImplementedError

    def url(self, key: str = "") -> str:  # where `key` is, for people (messages, metadata) and DuckDB
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def put_file(self, key: str, source: Path, *, move: bool = False) -> None:
        """Publish the local file `source` under `key` in one step; `move` lets the store consume it."""
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def download(self, key: str, target: Path) -> Path:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def size(self, key: str) -> int | None:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` (recursively), sorted; `prefix` is a folder (`a/b` lists `a/b/...`). A local
        file whose name starts with a dot is a temporary or staging file, never listed."""
        return sorted(self.list_entries(prefix))

    def list_entries(self, prefix: str = "") -> dict[str, list]:
        """{key: [identity, modified ns, size]} under `prefix`: what tells a changed object without reading it."""
        raise NotImplementedError

    def list_names(self, prefix: str = "") -> list[str]:
        """Names of the objects directly under `prefix` (not in sub-folders), sorted."""
        raise NotImplementedError

    def list_folders(self, prefix: str = "") -> list[str]:
        """Names of the sub-folders directly under `prefix`, sorted."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def staging_path(self, key: str) -> Path:
        """A private local file from which `put_file(key, path, move=True)` publishes cheaply (beside the target
        locally, so publishing is a rename; in a temporary folder for S3). Never a name a listing would return."""
        raise NotImplementedError

    def local_path(self, key: str) -> Path | None:
        """The object's file when the store is a local folder, else None."""
        return None

    def duckdb_path(self, key: str) -> str:
        """What DuckDB's read_parquet takes for `key` (or for a glob such as `folder/*.parquet`)."""
        return self.url(key)

    @contextlib.contextmanager
    def readable(self, keys: list[str]) -> Iterator[list[str]]:
        """Local files holding the objects `keys` (in order) while the block runs: the files themselves for a
        local store; for S3 one GET per object into a temporary folder (removed afterwards), so a query sees each
        object whole, as one version, even if it is replaced meanwhile. ObjectNotFound if one is missing."""
        raise NotImplementedError

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection able to read this store's `duckdb_path`s."""
        raise NotImplementedError

    def new_connection(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own (the caller closes it), able to read this store's `duckdb_path`s."""
        return duckdb.connect()


# ------------------------------------------------------------------------------------------------ local


class LocalObjectStore(ObjectStore):
    is_local = True

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def child(self, prefix: str) -> "LocalObjectStore":
        return LocalObjectStore(self.root / check_key(prefix))

    def path(self, key: str) -> Path:
        target = self.root.joinpath(*check_key(key).split("/"))
        if not target.resolve().is_relative_to(self.root):  # through a symlink
            raise UnsafeKey(f"object key {key!r} resolves outside {self.root}")
        return target

    local_path = path

    def url(self, key: str = "") -> str:
        return str(self.path(key)) if key else str(self.root)

    def duckdb_path(self, key: str) -> str:
        return str(self.root / check_key(key))  # globs are allowed here, so not resolved

    @contextlib.contextmanager
    def readable(self, keys: list[str]) -> Iterator[list[str]]:
        paths = [self.path(k) for k in keys]
        for key, path in zip(keys, paths):
            if not path.is_file():
                raise ObjectNotFound(f"no object {key} in {self.root}")
        yield [str(p) for p in paths]

    def connection(self) -> duckdb.DuckDBPyConnection:
        from mlops_assets.core.io.storage import scratch_connection

        return scratch_connection()

    def put_bytes(self, key: str, data: bytes) -> None:
        from mlops_assets.core.io.atomic import write_atomic

        write_atomic(self.path(key), data)

    def put_file(self, key: str, source: Path, *, move: bool = False) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(source)
        if move and source.parent.resolve() == target.parent.resolve():
            os.replace(source, target)
            return
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            try:
                os.link(source, tmp)  # same file system: no copy of a large file
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if move:
            source.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(f"no object {key} in {self.root}") from None

    def download(self, key: str, target: Path) -> Path:
        try:
            shutil.copyfile(self.path(key), target)
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key} in {self.root}") from None
        return Path(target)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def list_entries(self, prefix: str = "") -> dict[str, list]:
        folder = self.path(prefix) if prefix else self.root
        out: dict[str, list] = {}
        stack = [(folder, prefix.strip("/"))]
        while stack:
            current, rel = stack.pop()
            try:
                entries = list(os.scandir(current))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.name.startswith("."):  # a temporary or staging file, not an object (yet)
                    continue
                key = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((Path(entry.path), key))
                    elif entry.is_file():
                        st = entry.stat()
                        out[key] = [st.st_ino, st.st_mtime_ns, st.st_size]
                except FileNotFoundError:
                    continue
        return out

    def _scan(self, prefix: str) -> list[os.DirEntry]:
        """The folder's entries, without temporary and staging files (their names start with a dot)."""
        try:
            return [e for e in os.scandir(self.path(prefix) if prefix else self.root) if not e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list_names(self, prefix: str = "") -> list[str]:
        return sorted(e.name for e in self._scan(prefix) if e.is_file())

    def list_folders(self, prefix: str = "") -> list[str]:
        return sorted(e.name for e in self._scan(prefix) if e.is_dir(follow_symlinks=False))

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def staging_path(self, key: str) -> Path:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.staged-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}")


# ------------------------------------------------------------------------------------------------- URLs


def s3_client(endpoint_url: str = ""):
    """boto3's S3 client; endpoint and credentials from the standard AWS variables (AWS_ENDPOINT_URL_S3,
    AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) unless an endpoint is given."""
    import boto3  # installed with dagster-aws

    return boto3.client("s3", endpoint_url=endpoint_url or None)


def parse_storage_url(url: str) -> tuple[str, str, str]:
    """("file", folder, "") or ("s3", bucket, prefix); StorageUrlError when malformed."""
    url = (url or "").strip()
    if not url:
        raise StorageUrlError("an empty storage URL names no location")
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        if len(bucket) < 3 or not all(c.isalnum() or c in ".-" for c in bucket):
            raise StorageUrlError(f"storage URL {url!r}: the bucket must be 3-63 letters, digits, '.' or '-' "
                                  "(s3://bucket/prefix)")
        prefix = prefix.strip("/")
        try:
            join_key(prefix)
        except UnsafeKey:
            raise StorageUrlError(f"storage URL {url!r}: the prefix must not hold '..', '.' or empty parts") from None
        return "s3", bucket, prefix
    if url.startswith("file://"):
        path = url[7:]
        if not path.startswith("/"):
            raise StorageUrlError(f"storage URL {url!r}: a file URL needs an absolute path (file:///folder)")
        return "file", path, ""
    if "://" in url:
        raise StorageUrlError(f"storage URL {url!r}: use s3://bucket/prefix, file:///folder or a folder path")
    return "file", url, ""


def open_object_store(url: str, *, endpoint_url: str = "", client=None) -> ObjectStore:
    kind, where, prefix = parse_storage_url(url)
    if kind == "file":
        return LocalObjectStore(Path(where).expanduser())
    from mlops_assets.core.io.objects_s3 import S3ObjectStore

    return S3ObjectStore(client or s3_client(endpoint_url), where, prefix)


def as_object_store(root) -> ObjectStore:
    """An ObjectStore given as is, or a folder (a Path or text) as a local one."""
    return root if isinstance(root, ObjectStore) else LocalObjectStore(root)


class ObjectFile:
    """One object used like a small file (a state or summary document): read, atomically write, remove."""

    def __init__(self, objects: ObjectStore, key: str):
        self.objects, self.key = objects, check_key(key)

    @classmethod
    def of(cls, location) -> "ObjectFile":
        """An ObjectFile as is, or a local file path."""
        if isinstance(location, ObjectFile):
            return location
        path = Path(location)
        return cls(LocalObjectStore(path.parent), path.name)

    def __str__(self) -> str:
        return self.objects.url(self.key)

    def exists(self) -> bool:
        return self.objects.exists(self.key)

    def read_bytes(self) -> bytes:
        return self.objects.get_bytes(self.key)

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        self.objects.put_bytes(self.key, data)

    def unlink(self, missing_ok: bool = True) -> None:
        self.objects.delete(self.key)
