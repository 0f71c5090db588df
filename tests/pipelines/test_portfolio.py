"""Two models in one code location: Elec2 and the synthetic dataset ingest, train, promote and monitor
independently, share one registry, and a drift alert on one never requests the other's retrain."""

import datetime as dt

import pytest

from conftest import SPECS
from harness import START, CodeLocation, synthetic_history
from mlops_assets import cli
from mlops_assets.core.config.settings import Settings
from mlops_assets.core.config.spec import SpecError
from mlops_assets.core.portfolio import Portfolio

ELEC2_AS_OF = dt.date(1996, 7, 10)  # 56 labeled days from 1996-05-07 make a full training window
SYNTH_AS_OF, SYNTH_ONSET = 20, 24


def two_models(tmp_path, elec2_history) -> CodeLocation:
    loc = CodeLocation(tmp_path, SPECS / "elec2.toml", SPECS / "synthetic.toml")
    loc.load_history({d: f for d, f in elec2_history.items() if d <= ELEC2_AS_OF + dt.timedelta(days=2)}, "elec2")
    loc.load_history(synthetic_history(loc.workspace("synthetic").spec, 28, scenario="abrupt_shift", rows_per_day=300,
                                       onset_day=SYNTH_ONSET, magnitude=2.0), "synthetic")
    return loc


def synth_day(i):
    return (START + dt.timedelta(days=i)).isoformat()


@pytest.mark.slow
def test_two_models_run_side_by_side_and_alerts_stay_with_their_model(tmp_path, elec2_history, capsys, monkeypatch):
    p = two_models(tmp_path, elec2_history)
    elec2_day = ELEC2_AS_OF.isoformat()
    assert p.run_job("train_candidate_job", elec2_day, model="elec2").success
    assert p.run_job("train_candidate_job", synth_day(SYNTH_AS_OF), model="synthetic").success
    elec2, synthetic = p.workspace("elec2"), p.workspace("synthetic")
    # One registry, one champion per model (each was its model's first), each version its own model's.
    champions = {name: p.workspace(name).registry.version_for("champion") for name in ("elec2", "synthetic")}
    assert champions["elec2"].startswith("elec2-") and champions["synthetic"].startswith("synthetic-")
    assert {v.dataset for v in p.portfolio.registry.list_versions()} == {"elec2", "synthetic"}
    assert [v.version for v in elec2.registry.list_versions()] == [champions["elec2"]]

    # Each model scores and monitors its own day into its own ledger and warehouse.
    next_day = (ELEC2_AS_OF + dt.timedelta(days=1)).isoformat()
    assert p.run_job("score_and_monitor_job", next_day, model="elec2").success
    p.run_job("score_and_monitor_job", synth_day(SYNTH_ONSET + 1), model="synthetic")  # its drift check fails (not blocking)
    assert set(elec2.ledger.day(next_day)["model_version"]) == {champions["elec2"]}
    assert set(synthetic.ledger.day(synth_day(SYNTH_ONSET + 1))["model_version"]) == {champions["synthetic"]}
    assert elec2.store.read_json("data_drift_report", next_day)["status"] != "ERROR"
    assert synthetic.store.read_json("data_drift_report", synth_day(SYNTH_ONSET + 1))["status"] == "ERROR"

    # The synthetic drift alert requests a synthetic retrain, and nothing for elec2.
    [request] = p.sensor_requests("retrain_sensor", model="synthetic")
    assert request.partition_key == synth_day(SYNTH_ONSET + 1) and request.tags["mlops/model"] == "synthetic"
    assert p.sensor_requests("retrain_sensor", model="elec2") == []

    # A rollback of one model does not touch the other's champion.
    with pytest.raises(Exception, match="no previous known-good champion"):
        synthetic.registry.rollback(actor="test", reason="nothing before it")
    assert elec2.registry.version_for("champion") == champions["elec2"]

    # The CLI lists both models; --model filters; a typo is named.
    monkeypatch.setenv("MLOPS_DATA_DIR", str(p.settings.data_dir))
    monkeypatch.setenv("MLOPS_SPECS", f"{SPECS / 'elec2.toml'},{SPECS / 'synthetic.toml'}")
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert champions["elec2"] in out and champions["synthetic"] in out
    assert cli.main(["models", "--model", "elec2"]) == 0
    out = capsys.readouterr().out
    assert champions["elec2"] in out and champions["synthetic"] not in out
    assert cli.main(["rollback", "--reason", "x"]) == 1
    assert "several models" in capsys.readouterr().err
    assert cli.main(["audit", "--model", "elc2"]) == 1
    assert "no model named 'elc2'" in capsys.readouterr().err


def test_two_specs_with_one_name_are_refused(tmp_path):
    copy = tmp_path / "elec2_copy.toml"
    copy.write_text((SPECS / "elec2.toml").read_text())
    with pytest.raises(SpecError, match="already used by"):
        Portfolio(Settings.for_data_dir(tmp_path, SPECS / "elec2.toml", copy))


def test_a_model_name_must_prefix_asset_keys(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((SPECS / "synthetic.toml").read_text().replace('name = "synthetic"', 'name = "Synthetic Data"'))
    with pytest.raises(SpecError, match="must match"):
        Portfolio(Settings.for_data_dir(tmp_path, bad))


def test_a_folder_of_specs_is_the_default_portfolio(monkeypatch, tmp_path):
    monkeypatch.delenv("MLOPS_SPECS", raising=False)
    monkeypatch.delenv("MLOPS_SPEC", raising=False)
    settings = Settings.from_env()
    assert [p.name for p in settings.spec_paths] == sorted(p.name for p in SPECS.glob("*.toml"))
    monkeypatch.setenv("MLOPS_SPEC", str(SPECS / "elec2.toml"))
    with pytest.raises(ValueError, match="MLOPS_SPECS"):
        Settings.from_env()
    monkeypatch.delenv("MLOPS_SPEC")
    monkeypatch.setenv("MLOPS_SPECS", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="does not exist"):
        Settings.from_env()
