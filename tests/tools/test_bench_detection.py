"""The detection benchmark (mlops_assets.benchmarks.detection): its scoring on hand-made day records, and small,
fast versions of its code paths on the real specs."""

import datetime as dt
import json
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mlops_assets.benchmarks import detection as bench
from mlops_assets.benchmarks import detection_core as core
from mlops_assets.demo import synthetic
from mlops_assets.benchmarks.detection_scoring import (DayRecord, Target, bias_interval, canary_tally,
                                                       estimate_error, onset_to_flag, quality, stable_alerts,
                                                       volume_tally)

ONSET = dt.date(2025, 1, 11)  # rec(10)


def rec(day: int, drift="OK", perf="OK", flagged=(), rows=10, correct=8, est=None, real=None, abs_error=0.0,
        sq_error=0.0) -> DayRecord:
    return DayRecord((dt.date(2025, 1, 1) + dt.timedelta(days=day)).isoformat(), "2025-01-01", drift, perf,
                     list(flagged), rows, correct, abs_error, sq_error, est, real)


# ------------------------------------------------------------------------------------------------ scoring


def test_stable_alerts_count_days_before_the_onset_once_at_their_worst_status():
    records = [rec(5, "WARN", "ERROR", ["a"]), rec(6, "WARN"), rec(7, perf="WARN"), rec(8),
               rec(9, "ERROR", "ERROR"),  # the day before the onset is still stable
               rec(10, "ERROR", flagged=["a", "b"]), rec(11, "ERROR")]  # after: not counted
    out = stable_alerts(records, ONSET)
    assert out["days"] == 5
    assert out["error_days"] == 2 and out["warn_days"] == 2  # day 5 counts as ERROR only, not also as WARN
    assert (out["drift_error_days"], out["performance_error_days"]) == (1, 2)
    assert (out["drift_warn_days"], out["performance_warn_days"]) == (2, 1)
    assert out["wrong_flags"] == 1
    assert stable_alerts(records, None)["days"] == 7  # nothing changed: every served day is stable


def test_onset_to_flag_counts_days_from_the_onset_to_the_first_warn_and_first_error():
    records = [rec(8, "ERROR"),  # before the onset: not a detection
               rec(10), rec(11, perf="WARN"), rec(12), rec(13, "ERROR", flagged=["b"])]
    out = onset_to_flag(records, ONSET)
    assert (out["first_flag"], out["delay_days"]) == ("2025-01-12", 1)
    assert (out["first_error"], out["delay_to_error_days"]) == ("2025-01-14", 3)
    assert out["monitor_at_flag"] == "performance"
    # with the changed features known, only drift naming one of them counts
    watched = onset_to_flag(records + [rec(15, "WARN", flagged=["a"])], ONSET, watched=("a",))
    assert (watched["delay_days"], watched["delay_to_error_days"]) == (5, None)
    assert watched["monitor_at_flag"] == "drift"
    assert onset_to_flag([rec(10), rec(11)], ONSET)["delay_days"] is None
    assert onset_to_flag(records, None)["delay_days"] is None


def test_canary_and_volume_tallies_count_outcomes_by_what_was_expected():
    runs = [{"kind": "better", "outcome": o} for o in ("complete", "complete", "rollback", "pending")]
    runs += [{"kind": "worse", "outcome": o} for o in ("rollback", "pending")]
    out = canary_tally(runs)
    assert out["better"] == {"n": 4, "completed": 2, "rolled_back": 1, "pending": 1, "completed_share": 0.5,
                             "rolled_back_share": 0.25}
    assert out["worse"]["rolled_back_share"] == 0.5 and out["worse"]["pending"] == 1
    assert canary_tally([])["better"]["completed_share"] is None
    verdicts = [{"blocked": True}, {"blocked": False}, {"blocked": True}]
    assert volume_tally(verdicts, expect_blocked=True)["as_expected"] == 2
    assert volume_tally(verdicts, expect_blocked=False)["share"] == pytest.approx(1 / 3)
    assert volume_tally([None, None], expect_blocked=True) == {"available": False, "days": 2}


def test_quality_and_estimate_error_are_row_weighted_and_split_at_the_onset():
    records = [rec(1, rows=10, correct=9, est=0.95, real=0.90), rec(2, rows=30, correct=15, est=0.80, real=0.85),
               rec(10, rows=20, correct=10, est=0.90, real=0.50)]
    assert quality(records, "binary_classification")["accuracy"] == pytest.approx(34 / 60)
    assert quality(records, "binary_classification", start=ONSET)["accuracy"] == pytest.approx(0.5)
    reg = [rec(1, rows=2, abs_error=2.0, sq_error=8.0), rec(2, rows=2, abs_error=6.0, sq_error=10.0)]
    assert quality(reg, "regression") == {"rows": 4, "mae": 2.0, "rmse": pytest.approx(1.5 ** 0.5 * 3 ** 0.5)}
    out = estimate_error(records, ONSET)
    assert out["stable"] == {"days": 2, "bias": pytest.approx(0.0), "mean_abs_error": pytest.approx(0.05),
                             "block_biases": [pytest.approx(0.0)]}
    assert out["after_onset"]["bias"] == pytest.approx(0.4)


def test_served_quality_is_judged_against_never_retrained_beyond_noise_only():
    from mlops_assets.benchmarks.detection_scoring import no_worse

    task = "binary_classification"
    assert no_worse(0.74, 0.75, 10_000, task) is False  # 0.01 is 2.3 standard errors at 10,000 rows
    assert no_worse(0.74, 0.75, 1_000, task) is True  # and within noise at 1,000
    assert no_worse(0.80, 0.75, 10, task) is True and no_worse(None, 0.75, 10, task) is None
    assert no_worse(2.1, 2.0, 10_000, "regression") is False and no_worse(2.1, 2.0, 400, "regression") is True
    assert no_worse(1.9, 2.0, 10_000, "regression") is True  # lower MAE is better


def test_targets_judge_figures_and_say_when_there_is_none():
    assert Target("<=", 2).judge(2) == "met" and Target("<=", 2).judge(3) == "NOT met"
    assert Target(">=", 0.9, percent=True).judge(0.85) == "NOT met" and Target("==", 0).judge(None) == "n/a"
    assert str(Target(">=", 0.9, percent=True)) == ">= 90%" and str(Target("<=", 2)) == "<= 2"


# ------------------------------------------------------------------------------------- benchmark paths


@pytest.fixture(autouse=True)
def one_thread():
    """As the benchmark's workers run: oversubscribed OpenMP threads make small predictions 20x slower."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def regression_spec():
    return bench.load_spec(bench.SPECS["regression"])


def test_leaks_are_built_as_stated(regression_spec):
    frames, _ = bench.scenario_frames("regression", regression_spec, "stable", 0, 0, 3)
    spec, leaky = bench.with_leaks(regression_spec, frames, "pair", seed=0)
    day = leaky[min(leaky)]
    assert {"leak_part_a", "leak_part_b"} <= set(spec.feature_names)
    assert (day["leak_part_a"] + day["leak_part_b"]).to_numpy() == pytest.approx(day["load"].to_numpy())
    assert abs(day["leak_part_a"].corr(day["load"])) < 0.5  # each part alone says little
    spec, leaky = bench.with_leaks(regression_spec, frames, "single", seed=0)
    assert leaky[min(leaky)]["leak_total"].corr(day["load"]) > 0.98


def test_the_volume_doorway_blocks_one_row_of_24_and_passes_an_ordinary_day(regression_spec):
    frames, truth = bench.scenario_frames("regression", regression_spec, "stable", 0, 0, 30, low_volume_days={29: 1})
    counts = {d.isoformat(): len(f) for d, f in frames.items() if d < max(frames)}
    short_day = max(frames)
    assert len(frames[short_day]) == 1 and truth.low_volume_days == ((short_day, 1),)
    assert core.volume_verdict(regression_spec, counts, short_day, 1)["blocked"] is True
    assert core.volume_verdict(regression_spec, counts, short_day, 24)["blocked"] is False


def test_a_shuffled_canary_never_completes_and_the_run_follows_the_label_delay(regression_spec):
    frames, _ = bench.scenario_frames("regression", regression_spec, "stable", 0, 0, 40)
    as_of = bench.first_as_of(regression_spec, frames)
    champion = core.fit_model(regression_spec, frames, as_of, version="champion")
    worse = core.fit_model(regression_spec, frames, as_of, version="worse",
                           relabel=lambda t: t.assign(load=t["load"].sample(frac=1, random_state=0).to_numpy()))
    run = core.run_canary(regression_spec, champion, worse, frames, as_of + dt.timedelta(days=2), 8)
    assert run.outcome in ("rollback", "pending") and 1 <= run.days <= 8
    assert run.steps and all(s["action"] in ("hold", "rollback") for s in run.steps)


def test_quick_run_of_the_regression_family_writes_every_figure(tmp_path):
    started = time.perf_counter()
    out = tmp_path / "figures.json"
    figures = bench.main(["--quick", "--only", "regression", "--jobs", "1", "--out", str(out)])
    assert time.perf_counter() - started < 60
    runs = json.loads(out.read_text())["regression"]["runs"]
    assert [r["scenario"] for r in runs] == list(bench.SCENARIOS["regression"])
    stable = next(r for r in runs if r["scenario"] == "stable")
    assert stable["onset"] is None and stable["stable"]["days"] > 0 and stable["flag"]["delay_days"] is None
    shift = next(r for r in runs if r["scenario"] == "feature_shift")
    assert shift["flag"]["delay_days"] is not None and shift["flag"]["delay_days"] <= 2  # a 1.5-std shift
    assert set(shift["quality"]) == {"never", "served"} and shift["quality"]["never"]["after_onset"]["mae"] > 0
    assert figures["regression"]["runs"][0]["scenario"] == "stable"


def test_elec2_ordinary_days_stay_quiet_and_the_victoria_change_is_flagged(elec2_spec, elec2_history):
    first = bench.ELEC2_CHANGE - dt.timedelta(days=elec2_spec.training.window_days + 6)
    frames = bench.labeled_days(elec2_spec, {d: f for d, f in elec2_history.items()
                                             if first <= d <= bench.ELEC2_CHANGE + dt.timedelta(days=7)})
    as_of = bench.ELEC2_CHANGE - dt.timedelta(days=7)
    records, retrains = bench.run_policy(elec2_spec, frames, as_of, "never")
    dormant = core.dormant_features(core.fit_model(elec2_spec, frames, as_of))
    assert retrains == [] and set(dormant) == {"vicprice", "vicdemand", "transfer"}
    assert stable_alerts(records, bench.ELEC2_CHANGE)["drift_error_days"] == 0
    flag = onset_to_flag(records, bench.ELEC2_CHANGE, watched=dormant)
    assert flag["delay_days"] is not None and flag["delay_days"] <= 2


def test_figures_are_written_as_strict_json(tmp_path):
    path = tmp_path / "out" / "figures.json"
    bench.write_json(path, {"accuracy": float("nan"), "days": [dt.date(1997, 5, 4)], "nested": {"x": None}})
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


def test_the_estimate_bias_interval_comes_from_runs_of_days_not_overlapping_days():
    # 28 days whose errors come in two runs of 14 (+0.01, then +0.03): two runs, so a t interval with one
    # degree of freedom around +0.02; one run alone has no interval
    records = [rec(d, rows=10, correct=5, est=0.9 + (0.01 if d <= 14 else 0.03), real=0.9) for d in range(1, 29)]
    runs = estimate_error(records, None)["stable"]["block_biases"]
    assert runs == [pytest.approx(0.01), pytest.approx(0.03)]
    low, high = bias_interval(runs)
    assert low < 0.02 < high and high - 0.02 == pytest.approx(0.02 - low)
    assert bias_interval(runs[:1]) is None
