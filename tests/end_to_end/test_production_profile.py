"""The production profile end to end: the same 30-day backfill, training with its gates and scoring day, once
on the embedded profile (SQLite instance, DuckDB registry, steps in the run's process) and once on the
production profile (instance and registry in fresh PostgreSQL databases, steps on two Celery workers started
for the test, an S3 server from moto), must leave the same data, the same model and the same ledger."""

import json
import subprocess
import sys
import uuid

import pytest

from conftest import SPECS
from mlops_assets.profiles.production.stack import BUCKET, Stack, StackConfig, unreachable
from mlops_assets.profiles.workload import embedded_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
DAYS = 30


def workload(out, days=DAYS):
    return [sys.executable, "-m", "mlops_assets.profiles.workload", "--days", str(days), "--concurrency", "2",
            "--out", str(out)]


def bucket_keys(env, prefix):
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_production_profile_leaves_what_the_embedded_profile_leaves(tmp_path):
    if reason := unreachable():
        pytest.skip(reason)
    spec = SPECS / "synthetic.toml"
    local_out, production_out = tmp_path / "embedded.json", tmp_path / "production.json"
    # The embedded run goes on while the production services start: the test's wall time is the longer of two.
    local = subprocess.Popen(workload(local_out), env=embedded_env(tmp_path / "embedded", spec),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    config = StackConfig(f"test_{uuid.uuid4().hex[:8]}", tmp_path / "production" / "home",
                         tmp_path / "production" / "data", workers=2, throwaway=True,
                         extra_env={"MLOPS_SPECS": str(spec)})
    with Stack(config) as stack:
        code = stack.run(workload(production_out))
        logs = {p.name: p.read_text()[-2000:] for p in (config.home / "logs").glob("worker-*.log")}
        on_s3 = bucket_keys(stack.env, f"{config.name}/models/synthetic/")
    local_output = local.communicate()[0]
    assert local.returncode == 0, local_output[-3000:]
    assert code == 0, logs
    embedded, production = json.loads(local_out.read_text()), json.loads(production_out.read_text())

    assert embedded["failures"] == production["failures"] == []
    # every table, partition by partition, with the same row counts
    assert production["tables"] == embedded["tables"]
    assert len(production["tables"]["feature_table"]) == DAYS
    assert set(production["tables"]["labeled_examples"].values()) == {200}
    # the same candidate: the same artifact bytes, the same gate verdict, promoted the same way
    assert production["versions"] == embedded["versions"]
    [version] = production["versions"].values()
    assert version["gates_passed"] and version["aliases"] == ["champion"]
    # the same scored rows in the prediction ledger
    assert production["ledger"] == embedded["ledger"] and len(production["ledger"]) == 1
    # the state went to the S3 server, not to the local folder
    assert sum(k.startswith(f"{config.name}/models/synthetic/warehouse/feature_table/") for k in on_s3) == DAYS
    assert any("/ledger/" in k for k in on_s3) and not list(config.data_dir.rglob("*.parquet"))
    # the steps ran on both workers (each step's worker is in the PostgreSQL event log), and none locally
    assert embedded["workers"] == {}
    assert len(production["workers"]) == 2 and min(production["workers"].values()) > 0, production["workers"]
