import os

import pandas as pd
import pytest

from mlops_assets.core.ingestion.landing import UnsafeFileName
from mlops_assets.core.io.storage import MissingPartition, PartitionStore, frame_fingerprint


def frame(n, offset=0):
    return pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=n, freq="h"), "x": range(offset, offset + n),
                         "c": ["a"] * n})


def test_roundtrip_and_sql(tmp_path):
    store = PartitionStore(tmp_path)
    store.write("feature_table", "2024-01-01", frame(3))
    store.write("feature_table", "2024-01-02", frame(4, 10))
    back = store.read("feature_table", "2024-01-02")
    assert list(back["x"]) == [10, 11, 12, 13]
    both = store.read_many("feature_table", ["2024-01-01", "2024-01-02"])
    assert len(both) == 7 and list(both["partition"].unique()) == ["2024-01-01", "2024-01-02"]
    con = store.connect()
    assert con.execute("SELECT partition, count(*) FROM feature_table GROUP BY 1 ORDER BY 1").fetchall() == [
        ("2024-01-01", 3), ("2024-01-02", 4)]
    assert store.partitions("feature_table") == ["2024-01-01", "2024-01-02"]


def test_crash_mid_write_keeps_old_state(tmp_path, monkeypatch):
    store = PartitionStore(tmp_path)
    store.write("raw_batch", "2024-01-01", frame(3))

    def crash(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.write("raw_batch", "2024-01-01", frame(5))
    monkeypatch.undo()
    assert len(store.read("raw_batch", "2024-01-01")) == 3


def test_missing_and_unsafe(tmp_path):
    store = PartitionStore(tmp_path)
    with pytest.raises(MissingPartition, match="no raw_batch table for partition 2024-01-09"):
        store.read("raw_batch", "2024-01-09")
    with pytest.raises(UnsafeFileName):
        store.path("raw_batch", "../../etc")
    with pytest.raises(ValueError):
        store.path("../x", "2024-01-01")


def test_fingerprint_tracks_content():
    assert frame_fingerprint(frame(3)) == frame_fingerprint(frame(3))
    assert frame_fingerprint(frame(3)) != frame_fingerprint(frame(3, 1))
