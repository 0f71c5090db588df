"""The unattended loop's sensors never stop on a record they cannot use: a monitoring run that fails before
its checks run leaves PLANNED check records; a labels materialisation may have no partition; a day's
scoring stats may be unreadable. Each is skipped with a warning in the tick's log, and the next real
event is still acted on."""

import datetime as dt
import logging

import dagster as dg

from conftest import SPECS
from harness import START, Location


def day(i):
    return (START + dt.timedelta(days=i)).isoformat()


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def tick(loc, sensor_name, cursor=None):
    """One tick as the daemon runs it; returns (result, warnings logged)."""
    sensor = loc.defs.get_sensor_def(loc.named(sensor_name))
    ctx = dg.build_sensor_context(instance=loc.instance, definitions=loc.defs, resources=loc.defs.resources,
                                  cursor=cursor)
    warnings = Warnings()
    ctx.log.addHandler(warnings)
    return sensor(ctx), warnings.lines


def unusable_champion(loc):
    """A champion whose pickle is not a model: scoring it fails, before any monitoring check runs."""
    artifact = loc.registry.artifacts.save({"not": "a model"}, "synthetic")
    loc.registry.register("synthetic-broken", dataset="synthetic", task="binary_classification", lineage={},
                          metrics={}, gate_report={}, gates_passed=True, artifact=artifact, run_id="test",
                          actor="test")
    loc.registry.promote("synthetic-broken", "champion", actor="test")


def test_a_monitoring_run_that_fails_before_its_checks_does_not_stop_retraining(tmp_path):
    loc = Location(tmp_path, SPECS / "synthetic.toml", history_days=30)
    unusable_champion(loc)
    result = loc.run_job("score_and_monitor_job", day(25))
    assert not result.success and loc.checks(result) == {}
    drift_key = dg.AssetCheckKey(loc.key("data_drift_report"), "data_drift_ok")
    [planned] = loc.instance.event_log_storage.get_asset_check_execution_history(drift_key, limit=10)
    assert planned.status.value == "PLANNED" and planned.partition == day(25)
    assert not hasattr(planned.event.dagster_event.event_specific_data, "passed")

    first, warnings = tick(loc, "retrain_sensor")
    assert first.run_requests == []
    assert any(f"data_drift_ok record {planned.id} ({day(25)}) has no result yet" in w for w in warnings), warnings
    assert any("performance_ok" in w and "no result yet" in w for w in warnings), warnings

    # the next real ERROR failure is acted on, and the planned records are not reported again
    loc.instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=loc.key("data_drift_report"), check_name="data_drift_ok", passed=False,
        severity=dg.AssetCheckSeverity.ERROR, partition=day(27)))
    second, warnings = tick(loc, "retrain_sensor", cursor=first.cursor)
    [request] = second.run_requests
    assert request.partition_key == day(27) and request.tags["mlops/trigger"] == f"data_drift_ok failed on {day(27)}"
    assert warnings == []


def test_the_label_arrival_sensor_skips_what_it_cannot_use_and_goes_on(tmp_path):
    loc = Location(tmp_path, SPECS / "synthetic.toml", history_days=30)
    store = loc.store
    store.write_json("scoring_stats", day(20), {"rows": 120, "champion": "v1"})
    store.write_json("scoring_stats", day(21), {"rows": 120, "champion": "v1"})
    store.path("scoring_stats", day(21), ".json").write_text('{"rows": 12')  # torn
    for partition in (day(21), None, day(20), day(29)):  # day 29 was never scored
        loc.instance.report_runless_asset_event(dg.AssetMaterialization(loc.key("labeled_examples"),
                                                                        partition=partition))
    result, warnings = tick(loc, "label_arrival_sensor")
    assert [r.partition_key for r in result.run_requests] == [day(20)]
    assert len(warnings) == 2, warnings
    assert f"labels for {day(21)} landed but its scoring stats cannot be read" in warnings[0]
    assert "score_and_monitor_job" in warnings[0]
    assert "has no partition" in warnings[1]
    # the cursor moved past all of them: the next tick asks for nothing again and warns about nothing
    again, warnings = tick(loc, "label_arrival_sensor", cursor=result.cursor)
    assert again.run_requests == [] and warnings == []
