import os
import time

import pytest

from mlops_assets.core.ingestion.landing import (LocalLanding, Quarantine, UnsafeFileName, check_file_name,
                                                 check_partition_key, move_to_quarantine, safe_join)


@pytest.mark.parametrize("name", [
    "../features_2024-01-01.csv", "features_2024-01-01.csv/../../x", "/etc/passwd", "..", ".hidden.csv",
    "sub/features_2024-01-01.csv", "features_2024-13-01.csv", "features_2024-01-01.txt", "features.csv",
    "features_2024-01-01.csv\x00", "labels_2024-1-1.csv", "features_2024-01-01.csv\n", "features_2024-01-01.csv\r",
    "\nfeatures_2024-01-01.csv", " features_2024-01-01.csv",
])
def test_unsafe_or_malformed_names_rejected(name):
    with pytest.raises(UnsafeFileName):
        check_file_name(name)


def test_good_names_and_partition_keys():
    assert check_file_name("features_2024-02-29.csv") == ("features", "2024-02-29")
    assert check_file_name("labels_2024-01-01.csv") == ("labels", "2024-01-01")
    for key in ["../2024-01-01", "2024-01-01/..", "2024-02-30", ""]:
        with pytest.raises(UnsafeFileName):
            check_partition_key(key)


def test_safe_join_refuses_symlink_escape(tmp_path):
    root, outside = tmp_path / "landing", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "secret").write_text("x")
    os.symlink(outside / "secret", root / "features_2024-01-01.csv")
    with pytest.raises(UnsafeFileName):
        safe_join(root, "features_2024-01-01.csv")
    files, rejected = LocalLanding(root).list_files()
    assert files == [] and rejected[0][0] == "features_2024-01-01.csv"


def test_listing_hashes_and_rejects(tmp_path):
    landing = LocalLanding(tmp_path)
    landing.deliver("features_2024-01-02.csv", b"a,b\n1,2\n")
    landing.deliver("labels_2024-01-01.csv", b"a\n1\n")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".features_2024-01-03.csv.tmp").write_text("in progress")
    files, rejected = landing.list_files()
    assert [(f.kind, f.partition) for f in files] == [("features", "2024-01-02"), ("labels", "2024-01-01")]
    assert [r[0] for r in rejected] == ["notes.txt"]
    landing.deliver("features_2024-01-02.csv", b"a,b\n1,3\n")
    assert landing.list_files()[0][0].sha256 != files[0].sha256


def test_an_abandoned_upload_is_reported_and_a_fresh_one_is_not(tmp_path):
    landing = LocalLanding(tmp_path)
    (tmp_path / ".features_2024-01-03.csv.tmp").write_text("in progress")
    abandoned = tmp_path / ".features_2024-01-04.csv.tmp"
    abandoned.write_text("died half way")
    two_hours_ago = time.time() - 7200
    os.utime(abandoned, (two_hours_ago, two_hours_ago))
    scan = landing.scan()
    assert scan.files == [] and scan.rejected == []
    [(name, why)] = scan.skipped
    assert name == abandoned.name and "unchanged for over 60 minutes" in why and "rename it without the dot" in why


def test_quarantine_keeps_bytes_and_reason(tmp_path):
    landing, quarantine = LocalLanding(tmp_path / "landing"), Quarantine(tmp_path / "q")
    landing.deliver("features_2024-01-02.csv", b"broken")
    record = move_to_quarantine(landing, quarantine, "features_2024-01-02.csv", "2024-01-02", "truncated", "x")
    assert not landing.exists("features_2024-01-02.csv")
    assert (quarantine.root / record.stored_as).read_bytes() == b"broken"
    [listed] = quarantine.records("2024-01-02")
    assert listed.reason == "truncated" and listed.column == "x" and listed.file == "features_2024-01-02.csv"
    # the second attempt finds nothing left to move and says so instead of failing
    assert move_to_quarantine(landing, quarantine, "features_2024-01-02.csv", "2024-01-02", "again") is None


def test_a_name_ending_in_a_newline_is_rejected_saying_so(tmp_path):
    (tmp_path / "features_2024-01-01.csv\n").write_text("a\n1\n")
    files, rejected = LocalLanding(tmp_path).list_files()
    assert files == []
    [(name, why)] = rejected
    assert name == "features_2024-01-01.csv\n" and "newline" in why
