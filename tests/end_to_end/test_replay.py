"""The README's main command on a short span: the same definitions, a persistent instance, a summary."""

import datetime as dt
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import dagster as dg

from conftest import REPO


def test_replay_command_runs_through_the_sensors_into_a_persistent_instance(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance's event log lives in $DAGSTER_HOME, as under make
    shutil.copy(REPO / "mlops_assets" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLOPS_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "mlops_assets.demo.replay", "--start", "1996-05-07", "--end", "1996-05-09"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Done: 3 days" in done.stdout and "Where to look" in done.stdout and "Models: 0 trained" in done.stdout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        everything = instance.get_runs()
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in everything)
        runs = [r for r in everything if "dagster/sensor_name" in r.tags]
        assert len(runs) == 5  # three features files, two labels files (the third day's labels land later)
        assert {r.tags["dagster/sensor_name"] for r in runs} == {"elec2_landing_sensor"}
        # and each replayed morning the loop-health schedule judged the loop by the replay's clock
        health = [r for r in everything if r.tags.get("dagster/schedule_name") == "elec2_loop_health_schedule"]
        assert sorted(r.tags["mlops/slo_now"] for r in health) == [
            f"1996-05-{d:02d}T06:00:00+00:00" for d in (7, 8, 9)]
        assert len(everything) == 8
        assert any(e.dagster_event and e.dagster_event.is_step_materialization for e in instance.all_logs(runs[0].run_id))
    assert (home / "event_log.db").exists()  # one event log for the instance, read above as `make ui` reads it
    # a second replay of the same days launches nothing new: run keys are content hashes
    again = subprocess.run([sys.executable, "-m", "mlops_assets.demo.replay", "--start", "1996-05-07", "--end", "1996-05-09"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Done: 3 days, 0 runs" in again.stdout


def test_the_replay_instance_keeps_one_event_log_and_no_per_run_stdout_files(tmp_path, monkeypatch):
    """The demo's speed rests on these two settings; `make ui` must read the same history."""
    from mlops_assets.demo.replay import replay_instance

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "mlops_assets" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with replay_instance() as instance:
        assert type(instance.event_log_storage).__name__ == "ConsolidatedSqliteEventLogStorage"
        assert type(instance.compute_log_manager).__name__ == "NoOpComputeLogManager"
    with dg.DagsterInstance.from_config(str(home)) as instance:  # what dagster dev opens
        assert type(instance.event_log_storage).__name__ == "ConsolidatedSqliteEventLogStorage"
        assert type(instance.compute_log_manager).__name__ == "LocalComputeLogManager"


class _Registry:
    def __init__(self):
        self.entries, self.canary = [], None

    def audit_log(self):
        return list(self.entries)

    def version_for(self, alias):
        return self.canary if alias == "canary" else None

    def get(self, version):
        passed = version != "v-bad"
        return SimpleNamespace(gates_passed=passed, gate_report={"failures": [] if passed else ["calibration"]})


def test_alerts_print_when_they_start_change_or_clear_not_every_day_they_persist(tmp_path, capsys):
    from mlops_assets.core.io.storage import PartitionStore
    from mlops_assets.demo.replay import EventEcho

    store, registry = PartitionStore(tmp_path), _Registry()
    echo = EventEcho(SimpleNamespace(store=store, registry=registry), seen_audit=0)

    def drift(day, status, features):
        store.write_json("data_drift_report", day, {"status": status, "drift_share": 0.1 * len(features), "features": [
            {"feature": f, "drifted": True, "weight": 0.1} for f in features] + [
            {"feature": "day", "drifted": True, "weight": 0.0}]})

    for day, status, features in [("1997-05-04", "OK", []), ("1997-05-05", "ERROR", ["vicprice"]),
                                  ("1997-05-06", "ERROR", ["vicprice"]), ("1997-05-07", "ERROR", ["vicprice", "transfer"]),
                                  ("1997-05-08", "OK", [])]:
        drift(day, status, features)
    registry.entries.append(SimpleNamespace(action="register", version="v-bad", to_alias="candidate", reason=""))
    registry.canary = "v-canary"
    registry.entries.append(SimpleNamespace(action="register", version="v-good", to_alias="candidate", reason=""))
    for day in range(5, 10):
        echo.day_done(dt.date(1997, 5, day))
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "data drift" in line] == [
        "  ! 1997-05-05 data drift ERROR: vicprice (weighted share 0.10)",
        "  ! 1997-05-07 data drift ERROR: vicprice, transfer (weighted share 0.20)",
        "  ! 1997-05-08 data drift back to OK",
    ]
    assert "  * 1997-05-05 register v-bad → candidate (stopped by gates: calibration)" in lines
    assert ("  * 1997-05-05 register v-good → candidate (all gates passed; stays candidate while canary v-canary runs)"
            in lines)
