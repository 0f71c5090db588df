"""The real Dagster UI on this code location: `dagster dev` on a temporary instance and data folder, runs
launched through the GraphQL API the UI uses, and the UI's pages rendered by headless Chromium.

Screenshots go to test-artifacts/ui/ (git-ignored) for a person to look at; the assertions are on the
GraphQL answers and on the text the UI rendered into the DOM.
"""

import datetime as dt
import os
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

from ui_support import (
    DagsterDev, chromium_executable, launch_assets, launch_job, render_page, stop_all_instigators, visible_texts,
    wait_for_runs,
)

# What must be in the UI today. Other stages add their groups, assets and checks here.
EXPECTED_GROUPS = {
    "ingestion": ("raw_batch", "raw_labels"),
    "features": ("feature_table", "labeled_examples"),
}
EXPECTED_CHECKS = {  # asset -> its checks
    "raw_batch": ("raw_batch_matches_spec", "raw_batch_volume_expected", "slo_data_freshness"),
    "raw_labels": ("raw_labels_matches_spec",),
}

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
SPECS = "data/specs"  # the portfolio of both bundled specs, relative to the repo as a user would set it
MODEL = "synthetic"  # the model whose files this test delivers
OTHER_MODEL = "elec2"
GOOD_DAY, BAD_DAY = "2025-01-01", "2025-01-02"
MIN_SCREENSHOT_BYTES = 40_000  # a blank or spinner-only 1600x1000 page is a few kB

pytestmark = pytest.mark.slow


def _landed_files() -> dict[str, bytes]:
    """Two days of the synthetic dataset; the second breaks the spec's ranges (the check must fail)."""
    from mlops_assets.demo import synthetic
    from mlops_assets.core.ingestion.landing import features_file_name
    from mlops_assets.core.config.spec import load_spec

    spec = load_spec(REPO / SPECS / f"{MODEL}.toml")
    cfg = synthetic.ScenarioConfig("stable", dt.date.fromisoformat(GOOD_DAY), 2, rows_per_day=60, seed=5)
    return {
        features_file_name(batch.day): synthetic.features_file_bytes(
            spec, batch, "out_of_range" if batch.day.isoformat() == BAD_DAY else None)
        for batch in synthetic.generate_days(spec, cfg)
    }


@pytest.fixture
def dagster_dev(tmp_path):
    if chromium_executable() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    (data / "landing" / MODEL).mkdir(parents=True)
    shutil.copy(REPO / "mlops_assets" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(DAGSTER_HOME=str(home), MLOPS_SPECS=SPECS, MLOPS_DATA_DIR=str(data))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dev = DagsterDev(REPO, env, ARTIFACTS / "dagster_dev.log")
    try:
        dev.wait_until_loaded(timeout=120)
        yield dev, data
    finally:
        dev.stop(timeout=45)
        print(f"dagster dev: ready in {dev.ready_seconds} s, stopped in {dev.stop_seconds:.1f} s")


def _check_executions(dev, asset: str, check: str, partition: str) -> list[dict]:
    return dev.graphql("""
        query($key: AssetKeyInput!, $check: String!, $partition: String) {
          assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition, limit: 10) {
            runId status partition evaluation { success description } } }""",
        {"key": {"path": [MODEL, asset]}, "check": check, "partition": partition})["assetCheckExecutions"]


def _materialized_partitions(dev, asset: str) -> set[str]:
    answer = dev.graphql("""
        query($key: AssetKeyInput!) { assetOrError(assetKey: $key) {
          ... on Asset { assetMaterializations(limit: 100) { partition } } } }""",
        {"key": {"path": [MODEL, asset]}})["assetOrError"]
    return {m["partition"] for m in answer.get("assetMaterializations", [])}


def test_ui_runs_checks_and_renders_the_asset_graph(dagster_dev, tmp_path):
    dev, data = dagster_dev
    started = time.monotonic()
    from mlops_assets.core.ingestion.landing import LocalLanding

    # The landing sensor runs by default and would race the runs launched here; stop it (and anything
    # else that launches runs) first, as a person would with the UI's toggle, then deliver the files.
    assert f"{MODEL}_landing_sensor" in stop_all_instigators(dev)
    landing = LocalLanding(data / "landing" / MODEL)
    for name, content in _landed_files().items():
        landing.deliver(name, content)

    # The graph the UI shows: every expected group, asset and check, as the API reports it.
    nodes = dev.graphql("""{ assetNodes { assetKey { path } groupName
        assetChecksOrError { ... on AssetChecks { checks { name } } } } }""")["assetNodes"]
    groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    checks = {n["assetKey"]["path"][-1]: {c["name"] for c in n["assetChecksOrError"].get("checks", [])}
              for n in nodes if n["assetKey"]["path"][0] == MODEL}
    for group, assets in EXPECTED_GROUPS.items():
        for asset in assets:
            for model in (MODEL, OTHER_MODEL):  # the models side by side, grouped by stage
                key = f"{model}/{asset}"
                assert groups.get(key) == group, f"{key} should be in group {group}: {groups}"
    for asset, names in EXPECTED_CHECKS.items():
        assert set(names) <= checks.get(asset, set()), f"{asset} checks: {checks.get(asset)}"

    # Materialise raw_batch and feature_table with the blocking check, for a clean and a corrupt day.
    selection = dict(assets=[f"{MODEL}/raw_batch", f"{MODEL}/feature_table"],
                     checks=[(f"{MODEL}/raw_batch", "raw_batch_matches_spec"),
                             (f"{MODEL}/raw_batch", "raw_batch_volume_expected")])  # inline: not subsettable
    good_run = launch_assets(dev, GOOD_DAY, **selection)
    bad_run = launch_assets(dev, BAD_DAY, **selection)
    status = wait_for_runs(dev, [good_run, bad_run], timeout=150)
    assert status == {good_run: "SUCCESS", bad_run: "FAILURE"}, dev.log_tail()

    good = _check_executions(dev, "raw_batch", "raw_batch_matches_spec", GOOD_DAY)
    bad = _check_executions(dev, "raw_batch", "raw_batch_matches_spec", BAD_DAY)
    assert [(e["runId"], e["status"], e["evaluation"]["success"]) for e in good] == [(good_run, "SUCCEEDED", True)]
    assert [(e["runId"], e["status"], e["evaluation"]["success"]) for e in bad] == [(bad_run, "FAILED", False)]
    # The failed check blocked the corrupt day's features; the clean day has them.
    assert _materialized_partitions(dev, "feature_table") == {GOOD_DAY}
    assert _materialized_partitions(dev, "raw_batch") == {GOOD_DAY, BAD_DAY}

    # The loop-health job, as its schedule launches it on the morning of 2025-01-05: the corrupt day was never
    # ingested, so data freshness fails, naming it, on raw_batch's checks page.
    slo_run = launch_job(dev, f"{MODEL}_loop_health_job", {"mlops/slo_now": "2025-01-05T07:00:00+00:00"})
    assert wait_for_runs(dev, [slo_run], timeout=150) == {slo_run: "SUCCESS"}, dev.log_tail()
    [freshness] = _check_executions(dev, "raw_batch", "slo_data_freshness", None)
    assert (freshness["runId"], freshness["status"], freshness["evaluation"]["success"]) == (slo_run, "FAILED", False)
    assert freshness["evaluation"]["description"].startswith(f"{BAD_DAY} not ingested: 3 days not ingested")
    runs_seconds = time.monotonic() - started

    # The UI itself. Mark the first-visit community dialog as seen (the UI's own "Skip") so it does not
    # cover the pages.
    assert dev.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    profile = tmp_path / "chromium_profile"
    expanded = ",".join(f"global@global:{group}" for group in EXPECTED_GROUPS)
    pages = {  # screenshot name -> (path, texts that must be rendered)
        "asset_lineage": (f"/asset-groups?expanded={urllib.parse.quote(expanded)}",
                          {*EXPECTED_GROUPS, *(a for assets in EXPECTED_GROUPS.values() for a in assets)}),
        "raw_batch": (f"/assets/{MODEL}/raw_batch", {"raw_batch", "ingestion", f"{MODEL}_daily_ingestion_job",
                                                   f"{MODEL}_landing_sensor"}),
        # An asset's neighbours: each node names its model (a kind), since the graph labels nodes by name only.
        "feature_table_lineage": (f"/assets/{MODEL}/feature_table?view=lineage",
                                  {"raw_batch", "feature_table", "labeled_examples", MODEL}),
        **{f"{asset}_checks": (f"/assets/{MODEL}/{asset}?view=checks", {asset, *names})
           for asset, names in EXPECTED_CHECKS.items()},
        # the stalled loop, as on-call sees it: the failed SLO and the day it names
        "raw_batch_slo": (f"/assets/{MODEL}/raw_batch?view=checks&checkDetail=slo_data_freshness",
                          {"slo_data_freshness", freshness["evaluation"]["description"]}),
    }
    for name, (path, expected_texts) in pages.items():
        screenshot = ARTIFACTS / f"{name}.png"
        screenshot.unlink(missing_ok=True)
        dom = render_page(dev.url + path, screenshot, profile)
        missing = expected_texts - visible_texts(dom)
        assert not missing, f"{path}: not rendered: {sorted(missing)} (screenshot {screenshot})"
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert screenshot.stat().st_size > MIN_SCREENSHOT_BYTES, f"{screenshot} looks blank"
    print(f"runs {runs_seconds:.1f} s, pages {time.monotonic() - started - runs_seconds:.1f} s")
