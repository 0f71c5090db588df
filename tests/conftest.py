import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*is currently in preview.*")
warnings.filterwarnings("ignore", message=".*is currently in beta.*")

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
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


@pytest.fixture
def make_pipeline(tmp_path):
    import dagster as dg

    from harness import Pipeline

    with dg.instance_for_test() as instance:
        yield lambda spec_path: Pipeline(tmp_path, spec_path, instance)
