"""A code location with a few registered synthetic models, for the online serving tests: models are trained by
the core trainer and registered directly (no Dagster run), so a test gets a champion in about a second."""

import datetime as dt

import pandas as pd

from conftest import SPECS
from harness import START, Location, synthetic_history
from mlops_assets.core.serving.canary import CanaryState, CanaryStateFile, start_canary
from mlops_assets.core.training.trainer import train

DAYS = 16
SERVE_DAY = START + dt.timedelta(days=DAYS - 1)  # a day not used for training


def serving_location(tmp_path, rows_per_day=60):
    from mlops_assets.core.config.spec import load_spec

    spec = load_spec(SPECS / "synthetic.toml")
    history = synthetic_history(spec, DAYS, rows_per_day=rows_per_day)
    loc = Location(tmp_path, SPECS / "synthetic.toml", history=history)
    loc.history = history
    return loc


def register_model(loc, seed: int, days=range(0, 10), alias: str | None = "champion") -> str:
    """Train on `days` of the location's labeled examples with `seed` (bootstrap-resampled so seeds differ),
    register the model as passing its gates and move it to `alias`."""
    spec, registry = loc.project.spec, loc.registry
    keys = [(START + dt.timedelta(days=i)).isoformat() for i in days]
    frame = loc.store.read_many("labeled_examples", keys)
    frame = frame.sample(frac=1.0, replace=True, random_state=seed).reset_index(drop=True)
    model = train(spec, spec.training, frame, git_commit="test")
    artifact = registry.artifacts.save(model.pipeline, spec.name)
    version = f"{spec.name}-s{seed}-{artifact.sha256[:8]}"
    registry.register(version, dataset=spec.name, task=spec.task, lineage={}, metrics={},
                      gate_report={"passed": True}, gates_passed=True, artifact=artifact, run_id="test", actor="test")
    if alias:
        registry.promote(version, alias, actor="test", reason="test")
    return version


def start_canary_at(loc, version: str, share: float) -> None:
    """Make `version` the canary at `share` of entities, as canary_step starts one."""
    project = loc.project
    champion = loc.registry.version_for("champion")
    loc.registry.promote(version, "canary", actor="test", reason="test")
    plan = start_canary(project.spec, version, champion)
    CanaryStateFile(project.paths.deployment_dir / "canary.json").save(CanaryState(plan, share, SERVE_DAY.isoformat()))


def request_rows(loc, day=SERVE_DAY) -> list[dict]:
    """The day's raw feature rows as JSON records (what a client sends)."""
    spec = loc.project.spec
    frame = loc.history[day][spec.batch_columns].copy()
    records = frame.to_dict(orient="records")
    for record in records:
        record[spec.timestamp] = pd.Timestamp(record[spec.timestamp]).isoformat()
        for f in spec.features:
            if f.is_numeric:
                record[f.name] = float(record[f.name])
    return records
