"""The regression generator: deterministic, its trend and seasonality really there, its drift starting at the
onset its ground truth states, its low-volume day really short."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.config.spec import load_spec
from mlops_assets.demo import synthetic_regression as gen

SPEC = load_spec(Path(gen.__file__).resolve().parents[1] / "benchmarks" / "specs" / "synthetic_regression.toml")


def cfg(scenario="stable", days=20, onset_day=10, **kw):
    return gen.RegressionScenario(scenario, SPEC.start_date, days, onset_day=onset_day, **kw)


def pooled(scenario="stable", days=20, onset_day=10, first=0, **kw) -> pd.DataFrame:
    batches = list(gen.generate_days(SPEC, cfg(scenario, days, onset_day, **kw)))[first:]
    frame = pd.concat([b.features.merge(b.labels, on=SPEC.key_columns) for b in batches], ignore_index=True)
    frame["index"] = np.repeat([b.index for b in batches], [len(b.features) for b in batches])
    return frame


def test_days_follow_the_spec_and_are_deterministic():
    a = list(gen.generate_days(SPEC, cfg(days=3)))
    b = list(gen.generate_days(SPEC, cfg(days=3)))
    for x, y in zip(a, b):
        assert list(x.features.columns) == SPEC.batch_columns and list(x.labels.columns) == SPEC.label_columns
        assert len(x.features) == 24 and x.features[SPEC.timestamp].dt.hour.nunique() == 24
        pd.testing.assert_frame_equal(x.features, y.features)
        pd.testing.assert_frame_equal(x.labels, y.labels)
    alone = gen.generate_day(SPEC, cfg(days=3), 2)
    pd.testing.assert_frame_equal(alone.labels, a[2].labels)  # a day needs none of the days before it
    other = gen.generate_day(SPEC, cfg(days=3, seed=1), 2)
    assert not np.allclose(other.labels[SPEC.target], a[2].labels[SPEC.target])


def ols(frame: pd.DataFrame, columns: dict) -> dict:
    x = np.column_stack([np.ones(len(frame))] + list(columns.values()))
    coef = np.linalg.lstsq(x, frame[SPEC.target].to_numpy(float), rcond=None)[0]
    return dict(zip(["intercept", *columns], coef))


def explain(frame: pd.DataFrame) -> dict:
    hour = frame["hour"].to_numpy(float)
    return {"day": frame["index"] + hour / 24, "sin": np.sin(2 * np.pi * hour / 24),
            "cos": np.cos(2 * np.pi * hour / 24), "weekend": frame["weekday"].astype(int).ge(5).astype(float),
            "temperature": frame["temperature"], "humidity": frame["humidity"], "wind": frame["wind"],
            "cloudy": (frame["weather"] == "cloudy").astype(float), "rain": (frame["weather"] == "rain").astype(float)}


def test_trend_and_daily_and_weekly_seasonality_are_present():
    frame = pooled(days=210)
    coef = ols(frame, explain(frame))
    assert coef["day"] == pytest.approx(gen.TREND_PER_DAY, abs=0.003)  # a real upward trend
    amplitude = np.hypot(coef["sin"], coef["cos"])
    assert amplitude == pytest.approx(gen.DAILY_AMPLITUDE, rel=0.15)
    assert coef["weekend"] == pytest.approx(gen.WEEKEND_EFFECT, abs=0.4)
    assert coef["temperature"] == pytest.approx(gen.TEMPERATURE_COEF, abs=0.1)
    assert frame.groupby(frame["hour"].astype(int))["temperature"].mean().std() > 2  # the daily weather cycle


@pytest.mark.parametrize("scenario", ["feature_shift", "concept_change"])
def test_the_change_starts_on_the_onset_its_ground_truth_states(scenario):
    truth = gen.ground_truth(SPEC, cfg(scenario, days=60, onset_day=30))
    assert truth.onset == SPEC.start_date + pd.Timedelta(days=30) and truth.onset_day == 30
    stable, changed = pooled("stable", 60, 30), pooled(scenario, 60, 30)
    before = changed["index"] < 30
    pd.testing.assert_frame_equal(stable[before], changed[before])  # identical until the onset
    assert not stable[~before].equals(changed[~before])
    if scenario == "feature_shift":
        assert truth.drifting_features == ("temperature", "humidity") and not truth.concept
        for name in truth.drifting_features:
            moved = changed.loc[~before, name].mean() - stable.loc[~before, name].mean()
            assert moved == pytest.approx(1.5 * gen.FEATURE_STD[name], rel=0.1)
        assert changed.loc[~before, "wind"].equals(stable.loc[~before, "wind"])
        # P(load | features) unchanged: the same coefficients explain both sides
        after = changed[~before]
        assert ols(after, explain(after))["temperature"] == pytest.approx(gen.TEMPERATURE_COEF, abs=0.15)
    else:
        assert truth.concept and truth.drifting_features == ()
        assert changed.loc[~before, "temperature"].equals(stable.loc[~before, "temperature"])
        after, prior = changed[~before], changed[before]
        assert ols(prior, explain(prior))["temperature"] == pytest.approx(gen.TEMPERATURE_COEF, abs=0.15)
        assert ols(after, explain(after))["temperature"] == pytest.approx(-gen.TEMPERATURE_COEF, abs=0.15)
    assert gen.ground_truth(SPEC, cfg("stable")).onset is None


def test_a_low_volume_day_delivers_a_subset_of_its_rows():
    config = cfg(days=5, low_volume_days={3: 1})
    short, full = gen.generate_day(SPEC, config, 3), gen.generate_day(SPEC, cfg(days=5), 3)
    assert len(short.features) == len(short.labels) == 1
    assert short.labels.merge(full.labels).shape[0] == 1  # the same row the full day has
    assert len(gen.generate_day(SPEC, config, 2).features) == 24
    assert gen.ground_truth(SPEC, config).low_volume_days == ((SPEC.start_date + pd.Timedelta(days=3), 1),)
    with pytest.raises(ValueError, match="low-volume day"):
        cfg(days=5, low_volume_days={9: 1})
