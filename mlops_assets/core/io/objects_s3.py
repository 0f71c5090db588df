"""The S3 backend of the object-store interface (objects.py): boto3 for objects, s3fs for DuckDB's reads.

An object is published by one PUT (put_object, or upload_file whose multipart upload becomes visible only when
it completes), so a reader sees the old object or the new one, never half of one. Every request, boto3's and
s3fs's, is counted by operation (a botocore event hook) so a benchmark can print S3 round-trips per cycle.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Iterator

import duckdb

from mlops_assets.core.io.objects import ObjectNotFound, ObjectStore, StorageUrlError, check_key, join_key




class RequestCounter:
    """S3 requests made through a client, by operation (a botocore event hook; GetObject, PutObject, ...)."""

    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, event_name: str = "", **_) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.counts[operation] += 1

    def attach(self, client) -> "RequestCounter":
        client.meta.events.register("before-send.s3.*", self)
        return self

    def by_verb(self) -> dict[str, int]:
        """Requests grouped as GET / PUT / LIST / HEAD / DELETE / OTHER."""
        out: collections.Counter = collections.Counter()
        for operation, n in self.counts.items():
            verb = ("LIST" if operation.startswith("List") else "HEAD" if operation.startswith("Head")
                    else "GET" if operation.startswith("Get") else "DELETE" if operation.startswith("Delete")
                    else "PUT" if operation in ("PutObject", "UploadPart", "CreateMultipartUpload",
                                                "CompleteMultipartUpload", "CopyObject") else "OTHER")
            out[verb] += n
        return dict(out)

    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()


S3_REQUESTS = RequestCounter()  # every S3 request of this process's stores (unless given a counter of their own)
_S3_FILESYSTEMS: dict[tuple, object] = {}
_S3_DATABASES: dict[tuple, duckdb.DuckDBPyConnection] = {}
_S3_LOCK = threading.Lock()


def _close_databases() -> None:
    """Close the shared databases before interpreter teardown, which would report them leaked."""
    for db in _S3_DATABASES.values():
        db.close()
    _S3_DATABASES.clear()


atexit.register(_close_databases)


class S3ObjectStore(ObjectStore):
    """Objects under `s3://bucket/prefix/`. `counter` sees every request of `client` (see RequestCounter)."""

    def __init__(self, client, bucket: str, prefix: str = "", *, counter: RequestCounter | None = None):
        if len(bucket) < 3 or "/" in bucket:
            raise StorageUrlError(f"S3 bucket name {bucket!r} must be 3-63 characters without '/'")
        self.client, self.bucket = client, bucket
        self.prefix = join_key(prefix)
        self.counter = counter or S3_REQUESTS
        attached = client.__dict__.setdefault("_mlops_counters", set())
        if id(self.counter) not in attached:
            self.counter.attach(client)
            attached.add(id(self.counter))

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.url()!r})"

    def child(self, prefix: str) -> "S3ObjectStore":
        return S3ObjectStore(self.client, self.bucket, join_key(self.prefix, check_key(prefix)), counter=self.counter)

    def _key(self, key: str, *, allow_empty: bool = False) -> str:
        return join_key(self.prefix, check_key(key, allow_empty=allow_empty))

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key, allow_empty=True)}"

    def duckdb_path(self, key: str) -> str:
        return f"s3://{self.bucket}/{join_key(self.prefix, check_key(key))}"

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, source: Path, *, move: bool = False) -> None:
        # upload_file: one PUT for small files, a multipart upload (visible only once complete) for large ones
        self.client.upload_file(str(source), self.bucket, self._key(key))
        if move:
            Path(source).unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(f"no object {self.url(key)}") from None

    def download(self, key: str, target: Path) -> Path:
        """The object into a local file, streamed, by one GET (upload_file's counterpart would HEAD first)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(f"no object {self.url(key)}") from None
        with open(target, "wb") as out:
            for block in body.iter_chunks(1 << 20):
                out.write(block)
        return Path(target)

    @contextlib.contextmanager
    def readable(self, keys: list[str]) -> Iterator[list[str]]:
        # One GET per object rather than DuckDB reading through s3fs: s3fs sends a HEAD at every open and DuckDB
        # opens a file several times per query (~10 requests a table), and ranged reads across a replacement
        # could mix two versions of an object.
        folder = Path(tempfile.mkdtemp(prefix="mlops-read-"))
        try:
            targets = [folder / Path(*check_key(k).split("/")) for k in keys]
            for target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)

            def fetch(pair):
                return self.download(*pair)

            if len(keys) > 1:
                with ThreadPoolExecutor(max_workers=min(8, len(keys))) as pool:
                    list(pool.map(fetch, zip(keys, targets)))
            else:
                list(map(fetch, zip(keys, targets)))
            yield [str(t) for t in targets]
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def list_entries(self, prefix: str = "") -> dict[str, list]:
        base = self._key(prefix, allow_empty=True)
        base = f"{base}/" if base else ""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
            for item in page.get("Contents", []):
                rel = item["Key"][len(base):]
                if prefix:
                    rel = f"{prefix.strip('/')}/{rel}"
                out[rel] = [item["ETag"].strip('"'), int(item["LastModified"].timestamp() * 1e9), int(item["Size"])]
        return out

    def _children(self, prefix: str) -> tuple[list[str], list[str]]:
        base = self._key(prefix, allow_empty=True)
        base = f"{base}/" if base else ""
        names, folders = [], []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base,
                                                                           Delimiter="/"):
            names += [item["Key"][len(base):] for item in page.get("Contents", [])]
            folders += [item["Prefix"][len(base):].rstrip("/") for item in page.get("CommonPrefixes", [])]
        return sorted(names), sorted(folders)

    def list_names(self, prefix: str = "") -> list[str]:
        return self._children(prefix)[0]

    def list_folders(self, prefix: str = "") -> list[str]:
        return self._children(prefix)[1]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def staging_path(self, key: str) -> Path:
        check_key(key)
        folder = Path(tempfile.gettempdir()) / "mlops-staging"
        folder.mkdir(parents=True, exist_ok=True)
        name = PurePosixPath(key).name
        return folder / f".{name}.staged-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"

    def filesystem(self):
        """An s3fs file system on the boto3 client's endpoint and region, for DuckDB. Its credentials come from
        the same standard chain boto3 reads (AWS variables, profile, instance role: refreshed when they expire)."""
        import s3fs

        endpoint = self.client.meta.endpoint_url
        cache_key = (endpoint, self.client.meta.region_name, id(self.counter))
        with _S3_LOCK:
            fs = _S3_FILESYSTEMS.get(cache_key)
            if fs is None:
                from aiobotocore.session import AioSession

                session = AioSession()
                session.register("before-send.s3.*", self.counter)  # DuckDB's reads are S3 requests too
                fs = s3fs.S3FileSystem(
                    session=session, endpoint_url=endpoint, client_kwargs={"region_name": self.client.meta.region_name},
                    use_listings_cache=False, skip_instance_cache=True,  # never a stale listing after our PUTs
                )
                _S3_FILESYSTEMS[cache_key] = fs
        return fs

    def new_connection(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own (for callers that create views and close it), able to read s3:// URLs."""
        con = duckdb.connect()
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.register_filesystem(self.filesystem())
        return con

    def connection(self) -> duckdb.DuckDBPyConnection:
        # One in-memory database per S3 endpoint and process, its s3fs file system registered once (a new
        # database costs ~25 ms); each caller gets a cursor of its own.
        fs = self.filesystem()
        key = (id(fs), os.getpid())
        with _S3_LOCK:
            db = _S3_DATABASES.get(key)
            if db is None:
                db = duckdb.connect()
                db.execute("SET autoinstall_known_extensions = false")  # never download httpfs
                db.execute("SET autoload_known_extensions = false")
                db.register_filesystem(fs)
                _S3_DATABASES[key] = db
        return db.cursor()
