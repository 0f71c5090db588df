"""Content-addressed storage for model artifacts: pickles whose checksum is verified before they are loaded.

Unpickling runs arbitrary code, so a file whose bytes differ from the checksum the registry recorded is
refused *before* `pickle.load` sees it. Files are written atomically (temp file in the same folder, then
`os.replace`; on S3 one upload, so no reader sees half an object) and named after their sha256, so a saved artifact is never overwritten with other content.
JSON documents stored with a model (its monitoring reference) go the same way: `save_json` writes
`<name>/<sha256>.json` beside the pickles, `load_json` parses only bytes that match the recorded checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mlops_assets.core.io.objects import LocalObjectStore, ObjectNotFound, ObjectStore

_CHUNK = 1 << 20
# One path component: letters, digits, dot, dash, underscore; not starting with a dot ("..", hidden files).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}")


class ArtifactError(Exception):
    """An artifact cannot be stored or found."""


class ArtifactIntegrityError(ArtifactError):
    """An artifact's bytes do not match the checksum recorded for it; it was not loaded."""


@dataclass(frozen=True)
class StoredArtifact:
    path: str  # relative to the store's root, POSIX separators
    sha256: str
    size_bytes: int


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingWriter:
    """File-like sink for pickle.dump that hashes and counts the bytes on their way to disk."""

    def __init__(self, fh):
        self._fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._fh.write(data)


def safe_name(name: str) -> str:
    """Return `name` if it is a single, harmless path component; raise ArtifactError otherwise."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise ArtifactError(
            f"unsafe artifact name {name!r}: use 1-128 letters, digits, '.', '-' or '_', not starting with '.'"
        )
    return name


class ArtifactStore:
    """Artifacts in a local folder (a path: files written with temp + rename) or in any non-local ObjectStore
    (S3: each artifact uploaded in one PUT; loads download the bytes and check them before anything else)."""

    def __init__(self, root: str | Path | ObjectStore):
        if isinstance(root, ObjectStore) and not root.is_local:
            self.objects, self.root = root, None
        else:
            self.root = Path(root.root if isinstance(root, ObjectStore) else root).resolve()
            self.objects = LocalObjectStore(self.root)

    def describe(self) -> str:
        return self.objects.url()

    def save(self, obj, name: str) -> StoredArtifact:
        """Pickle `obj` to `<name>/<sha256>.pkl` under the root; saving identical content again is a no-op."""
        return self._write(name, ".pkl", lambda fh: pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL))

    def save_json(self, document, name: str) -> StoredArtifact:
        """Write a JSON document to `<name>/<sha256>.json` (keys sorted, so equal documents give one file)."""
        data = json.dumps(document, sort_keys=True, indent=1).encode()
        return self._write(name, ".json", lambda fh: fh.write(data))

    def _write(self, name: str, suffix: str, dump) -> StoredArtifact:
        """Write through `dump(fh)` to a temp file, hashing the bytes, then move it to `<name>/<sha256><suffix>`
        (a rename locally, one upload to S3)."""
        if self.root is not None:
            folder = self.root / safe_name(name)
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
        else:
            folder = None
            fd, tmp = tempfile.mkstemp(prefix=f".artifact-{safe_name(name)}-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                writer = _HashingWriter(fh)
                dump(writer)
                fh.flush()
                os.fsync(fh.fileno())
            sha = writer.digest.hexdigest()
            if folder is not None:
                os.replace(tmp, folder / f"{sha}{suffix}")
            else:
                self.objects.put_file(f"{name}/{sha}{suffix}", Path(tmp), move=True)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return StoredArtifact(path=f"{name}/{sha}{suffix}", sha256=sha, size_bytes=writer.size)

    def _key(self, path: str | Path) -> str:
        rel = PurePosixPath(str(path).replace("\\", "/"))
        if rel.is_absolute() or not rel.parts or any(part in ("", ".", "..") for part in rel.parts):
            raise ArtifactError(f"artifact path {str(path)!r} must be relative to the store, without '..'")
        return "/".join(rel.parts)

    def resolve(self, path: str | Path) -> Path:
        """Absolute location of a stored artifact (local stores only); refuses paths that would leave the root."""
        key = self._key(path)
        if self.root is None:
            raise ArtifactError(f"artifact store {self.describe()} is not a local folder")
        full = (self.root / Path(*key.split("/"))).resolve()
        if not full.is_relative_to(self.root):  # a symlink pointing outside
            raise ArtifactError(f"artifact path {str(path)!r} resolves outside the store {self.root}")
        return full

    def verify(self, path: str | Path, expected_sha256: str) -> Path | str:
        """Check the stored bytes' checksum; returns their location, or raises ArtifactIntegrityError."""
        if self.root is None:
            _check(path, expected_sha256, hashlib.sha256(self._read(path)).hexdigest())
            return self.objects.url(self._key(path))
        full = self.resolve(path)
        if not full.is_file():
            raise ArtifactError(f"artifact {path} not found in {self.root}")
        _check(path, expected_sha256, sha256_file(full))
        return full

    def problem(self, path: str | Path, expected_sha256: str) -> str | None:
        """What is wrong with a stored file, in one phrase (missing, or its sha256 differs); None when it matches."""
        try:
            if self.root is None:
                actual = hashlib.sha256(self._read(path)).hexdigest()
            else:
                full = self.resolve(path)
                if not full.is_file():
                    return f"{path} is missing from {self.root}"
                actual = sha256_file(full)
        except ArtifactError as exc:
            return str(exc)
        if actual != expected_sha256:
            return f"{path} does not match its recorded sha256 {expected_sha256} (found {actual})"
        return None

    def load(self, path: str | Path, expected_sha256: str):
        """Unpickle a stored artifact after verifying its checksum (nothing is unpickled on a mismatch)."""
        return pickle.loads(self._read_verified(path, expected_sha256))

    def load_json(self, path: str | Path, expected_sha256: str):
        """Parse a stored JSON document after verifying its checksum (nothing is parsed on a mismatch)."""
        return json.loads(self._read_verified(path, expected_sha256))

    def _read(self, path: str | Path) -> bytes:
        if self.root is None:
            try:
                return self.objects.get_bytes(self._key(path))
            except ObjectNotFound:
                raise ArtifactError(f"artifact {path} is missing from {self.describe()}") from None
        full = self.resolve(path)
        if not full.is_file():
            raise ArtifactError(f"artifact {path} not found in {self.root}")
        return full.read_bytes()

    def _read_verified(self, path: str | Path, expected_sha256: str) -> bytes:
        # Hash the very bytes that get loaded, so the object cannot change between the check and the load.
        data = self._read(path)
        _check(path, expected_sha256, hashlib.sha256(data).hexdigest())
        return data


def _check(path, expected: str, actual: str) -> None:
    if actual != expected:
        raise ArtifactIntegrityError(
            f"artifact {path} failed its integrity check: expected sha256 {expected}, found {actual}; "
            "refusing to load it"
        )
