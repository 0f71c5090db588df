"""Shared by the Dagster lifecycle tests: a code location on a temporary folder with labeled history loaded."""

import datetime as dt

import dagster as dg

from conftest import SPECS
from mlops_assets.demo import synthetic
from mlops_assets.demo.history import load_labeled_days
from mlops_assets.core.config.settings import Settings
from mlops_assets.defs import build_definitions

START = dt.date(2025, 1, 1)
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def synthetic_history(spec, days, seed=5, scenario="stable", rows_per_day=120, **kw):
    cfg = synthetic.ScenarioConfig(scenario, START, days, rows_per_day=rows_per_day, seed=seed, **kw)
    return {b.day: b.features.merge(b.labels, on=spec.key_columns) for b in synthetic.generate_days(spec, cfg)}


class Location:
    def __init__(self, tmp_path, spec_path, history_days=30, history=None):
        self.settings = Settings.for_data_dir(tmp_path / "data", spec_path)
        self.defs = build_definitions(self.settings)
        portfolio = self.defs.resources["portfolio"].portfolio
        (self.model,) = portfolio.names
        self.project = portfolio.model(self.model)
        spec = self.project.spec
        history = history or synthetic_history(spec, history_days)
        load_labeled_days(self.project.store, spec, history, sorted(history))
        self.instance = dg.DagsterInstance.ephemeral()

    def key(self, asset):
        return dg.AssetKey([self.model, asset])

    def named(self, base):
        """The model's job, sensor, schedule or op called `base`."""
        return f"{self.model}_{base}"

    def run_job(self, name, partition_key=None, run_config=None):
        """Run the model's job `name` (without the model prefix)."""
        job = self.defs.resolve_job_def(self.named(name))
        config = {**QUIET, **(run_config or {})}
        return job.execute_in_process(instance=self.instance, partition_key=partition_key, run_config=config,
                                      resources=self.defs.resources, raise_on_error=False)

    def train(self, day_index):
        return self.run_job("train_candidate_job", (START + dt.timedelta(days=day_index)).isoformat())

    def checks(self, result):
        return {e.event_specific_data.check_name: e.event_specific_data.passed
                for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}

    def materialized(self, result):
        return {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}

    @property
    def registry(self):
        return self.project.registry


def spec_with(tmp_path, old, new, base="synthetic.toml"):
    text = (SPECS / base).read_text()
    assert old in text
    path = tmp_path / f"custom_{base}"
    path.write_text(text.replace(old, new))
    return path


