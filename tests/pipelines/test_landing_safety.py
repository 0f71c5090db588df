"""The unattended landing loop never wedges and never loses data: no one file stops the sensor, every delivered
version is kept (archive when accepted, quarantine when rejected), and an accepted day is only replaced by a
version that passed its checks."""

import datetime as dt
import json
import logging
import os
import socket

import dagster as dg
import pandas as pd

from mlops_assets.benchmarks.chaos_common import alarm  # the chaos suite's wedge guard
from conftest import SPECS
from mlops_assets.core.ingestion.landing import features_file_name, labels_file_name, sha256_bytes
from mlops_assets.demo import corruptions, synthetic

START = dt.date(2025, 1, 1)
TODAY = dt.datetime.now(dt.timezone.utc).date()


def batches(spec, days, rows=40):
    cfg = synthetic.ScenarioConfig("stable", START, days, rows_per_day=rows, seed=3)
    return list(synthetic.generate_days(spec, cfg))


class Tick:
    """One evaluation of the landing sensor as the daemon makes it (which also resolves each request's
    partition), with what it logged."""

    def __init__(self, pipeline, cursor=None):
        sensor = pipeline.defs.get_sensor_def(pipeline.named("landing_sensor"))
        ctx = dg.build_sensor_context(instance=pipeline.instance, definitions=pipeline.defs, cursor=cursor,
                                      resources=pipeline.defs.resources)
        self.records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = self.records.append
        ctx.log.addHandler(handler)
        with alarm(20, "the landing sensor"):  # opening a FIFO would block for ever: fail instead of hanging
            self.result = sensor.evaluate_tick(ctx)
        self.requests = list(self.result.run_requests or [])
        self.cursor = self.result.cursor

    def logged(self, level=logging.WARNING) -> str:
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= level)

    @property
    def partitions(self):
        return sorted(r.partition_key for r in self.requests)




def quarantined(pipeline) -> dict[str, object]:
    return {r.file: r for r in pipeline.project.quarantine.records()}


# ------------------------------------------------------------------------------ 1. one file never stops the sensor


def test_files_outside_the_partitions_are_quarantined_and_the_good_one_is_requested(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [good] = batches(synthetic_spec, 1)
    content = corruptions.features_file_bytes(synthetic_spec, good)
    pipeline.landing.deliver(features_file_name(good.day), content)
    future = TODAY + dt.timedelta(days=5)
    outside = {
        "features_2024-12-31.csv": ("2024-12-31", "before"),  # before the spec's start_date
        features_file_name(future): (future.isoformat(), "future"),
        labels_file_name(future): (future.isoformat(), "future"),
        "features_2025-02-30.csv": ("2025-02-30", "not a calendar date"),
    }
    for name in outside:
        (pipeline.landing.root / name).write_bytes(content)

    tick = Tick(pipeline)
    assert tick.partitions == ["2025-01-01"]
    records = quarantined(pipeline)
    for name, (partition, why) in outside.items():
        record = records[name]
        assert record.partition == partition and why in record.reason, record
        assert (pipeline.project.quarantine.root / record.stored_as).read_bytes() == content
        assert name in tick.logged() and why in tick.logged()
    assert sorted(p.name for p in pipeline.landing.root.iterdir()) == [features_file_name(good.day)]
    # the next tick is quiet and does not raise either
    assert Tick(pipeline, tick.cursor).requests == []


def test_elec2_files_after_the_end_date_are_quarantined(make_pipeline, elec2_spec, elec2_history):
    pipeline = make_pipeline(SPECS / "elec2.toml")
    day = dt.date(1996, 5, 7)
    content = elec2_history[day][elec2_spec.batch_columns].to_csv(index=False).encode()
    pipeline.landing.deliver(features_file_name(day), content)
    for late in ("1998-12-07", "1999-03-01"):  # the spec's end_date is the first day without a partition
        pipeline.landing.deliver(features_file_name(late), content)
    tick = Tick(pipeline)
    assert tick.partitions == ["1996-05-07"]
    records = quarantined(pipeline)
    assert {"features_1998-12-07.csv", "features_1999-03-01.csv"} <= set(records)
    assert all("end_date" in records[n].reason for n in ("features_1998-12-07.csv", "features_1999-03-01.csv"))


def test_a_file_for_a_day_not_over_yet_waits_in_landing(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [good] = batches(synthetic_spec, 1)
    early = [features_file_name(TODAY), features_file_name(TODAY + dt.timedelta(days=1))]
    for name in early:
        pipeline.landing.deliver(name, corruptions.features_file_bytes(synthetic_spec, good))
    tick = Tick(pipeline)
    assert tick.requests == [] and quarantined(pipeline) == {}
    assert all(pipeline.landing.exists(name) for name in early)
    assert TODAY.isoformat() in tick.logged(logging.INFO)


def test_non_regular_unreadable_and_vanished_entries_are_skipped_with_a_warning(make_pipeline, synthetic_spec,
                                                                                   monkeypatch, tmp_path):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    good = batches(synthetic_spec, 6)
    root = pipeline.landing.root
    pipeline.landing.deliver(features_file_name(good[0].day), corruptions.features_file_bytes(synthetic_spec, good[0]))
    os.mkfifo(root / features_file_name(good[1].day))  # a FIFO: open() would block until a writer comes
    server = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir(root)  # a socket's path is limited to ~100 bytes: bind it by its relative name
    server.bind(features_file_name(good[2].day))
    (root / features_file_name(good[3].day)).mkdir()  # a folder with a file's name
    for day in good[4:]:
        pipeline.landing.deliver(features_file_name(day.day), b"x,y\n1,2\n")
    vanished, denied = features_file_name(good[4].day), features_file_name(good[5].day)
    real_open = os.open

    def hostile_open(path, flags, *args, **kw):
        name = os.path.basename(os.fsdecode(path))
        if name == vanished:
            os.unlink(path)  # gone between listing and reading
        if name == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", hostile_open)
    try:
        tick = Tick(pipeline)
    finally:
        server.close()
    assert tick.partitions == [good[0].day.isoformat()]
    warnings = tick.logged()
    for day, what in zip(good[1:], ("FIFO", "socket", "folder", "vanished", "Permission denied")):
        assert features_file_name(day.day) in warnings and what in warnings, (what, warnings)
    assert (root / features_file_name(good[1].day)).exists()  # left alone, not opened
    monkeypatch.undo()
    # once readable, a skipped file is requested on a later tick
    tick = Tick(pipeline, tick.cursor)
    assert tick.partitions == [good[5].day.isoformat()]


# ------------------------------------------------------------------------------------- 2. names ending in a newline


def test_a_name_ending_in_a_newline_is_rejected_with_a_reason(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    good = batches(synthetic_spec, 2)
    pipeline.landing.deliver(features_file_name(good[0].day), corruptions.features_file_bytes(synthetic_spec, good[0]))
    (pipeline.landing.root / (features_file_name(good[1].day) + "\n")).write_bytes(
        corruptions.features_file_bytes(synthetic_spec, good[1]))
    tick = Tick(pipeline)
    assert tick.partitions == [good[0].day.isoformat()]
    assert "newline" in tick.logged()


# ------------------------------------------------------------------------------------------ 3. nothing is ever lost


def _raw_sha(pipeline, day):
    return pd.util.hash_pandas_object(pipeline.store.read("raw_batch", day), index=False).sum()


def test_a_bad_redelivery_keeps_the_accepted_day_and_every_version(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = batches(synthetic_spec, 1)
    day, name = batch.day.isoformat(), features_file_name(batch.day)
    archive = pipeline.project.paths.root / "archive" / day
    good = corruptions.features_file_bytes(synthetic_spec, batch)
    pipeline.landing.deliver(name, good)
    assert pipeline.tick() == 1 and not pipeline.log.failed_runs
    accepted = pipeline.store.read("raw_batch", day)
    features = pipeline.store.read("feature_table", day)
    # accepted: archived by content, out of the landing zone
    assert (archive / f"{sha256_bytes(good)}_{name}").read_bytes() == good
    assert not pipeline.landing.exists(name)

    for corruption in ("out_of_range", "truncated_csv"):  # a schema failure, then an unreadable file
        bad = corruptions.features_file_bytes(synthetic_spec, batch, corruption)
        pipeline.landing.deliver(name, bad)
        assert pipeline.tick() == 1
        pd.testing.assert_frame_equal(pipeline.store.read("raw_batch", day), accepted)
        pd.testing.assert_frame_equal(pipeline.store.read("feature_table", day), features)
        [record] = [r for r in pipeline.project.quarantine.records() if r.sha256 == sha256_bytes(bad)]
        assert record.stored_as == f"{day}/{sha256_bytes(bad)}_{name}"
        assert (pipeline.project.quarantine.root / record.stored_as).read_bytes() == bad
        assert not pipeline.landing.exists(name)
    assert (archive / f"{sha256_bytes(good)}_{name}").read_bytes() == good
    assert len(pipeline.log.failed_runs) == 2

    # the failed check says what was kept, and still shows its failure table and quarantined file
    key = dg.AssetCheckKey(pipeline.key("raw_batch"), "raw_batch_matches_spec")
    history = pipeline.instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
    evaluations = [r.event.dagster_event.event_specific_data for r in history if r.event]
    evaluation = [e for e in evaluations if hasattr(e, "passed")][0]  # the truncated file never reached the check
    assert evaluation.passed is False
    assert sha256_bytes(good) in str(evaluation.metadata["kept"].value)
    assert evaluation.metadata["failures"].value.records
    assert str(evaluation.metadata["quarantined_as"].value).endswith(f"{sha256_bytes(corruptions.features_file_bytes(synthetic_spec, batch, 'out_of_range'))}_{name}")


def test_a_rejected_first_delivery_leaves_no_partition(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = batches(synthetic_spec, 1)
    pipeline.landing.deliver(features_file_name(batch.day),
                             corruptions.features_file_bytes(synthetic_spec, batch, "out_of_range"))
    pipeline.tick()
    day = batch.day.isoformat()
    assert not pipeline.store.exists("raw_batch", day) and not pipeline.store.exists("feature_table", day)
    assert pipeline.check_results("raw_batch_matches_spec") == {day: False}


def test_processed_files_leave_landing_identical_redeliveries_are_not_rerun_and_the_cursor_stays_small(
        make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    days = batches(synthetic_spec, 3)
    files = {features_file_name(b.day): corruptions.features_file_bytes(synthetic_spec, b) for b in days}
    for name, content in files.items():
        pipeline.landing.deliver(name, content)
    assert pipeline.tick() == 3
    assert list(pipeline.landing.root.iterdir()) == []
    assert pipeline.tick() == 0  # the next tick finds them gone and forgets them
    cursor = pipeline.log.sensor_state[pipeline.named("landing_sensor")]
    assert len(cursor) < 200 and not any(name in cursor for name in files)
    # the very same bytes again: already archived, so no run, and they leave landing
    for name, content in files.items():
        pipeline.landing.deliver(name, content)
    assert pipeline.tick() == 0
    assert list(pipeline.landing.root.iterdir()) == []
    assert len(pipeline.instance.get_runs()) == 3


def test_a_day_can_be_rerun_from_its_archived_version(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = batches(synthetic_spec, 1)
    pipeline.landing.deliver(features_file_name(batch.day), corruptions.features_file_bytes(synthetic_spec, batch))
    pipeline.tick()
    pipeline.store.remove("raw_batch", batch.day.isoformat())
    result = pipeline.run_job("daily_ingestion_job", batch.day.isoformat())
    assert result.success and pipeline.store.exists("raw_batch", batch.day.isoformat())


def test_the_sensor_only_reads_files_whose_size_or_mtime_changed(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = batches(synthetic_spec, 1)
    name = features_file_name(batch.day)
    content = corruptions.features_file_bytes(synthetic_spec, batch)
    path = pipeline.landing.deliver(name, content)
    first = Tick(pipeline)
    assert len(first.requests) == 1
    # same size and modification time: not read again (so this different content is not noticed yet) ...
    stat = path.stat()
    path.write_bytes(content.replace(b"south", b"north", 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert Tick(pipeline, first.cursor).requests == []
    # ... a new modification time makes it read, hashed and requested
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    [request] = Tick(pipeline, first.cursor).requests
    assert request.run_key != first.requests[0].run_key


def test_an_old_format_cursor_is_read(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    days = batches(synthetic_spec, 2)
    contents = [corruptions.features_file_bytes(synthetic_spec, b) for b in days]
    for b, content in zip(days, contents):
        pipeline.landing.deliver(features_file_name(b.day), content)
    old = json.dumps({features_file_name(days[0].day): sha256_bytes(contents[0]), "notes.txt": "rejected"})
    assert Tick(pipeline, old).partitions == [days[1].day.isoformat()]
    assert Tick(pipeline, "not json").partitions == [b.day.isoformat() for b in days]


# ------------------------------------------------------------------------------------------ 4. hostile contents


def test_a_utf16_file_is_quarantined_with_a_clear_error(make_pipeline, synthetic_spec):
    pipeline = make_pipeline(SPECS / "synthetic.toml")
    [batch] = batches(synthetic_spec, 1)
    name, day = features_file_name(batch.day), batch.day.isoformat()
    content = corruptions.features_file_bytes(synthetic_spec, batch).decode().encode("utf-16")
    pipeline.landing.deliver(name, content)
    pipeline.tick()
    [record] = pipeline.project.quarantine.records()
    assert record.file == name and "UTF-16" in record.reason
    assert (pipeline.project.quarantine.root / record.stored_as).read_bytes() == content
    [run] = pipeline.instance.get_runs()
    text = " ".join(e.dagster_event.step_failure_data.error.message for e in pipeline.instance.all_logs(run.run_id)
                    if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE")
    assert name in text and day in text and "not UTF-8" in text

