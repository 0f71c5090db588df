"""The storage interface and every store built on it, on both backends: a local folder and S3 (a moto server in
this process, reached over HTTP by boto3 and by DuckDB's s3fs file system)."""

import pickle

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.config.settings import Settings, SettingsError
from mlops_assets.core.ingestion.kept import Archive, Quarantine
from mlops_assets.core.io.objects import LocalObjectStore, ObjectFile, ObjectNotFound, UnsafeKey, open_object_store
from mlops_assets.core.io.objects_s3 import S3ObjectStore
from mlops_assets.core.io.storage import MissingPartition, PartitionStore
from mlops_assets.core.registry.artifacts import ArtifactIntegrityError, ArtifactStore
from mlops_assets.core.serving.canary import CanaryStateFile
from mlops_assets.core.serving.ledger import PredictionLedger

D1, D2 = "2025-03-01", "2025-03-02"


def test_objects_round_trip_and_list_by_folder(object_store):
    object_store.put_bytes("a/b/one.json", b"1")
    object_store.put_bytes("a/two.json", b"22")
    object_store.put_bytes("top.txt", b"333")
    assert object_store.get_bytes("a/b/one.json") == b"1"
    assert object_store.list() == ["a/b/one.json", "a/two.json", "top.txt"]
    assert object_store.list("a") == ["a/b/one.json", "a/two.json"]
    assert object_store.list_names("a") == ["two.json"] and object_store.list_folders() == ["a"]
    assert object_store.size("a/two.json") == 2 and object_store.size("a/none") is None
    assert object_store.exists("top.txt") and not object_store.exists("a/b")  # a folder is not an object
    child = object_store.child("a/b")
    assert child.get_bytes("one.json") == b"1" and child.list() == ["one.json"]
    object_store.delete("a/two.json")
    assert not object_store.exists("a/two.json")
    with pytest.raises(ObjectNotFound):
        object_store.get_bytes("a/two.json")


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "/etc/passwd", "a//b", "a/./b", "", "a\\..\\b"])
def test_keys_that_could_leave_the_store_are_refused(object_store, key):
    with pytest.raises(UnsafeKey):
        object_store.put_bytes(key, b"x")
    with pytest.raises(UnsafeKey):
        object_store.get_bytes(key)
    assert object_store.list() == []


def _everything(object_store):
    """Every object, and for a local store every file, temporary ones included."""
    if isinstance(object_store, LocalObjectStore):
        return sorted(str(p.relative_to(object_store.root)) for p in object_store.root.rglob("*") if p.is_file())
    return object_store.list()


def _fail_mid_write(object_store, monkeypatch):
    """Make the next file publish die half-way: locally the copy stops after half the bytes; on S3 the multipart
    upload's second part never reaches the server."""
    if isinstance(object_store, LocalObjectStore):
        def half_copy(src, dst, **_):
            with open(src, "rb") as f, open(dst, "wb") as out:
                out.write(f.read()[: 1 << 20])
            raise OSError("disk full")

        monkeypatch.setattr("mlops_assets.core.io.objects.os.link", lambda *a: (_ for _ in ()).throw(OSError()))
        monkeypatch.setattr("mlops_assets.core.io.objects.shutil.copyfile", half_copy)
        return
    parts = []

    def second_part_fails(**kwargs):
        parts.append(1)
        if len(parts) == 2:
            raise ConnectionError("network gone")

    object_store.client.meta.events.register("before-send.s3.UploadPart", second_part_fails)


def test_a_failed_publish_leaves_the_old_object_whole(object_store, monkeypatch, tmp_path):
    object_store.put_bytes("big.bin", b"old")
    source = tmp_path / "new.bin"
    source.write_bytes(np.random.default_rng(1).bytes(20 << 20))  # over boto3's multipart threshold
    _fail_mid_write(object_store, monkeypatch)
    with pytest.raises(Exception):
        object_store.put_file("big.bin", source)
    assert object_store.get_bytes("big.bin") == b"old"
    assert _everything(object_store) == ["big.bin"]  # no temporary or partial object left behind


def test_requests_to_s3_are_counted_by_operation(s3_url):
    store = open_object_store(s3_url)
    assert isinstance(store, S3ObjectStore)
    store.counter.reset()
    store.put_bytes("x.json", b"{}")
    store.get_bytes("x.json")
    store.list()
    assert store.counter.by_verb() == {"PUT": 1, "GET": 1, "LIST": 1}


# ------------------------------------------------------------------------------------------------ tables


def _frame(n, shift=0.0):
    return pd.DataFrame({"id": np.arange(n), "x": np.arange(n) * 0.5 + shift, "c": ["a", "b"] * (n // 2)})


def test_partitions_are_written_listed_and_read_by_duckdb(object_store):
    store = PartitionStore(object_store.child("warehouse"))
    store.write("raw_batch", D1, _frame(10))
    store.write("raw_batch", D2, _frame(4, shift=1.0))
    store.write_json("scoring_stats", D1, {"rows": 10})
    assert store.partitions("raw_batch") == [D1, D2] and store.documents("scoring_stats") == [D1]
    pd.testing.assert_frame_equal(store.read("raw_batch", D2), _frame(4, shift=1.0))
    many = store.read_many("raw_batch", [D1, D2])
    assert len(many) == 14 and many["partition"].tolist() == [D1] * 10 + [D2] * 4
    with store.connect() as con:
        assert con.execute("SELECT partition, count(*) FROM raw_batch GROUP BY 1 ORDER BY 1").fetchall() == [
            (D1, 10), (D2, 4)]
    assert store.read_json("scoring_stats", D1) == {"rows": 10}
    with pytest.raises(MissingPartition):
        store.read("raw_batch", "2025-03-03")
    with pytest.raises(MissingPartition):
        store.read_json("scoring_stats", D2)
    store.write("raw_batch", D1, _frame(2))  # replaced whole
    assert len(store.read("raw_batch", D1)) == 2
    store.remove("raw_batch", D1)
    assert store.partitions("raw_batch") == [D2]


def test_a_partition_fingerprint_is_the_same_on_both_backends(s3_url, tmp_path):
    on_s3 = PartitionStore(open_object_store(s3_url))
    local = PartitionStore(tmp_path / "warehouse")
    for store in (on_s3, local):
        store.write("feature_table", D1, _frame(8))
    assert on_s3.fingerprint("feature_table", D1) == local.fingerprint("feature_table", D1)
    on_s3.write("feature_table", D1, _frame(8, shift=0.1))
    assert on_s3.fingerprint("feature_table", D1) != local.fingerprint("feature_table", D1)


def test_a_staged_table_is_published_in_one_step(object_store):
    store = PartitionStore(object_store)
    staged = store.staging_path("raw_batch", D1)
    with store.connection() as con:
        con.execute(f"COPY (SELECT 1 AS a) TO '{staged}' (FORMAT PARQUET)")
    assert store.partitions("raw_batch") == []  # a staging file is never a partition
    store.write("raw_batch", D1, staged)
    assert not staged.exists() and store.read("raw_batch", D1)["a"].tolist() == [1]


# ------------------------------------------------------------------------------------------------ ledger


def _rows(day, version, route, entities, scores):
    ts = pd.Timestamp(day) + pd.to_timedelta(np.arange(len(entities)), unit="h")
    return pd.DataFrame({
        "day": pd.Timestamp(day), "entity": entities, "timestamp": ts, "score": scores,
        "decision": [float(s >= 0.5) for s in scores], "threshold": 0.5, "model_version": version, "route": route,
        "acted_on": route != "shadow", "scored_at": pd.Timestamp("2025-03-05", tz="UTC"),
    })


def test_ledger_writes_and_queries(object_store):
    ledger = PredictionLedger(object_store.child("ledger"))
    ledger.write(pd.concat([_rows(D1, "v1", "champion", ["c1", "c2"], [0.2, 0.9]),
                            _rows(D1, "v2", "shadow", ["c1", "c2"], [0.6, 0.4])]))
    ledger.write(_rows(D2, "v1", "champion", ["c3"], [0.7]))
    assert ledger.days() == [D1, D2] and ledger.versions() == ["v1", "v2"]
    decided = ledger.for_entity("c1", D1)
    assert decided[["model_version", "route", "acted_on"]].values.tolist() == [["v1", "champion", True],
                                                                             ["v2", "shadow", False]]
    assert ledger.totals("v1")["rows"] == 3
    ledger.write(_rows(D1, "v3", "champion", ["c1"], [0.1]), replace_days=True)  # a new champion re-scores
    assert ledger.day(D1)["model_version"].tolist() == ["v3"]
    assert object_store.list("ledger") == [f"ledger/{D1}.parquet", f"ledger/{D2}.parquet"]


# ------------------------------------------------------------------------------------------------ kept files


def test_archive_and_quarantine_keep_bytes_by_content(object_store, tmp_path):
    archive, quarantine = Archive(object_store.child("archive")), Quarantine(object_store.child("quarantine"))
    name = f"features_{D1}.csv"
    first = archive.accept(name, D1, b"a\n1\n")
    again = archive.accept(name, D1, b"a\n1\n")
    second = archive.accept(name, D1, b"a\n2\n")
    assert again == first and [v.sha256 for v in archive.history("features", D1)] == [first.sha256, second.sha256]
    assert archive.current("features", D1) == second and archive.read(first) == b"a\n1\n"
    assert archive.local_copy(second, tmp_path).read_bytes() == b"a\n2\n"
    assert archive.holds(name, D1, first.sha256) and archive.location(first.stored_as).endswith(first.stored_as)
    record = quarantine.keep_chunks(name, D2, iter([b"bad", b" rows"]), "no header", column="a")
    assert quarantine.read(record) == b"bad rows" and quarantine.holds(name, D2, record.sha256)
    assert [(r.file, r.reason, r.column) for r in quarantine.records()] == [(name, "no header", "a")]
    assert quarantine.records(D1) == []
    # nothing outside their own prefixes, and no staging or spool file left where readers look
    assert {k.split("/")[0] for k in _everything(object_store)} == {"archive", "quarantine"}
    assert not [k for k in _everything(object_store) if "/." in k]


# ------------------------------------------------------------------------------------------------ artifacts


class _Armed:
    """Unpickling this calls `_fired` (as a malicious pickle would run code)."""

    def __reduce__(self):
        return (_fired, ())


FIRED = []


def _fired():
    FIRED.append(1)
    return "fired"


def test_artifacts_are_verified_before_they_are_unpickled(object_store):
    store = ArtifactStore(object_store.child("registry/artifacts"))
    stored = store.save({"weights": [1, 2, 3]}, "model")
    assert stored.path == f"model/{stored.sha256}.pkl"
    assert store.load(stored.path, stored.sha256) == {"weights": [1, 2, 3]}
    assert store.problem(stored.path, stored.sha256) is None
    # the object is replaced behind the registry's back by a pickle that runs code when loaded
    object_store.child("registry/artifacts").put_bytes(stored.path, pickle.dumps(_Armed()))
    with pytest.raises(ArtifactIntegrityError):
        store.load(stored.path, stored.sha256)
    assert FIRED == [] and "does not match" in store.problem(stored.path, stored.sha256)
    document = store.save_json({"b": 1, "a": 2}, "model")
    assert store.load_json(document.path, document.sha256) == {"a": 2, "b": 1}


# ------------------------------------------------------------------------------------------------ documents


def test_object_files_hold_deployment_state(object_store):
    from mlops_assets.core.config.spec import load_spec
    from mlops_assets.core.serving import canary
    from conftest import SPECS

    state_file = CanaryStateFile(ObjectFile(object_store, "deployment/canary.json"))
    assert state_file.load() is None
    state = canary.begin(load_spec(SPECS / "synthetic.toml"), "v2", "v1", D1)
    state_file.save(state)
    assert state_file.load() == state
    state_file.clear()
    assert state_file.load() is None and object_store.list() == []


# ------------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("url", ["s3://", "s3://ab/x", "s3://bucket/a/../b", "gs://bucket/x", "file://relative"])
def test_a_malformed_storage_url_is_a_settings_error(tmp_path, url):
    from conftest import SPECS

    with pytest.raises(SettingsError, match="MLOPS_STORAGE_URL"):
        Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path), "MLOPS_SPECS": str(SPECS), "MLOPS_STORAGE_URL": url})


def test_the_storage_url_places_every_store_of_every_model(s3_url, tmp_path):
    from conftest import SPECS
    from mlops_assets.core.portfolio import Portfolio

    settings = Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path), "MLOPS_SPECS": str(SPECS / "synthetic.toml"),
                                  "MLOPS_STORAGE_URL": s3_url})
    model = Portfolio(settings).model("synthetic")
    assert model.landing.describe().startswith(f"{s3_url}/landing/synthetic")
    model.store.write_json("scoring_stats", D1, {})
    model.ledger.write(_rows(D1, "v1", "champion", ["c1"], [0.5]))
    model.deployment_file("canary.json").write_bytes(b"{}")
    artifact = model.registry.artifacts.save([1], "synthetic")
    bucket_root = open_object_store(s3_url)
    assert bucket_root.list() == [
        "models/synthetic/deployment/canary.json", f"models/synthetic/ledger/{D1}.parquet",
        f"models/synthetic/warehouse/scoring_stats/{D1}.json", f"registry/artifacts/{artifact.path}"]
    assert not (tmp_path / "models").exists()  # nothing of the model's state on the local disk


def test_without_a_storage_url_the_folders_are_those_of_before(tmp_path):
    from conftest import SPECS
    from mlops_assets.core.portfolio import Portfolio

    settings = Settings.for_data_dir(tmp_path, SPECS / "synthetic.toml")
    model = Portfolio(settings).model("synthetic")
    assert model.store.root == settings.model_paths("synthetic").warehouse_dir
    assert model.ledger.root == settings.model_paths("synthetic").ledger_dir
    assert model.archive.root == settings.model_paths("synthetic").root / "archive"
    assert model.quarantine.root == settings.model_paths("synthetic").quarantine_dir
    assert model.registry.artifacts.root == settings.artifacts_dir
    assert str(model.deployment_file("canary.json")) == str(settings.model_paths("synthetic").deployment_dir
                                                           / "canary.json")
