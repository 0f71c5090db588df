"""Small, fast versions of the detection benchmark's code paths (mlops_assets.benchmarks.detection), on the real specs."""

import datetime as dt
import json

import numpy as np
import pytest

from mlops_assets.benchmarks import detection as bench
from mlops_assets.demo import synthetic

CHANGE = bench.ELEC2_CHANGE


@pytest.mark.parametrize("scenario, max_delay", [("abrupt_shift", 0), ("gradual_shift", 2)])
def test_covariate_shift_is_flagged_on_exactly_the_drifting_features_and_not_before_onset(
        synthetic_spec, scenario, max_delay):
    window = synthetic_spec.training.window_days
    run = bench.synthetic_run(synthetic_spec, scenario, seed=0, onset_day=window + 4, served_days=10)
    assert run["served_days_before_onset"] == 4 and run["served_days_after_onset"] == 6
    assert run["alarm_days_before_onset"] == 0 and run["wrong_flags_before_onset"] == 0
    assert run["drifting"] == sorted(synthetic_spec.numeric_features[:2])
    assert run["delay_days"] is not None and run["delay_days"] <= max_delay
    assert run["status_at_detection"] in ("WARN", "ERROR")
    assert run["precision"] == 1.0  # nothing but the drifting features is ever flagged
    if scenario == "abrupt_shift":
        assert run["recall"] == 1.0 and run["exact_days"] == 6


def test_stable_days_raise_no_alarm_and_concept_drift_shows_in_accuracy_not_in_data_drift(synthetic_spec):
    window = synthetic_spec.training.window_days
    stable = bench.synthetic_run(synthetic_spec, "stable", seed=1, onset_day=window, served_days=12)
    assert stable["served_days_before_onset"] == 12  # no onset: every served day counts as stable
    assert stable["alarm_days_before_onset"] == 0 and stable["wrong_flags_before_onset"] == 0
    concept = bench.synthetic_run(synthetic_spec, "concept_drift", seed=1, onset_day=window + 4, served_days=12)
    assert concept["alarm_days_after_onset"] == 0 and concept["flagged_after_onset"] == []
    assert concept["accuracy_after_onset"] < concept["accuracy_before_onset"] - 0.03


def test_score_scenario_counts_precision_recall_and_delay_from_ground_truth(synthetic_spec):
    truth = synthetic.ground_truth(synthetic_spec, synthetic.ScenarioConfig(
        "abrupt_shift", dt.date(2025, 1, 1), 10, onset_day=5))
    a, b = truth.drifting_features
    other = synthetic_spec.numeric_features[-1]

    def rec(i, status, flagged, correct=8):
        return bench.DayRecord((dt.date(2025, 1, 1) + dt.timedelta(days=i)).isoformat(), "2025-01-01", status, 0.0,
                               flagged, {}, 10, correct, "OK")

    records = [rec(3, "WARN", [other]), rec(4, "OK", []),
               rec(5, "WARN", [a]),  # onset: only one of the two drifting features
               rec(6, "ERROR", [a, b, other]), rec(7, "WARN", [a, b], correct=4)]
    out = bench.score_scenario(records, truth)
    assert out["alarm_days_before_onset"] == 1 and out["wrong_flags_before_onset"] == 1
    assert out["delay_days"] == 1 and out["status_at_detection"] == "ERROR"
    assert out["precision"] == pytest.approx(5 / 6) and out["recall"] == pytest.approx(5 / 6)
    assert out["exact_days"] == 1
    assert out["accuracy_before_onset"] == pytest.approx(0.8) and out["accuracy_after_onset"] == pytest.approx(20 / 30)


@pytest.fixture(scope="module")
def elec2_around_change(elec2_spec, elec2_history):
    """The 8-week window before the Victoria change and the two weeks around it."""
    first = CHANGE - dt.timedelta(days=elec2_spec.training.window_days + 6)
    days = {d: f for d, f in elec2_history.items() if first <= d <= CHANGE + dt.timedelta(days=7)}
    return bench.labeled_days(elec2_spec, days), CHANGE - dt.timedelta(days=7)


def test_elec2_ordinary_days_stay_quiet_and_the_victoria_change_warns(elec2_spec, elec2_around_change):
    frames, as_of = elec2_around_change
    records, retrains = bench.run_policy(elec2_spec, frames, as_of, "never")
    model = bench.fit_model(elec2_spec, frames, as_of)
    assert retrains == [] and len(model.dormant) == 3  # the Victoria columns, found as constant in training
    # the model cannot lean on a constant column: zero weight; the unmonitored weekday none either
    weights, monitored = model.profile.weights, bench.monitored(elec2_spec)
    assert all(weights[f] == 0 for f in model.dormant) and weights["day"] == 0
    assert sum(weights.values()) == pytest.approx(1) and set(weights) - set(monitored) == {"day"}
    # each live feature's floor comes from the 42 training days' own spread, in no spec
    assert all(model.profile.feature(f).spread.units == 42 for f in ("nswprice", "nswdemand"))
    before = [r for r in records if r.day < CHANGE.isoformat()]
    assert len(before) == 6 and all(r.status == "OK" for r in before)
    # the Victoria columns going live warn on their own evidence, though no weight makes it an ERROR
    first = next(r for r in records if r.day >= CHANGE.isoformat() and r.status != "OK")
    assert (dt.date.fromisoformat(first.day) - CHANGE).days <= 1 and first.status == "WARN"
    assert set(model.dormant) <= set(first.flagged)
    assert 0.5 < bench.accuracy(records) < 1


def test_elec2_drift_triggered_policy_does_not_retrain_on_a_warning(elec2_spec, elec2_around_change):
    frames, as_of = elec2_around_change
    records, retrains = bench.run_policy(elec2_spec, frames, as_of, "drift")
    assert {r.status for r in records if r.day > CHANGE.isoformat()} == {"WARN"}
    assert retrains == [] and {r.model_as_of for r in records} == {as_of.isoformat()}


def test_figures_are_written_as_strict_json(tmp_path):
    path = tmp_path / "out" / "figures.json"
    bench.write_json(path, {"accuracy": float("nan"), "days": [dt.date(1997, 5, 4)], "nested": {"x": np.nan}})
    assert json.loads(path.read_text()) == {"accuracy": None, "days": ["1997-05-04"], "nested": {"x": None}}
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_a_constant_reference_feature_has_its_own_floor(synthetic_spec):
    from dataclasses import replace

    from mlops_assets.core.monitoring.drift import drift_report
    from mlops_assets.core.monitoring.drift_profile import ReferenceProfile

    constant, moving = synthetic_spec.numeric_features[:2]
    cfg = synthetic.ScenarioConfig("stable", dt.date(2025, 1, 1), 2, rows_per_day=2000)
    reference, today = (bench.labeled_frame(synthetic_spec, b) for b in synthetic.generate_days(synthetic_spec, cfg))
    reference[constant] = 0.5
    today[constant] = np.linspace(0.45, 0.55, len(today))  # an imputed source goes live: E|x - c| / c = 0.05
    today[moving] = today[moving] + 1.0  # one reference std
    profile = ReferenceProfile.build(reference, synthetic_spec)
    policy = replace(synthetic_spec.monitoring, drift_min_effect=2.0, constant_min_effect=0.02)
    assert drift_report(profile, today, policy).drifted_features == [constant]
    assert drift_report(profile, today, replace(policy, constant_min_effect=0.1)).drifted_features == []
    assert drift_report(profile, today, replace(policy, drift_min_effect=0.5)).drifted_features == [constant, moving]
