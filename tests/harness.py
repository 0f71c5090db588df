"""The one test harness: a code location on a temporary data folder, with its definitions, its portfolio of
models and a Dagster instance; helpers to load labeled history, deliver files, tick sensors and run jobs."""

import datetime as dt

import dagster as dg

from conftest import SPECS
from mlops_assets.core.config.settings import Settings
from mlops_assets.defs import build_definitions
from mlops_assets.demo import synthetic
from mlops_assets.demo.history import load_labeled_days
from mlops_assets.demo.launch import ReplayLog, run_requests_once

START = dt.date(2025, 1, 1)
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def synthetic_history(spec, days, seed=5, scenario="stable", rows_per_day=120, **kw):
    cfg = synthetic.ScenarioConfig(scenario, START, days, rows_per_day=rows_per_day, seed=seed, **kw)
    return {b.day: b.features.merge(b.labels, on=spec.key_columns) for b in synthetic.generate_days(spec, cfg)}


def spec_with(tmp_path, old, new, base="synthetic.toml"):
    text = (SPECS / base).read_text()
    assert old in text
    path = tmp_path / f"custom_{base}"
    path.write_text(text.replace(old, new))
    return path


class CodeLocation:
    """The code location of `spec_paths` on `tmp_path/data`. With one spec, `model` names it and the helpers
    default to it; with several, pass `model=`."""

    def __init__(self, tmp_path, *spec_paths, instance=None, storage_url=""):
        self.settings = Settings.for_data_dir(tmp_path / "data", *spec_paths, storage_url=storage_url)
        self.defs = build_definitions(self.settings)
        self.portfolio = self.defs.resources["portfolio"].portfolio
        self.instance = instance or dg.DagsterInstance.ephemeral()
        self.model = self.portfolio.names[0] if len(self.portfolio.names) == 1 else None
        self.log = ReplayLog()

    def workspace(self, model=None):
        return self.portfolio.model(model or self.model)

    @property
    def project(self):
        return self.workspace()

    @property
    def store(self):
        return self.project.store

    @property
    def registry(self):
        return self.project.registry

    def key(self, asset, model=None):
        return dg.AssetKey([model or self.model, asset])

    def named(self, base, model=None):
        """The model's job, sensor, schedule or op called `base`."""
        return f"{model or self.model}_{base}"

    def load_history(self, history, model=None):
        """Labeled days written straight to the warehouse, as if ingested long ago."""
        workspace = self.workspace(model)
        load_labeled_days(workspace.store, workspace.spec, history, sorted(history))

    def run_job(self, name, partition_key=None, run_config=None, model=None):
        """Run the model's job `name` (without the model prefix)."""
        job = self.defs.resolve_job_def(self.named(name, model))
        config = {**QUIET, **(run_config or {})}
        return job.execute_in_process(instance=self.instance, partition_key=partition_key, run_config=config,
                                      resources=self.defs.resources, raise_on_error=False)

    def train(self, day_index, model=None):
        """Train, evaluate and gate a candidate as of START + day_index."""
        return self.run_job("train_candidate_job", (START + dt.timedelta(days=day_index)).isoformat(), model=model)

    def sensor_requests(self, base, model=None):
        """One tick of the model's sensor `base`, as the daemon would call it."""
        sensor = self.defs.get_sensor_def(self.named(base, model))
        ctx = dg.build_sensor_context(instance=self.instance, definitions=self.defs, resources=self.defs.resources)
        return sensor(ctx).run_requests

    def tick(self) -> int:
        """Tick every sensor once and run what they request (the replay's loop)."""
        return run_requests_once(self.defs, self.instance, self.log, echo=lambda *_: None)

    def checks(self, result):
        return {e.event_specific_data.check_name: e.event_specific_data.passed
                for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}

    def materialized(self, result):
        return {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}

    def check_results(self, check_name):
        """{partition: passed} of a raw table's schema check, newest evaluation per partition."""
        key = dg.AssetCheckKey(self.key(check_name.rsplit("_matches_spec", 1)[0]), check_name)
        out = {}
        for record in self.instance.event_log_storage.get_asset_check_execution_history(key, limit=1000):
            evaluation = record.event.dagster_event.event_specific_data if record.event else None
            if evaluation is not None and hasattr(evaluation, "passed"):
                out.setdefault(record.partition, evaluation.passed)
        return out


class Location(CodeLocation):
    """One model with `history_days` of labeled synthetic history (or `history`) already in its warehouse."""

    def __init__(self, tmp_path, spec_path, history_days=30, history=None, storage_url=""):
        super().__init__(tmp_path, spec_path, storage_url=storage_url)
        self.load_history(history or synthetic_history(self.project.spec, history_days))


class Pipeline(CodeLocation):
    """One model fed through its landing zone: deliver files, tick the sensors."""

    def __init__(self, tmp_path, spec_path, instance):
        super().__init__(tmp_path, spec_path, instance=instance)
        self.landing = self.project.landing
