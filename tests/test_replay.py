"""The README's main command on a short span: the same definitions, a persistent instance, a summary."""

import os
import shutil
import subprocess
import sys

import dagster as dg

from conftest import REPO


def test_replay_command_runs_through_the_sensors_into_a_persistent_instance(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "mlops_assets" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLOPS_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "mlops_assets.replay", "--start", "1996-05-07", "--end", "1996-05-09"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Done: 3 days" in done.stdout and "Where to look" in done.stdout and "Models: 0 trained" in done.stdout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 5  # three features files, two labels files (the third day's labels land later)
        assert {r.tags["dagster/sensor_name"] for r in runs} == {"landing_sensor"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # a second replay of the same days launches nothing new: run keys are content hashes
    again = subprocess.run([sys.executable, "-m", "mlops_assets.replay", "--start", "1996-05-07", "--end", "1996-05-09"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Done: 3 days, 0 runs" in again.stdout
