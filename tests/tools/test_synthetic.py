"""The synthetic generator: deterministic, each scenario's effect really there, each corruption really broken."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mlops_assets.demo import corruptions
from mlops_assets.demo import synthetic as syn
from mlops_assets.core.features.engineering import engineer, make_preprocessor
from mlops_assets.core.config.spec import load_spec, spec_from_dict

SPEC = load_spec(Path(__file__).resolve().parents[2] / "data" / "specs" / "synthetic.toml")
START = dt.date(2025, 1, 1)
NUM = SPEC.numeric_features
DRIFT = tuple(NUM[:2])  # the default drift features
STILL = [c for c in NUM if c not in DRIFT]


def config(scenario="stable", days=8, onset_day=4, rows_per_day=300, **kw) -> syn.ScenarioConfig:
    return syn.ScenarioConfig(scenario, START, days, onset_day=onset_day, rows_per_day=rows_per_day, **kw)


def days_of(cfg, spec=SPEC) -> list[syn.DayBatch]:
    return list(syn.generate_days(spec, cfg))


def pooled(batches, what="features") -> pd.DataFrame:
    return pd.concat([getattr(b, what) for b in batches], ignore_index=True)


def logistic_coefs(batches) -> pd.Series:
    x, y = pooled(batches)[NUM], pooled(batches, "labels")[SPEC.target]
    return pd.Series(LogisticRegression().fit(x, y).coef_[0], index=NUM)


def read_back(content: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(content))


# ------------------------------------------------------------------------------------------- base process


def test_frames_follow_the_spec():
    for batch in days_of(config(days=3)):
        f, labels = batch.features, batch.labels
        assert list(f.columns) == SPEC.batch_columns and list(labels.columns) == SPEC.label_columns
        assert len(f) == len(labels) == 300
        ts = f[SPEC.timestamp]
        assert ts.is_monotonic_increasing
        assert ts.min() >= pd.Timestamp(batch.day) and ts.max() < pd.Timestamp(batch.day + dt.timedelta(days=1))
        assert ts.dt.hour.nunique() > 12  # spread over the day, not bunched
        assert f[SPEC.entity_id].is_unique
        assert labels[SPEC.key_columns].equals(f[SPEC.key_columns])
        assert set(labels[SPEC.target].unique()) == {0, 1}
        for name in NUM:
            feat = SPEC.feature(name)
            assert f[name].between(feat.min, feat.max).all()
        for name in SPEC.categorical_features:
            assert set(f[name]) == set(SPEC.feature(name).categories)


def test_column_names_come_from_the_spec():
    spec = spec_from_dict({
        "dataset": {"name": "other", "timestamp": "ts", "target": "label", "task": "binary_classification",
                    "start_date": "2024-06-01"},
        "features": {"a": {"type": "numeric"}, "b": {"type": "numeric"}, "c": {"type": "numeric"},
                     "colour": {"type": "categorical", "categories": ["red", "blue"]}},
    })
    cfg = config("abrupt_shift", days=2, onset_day=1, corruptions={1: "missing_column"})
    batches = days_of(cfg, spec)
    assert list(batches[0].features.columns) == ["ts", "a", "b", "c", "colour"]
    assert list(batches[0].labels.columns) == ["ts", "label"]
    assert set(batches[0].features["colour"]) == {"red", "blue"}
    truth = syn.ground_truth(spec, cfg)
    assert truth.drifting_features == ("a", "b")
    assert truth.corruptions[0].column == "c"  # the last numeric feature
    assert "c" not in read_back(corruptions.features_file_bytes(spec, batches[1], "missing_column")).columns


def test_stable_data_has_the_intended_base_rate_and_difficulty():
    batches = days_of(config(days=12, rows_per_day=400, seed=3))
    train, test = batches[:8], batches[8:]
    y_train, y_test = pooled(train, "labels")[SPEC.target], pooled(test, "labels")[SPEC.target]
    assert 0.25 < pd.concat([y_train, y_test]).mean() < 0.35
    model = LogisticRegression(max_iter=500)
    pre = make_preprocessor(SPEC)
    model.fit(pre.fit_transform(engineer(pooled(train), SPEC)), y_train)
    auc = roc_auc_score(y_test, model.predict_proba(pre.transform(engineer(pooled(test), SPEC)))[:, 1])
    assert 0.75 <= auc <= 0.85


# ------------------------------------------------------------------------------------------- determinism


def _written(cfg, folder: Path) -> dict[str, bytes]:
    syn.write_scenario(SPEC, cfg, folder)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    cfg = config("gradual_shift", days=4, onset_day=1, rows_per_day=50, seed=11, corruptions={2: "nan_flood"})
    first, second = _written(cfg, tmp_path / "a"), _written(cfg, tmp_path / "b")
    assert first == second
    other = _written(config("gradual_shift", days=4, onset_day=1, rows_per_day=50, seed=12,
                            corruptions={2: "nan_flood"}), tmp_path / "c")
    assert first.keys() == other.keys()
    assert all(first[n] != other[n] for n in first if n.endswith(".csv"))


def test_a_day_does_not_depend_on_the_span_or_on_the_days_before():
    cfg = config("abrupt_shift", days=6, onset_day=2, rows_per_day=60)
    alone = syn.generate_day(SPEC, cfg, 5)
    in_sequence = days_of(cfg)[5]
    longer = days_of(config("abrupt_shift", days=9, onset_day=2, rows_per_day=60))[5]
    for other in (in_sequence, longer):
        pd.testing.assert_frame_equal(alone.features, other.features)
        pd.testing.assert_frame_equal(alone.labels, other.labels)


@pytest.mark.parametrize("scenario", [s for s in syn.SCENARIOS if s != "stable"])
def test_days_before_the_onset_equal_the_stable_scenario(scenario):
    stable, drifted = days_of(config(days=5, onset_day=3)), days_of(config(scenario, days=5, onset_day=3))
    for i in range(3):
        pd.testing.assert_frame_equal(stable[i].features, drifted[i].features)
        pd.testing.assert_frame_equal(stable[i].labels, drifted[i].labels)
    assert not (stable[3].features.equals(drifted[3].features) and stable[3].labels.equals(drifted[3].labels))


# ------------------------------------------------------------------------------------------- scenarios


def test_gradual_shift_ramps_the_chosen_means_and_leaves_the_rest():
    cfg = config("gradual_shift", days=12, onset_day=3, ramp_days=6, rows_per_day=400, magnitude=1.5)
    means = pd.DataFrame([b.features[NUM].mean() for b in days_of(cfg)])
    expected = [0, 0, 0] + [1.5 * min(1, k / 6) for k in range(1, 10)]  # onset day already moves 1/6
    for name in DRIFT:
        assert np.allclose(means[name], expected, atol=0.2), means[name].round(2).tolist()  # 4 standard errors
    assert (means[STILL].mean().abs() < 0.08).all()  # pooled over the days


def test_covariate_shift_keeps_the_label_relation():
    batches = days_of(config("abrupt_shift", days=12, onset_day=6, rows_per_day=400))
    before, after = logistic_coefs(batches[:6]), logistic_coefs(batches[6:])
    assert (before - after).abs().max() < 0.25, pd.DataFrame({"before": before, "after": after})


def test_abrupt_shift_is_full_on_the_onset_day():
    batches = days_of(config("abrupt_shift", days=6, onset_day=3, rows_per_day=400, magnitude=-2.0,
                             drift_features=[NUM[2]]))
    means = pd.DataFrame([b.features[NUM].mean() for b in batches])
    assert np.allclose(means[NUM[2]], [0, 0, 0, -2, -2, -2], atol=0.2)
    assert (means.drop(columns=NUM[2]).iloc[3:].mean().abs() < 0.1).all()


def test_abrupt_shift_on_a_categorical_moves_its_category_probabilities():
    cat, other = SPEC.categorical_features
    batches = days_of(config("abrupt_shift", days=8, onset_day=4, rows_per_day=300, drift_features=(cat,)))
    before, after = pooled(batches[:4]), pooled(batches[4:])

    def p_value(column, a, b):
        table = pd.crosstab(pd.concat([a[column], b[column]]), np.repeat([0, 1], [len(a), len(b)]))
        return chi2_contingency(table).pvalue

    assert p_value(cat, before, after) < 1e-9
    assert p_value(cat, pooled(batches[:2]), pooled(batches[2:4])) > 1e-3
    assert p_value(other, before, after) > 1e-3
    assert (after[NUM].mean() - before[NUM].mean()).abs().max() < 0.12


def test_concept_drift_keeps_the_features_and_flips_the_chosen_coefficients():
    cfg = config("concept_drift", days=12, onset_day=6, rows_per_day=400)
    stable, drifted = days_of(config(days=12, onset_day=6, rows_per_day=400)), days_of(cfg)
    for s, d in zip(stable, drifted):
        pd.testing.assert_frame_equal(s.features, d.features)  # P(x) untouched, draw for draw
    before, after = logistic_coefs(drifted[:6]), logistic_coefs(drifted[6:])
    for name in DRIFT:
        assert np.sign(before[name]) == -np.sign(after[name]) and min(abs(before[name]), abs(after[name])) > 0.15
    assert (before[STILL] - after[STILL]).abs().max() < 0.25
    truth = syn.ground_truth(SPEC, cfg)
    assert truth.drifting_features == () and truth.concept and truth.concept_features == DRIFT


def test_prior_shift_moves_the_base_rate_and_keeps_class_conditionals():
    cfg = config("prior_shift", days=12, onset_day=6, rows_per_day=400, magnitude=1.5)
    batches = days_of(cfg)
    rates = [b.labels[SPEC.target].mean() for b in batches]
    target = syn.shifted_base_rate(1.5)
    assert 0.6 < target < 0.7
    assert all(abs(r - syn.BASE_RATE) < 0.08 for r in rates[:6])
    assert all(abs(r - target) < 0.08 for r in rates[6:])
    for b in batches:
        assert len(b.features) == 400 and b.features[SPEC.entity_id].is_unique
        assert b.features[SPEC.timestamp].is_monotonic_increasing
    before, after = pooled(batches[:6]), pooled(batches[6:])
    y_before, y_after = pooled(batches[:6], "labels")[SPEC.target], pooled(batches[6:], "labels")[SPEC.target]
    for label in (0, 1):
        gap = before[NUM][y_before.to_numpy() == label].mean() - after[NUM][y_after.to_numpy() == label].mean()
        assert gap.abs().max() < 0.15, gap
    truth = syn.ground_truth(SPEC, cfg)
    assert truth.prior_shift and not truth.concept and truth.drifting_features == ()
    assert truth.shifted_base_rate == pytest.approx(target)


# ------------------------------------------------------------------------------------------- corruptions


@pytest.fixture(scope="module")
def batch() -> syn.DayBatch:
    return syn.generate_day(SPEC, config(days=1, rows_per_day=40), 0)


def test_every_corruption_is_tested():
    assert set(corruptions.CORRUPTIONS) == set(CORRUPTION_CHECKS)


def _renamed(df, clean, col):
    assert col not in df.columns and f"{col}_v2" in df.columns and len(df.columns) == len(clean.columns)


def _missing(df, clean, col):
    assert list(df.columns) == [c for c in clean.columns if c != col]


def _wrong_dtype(df, clean, col):
    assert not pd.api.types.is_numeric_dtype(df[col])
    assert pd.to_numeric(df[col], errors="coerce").isna().all()
    assert all(df.drop(columns=col)[n].dtype == clean[n].dtype for n in NUM if n != col)


def _nan_flood(df, clean, col):
    assert df[col].isna().mean() > 0.8 and df.drop(columns=col).notna().all().all() and len(df) == len(clean)


def _inf_flood(df, clean, col):
    values = df[col].to_numpy(dtype=float)
    assert np.isinf(values).mean() > 0.8 and (values == np.inf).any() and (values == -np.inf).any()


def _out_of_range(df, clean, col):
    feat = SPEC.feature(col)
    beyond = (df[col] > feat.max) | (df[col] < feat.min)
    assert beyond.any() and (df[col] > feat.max).any() and (df[col] < feat.min).any()
    assert df.loc[~beyond, col].tolist() == clean.loc[~beyond.to_numpy(), col].tolist()


def _duplicated(df, clean, col):
    assert len(df) > len(clean) and df.duplicated().any()
    assert df.drop_duplicates().reset_index(drop=True).equals(clean)


CORRUPTION_CHECKS = {
    "renamed_column": _renamed, "missing_column": _missing, "wrong_dtype": _wrong_dtype,
    "nan_flood": _nan_flood, "inf_flood": _inf_flood, "out_of_range": _out_of_range,
    "duplicated_rows": _duplicated, "empty_file": None, "header_only": None, "truncated_csv": None,
}


@pytest.mark.parametrize("kind", [k for k, check in CORRUPTION_CHECKS.items() if check])
def test_column_and_row_corruptions_read_back_broken(batch, kind):
    clean = read_back(corruptions.features_file_bytes(SPEC, batch))
    assert list(clean.columns) == SPEC.batch_columns and len(clean) == len(batch.features)
    col = syn.ground_truth(SPEC, config(days=1, corruptions={0: kind})).corruptions[0].column
    assert (col in NUM) == (kind in corruptions.COLUMN_CORRUPTIONS)
    CORRUPTION_CHECKS[kind](read_back(corruptions.features_file_bytes(SPEC, batch, kind)), clean, col)


def test_empty_and_header_only_files(batch):
    assert corruptions.features_file_bytes(SPEC, batch, "empty_file") == b""
    with pytest.raises(pd.errors.EmptyDataError):
        read_back(b"")
    header = corruptions.features_file_bytes(SPEC, batch, "header_only")
    frame = read_back(header)
    assert list(frame.columns) == SPEC.batch_columns and frame.empty and header.count(b"\n") == 1


def test_truncated_file_is_cut_mid_row(batch):
    content = corruptions.features_file_bytes(SPEC, batch, "truncated_csv")
    full = corruptions.features_file_bytes(SPEC, batch)
    assert full.startswith(content) and not content.endswith(b"\n")
    last_line = content.rsplit(b"\n", 1)[1]
    assert 1 < len(last_line.split(b",")) < len(SPEC.batch_columns)
    frame = read_back(content)
    assert len(frame) == len(batch.features) // 2 + 1
    assert frame.iloc[-1].isna().any() and frame.iloc[:-1].notna().all().all()


def test_write_scenario_corrupts_only_the_named_days(tmp_path):
    cfg = config(days=3, rows_per_day=30, corruptions={1: "duplicated_rows", 2: "empty_file"})
    truth = syn.write_scenario(SPEC, cfg, tmp_path)
    batches = days_of(cfg)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([syn.GROUND_TRUTH_FILE] + [f"{k}_{b.day}.csv" for b in batches for k in ("features", "labels")])
    assert (tmp_path / f"features_{batches[0].day}.csv").read_bytes() == corruptions.features_file_bytes(SPEC, batches[0])
    assert len(read_back((tmp_path / f"features_{batches[1].day}.csv").read_bytes())) > 30
    assert (tmp_path / f"features_{batches[2].day}.csv").stat().st_size == 0
    for b in batches:  # labels are never corrupted
        labels = pd.read_csv(tmp_path / f"labels_{b.day}.csv")
        assert list(labels.columns) == SPEC.label_columns and labels[SPEC.target].tolist() == b.labels[SPEC.target].tolist()
    assert [(c.index, c.day, c.kind) for c in truth.corruptions] == [
        (1, batches[1].day, "duplicated_rows"), (2, batches[2].day, "empty_file")]


def test_features_and_labels_can_be_written_to_different_folders_on_different_days(tmp_path):
    batch = syn.generate_day(SPEC, config(days=1, rows_per_day=20), 0)
    features = syn.write_features(SPEC, batch, tmp_path / "day0")
    labels = syn.write_labels(SPEC, batch, tmp_path / f"day{SPEC.label_delay_days}")
    assert features.name == f"features_{batch.day}.csv" and labels.name == f"labels_{batch.day}.csv"
    assert features.parent != labels.parent
    assert pd.read_csv(labels)[SPEC.target].tolist() == batch.labels[SPEC.target].tolist()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp files left behind


# ------------------------------------------------------------------------------------------- ground truth


def test_ground_truth_round_trips_and_describes_the_scenario(tmp_path):
    cfg = config("gradual_shift", days=10, onset_day=4, seed=5, rows_per_day=20,
                 corruptions={7: "out_of_range", 2: "truncated_csv"})
    truth = syn.write_scenario(SPEC, cfg, tmp_path)
    assert syn.load_ground_truth(tmp_path) == truth == syn.GroundTruth.from_json(truth.to_json())
    assert syn.GroundTruth.from_dict(truth.to_dict()) == truth
    raw = truth.to_dict()
    assert raw["scenario"] == "gradual_shift" and raw["seed"] == 5 and raw["start"] == "2025-01-01"
    assert raw["onset"] == "2025-01-05" and raw["drifting_features"] == list(DRIFT)
    assert raw["concept"] is False and raw["prior_shift"] is False
    assert raw["corruptions"] == [
        {"index": 2, "day": "2025-01-03", "kind": "truncated_csv", "column": None},
        {"index": 7, "day": "2025-01-08", "kind": "out_of_range", "column": NUM[-1]},
    ]
    assert not truth.drift_active(dt.date(2025, 1, 4)) and truth.drift_active(dt.date(2025, 1, 5))
    assert truth.corruption_on(dt.date(2025, 1, 8)).kind == "out_of_range"
    assert truth.corruption_on(dt.date(2025, 1, 9)) is None


def test_stable_ground_truth_has_no_onset():
    truth = syn.ground_truth(SPEC, config())
    assert truth.onset is None and truth.drifting_features == () and not truth.concept and not truth.prior_shift
    assert not truth.drift_active(START + dt.timedelta(days=100))
    assert syn.GroundTruth.from_json(truth.to_json()) == truth


@pytest.mark.parametrize("kwargs, message", [
    ({"scenario": "sideways"}, "scenario must be one of"),
    ({"corruptions": {1: "gremlins"}}, "gremlins"),
    ({"corruptions": {8: "empty_file"}}, "outside"),
    ({"rows_per_day": 0}, ">= 1"),
    ({"magnitude": float("nan")}, "finite"),
    ({"seed": -1}, "seed >= 0"),
])
def test_invalid_configs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        config(**kwargs)


def test_drift_features_must_belong_to_the_spec():
    with pytest.raises(ValueError, match="not features"):
        syn.ground_truth(SPEC, config("abrupt_shift", drift_features=("nonexistent",)))
