"""The day's volume check: a bound from the baseline counts' own spread, at 20 rows a day and at millions."""

import datetime as dt

import numpy as np
import pytest

from mlops_assets.core.config.policies import IngestionPolicy
from mlops_assets.core.ingestion import volume
from mlops_assets.core.io.storage import PartitionStore

POLICY = IngestionPolicy()
MONDAY = dt.date(2025, 3, 3)


def days_before(day, n):
    return [day - dt.timedelta(days=i) for i in range(n, 0, -1)]


def baseline(counts, end=MONDAY):
    return {d.isoformat(): int(c) for d, c in zip(days_before(end, len(counts)), counts)}


@pytest.mark.parametrize("rate", [20, 24])
def test_poisson_feed_one_of_24_fails_and_ordinary_days_pass(rate):
    rng = np.random.default_rng(rate)
    counts = baseline(rng.poisson(rate, size=28))
    assert not volume.judge_volume(1, MONDAY, counts, "test", POLICY).passed
    assert not volume.judge_volume(0, MONDAY, counts, "test", POLICY).passed
    ordinary = rng.poisson(rate, size=1000)
    verdicts = [volume.judge_volume(int(n), MONDAY, counts, "test", POLICY) for n in ordinary]
    assert all(v.passed for v in verdicts), min(ordinary)
    v = verdicts[0]
    assert v.scale >= np.sqrt(v.expected) and v.lower_bound == pytest.approx(v.expected - 4 * v.scale)


def test_millions_a_day_fail_on_a_tenth_missing_and_pass_ordinary_noise():
    rng = np.random.default_rng(1)
    counts = baseline(rng.normal(5_000_000, 50_000, size=56).round())  # 1 % day-to-day spread
    assert volume.judge_volume(5_040_000, MONDAY, counts, "test", POLICY).passed
    fresh = rng.normal(5_000_000, 50_000, size=1000).round()
    blocked = sum(not volume.judge_volume(int(n), MONDAY, counts, "test", POLICY).passed for n in fresh)
    assert blocked <= 10  # the spread is estimated from 56 days: a normal feed at z = 4 blocks well under 1 %
    short = volume.judge_volume(4_500_000, MONDAY, counts, "test", POLICY)
    assert not short.passed and "below the lower bound" in short.message
    # the same day a spread of 10 % allows: the bound follows the data, not a fixed percentage
    noisy = baseline(rng.normal(5_000_000, 500_000, size=56).round())
    assert volume.judge_volume(4_500_000, MONDAY, noisy, "test", POLICY).passed


def test_constant_feed_allows_poisson_noise_but_not_a_fraction_of_a_day():
    counts = baseline([48] * 56)  # Elec2: 48 half-hours every day, no spread at all
    assert volume.judge_volume(47, MONDAY, counts, "test", POLICY).passed
    assert not volume.judge_volume(1, MONDAY, counts, "test", POLICY).passed


def test_weekly_seasonality_judges_a_day_against_its_own_weekday():
    weekdays = [1000 if d.weekday() < 5 else 300 for d in days_before(MONDAY, 56)]
    rng = np.random.default_rng(2)
    counts = baseline(np.array(weekdays) + rng.integers(-20, 20, size=56))
    sunday, monday = MONDAY - dt.timedelta(days=1), MONDAY
    assert volume.judge_volume(300, sunday, counts, "test", POLICY).passed
    weekday_short = volume.judge_volume(300, monday, counts, "test", POLICY)
    assert not weekday_short.passed and "median of 56 days" in weekday_short.message  # Mondays are ordinary days
    assert "Sundays" in volume.judge_volume(300, sunday, counts, "test", POLICY).message


def test_too_few_baseline_days_pass_with_a_note_and_more_rows_than_usual_never_block():
    few = volume.judge_volume(1, MONDAY, baseline([24] * 6), "test", POLICY)
    assert few.passed and "not judged" in few.message and few.expected is None
    high = volume.judge_volume(500, MONDAY, baseline([24] * 20), "test", POLICY)
    assert high.passed and "more rows than usual" in high.message


def test_an_acceptance_passes_that_version_of_the_day_only(tmp_path):
    store = PartitionStore(tmp_path)
    counts = baseline([24] * 20)
    day = MONDAY.isoformat()
    with pytest.raises(ValueError, match="reason"):
        volume.accept_volume(store, day, " ", "ops", "hash-a", 1)
    volume.accept_volume(store, day, "site closed for a holiday", "ops", "hash-a", 1)
    accepted = volume.judge_volume(1, MONDAY, counts, "test", POLICY, volume.acceptance_for(store, day, "hash-a"))
    assert accepted.passed and "site closed for a holiday" in accepted.message
    assert accepted.metadata()["accepted_by"].startswith("ops at ")
    assert volume.acceptance_for(store, day, "hash-b") is None  # a later delivery is judged afresh


def test_the_champion_window_is_the_baseline_else_the_accepted_days(tmp_path):
    import pandas as pd

    store = PartitionStore(tmp_path)
    for d in days_before(MONDAY, 10):
        store.write("feature_table", d.isoformat(), pd.DataFrame({"x": np.arange(24.0)}))
    counts, source = volume.expected_counts(store, MONDAY, POLICY, None, None)
    assert set(counts.values()) == {24} and len(counts) == 10 and "no champion yet" in source

    class Reference:
        volume = volume.VolumeBaseline(baseline([100] * 8))

    counts, source = volume.expected_counts(store, MONDAY, POLICY, "v1", lambda version: Reference())
    assert set(counts.values()) == {100} and source == "champion v1's training window"
    Reference.volume = None
    counts, source = volume.expected_counts(store, MONDAY, POLICY, "v1", lambda version: Reference())
    assert set(counts.values()) == {24} and "no volume baseline" in source
