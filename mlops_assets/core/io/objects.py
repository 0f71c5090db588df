"""Where every piece of state lives: one object-store interface, two backends.

`LocalObjectStore(root)` keeps objects as files under a folder (the default, exactly the layout of before);
`S3ObjectStore(client, bucket, prefix)` keeps them under an S3 prefix through boto3. Stores above this line
(partitions, ledger, archive, quarantine, artifacts, deployment state) speak in keys (`feature_table/2024-01-01
.parquet`) and never learn which backend they use.

Atomicity: a reader never sees half an object. Locally an object is written to a temporary file in its folder
and renamed over the old one; on S3 it is published by one PUT (put_object, or upload_file whose multipart
upload only becomes visible when it completes), so a failed write leaves the previous object in place.

DuckDB reads objects where they are: a local path, or an `s3://` URL through an s3fs file system registered
on the connection (DuckDB's own httpfs extension would have to be downloaded; autoinstall is switched off).
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path, PurePosixPath

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
        """Every key under `prefix` (recursively), sorted; `prefix` is a folder (`a/b` lists `a/b/...`)."""
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
        try:
            return list(os.scandir(self.path(prefix) if prefix else self.root))
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


# --------------------------------------------------------------------------------------------------- S3


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


_S3_FILESYSTEMS: dict[tuple, object] = {}
_S3_LOCK = threading.Lock()


class S3ObjectStore(ObjectStore):
    """Objects under `s3://bucket/prefix/`. `counter` sees every request of `client` (see RequestCounter)."""

    def __init__(self, client, bucket: str, prefix: str = "", *, counter: RequestCounter | None = None):
        if len(bucket) < 3 or "/" in bucket:
            raise StorageUrlError(f"S3 bucket name {bucket!r} must be 3-63 characters without '/'")
        self.client, self.bucket = client, bucket
        self.prefix = join_key(prefix)
        self.counter = counter or getattr(client, "_mlops_counter", None)
        if self.counter is None:
            self.counter = RequestCounter().attach(client)
            client._mlops_counter = self.counter
        self._db: duckdb.DuckDBPyConnection | None = None

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
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(target))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise ObjectNotFound(f"no object {self.url(key)}") from None
            raise
        return Path(target)

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
        """An s3fs file system on the same endpoint and credentials as the boto3 client, for DuckDB."""
        import s3fs

        endpoint = self.client.meta.endpoint_url
        creds = self.client._request_signer._credentials  # the client's own resolved credentials
        frozen = creds.get_frozen_credentials() if creds is not None else None
        cache_key = (endpoint, frozen and frozen.access_key, id(self.counter))
        with _S3_LOCK:
            fs = _S3_FILESYSTEMS.get(cache_key)
            if fs is None:
                from aiobotocore.session import AioSession

                session = AioSession()
                session.register("before-send.s3.*", self.counter)  # DuckDB's reads are S3 requests too
                fs = s3fs.S3FileSystem(
                    session=session,
                    key=frozen and frozen.access_key, secret=frozen and frozen.secret_key,
                    token=frozen and frozen.token, anon=frozen is None, endpoint_url=endpoint,
                    client_kwargs={"region_name": self.client.meta.region_name},
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
        # One in-memory database per store, its s3fs file system registered once; each caller gets a cursor.
        with _S3_LOCK:
            if self._db is None or self._db_pid != os.getpid():
                db = duckdb.connect()
                db.execute("SET autoinstall_known_extensions = false")  # never download httpfs
                db.execute("SET autoload_known_extensions = false")
                self._db, self._db_pid = db, os.getpid()
                registered = False
            else:
                registered = True
        if not registered:
            self._db.register_filesystem(self.filesystem())
        return self._db.cursor()


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
