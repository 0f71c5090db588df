import warnings
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items):
    """The end-to-end tests first (stable sort): with two processes, the longest tests (minutes each) then start
    at once and the short ones fill the gaps, instead of one long test running alone at the end."""
    items.sort(key=lambda item: 0 if "end_to_end" in item.path.parts else 1)

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


# ------------------------------------------------------------------------------------------------ S3 on moto


@pytest.fixture(scope="session")
def moto_endpoint():
    """An S3 server (moto) in this process on a free port: real HTTP, so s3fs (DuckDB's reads) reaches it too."""
    import logging

    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_url(moto_endpoint, monkeypatch):
    """s3://<a fresh bucket>/state on the moto server, with fake credentials and the endpoint in the standard
    AWS variables (as a deployment would set them)."""
    import uuid

    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": moto_endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/state"


@pytest.fixture(params=["local", "s3"])
def object_store(request, tmp_path):
    """The same interface on both backends: a temporary folder, and a bucket on the moto server."""
    from mlops_assets.core.io.objects import open_object_store

    if request.param == "local":
        return open_object_store(str(tmp_path / "state"))
    return open_object_store(request.getfixturevalue("s3_url"))
