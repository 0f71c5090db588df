"""The code location's shape, per model: asset keys and groups, checks, jobs, sensors and schedules, compared
with a committed snapshot (as dagster-open-platform does), so a change to the graph is a reviewed diff.

After an intended change: UPDATE_DEFINITIONS_SNAPSHOT=1 make test ARGS=tests/test_definitions_snapshot.py"""

import json
import os
from pathlib import Path

import dagster as dg

from conftest import SPECS
from mlops_assets.core.config.settings import Settings
from mlops_assets.defs import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def definitions_shape(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    shape: dict[str, dict] = {}

    def model_of(name: str) -> dict:
        model = name.split("_", 1)[0] if "/" not in name else name.split("/", 1)[0]
        return shape.setdefault(model, {"assets": {}, "checks": [], "jobs": [], "sensors": [], "schedules": []})

    for key in graph.get_all_asset_keys():
        model_of(key.to_user_string())["assets"][key.to_user_string()] = graph.get(key).group_name
    for check in graph.asset_check_keys:
        model_of(check.asset_key.to_user_string())["checks"].append(f"{check.asset_key.to_user_string()}:{check.name}")
    for job in defs.resolve_all_job_defs():
        if not job.name.startswith("__"):
            model_of(job.name)["jobs"].append(job.name)
    for sensor in defs.sensors:
        model_of(sensor.name)["sensors"].append(sensor.name)
    for schedule in defs.schedules:
        model_of(schedule.name)["schedules"].append(f"{schedule.name} {schedule.cron_schedule}")
    return {model: {k: sorted(v) if isinstance(v, list) else dict(sorted(v.items())) for k, v in parts.items()}
            for model, parts in sorted(shape.items())}


def test_definitions_match_the_snapshot(tmp_path):
    defs = build_definitions(Settings.for_data_dir(tmp_path, SPECS))
    dg.Definitions.validate_loadable(defs)
    shape = definitions_shape(defs)
    if os.environ.get("UPDATE_DEFINITIONS_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(shape, indent=2) + "\n")
    assert shape == json.loads(SNAPSHOT.read_text())


def test_every_model_has_the_same_stages_under_its_own_prefix(tmp_path):
    shape = definitions_shape(build_definitions(Settings.for_data_dir(tmp_path, SPECS)))
    assert set(shape) == {"elec2", "synthetic"}
    unprefixed = [{k.split("/", 1)[1]: g for k, g in parts["assets"].items()} for parts in shape.values()]
    assert unprefixed[0] == unprefixed[1] and len(unprefixed[0]) == 15
    assert set(unprefixed[0].values()) == {"ingestion", "features", "training", "evaluation", "deployment",
                                           "serving", "monitoring"}
    for model, parts in shape.items():
        assert all(name.startswith(f"{model}_") for kind in ("jobs", "sensors", "schedules") for name in parts[kind])
