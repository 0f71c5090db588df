"""Every processed version is kept by content (archive or quarantine), and a day's raw table is only replaced by
a version that passed its checks (core/ingestion/kept.py and ingest.py, without Dagster)."""

import datetime as dt
import hashlib
import io

import pandas as pd
import pytest

from conftest import SPECS
from mlops_assets.core.config.spec import load_spec
from mlops_assets.core.ingestion.ingest import MissingFile, ingest
from mlops_assets.core.ingestion.kept import Archive, Quarantine
from mlops_assets.core.ingestion.landing import LocalLanding, S3Landing, sha256_bytes
from mlops_assets.core.ingestion.validation import BatchRejected
from mlops_assets.core.io.storage import PartitionStore
from mlops_assets.demo import corruptions, synthetic

DAY = "2025-01-01"
NAME = f"features_{DAY}.csv"


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS / "synthetic.toml")


@pytest.fixture(scope="module")
def batch(spec):
    [b] = synthetic.generate_days(spec, synthetic.ScenarioConfig("stable", dt.date(2025, 1, 1), 1,
                                                                  rows_per_day=30, seed=3))
    return b


class Model:
    def __init__(self, tmp_path, spec):
        self.landing = LocalLanding(tmp_path / "landing")
        self.archive, self.quarantine = Archive(tmp_path / "archive"), Quarantine(tmp_path / "quarantine")
        self.store, self.spec = PartitionStore(tmp_path / "warehouse"), spec

    def ingest(self, kind="features", day=DAY):
        return ingest(self.landing, self.archive, self.quarantine, self.store, self.spec, kind, day)


def test_quarantine_is_content_addressed_and_idempotent(tmp_path):
    quarantine = Quarantine(tmp_path)
    first = quarantine.keep(NAME, DAY, b"one", "bad")
    assert first.stored_as == f"{DAY}/{sha256_bytes(b'one')}_{NAME}"
    assert quarantine.keep(NAME, DAY, b"one", "bad again").stored_as == first.stored_as  # same bytes, one file
    quarantine.keep(NAME, DAY, b"two", "worse")
    assert sorted(p.name for p in (tmp_path / DAY).iterdir() if not p.name.endswith(".json")) == sorted(
        f"{sha256_bytes(c)}_{NAME}" for c in (b"one", b"two"))
    assert [r.reason for r in quarantine.records(DAY)] == ["bad again", "worse"]  # oldest first
    assert quarantine.holds(NAME, DAY, sha256_bytes(b"two")) and not quarantine.holds(NAME, DAY, "0" * 64)


def test_archive_keeps_every_accepted_version_and_knows_the_current_one(tmp_path):
    archive = Archive(tmp_path)
    assert archive.current("features", DAY) is None
    v1 = archive.accept(NAME, DAY, b"v1")
    v2 = archive.accept(NAME, DAY, b"v2")
    assert archive.accept(NAME, DAY, b"v2") == v2  # accepting the current bytes again changes nothing
    assert archive.current("features", DAY) == v2 and archive.current("labels", DAY) is None
    assert [v.sha256 for v in archive.history("features", DAY)] == [v1.sha256, v2.sha256]
    assert archive.read(v1) == b"v1" and archive.holds(NAME, DAY, v1.sha256)
    (tmp_path / v1.stored_as).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match its sha256"):
        archive.read(v1)


def test_accepted_batch_is_written_archived_and_leaves_landing(tmp_path, spec, batch):
    model = Model(tmp_path, spec)
    good = corruptions.features_file_bytes(spec, batch)
    model.landing.deliver(NAME, good)
    outcome = model.ingest()
    assert outcome.accepted and outcome.source.origin == "landing"
    assert len(model.store.read("raw_batch", DAY)) == 30
    assert (model.archive.root / outcome.archived.stored_as).read_bytes() == good
    assert not model.landing.exists(NAME)
    # with nothing in landing, the day is re-ingested from its archived version
    again = model.ingest()
    assert again.accepted and again.source.origin == "archive" and again.source.sha256 == sha256_bytes(good)


def test_rejected_batch_keeps_the_accepted_table(tmp_path, spec, batch):
    model = Model(tmp_path, spec)
    model.landing.deliver(NAME, corruptions.features_file_bytes(spec, batch))
    model.ingest()
    accepted = model.store.read("raw_batch", DAY)
    bad = corruptions.features_file_bytes(spec, batch, "out_of_range")
    model.landing.deliver(NAME, bad)
    outcome = model.ingest()
    assert not outcome.accepted and outcome.quarantined.sha256 == sha256_bytes(bad)
    assert outcome.kept.sha256 == model.archive.current("features", DAY).sha256
    assert "previous accepted version was kept" in outcome.kept_text()
    pd.testing.assert_frame_equal(model.store.read("raw_batch", DAY), accepted)
    assert not model.landing.exists(NAME)

    model.landing.deliver(NAME, b"\xff\xfeu\x00t\x00f\x00")  # unreadable: raises, after quarantining
    with pytest.raises(BatchRejected) as info:
        model.ingest()
    assert "UTF-16" in info.value.reason and info.value.quarantined and info.value.kept == outcome.kept
    pd.testing.assert_frame_equal(model.store.read("raw_batch", DAY), accepted)


def test_a_first_rejected_batch_writes_nothing(tmp_path, spec, batch):
    model = Model(tmp_path, spec)
    model.landing.deliver(NAME, corruptions.features_file_bytes(spec, batch, "duplicated_rows"))
    outcome = model.ingest()
    assert not outcome.accepted and outcome.kept is None and not model.store.exists("raw_batch", DAY)
    assert "no accepted version" in outcome.kept_text()
    with pytest.raises(MissingFile):
        model.ingest()


def test_an_archived_version_that_no_longer_passes_stays_where_it_is(tmp_path, spec, batch):
    model = Model(tmp_path, spec)
    model.landing.deliver(NAME, corruptions.features_file_bytes(spec, batch))
    model.ingest()
    stricter = load_spec(SPECS / "synthetic.toml")
    object.__setattr__(stricter.feature("tenure"), "max", -100.0)  # the spec changed since: every row fails
    model.spec = stricter
    outcome = model.ingest()
    assert not outcome.accepted and outcome.quarantined is None and outcome.source.origin == "archive"
    assert model.quarantine.records() == [] and model.store.exists("raw_batch", DAY)


def test_a_newer_delivery_during_ingestion_stays_in_landing(tmp_path, spec, batch, monkeypatch):
    model = Model(tmp_path, spec)
    model.landing.deliver(NAME, corruptions.features_file_bytes(spec, batch))
    real_write = model.store.write

    def write_then_redeliver(*args):
        real_write(*args)
        model.landing.deliver(NAME, b"a newer delivery")  # lands while the first one is being ingested

    monkeypatch.setattr(model.store, "write", write_then_redeliver)
    assert model.ingest().accepted
    assert model.landing.read(NAME) == b"a newer delivery"


class CountingS3:
    def __init__(self):
        self.objects, self.gets = {}, 0

    def put_object(self, Bucket, Key, Body):
        self.objects[Key] = bytes(Body)

    def get_object(self, Bucket, Key):
        self.gets += 1
        return {"Body": io.BytesIO(self.objects[Key])}

    def get_paginator(self, name):
        fake = self

        class Paginator:
            def paginate(self, Bucket, Prefix):
                yield {"Contents": [{"Key": k, "Size": len(v), "ETag": f'"{hashlib.md5(v).hexdigest()}"'}
                                    for k, v in sorted(fake.objects.items()) if k.startswith(Prefix)]}

        return Paginator()


def test_s3_scan_downloads_only_new_or_changed_objects():
    client = CountingS3()
    landing = S3Landing(client, "bucket", "synthetic")
    landing.deliver(NAME, b"a\n1\n")
    landing.deliver("features_2025-01-02.csv", b"a\n2\n")
    first = landing.scan()
    assert client.gets == 2 and first.files[0].sha256 == sha256_bytes(b"a\n1\n")
    known = {f.name: (f.size, f.stamp, f.sha256) for f in first.files}
    assert landing.scan(known).files == first.files and client.gets == 2
    landing.deliver(NAME, b"a\n3\n")
    assert landing.scan(known).hashed == 1 and client.gets == 3


def test_ingest_leaves_no_work_files_and_clears_what_a_crash_left(tmp_path, spec, batch):
    import os
    import time

    model = Model(tmp_path, spec)
    crashed = tmp_path / ".ingest" / "tmpcrashed"
    crashed.mkdir(parents=True)
    (crashed / "landed").write_bytes(b"a spooled copy")
    old = time.time() - 2 * 24 * 3600
    os.utime(crashed, (old, old))
    model.landing.deliver(NAME, corruptions.features_file_bytes(spec, batch))
    assert model.ingest().accepted
    assert list((tmp_path / ".ingest").iterdir()) == []
    assert not [p for p in (tmp_path / "warehouse" / "raw_batch").iterdir() if p.name.startswith(".")]
