"""The artifact store: content-addressed atomic pickles, names confined to the root, checksums checked first."""

from __future__ import annotations

import os
import pickle

import pytest

from mlops_assets.core.registry.artifacts import (ArtifactError, ArtifactIntegrityError, ArtifactStore,
                                                  StoredArtifact, sha256_file)

UNPICKLED: list[str] = []


class Tripwire:
    """Records every time it is unpickled, so a test can prove a refused file was never loaded."""

    def __init__(self, label: str):
        self.label = label

    def __setstate__(self, state):
        UNPICKLED.append(state["label"])
        self.__dict__.update(state)


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts")


def test_save_then_load_round_trips_and_reports_checksum_and_size(store):
    model = {"weights": [0.5, -1.25], "name": "m"}
    stored = store.save(model, "v1")
    assert isinstance(stored, StoredArtifact)
    assert stored.path == f"v1/{stored.sha256}.pkl"  # relative to the root
    full = store.root / stored.path
    assert sha256_file(full) == stored.sha256
    assert full.stat().st_size == stored.size_bytes
    assert store.load(stored.path, stored.sha256) == model


def test_saving_the_same_content_twice_gives_one_file_and_no_leftover_temp_files(store):
    first = store.save([1, 2, 3], "v1")
    second = store.save([1, 2, 3], "v1")
    other = store.save([1, 2, 4], "v1")
    assert first == second
    assert other.sha256 != first.sha256
    assert sorted(p.name for p in (store.root / "v1").iterdir()) == sorted(
        [f"{first.sha256}.pkl", f"{other.sha256}.pkl"])


def test_a_failed_save_leaves_nothing_behind(store):
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        store.save(lambda x: x, "v1")  # lambdas cannot be pickled
    assert list((store.root / "v1").iterdir()) == []


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "..", "/abs", "a\\b", "x" * 200])
def test_unsafe_names_are_rejected(store, name):
    with pytest.raises(ArtifactError, match="unsafe artifact name"):
        store.save(1, name)
    assert not store.root.exists() or not any(store.root.rglob("*.pkl"))


@pytest.mark.parametrize("path", ["../outside.pkl", "/etc/passwd", "v1/../../outside.pkl", ""])
def test_loading_paths_outside_the_root_is_refused(store, path):
    with pytest.raises(ArtifactError):
        store.load(path, "0" * 64)


def test_a_symlink_pointing_outside_the_root_is_refused(store, tmp_path):
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(pickle.dumps("secret"))
    (store.root / "v1").mkdir(parents=True)
    (store.root / "v1" / "link.pkl").symlink_to(outside)
    with pytest.raises(ArtifactError, match="outside the store"):
        store.load("v1/link.pkl", sha256_file(outside))


def test_tampered_artifact_is_refused_before_unpickling(store):
    UNPICKLED.clear()
    stored = store.save(Tripwire("original"), "v1")
    full = store.root / stored.path
    store.load(stored.path, stored.sha256)
    assert UNPICKLED == ["original"]  # the tripwire works
    UNPICKLED.clear()
    # Bytes after pickle's STOP opcode are ignored by pickle.loads, so only the checksum can catch this.
    with open(full, "ab") as fh:
        fh.write(b"tampered")
    actual = sha256_file(full)
    with pytest.raises(ArtifactIntegrityError) as err:
        store.load(stored.path, stored.sha256)
    message = str(err.value)
    assert stored.path in message and stored.sha256 in message and actual in message
    assert UNPICKLED == []


def test_a_changed_byte_inside_the_pickle_is_refused(store):
    stored = store.save({"threshold": 0.5}, "v1")
    full = store.root / stored.path
    data = bytearray(full.read_bytes())
    data[len(data) // 2] ^= 0x01
    full.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError):
        store.load(stored.path, stored.sha256)
    with pytest.raises(ArtifactIntegrityError):
        store.verify(stored.path, stored.sha256)


def test_missing_artifact_is_a_clear_error(store):
    with pytest.raises(ArtifactError, match="not found"):
        store.load("v1/" + "a" * 64 + ".pkl", "a" * 64)


def test_saved_files_are_replaced_atomically_not_written_in_place(store, monkeypatch):
    # The final name must only ever appear through os.replace of a complete temp file.
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((os.path.basename(src), os.path.basename(dst), os.path.getsize(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    stored = store.save(list(range(1000)), "v1")
    assert replaced == [(replaced[0][0], f"{stored.sha256}.pkl", stored.size_bytes)]
    assert replaced[0][0].startswith(".tmp-")
