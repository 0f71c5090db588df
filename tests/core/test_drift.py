import json
import math

import numpy as np
import pandas as pd
import pytest

from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlops_assets.core.monitoring import drift
from mlops_assets.core.monitoring import drift_profile
from mlops_assets.core.monitoring.drift import benjamini_hochberg, drift_report, prediction_drift
from mlops_assets.core.monitoring.drift_floors import FLOOR_MARGIN, FLOOR_QUANTILE
from mlops_assets.core.monitoring.drift_profile import MISSING, OTHER, NumericProfile, ReferenceProfile, category_counts
from mlops_assets.core.monitoring.drift_plots import drift_plots, prediction_drift_plot
from mlops_assets.core.config.spec import MonitoringPolicy, SpecError, spec_from_dict

SPEC_RAW = {
    "dataset": {"name": "drift_test", "timestamp": "ts", "target": "y", "task": "binary_classification",
                "start_date": "2025-01-01"},
    "features": {
        "tenure": {"type": "numeric"},
        "spend": {"type": "numeric"},
        "visits": {"type": "numeric"},
        "latency": {"type": "numeric"},
        "region": {"type": "categorical", "categories": ["north", "south", "east", "west"]},
        "plan": {"type": "categorical", "categories": ["basic", "plus", "pro"]},
    },
}
SPEC = spec_from_dict(SPEC_RAW)
NUMERIC, CATEGORICAL = SPEC.numeric_features, SPEC.categorical_features
POLICY = MonitoringPolicy()


def make_frame(n, rng, shift=None, delta=0.0, category_probs=None):
    """Standard normal numeric features; uniform categories unless `category_probs` gives {feature: probs}."""
    columns = {}
    for f in SPEC.features:
        if f.is_numeric:
            columns[f.name] = rng.normal(size=n) + (delta if f.name == shift else 0.0)
        else:
            probs = (category_probs or {}).get(f.name)
            columns[f.name] = rng.choice(np.array(f.categories, dtype=object), n, p=probs)
    return pd.DataFrame(columns)


def reference(rng, n=20_000, **kw):
    return ReferenceProfile.build(make_frame(n, rng), SPEC, **kw)


DAY_ROWS = 48  # half-hours, as Elec2's days


def autocorrelated_days(rng, first, count, day_sd=0.5, phi=0.7, shift=None, delta=0.0) -> list[pd.DataFrame]:
    """Days of 48 half-hourly rows whose rows are alike within a day, as real days are: each numeric feature
    is a level drawn per day (sd `day_sd`) plus a stationary AR(1) with unit variance; each categorical
    feature repeats a category drawn per day on 30 % of the day's rows."""
    out = []
    for d in range(first, first + count):
        ts = pd.Timestamp("2025-01-01") + pd.Timedelta(days=d) + pd.to_timedelta(np.arange(DAY_ROWS) * 30, unit="min")
        columns = {"ts": ts}
        for f in SPEC.features:
            if f.is_numeric:
                x = np.empty(DAY_ROWS)
                x[0], noise = rng.normal(), rng.normal(0, math.sqrt(1 - phi ** 2), DAY_ROWS)
                for i in range(1, DAY_ROWS):
                    x[i] = phi * x[i - 1] + noise[i]
                columns[f.name] = x + rng.normal(0, day_sd) + (delta if f.name == shift else 0.0)
            else:
                cats = np.array(f.categories, dtype=object)
                columns[f.name] = np.where(rng.random(DAY_ROWS) < 0.3, rng.choice(cats), rng.choice(cats, DAY_ROWS))
        out.append(pd.DataFrame(columns))
    return out


# ------------------------------------------------------------------------------------------ binning


@pytest.mark.parametrize("shape", ["normal", "lognormal", "poisson", "constant"])
def test_fast_binning_puts_each_value_in_the_bin_whose_interval_holds_it(shape):
    rng = np.random.default_rng(1)
    draw = {
        "normal": lambda n: rng.normal(5.0, 3.0, n),
        "lognormal": lambda n: rng.lognormal(0.0, 2.0, n),  # heavy right tail
        "poisson": lambda n: rng.poisson(3.0, n).astype(float),  # ties
        "constant": lambda n: np.full(n, 0.25),
    }[shape]
    prof = NumericProfile.from_values("x", draw(50_000))
    assert math.isclose(sum(prof.proportions), 1.0)
    # current: more rows than one chunk, not a multiple of it, with values beyond the grid, NaN and +-inf
    extremes = [np.nan] * 5 + [np.inf, -np.inf, 1e300, -1e300]
    cur = np.concatenate([draw(3 * drift_profile._CHUNK + 17) * 1.3 + 0.1, extremes])
    rng.shuffle(cur)
    scan = prof.scan(cur)
    counts = prof.to_bins(scan.cells)
    assert scan.n_nan == 5 and counts.sum() == len(cur) - 5
    lo, hi, cells = prof.grid
    edges = lo + np.asarray(prof.boundaries[1:-1], dtype=float) * ((hi - lo) / cells)
    expected = np.bincount(np.searchsorted(edges, cur[~np.isnan(cur)], side="right"), minlength=len(counts))
    # a value within rounding of a boundary could fall either side of it; these draws hold none
    assert not np.isclose(cur[:, None], edges[None, :], rtol=1e-12, atol=1e-12 * (hi - lo)).any()
    assert (counts == expected).all()
    assert scan.mean is None  # +-inf present: no finite mean to report


def test_numeric_profile_bins_follow_reference_quantiles():
    rng = np.random.default_rng(2)
    prof = NumericProfile.from_values("x", rng.normal(size=100_000))
    props = np.asarray(prof.proportions)
    assert drift_profile.N_BINS <= len(props) <= drift_profile.N_BINS + 3  # quantile cuts, first/last used cells
    assert props.max() < 1.5 / drift_profile.N_BINS
    constant = NumericProfile.from_values("c", np.full(1000, 7.0))
    assert max(constant.proportions) == 1.0 and len(constant.proportions) == 3  # below / at / above 7


# ------------------------------------------------------------------------------------ false alarms


@pytest.mark.parametrize("current_rows, sample_size, test", [(1000, 2000, "ks"), (5000, 1000, "binned_ks")])
def test_same_distribution_false_alarms_stay_within_the_fdr(current_rows, sample_size, test):
    # No effect floor here: only the tests and the Benjamini-Hochberg step stand between noise and an alarm.
    policy = MonitoringPolicy(drift_alpha=0.05, drift_min_effect=0.0)
    seeds, alarms, p_values = 60, 0, []
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        prof = reference(rng, n=10_000, sample_size=sample_size)
        report = drift_report(prof, make_frame(current_rows, rng), policy)
        assert {f.test for f in report.features if f.kind == "numeric"} == {test}
        alarms += bool(report.drifted_features)
        p_values += [f.p_value for f in report.features]
    p = np.asarray(p_values)
    # Under the global null BH rejects anything with probability <= alpha; 60 seeds: allow ~2.5 std errors.
    assert alarms / seeds <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / seeds)
    # Per-feature p-values are valid (not anti-conservative) yet not degenerate (the check above is not vacuous).
    assert (p < 0.05).mean() <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / len(p))
    assert 0.4 < p.mean() < 0.75


# ------------------------------------------------------------------------------------ real drift


@pytest.mark.parametrize("current_rows", [1000, 5000])  # exact KS, binned KS
def test_half_std_mean_shift_is_flagged_on_that_feature_only(current_rows):
    rng = np.random.default_rng(3)
    prof = reference(rng)
    shifted = NUMERIC[2]
    report = drift_report(prof, make_frame(current_rows, rng, shift=shifted, delta=0.5), POLICY)
    assert report.drifted_features == [shifted]
    row = report.to_frame().set_index("feature").loc[shifted]
    assert row.p_adjusted < 1e-6
    assert 0.4 < row.effect_size < 0.6  # Wasserstein distance in reference std units: the shift itself


@pytest.mark.parametrize("shape", ["shift", "scale", "beyond_grid", "lognormal", "poisson", "binary"])
def test_binned_wasserstein_effect_matches_the_exact_distance(shape):
    rng = np.random.default_rng(12)
    ref, cur = {
        "shift": (rng.normal(size=50_000), rng.normal(0.3, 1.0, 20_000)),
        "scale": (rng.normal(size=50_000), rng.normal(0.0, 1.5, 20_000)),  # the tails leave the grid
        "beyond_grid": (rng.normal(size=50_000), rng.normal(5.0, 1.0, 20_000)),
        "lognormal": (rng.lognormal(0, 1, 50_000), rng.lognormal(0.2, 1.1, 20_000)),
        "poisson": (rng.poisson(3, 50_000) * 1.0, rng.poisson(3.3, 20_000) * 1.0),  # ties
        "binary": ((rng.random(50_000) < 0.3) * 1.0, (rng.random(20_000) < 0.4) * 1.0),
    }[shape]
    prof = NumericProfile.from_values("x", ref)
    row = drift._numeric_drift(prof, cur)
    assert row.test == "binned_ks"
    exact = stats.wasserstein_distance(ref, cur) / ref.std()
    assert row.effect_size == pytest.approx(exact, rel=0.02)
    assert row.statistic == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=0.02)  # 50 bins: 2% steps


def test_categorical_proportion_change_is_flagged():
    rng = np.random.default_rng(4)
    prof = reference(rng)
    changed = CATEGORICAL[0]
    report = drift_report(prof, make_frame(5000, rng, category_probs={changed: [0.4, 0.2, 0.2, 0.2]}), POLICY)
    assert report.drifted_features == [changed]
    row = report.to_frame().set_index("feature").loc[changed]
    assert row.test == "chi2" and row.effect_size > POLICY.drift_min_effect


def test_unknown_and_missing_categories_are_counted_as_other_and_missing():
    categories = ("1", "2", "3", OTHER, MISSING)
    as_floats = pd.Series([1.0, 2.0, 2.0, np.nan, 9.0])  # a CSV integer column with a gap reads as floats
    assert category_counts(as_floats, categories).tolist() == [1, 2, 0, 1, 1]
    as_category = pd.Series(["3", "3", None, "x"], dtype="category")
    assert category_counts(as_category, categories).tolist() == [0, 0, 2, 1, 1]


def test_trivial_shift_on_a_million_rows_is_significant_but_not_drift():
    spec = spec_from_dict({
        "dataset": {"name": "big", "timestamp": "ts", "target": "y", "task": "regression",
                    "start_date": "2025-01-01"},
        "features": {"amount": {"type": "numeric"}, "channel": {"type": "categorical", "categories": ["a", "b"]}},
    })
    num, cat = spec.numeric_features[0], spec.categorical_features[0]
    rng = np.random.default_rng(5)
    n = 1_000_000
    labels = np.array(["a", "b"], dtype=object)
    ref = pd.DataFrame({num: rng.normal(size=n), cat: labels[(rng.random(n) < 0.5).astype(int)]})
    cur = pd.DataFrame({num: rng.normal(size=n) + 0.02, cat: labels[(rng.random(n) < 0.51).astype(int)]})
    report = drift_report(ReferenceProfile.build(ref, spec), cur, POLICY)
    for row in report.features:
        assert row.p_adjusted < 1e-6, row  # the tests see the shifts ...
        assert row.effect_size < POLICY.drift_min_effect, row  # ... the effect floor judges them trivial
        assert not row.drifted
    assert report.status == "OK" and report.drift_share == 0.0


# ------------------------------------------------------------------------------------ BH, weights


def test_benjamini_hochberg_against_a_hand_computed_example():
    # m = 5, sorted p: 0.001, 0.025, 0.028, 0.5, 0.9; p * m / rank: 0.005, 0.0625, 0.04667, 0.625, 0.9;
    # running minimum from the largest: 0.9, 0.625, 0.04667, 0.04667, 0.005. At alpha 0.05 the step-up rule
    # rejects three (0.025 > 2/5 * 0.05, yet 0.028 <= 3/5 * 0.05 carries it); Bonferroni would reject one.
    p = [0.5, 0.025, 0.9, 0.001, 0.028, np.nan]
    adjusted = benjamini_hochberg(p)
    np.testing.assert_allclose(adjusted[:5], [0.625, 0.028 * 5 / 3, 0.9, 0.005, 0.028 * 5 / 3])
    assert np.isnan(adjusted[5])
    assert (adjusted[:5] <= 0.05).tolist() == [False, True, False, True, True]


def test_importance_weighting_sets_the_dataset_level_share():
    rng = np.random.default_rng(6)
    frame = make_frame(20_000, rng)
    shifted = NUMERIC[0]
    current = make_frame(5000, rng, shift=shifted, delta=1.0)
    others = {name: 1.0 for name in SPEC.feature_names if name != shifted}

    equal = drift_report(ReferenceProfile.build(frame, SPEC), current, POLICY)
    assert equal.drifted_features == [shifted]
    assert equal.drift_share == pytest.approx(1 / len(SPEC.features)) and equal.status == "WARN"

    important = ReferenceProfile.build(frame, SPEC, importances={**others, shifted: 15.0})
    report = drift_report(important, current, POLICY)
    assert report.drift_share == pytest.approx(0.75) and report.status == "ERROR"

    # A feature the model ignores still warns when it drifts on its own evidence; it cannot make an ERROR.
    ignored = ReferenceProfile.build(frame, SPEC, importances={**others, shifted: -0.2})  # negative counts 0
    report = drift_report(ignored, current, POLICY)
    assert report.drifted_features == [shifted] and report.drift_share == 0.0 and report.status == "WARN"


# ------------------------------------------------------------------------------------ storage, misc


def test_profile_round_trips_through_json_and_gives_the_same_report():
    rng = np.random.default_rng(7)
    frame = make_frame(5000, rng)
    frame.loc[::10, NUMERIC[1]] = np.nan
    prof = ReferenceProfile.build(frame, SPEC, importances={NUMERIC[0]: 2.0}, scores=rng.random(5000))
    text = json.dumps(prof.to_dict(), allow_nan=False)
    loaded = ReferenceProfile.from_dict(json.loads(text))
    assert loaded == prof
    current = make_frame(3000, rng, shift=NUMERIC[3], delta=0.3)
    before, after = drift_report(prof, current, POLICY), drift_report(loaded, current, POLICY)
    pd.testing.assert_frame_equal(before.to_frame(), after.to_frame())
    json.dumps(after.to_dict(), allow_nan=False)


def test_prediction_drift_compares_score_distributions():
    rng = np.random.default_rng(8)
    prof = ReferenceProfile.build(make_frame(20_000, rng), SPEC, scores=rng.beta(2, 5, 20_000))
    assert not prediction_drift(prof, rng.beta(2, 5, 5000)).drifted
    moved = prediction_drift(prof, rng.beta(3, 4, 5000))
    assert moved.drifted and moved.test == "binned_ks"
    with pytest.raises(ValueError):
        prediction_drift(reference(rng, n=100), rng.random(10))


@pytest.mark.parametrize("rows", [1000, 5000])  # exact KS (within the stored sample), binned KS (beyond it)
def test_prediction_drift_figures_are_plain_floats_on_both_paths(rows):
    # they go into Dagster metadata as they are, which refuses numpy.float64 (a 100,000-row day failed so)
    rng = np.random.default_rng(8)
    prof = ReferenceProfile.build(make_frame(20_000, rng), SPEC, scores=rng.beta(2, 5, 20_000))
    result = prediction_drift(prof, rng.beta(2, 5, rows))
    assert result.test == ("ks" if rows <= len(prof.prediction.sample) else "binned_ks")
    for figure in (result.statistic, result.p_value, result.effect_size, result.floor):
        assert type(figure) is float


def test_constant_reference_feature_drifts_when_it_starts_to_vary():
    rng = np.random.default_rng(9)
    frame = make_frame(5000, rng)
    frame[NUMERIC[0]] = 0.0035  # e.g. a source imputed with a constant for the whole training window
    prof = ReferenceProfile.build(frame, SPEC)
    same = make_frame(3000, rng)
    same[NUMERIC[0]] = 0.0035
    assert drift_report(prof, same, POLICY).drifted_features == []
    varying = same.copy()
    varying[NUMERIC[0]] = rng.uniform(0, 0.01, 3000)
    report = drift_report(prof, varying, POLICY)
    assert report.drifted_features == [NUMERIC[0]]
    # No standard deviation to measure in: the distance is relative to the constant, E|U - c| / c = 0.78.
    assert report.features[0].effect_size == pytest.approx(0.78, abs=0.05)


def test_missing_feature_column_is_an_error():
    rng = np.random.default_rng(10)
    with pytest.raises(KeyError, match=CATEGORICAL[1]):
        drift_report(reference(rng, n=500), make_frame(100, rng).drop(columns=[CATEGORICAL[1]]), POLICY)


def test_drift_plots_embed_one_png_per_feature():
    rng = np.random.default_rng(11)
    prof = ReferenceProfile.build(make_frame(2000, rng), SPEC, scores=rng.random(2000))
    plots = drift_plots(prof, make_frame(500, rng), [NUMERIC[0], CATEGORICAL[0]])
    assert set(plots) == {NUMERIC[0], CATEGORICAL[0]}
    assert all("data:image/png;base64," in md for md in plots.values())
    assert "data:image/png;base64," in prediction_drift_plot(prof, rng.random(300))


# ------------------------------------------------------------------------ floors from the reference's days


def _leave_one_day_out_floor(days, effect) -> float:
    """The floor computed the slow, obvious way: each day against all the other days, exactly."""
    effects = [effect(day, pd.concat(days[:i] + days[i + 1:])) for i, day in enumerate(days)]
    return FLOOR_MARGIN * float(np.quantile(effects, FLOOR_QUANTILE))


def test_floors_are_the_spread_of_single_reference_days_and_a_noisier_reference_has_higher_floors():
    rng = np.random.default_rng(20)
    quiet_days, noisy_days = autocorrelated_days(rng, 0, 28, day_sd=0.1), autocorrelated_days(rng, 0, 28, day_sd=1.5)
    quiet, noisy = (ReferenceProfile.build(pd.concat(d), SPEC) for d in (quiet_days, noisy_days))
    for name in NUMERIC:
        q, n = quiet.feature(name).spread, noisy.feature(name).spread
        assert (q.unit, q.units) == ("day", 28) and n.floor > 1.5 * q.floor
        std = pd.concat(noisy_days)[name].std(ddof=0)
        exact = _leave_one_day_out_floor(noisy_days, lambda d, rest: stats.wasserstein_distance(d[name], rest[name]) / std)
        assert n.floor == pytest.approx(exact, rel=0.03)  # the binned measure agrees with the exact distances
    for name in CATEGORICAL:
        cats = quiet.feature(name).categories

        def js(day, rest):
            return jensenshannon(category_counts(day[name], cats), category_counts(rest[name], cats), base=2)

        assert quiet.feature(name).spread.floor == pytest.approx(_leave_one_day_out_floor(quiet_days, js), rel=1e-6)


def test_a_seeded_stable_stream_of_autocorrelated_days_raises_no_error():
    rng = np.random.default_rng(21)
    profile = ReferenceProfile.build(pd.concat(autocorrelated_days(rng, 0, 28)), SPEC)
    served = autocorrelated_days(rng, 28, 60)
    statuses = [drift_report(profile, day, POLICY).status for day in served]
    assert statuses.count("ERROR") == 0 and statuses.count("WARN") <= 3
    # Judged as random rows (a fixed floor of 0.1, the old default) the same ordinary days nearly all alarm.
    fixed = MonitoringPolicy(drift_floors={name: 0.1 for name in SPEC.feature_names})
    assert sum(drift_report(profile, day, fixed).status == "ERROR" for day in served) > 40


def test_a_shifted_feature_with_zero_importance_warns_and_says_why():
    rng = np.random.default_rng(22)
    shifted = NUMERIC[1]
    importances = {name: 0.0 if name == shifted else 1.0 for name in SPEC.feature_names}
    profile = ReferenceProfile.build(pd.concat(autocorrelated_days(rng, 0, 28)), SPEC, importances=importances)
    [day] = autocorrelated_days(rng, 28, 1, shift=shifted, delta=4.0)
    report = drift_report(profile, day, POLICY)
    row = report.to_frame().set_index("feature").loc[shifted]
    assert report.status == "WARN" and report.drifted_features == [shifted] and report.drift_share == 0.0
    assert row.floor_source == "day_spread" and row.floor == profile.feature(shifted).spread.floor
    assert row.effect_size > row.floor and row.weight == 0.0 and row.monitored
    assert shifted in report.reason and "0.00 of the importance weight" in report.reason


def test_an_abrupt_shift_of_an_important_feature_is_an_error_from_its_first_day():
    rng = np.random.default_rng(23)
    shifted = NUMERIC[0]
    importances = {name: 10.0 if name == shifted else 1.0 for name in SPEC.feature_names}
    profile = ReferenceProfile.build(pd.concat(autocorrelated_days(rng, 0, 28)), SPEC, importances=importances)
    before = [drift_report(profile, d, POLICY) for d in autocorrelated_days(rng, 28, 14)]
    after = [drift_report(profile, d, POLICY) for d in autocorrelated_days(rng, 42, 7, shift=shifted, delta=4.0)]
    assert all(r.status != "ERROR" for r in before)
    assert all(r.status == "ERROR" and shifted in r.drifted_features for r in after)
    assert "error_drift_share" in after[0].reason and shifted in after[0].reason
    assert after[0].to_dict()["features"][0]["floor_source"] == "day_spread"


def test_an_error_level_day_is_an_error_only_when_its_features_had_drifted_on_an_earlier_day():
    """One atypical day (a spike) warns; a shift that stays is an ERROR from its second day; an earlier day on
    which only some other feature drifted confirms nothing."""
    rng = np.random.default_rng(24)
    shifted, other = NUMERIC[0], NUMERIC[1]
    importances = {name: 10.0 if name == shifted else 1.0 for name in SPEC.feature_names}
    profile = ReferenceProfile.build(pd.concat(autocorrelated_days(rng, 0, 28)), SPEC, importances=importances)
    quiet = [("2025-02-10", drift_report(profile, d, POLICY)) for d in autocorrelated_days(rng, 28, 1)]
    assert quiet[0][1].status == "OK"
    [spike] = autocorrelated_days(rng, 29, 1, shift=shifted, delta=4.0)
    alone = drift.confirm_drift(drift_report(profile, spike, POLICY), quiet)
    assert alone.day_status == "ERROR" and alone.status == "WARN" and alone.previous_day == "2025-02-10"
    assert "on this day only" in alone.reason and shifted in alone.reason
    assert alone.to_dict()["day_status"] == "ERROR" and alone.to_dict()["status"] == "WARN"
    nothing_before = drift.confirm_drift(drift_report(profile, spike, POLICY), [])
    assert nothing_before.status == "WARN" and "no earlier day with rows" in nothing_before.reason
    # a shift that stays: the day before drifted on the same feature
    first, second = autocorrelated_days(rng, 30, 2, shift=shifted, delta=4.0)
    earlier = [("2025-02-12", drift_report(profile, first, POLICY)), *quiet]
    kept = drift.confirm_drift(drift_report(profile, second, POLICY), earlier)
    assert kept.status == "ERROR" and kept.previous_day == "2025-02-12" and "persists" in kept.reason
    # the day before two days back counts too (2 of the last 3 days with rows)
    assert drift.confirm_drift(drift_report(profile, second, POLICY), [*quiet, earlier[0]]).status == "ERROR"
    # another feature drifting earlier is not this drift going on
    [elsewhere] = autocorrelated_days(rng, 32, 1, shift=other, delta=4.0)
    before = drift_report(profile, elsewhere, POLICY)
    assert before.drifted_features == [other]
    assert drift.confirm_drift(drift_report(profile, second, POLICY), [("2025-02-13", before)]).status == "WARN"
    # below ERROR level the earlier days change nothing
    assert drift.confirm_drift(before, []).status == before.day_status == "WARN"


def test_an_earlier_day_that_cannot_be_judged_confirms_nothing_and_stops_nothing():
    rng = np.random.default_rng(25)
    shifted = NUMERIC[0]
    importances = {name: 10.0 if name == shifted else 1.0 for name in SPEC.feature_names}
    profile = ReferenceProfile.build(pd.concat(autocorrelated_days(rng, 0, 28)), SPEC, importances=importances)
    first, second = autocorrelated_days(rng, 28, 2, shift=shifted, delta=4.0)
    rows = {"2025-02-01": first.drop(columns=NUMERIC[1]), "2025-02-02": first}  # an older table lacks a column

    def read(day):
        if day == "2025-02-03":
            raise OSError("damaged parquet")
        return rows[day]

    earlier = drift.earlier_reports(profile, ["2025-02-03", "2025-02-01", "2025-02-02"], read, POLICY)
    assert [day for day, _ in earlier] == ["2025-02-02"]
    assert drift.confirm_drift(drift_report(profile, second, POLICY), earlier).status == "ERROR"
    unjudged = drift.earlier_reports(profile, ["2025-02-03", "2025-02-01"], read, POLICY)
    assert unjudged == [] and drift.confirm_drift(drift_report(profile, second, POLICY), unjudged).status == "WARN"


def test_the_earlier_days_are_the_two_latest_with_rows_however_far_back():
    available = ["2025-02-01", "2025-03-01", "2025-03-09", "2025-03-10", "2025-03-11", "2025-03-12"]
    assert drift.earlier_days("2025-03-11", available) == ["2025-03-10", "2025-03-09"]
    # after a gap (or with weekly deliveries) the previous deliveries still count: such data can reach ERROR
    assert drift.earlier_days("2025-03-09", available) == ["2025-03-01", "2025-02-01"]
    assert drift.earlier_days("2025-02-01", available) == []


def test_an_unmonitored_feature_is_reported_but_never_counted():
    rng = np.random.default_rng(24)
    spec = spec_from_dict({**SPEC_RAW, "features": {**SPEC_RAW["features"], "plan": {
        "type": "categorical", "categories": ["basic", "plus", "pro"], "monitor": False}}})
    profile = ReferenceProfile.build(make_frame(5000, rng), spec)
    assert profile.unmonitored == ("plan",)
    report = drift_report(profile, make_frame(2000, rng, category_probs={"plan": [0.9, 0.05, 0.05]}), POLICY)
    row = report.to_frame().set_index("feature").loc["plan"]
    assert row.drifted and not row.monitored and row.weight == 0
    assert report.status == "OK" and report.drifted_features == []


def test_the_spec_overrides_a_floor_and_a_constant_keeps_its_own():
    rng = np.random.default_rng(25)
    frame = make_frame(5000, rng)
    frame[NUMERIC[3]] = 2.0
    profile = ReferenceProfile.build(frame, SPEC)
    floors = {f.feature: (f.floor, f.floor_source) for f in drift_report(profile, make_frame(500, rng), POLICY).features}
    assert floors[NUMERIC[3]] == (POLICY.constant_min_effect, "constant")
    assert floors[NUMERIC[0]] == (profile.feature(NUMERIC[0]).spread.floor, "chunk_spread")  # no timestamps here
    assert floors[CATEGORICAL[0]] == (POLICY.drift_min_effect, "minimum")  # 500-row chunks barely differ
    spec = spec_from_dict({**SPEC_RAW, "monitoring": {"drift_floors": {NUMERIC[0]: 2.5}}})
    report = drift_report(profile, make_frame(500, rng), spec.monitoring)
    assert (report.features[0].floor, report.features[0].floor_source) == (2.5, "spec")


@pytest.mark.parametrize("monitoring, message", [
    ({"drift_floors": {"nope": 1.0}}, "monitoring.drift_floors.nope: not a declared feature"),
    ({"drift_floors": {"tenure": -1}}, "monitoring.drift_floors.tenure: expected a number >= 0"),
    ({"even_weight_share": 0.5}, "monitoring.even_weight_share: removed"),
    ({"warn_drift_share": 0.1}, "monitoring.warn_drift_share: removed"),
])
def test_the_spec_rejects_bad_floors_and_removed_drift_keys(monitoring, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict({**SPEC_RAW, "monitoring": monitoring})


def test_a_version_1_profile_loads_without_floors_and_counts_weighted_features_only():
    rng = np.random.default_rng(26)
    frame = make_frame(5000, rng)
    profile = ReferenceProfile.build(frame, SPEC, importances={NUMERIC[0]: 1.0, NUMERIC[1]: 1.0})
    raw = json.loads(json.dumps(profile.to_dict()))
    raw["version"] = 1
    del raw["unmonitored"]
    for feature in raw["features"] + [raw["prediction"] or {}]:
        feature.pop("spread", None)
    old = ReferenceProfile.from_dict(raw)
    assert all(p.spread is None for p in old.features)
    assert set(old.unmonitored) == set(SPEC.feature_names) - {NUMERIC[0], NUMERIC[1]}
    report = drift_report(old, make_frame(2000, rng, shift=NUMERIC[2], delta=1.0), POLICY)
    assert {f.floor_source for f in report.features} == {"policy"}
    assert report.status == "OK" and report.drifted_features == []  # as version 1 judged it: weight 0 never counts
    with pytest.raises(ValueError, match="reference profile version 3"):
        ReferenceProfile.from_dict({**raw, "version": 3})
