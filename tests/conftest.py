import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*is currently in preview.*")
warnings.filterwarnings("ignore", message=".*is currently in beta.*")

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "data" / "specs"
ELEC2_CSV = REPO / "data" / "elec2" / "elec2_timestamped.csv"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def elec2_spec():
    from mlops_assets.core.config.spec import load_spec

    return load_spec(SPECS / "elec2.toml")


@pytest.fixture(scope="session")
def synthetic_spec():
    from mlops_assets.core.config.spec import load_spec

    return load_spec(SPECS / "synthetic.toml")


@pytest.fixture(scope="session")
def elec2_history(elec2_spec):
    from mlops_assets.demo.history import load_history

    return load_history(ELEC2_CSV, elec2_spec)


class Pipeline:
    """A code location on a temporary data folder and instance: deliver files, tick the sensors, run."""

    def __init__(self, tmp_path, spec_path, instance):
        from mlops_assets.core.config.settings import Settings
        from mlops_assets.defs import build_definitions
        from mlops_assets.demo.replay import ReplayLog

        self.settings = Settings.for_data_dir(tmp_path / "data", spec_path)
        self.defs = build_definitions(self.settings)
        self.instance = instance
        portfolio = self.defs.resources["portfolio"].portfolio
        (self.model,) = portfolio.names
        self.project = portfolio.model(self.model)
        self.landing = self.project.landing
        self.log = ReplayLog()

    def key(self, asset):
        import dagster as dg

        return dg.AssetKey([self.model, asset])

    def named(self, base):
        """The model's job, sensor or schedule called `base`."""
        return f"{self.model}_{base}"

    @property
    def store(self):
        return self.project.store

    def tick(self) -> int:
        from mlops_assets.demo.replay import run_requests_once

        return run_requests_once(self.defs, self.instance, self.log, echo=lambda *_: None)

    def check_results(self, check_name):
        import dagster as dg

        key = dg.AssetCheckKey(self.key(check_name.rsplit("_matches_spec", 1)[0]), check_name)
        records = self.instance.event_log_storage.get_asset_check_execution_history(key, limit=1000)
        out = {}
        for record in records:
            evaluation = record.event.dagster_event.event_specific_data if record.event else None
            if evaluation is not None and hasattr(evaluation, "passed"):
                out.setdefault(record.partition, evaluation.passed)
        return out


@pytest.fixture
def make_pipeline(tmp_path):
    import dagster as dg

    with dg.instance_for_test() as instance:
        yield lambda spec_path: Pipeline(tmp_path, spec_path, instance)
