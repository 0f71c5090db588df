"""The landing sensor's decisions (core/ingestion/watch.py), without Dagster: which days are partitions, the
cursor (small, tolerant of the old format), what is requested, quarantined, left waiting or skipped."""

import datetime as dt
import json
import logging
import os
import time

import pytest

from mlops_assets.core.ingestion.kept import Archive, Quarantine
from mlops_assets.core.ingestion.landing import LocalLanding, sha256_bytes
from mlops_assets.core.ingestion.watch import LandingCursor, PartitionWindow, plan_tick

TODAY = dt.date(2025, 3, 10)
OPEN = PartitionWindow(first=dt.date(2025, 1, 1), last=None, last_now=TODAY - dt.timedelta(days=1), today=TODAY)
CLOSED = PartitionWindow(first=dt.date(2025, 1, 1), last=dt.date(2025, 1, 31), last_now=dt.date(2025, 1, 31),
                         today=TODAY)


@pytest.mark.parametrize("window,day,status,why", [
    (OPEN, "2025-01-01", "ok", ""),
    (OPEN, "2025-03-09", "ok", ""),
    (OPEN, "2024-12-31", "reject", "before the model's first partition 2025-01-01"),
    (OPEN, "2025-02-30", "reject", "not a calendar date"),
    (OPEN, "2025-03-10", "wait", "opens when the day is over"),  # today
    (OPEN, "2025-03-11", "wait", "opens when the day is over"),  # tomorrow
    (OPEN, "2025-03-12", "reject", "in the future (after tomorrow, 2025-03-11, UTC)"),
    (CLOSED, "2025-01-31", "ok", ""),
    (CLOSED, "2025-02-01", "reject", "end_date 2025-02-01 is the first day without one"),
])
def test_partition_window(window, day, status, why):
    got, reason = window.classify(day)
    assert got == status and why in reason


def test_cursor_reads_both_formats_and_survives_garbage():
    old = LandingCursor.parse(json.dumps({"features_2025-01-01.csv": "ab" * 32, "notes.txt": "rejected"}))[0]
    assert old.files["features_2025-01-01.csv"].sha256 == "ab" * 32 and "notes.txt" in old.noted
    again, problem = LandingCursor.parse(old.dumps())
    assert problem is None and again == old
    for garbage in ("not json", "[1, 2]", '{"v": 2, "files": {"x": [1]}}'):
        cursor, problem = LandingCursor.parse(garbage)
        assert cursor == LandingCursor() and "could not be read" in problem


@pytest.fixture
def zone(tmp_path):
    return LocalLanding(tmp_path / "landing"), Archive(tmp_path / "archive"), Quarantine(tmp_path / "quarantine")


def test_only_new_or_changed_files_are_read_and_requested(zone):
    landing, archive, quarantine = zone
    for day in ("2025-01-01", "2025-01-02"):
        landing.deliver(f"features_{day}.csv", f"a\n{day}\n".encode())
    first = plan_tick(landing, archive, quarantine, None, OPEN)
    assert [r.run_key.split(":")[:2] for r in first.requests] == [["features", "2025-01-01"], ["features", "2025-01-02"]]
    assert first.hashed == 2
    second = plan_tick(landing, archive, quarantine, first.cursor, OPEN)
    assert second.requests == [] and second.hashed == 0  # nothing read: the tick costs a directory listing
    landing.deliver("features_2025-01-02.csv", b"a\nchanged\n")
    third = plan_tick(landing, archive, quarantine, second.cursor, OPEN)
    assert [r.file.name for r in third.requests] == ["features_2025-01-02.csv"] and third.hashed == 1


def test_outside_files_are_quarantined_and_problems_logged_once(zone):
    landing, archive, quarantine = zone
    landing.deliver("features_2025-01-01.csv", b"a\n1\n")
    landing.deliver("features_2024-06-01.csv", b"a\n2\n")
    (landing.root / "features_2025-02-30.csv").write_bytes(b"a\n3\n")
    (landing.root / "readme.txt").write_text("hello")
    plan = plan_tick(landing, archive, quarantine, None, OPEN)
    assert [r.file.partition for r in plan.requests] == ["2025-01-01"]
    records = {r.file: r for r in quarantine.records()}
    assert set(records) == {"features_2024-06-01.csv", "features_2025-02-30.csv"}
    assert records["features_2025-02-30.csv"].stored_as.startswith("_not_a_date/")
    assert "not a calendar date" in records["features_2025-02-30.csv"].reason
    warnings = [m for level, m in plan.log if level == logging.WARNING]
    assert any("readme.txt" in m for m in warnings) and len(warnings) == 3
    again = plan_tick(landing, archive, quarantine, plan.cursor, OPEN)
    assert again.log == [] and again.requests == []  # readme.txt is not warned about on every tick
    assert len(again.cursor) < 300


def test_duplicates_of_the_accepted_version_leave_landing_and_earlier_versions_run_again(zone):
    landing, archive, quarantine = zone
    name, v1, v2 = "features_2025-01-01.csv", b"a\n1\n", b"a\n2\n"
    archive.accept(name, "2025-01-01", v1)
    archive.accept(name, "2025-01-01", v2)  # v2 is current
    landing.deliver(name, v2)
    plan = plan_tick(landing, archive, quarantine, None, OPEN)
    assert plan.requests == [] and not landing.exists(name)
    landing.deliver(name, v1)  # back to the earlier version: the producer's latest word runs again
    [request] = plan_tick(landing, archive, quarantine, plan.cursor, OPEN).requests
    assert request.run_key.startswith(f"features:2025-01-01:{sha256_bytes(v1)[:16]}:")
    quarantine.keep("features_2025-01-02.csv", "2025-01-02", b"bad", "broken")
    landing.deliver("features_2025-01-02.csv", b"new")
    [fresh] = plan_tick(landing, archive, quarantine, None, OPEN).requests[1:]
    assert fresh.run_key == f"features:2025-01-02:{sha256_bytes(b'new')[:16]}"


def test_one_failing_file_never_stops_the_others(zone, monkeypatch):
    landing, archive, quarantine = zone
    for day in ("2025-01-01", "2025-01-02", "2025-01-03"):
        landing.deliver(f"features_{day}.csv", day.encode())
    real = archive.current

    def current(kind, partition):
        if partition == "2025-01-02":
            raise OSError("archive folder unreadable")
        return real(kind, partition)

    monkeypatch.setattr(archive, "current", current)
    plan = plan_tick(landing, archive, quarantine, None, OPEN)
    assert [r.file.partition for r in plan.requests] == ["2025-01-01", "2025-01-03"]
    assert any("features_2025-01-02.csv" in m and "archive folder unreadable" in m for _, m in plan.log)
    monkeypatch.undo()
    assert [r.file.partition for r in plan_tick(landing, archive, quarantine, plan.cursor, OPEN).requests] == [
        "2025-01-02"]


def test_a_file_waiting_for_its_day_is_requested_once_the_day_is_over(zone):
    landing, archive, quarantine = zone
    landing.deliver("labels_2025-03-10.csv", b"a\n1\n")
    plan = plan_tick(landing, archive, quarantine, None, OPEN)
    assert plan.requests == [] and landing.exists("labels_2025-03-10.csv")
    later = PartitionWindow(OPEN.first, None, TODAY, TODAY + dt.timedelta(days=1))
    [request] = plan_tick(landing, archive, quarantine, plan.cursor, later).requests
    assert request.run_key.startswith("labels:2025-03-10:")


def test_accepted_bytes_leave_landing_even_after_they_were_requested(tmp_path):
    """A file requested on one tick, ingested, then delivered again with the same bytes (a replay resumed, or a
    run that died before clearing landing) must not stay in the landing zone forever."""
    from mlops_assets.core.ingestion.kept import Archive
    from mlops_assets.core.ingestion.landing import LocalLanding, Quarantine
    from mlops_assets.core.ingestion.watch import plan_tick
    import datetime as dt

    landing, archive = LocalLanding(tmp_path / "landing"), Archive(tmp_path / "archive")
    quarantine = Quarantine(tmp_path / "quarantine")
    window = PartitionWindow(first=dt.date(2025, 1, 1), last=None, last_now=dt.date(2025, 1, 31),
                             today=dt.date(2025, 2, 1))
    content = b"timestamp,x\n2025-01-04T01:00:00,1\n"
    landing.deliver("features_2025-01-04.csv", content)
    first = plan_tick(landing, archive, quarantine, None, window)
    assert len(first.requests) == 1
    archive.accept("features_2025-01-04.csv", "2025-01-04", content)  # the run ingested it ...
    second = plan_tick(landing, archive, quarantine, first.cursor, window)  # ... and died before clearing landing
    assert second.requests == [] and not landing.exists("features_2025-01-04.csv")


def test_an_abandoned_upload_is_logged_once_not_on_every_tick(tmp_path):
    landing = LocalLanding(tmp_path / "landing")
    landing.root.mkdir()
    abandoned = landing.root / ".features_2024-01-04.csv.part"
    abandoned.write_text("died half way")
    os.utime(abandoned, (time.time() - 7200, time.time() - 7200))
    archive, quarantine = Archive(tmp_path / "archive"), Quarantine(tmp_path / "quarantine")
    window = OPEN
    first = plan_tick(landing, archive, quarantine, None, window)
    assert [m for _, m in first.log if abandoned.name in m and "rename it without the dot" in m]
    second = plan_tick(landing, archive, quarantine, first.cursor, window)
    assert not [m for _, m in second.log if abandoned.name in m]
