import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from mlops_assets.core.features import engineering as features
from mlops_assets.core.training import trainer as training
from mlops_assets.core.training.manifest import InsufficientDataError, TrainingManifest, plan_training_window
from mlops_assets.core.training.reproducibility import compare_predictions, retrain_from_lineage
from mlops_assets.core.config.spec import TrainingPolicy, load_spec, spec_from_dict

SPECS = Path(__file__).resolve().parents[2] / "data" / "specs"
D0 = dt.date(2025, 3, 1)


def small_spec(task="binary_classification", **dataset):
    return spec_from_dict({
        "dataset": {"name": "tiny", "timestamp": "ts", "entity_id": "id", "target": "y", "task": task,
                    "start_date": "2025-01-01", "slices": ["seg"], **dataset},
        "features": {"x1": {"type": "numeric"}, "x2": {"type": "numeric"},
                     "seg": {"type": "categorical", "categories": ["a", "b"]}},
        "training": {"window_days": 7, "validation_days": 2, "benchmark_days": 2},
    })


def labeled_day(spec, day, rows=60, seed=0):
    rng = np.random.default_rng([seed, day.toordinal()])
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    seg = rng.choice(["a", "b"], size=rows)
    signal = 2 * x1 - x2 + 0.5 * (seg == "a")
    if spec.is_classification:
        y = (rng.random(rows) < 1 / (1 + np.exp(-signal))).astype(int)
    else:
        y = 3.0 * signal + rng.normal(scale=0.5, size=rows)
    ts = pd.Timestamp(day) + pd.to_timedelta(np.sort(rng.integers(0, 86_400, size=rows)), unit="s")
    return pd.DataFrame({"ts": ts, "id": [f"c{i}" for i in range(rows)], "x1": x1, "x2": x2, "seg": seg, "y": y})


def labeled_days(spec, days, seed=0):
    return pd.concat([labeled_day(spec, d, seed=seed) for d in days], ignore_index=True)


def days_from(start, n):
    return [start + dt.timedelta(days=i) for i in range(n)]


# ------------------------------------------------------------------------------------------ window


def test_window_splits_by_time_with_the_most_recent_days_as_benchmark():
    policy = TrainingPolicy(window_days=7, validation_days=2, benchmark_days=2)
    available = days_from(D0, 12)  # includes days after as_of, which must be ignored
    as_of = D0 + dt.timedelta(days=9)
    w = plan_training_window(as_of, available, policy)
    assert w.benchmark_days == (as_of - dt.timedelta(days=1), as_of)
    assert w.validation_days == (as_of - dt.timedelta(days=3), as_of - dt.timedelta(days=2))
    assert w.train_days == tuple(days_from(as_of - dt.timedelta(days=6), 3))
    assert max(w.train_days) < min(w.validation_days) and max(w.validation_days) < min(w.benchmark_days)
    assert len(set(w.all_days)) == 7 and w.all_days == tuple(days_from(as_of - dt.timedelta(days=6), 7))


def test_window_names_how_many_days_are_needed_and_which_are_missing():
    policy = TrainingPolicy(window_days=7, validation_days=2, benchmark_days=2)
    available = [d for d in days_from(D0, 10) if d != D0 + dt.timedelta(days=5)]
    with pytest.raises(InsufficientDataError) as err:
        plan_training_window(D0 + dt.timedelta(days=9), available, policy)
    assert err.value.needed == 7 and err.value.missing == [D0 + dt.timedelta(days=5)]
    assert "needs 7 labeled days" in str(err.value) and "2025-03-06" in str(err.value)

    with pytest.raises(InsufficientDataError) as err:  # history too short: the earliest days missing
        plan_training_window(D0 + dt.timedelta(days=3), days_from(D0, 4), policy)
    assert err.value.missing == days_from(D0 - dt.timedelta(days=3), 3)


def test_window_rejects_a_policy_that_leaves_no_training_day():
    with pytest.raises(ValueError, match="must exceed"):
        plan_training_window(D0, days_from(D0 - dt.timedelta(days=10), 11),
                                      TrainingPolicy(window_days=4, validation_days=2, benchmark_days=2))


def test_manifest_lists_partitions_and_versions_and_round_trips_json():
    policy = TrainingPolicy(window_days=5, validation_days=1, benchmark_days=1)
    days = days_from(D0, 8)
    w = plan_training_window(days[6], days, policy)
    versions = {d: f"hash-{d.isoformat()}" for d in days}
    m = w.manifest(versions)
    assert m.splits["train"] == [d.isoformat() for d in days[2:5]]
    assert m.splits["benchmark"] == [days[6].isoformat()]
    assert set(m.data_versions) == {d.isoformat() for d in days[2:7]}  # only the window's days
    assert TrainingManifest.from_json(m.to_json()) == m
    assert m.days("validation") == [days[5]]
    with pytest.raises(ValueError, match=days[3].isoformat()):
        w.manifest({d: "h" for d in days if d != days[3]})


# --------------------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("task,name,cls", [
    ("binary_classification", "logistic_regression", LogisticRegression),
    ("binary_classification", "random_forest", RandomForestClassifier),
    ("regression", "ridge", Ridge),
    ("regression", "hist_gradient_boosting_regressor", HistGradientBoostingRegressor),
])
def test_estimator_is_chosen_from_config_with_params_and_seed(task, name, cls):
    spec = small_spec(task)
    params = {"max_iter": 50} if cls in (LogisticRegression, HistGradientBoostingRegressor) else (
        {"n_estimators": 7} if cls is RandomForestClassifier else {"alpha": 3.0})
    est = training.build_estimator(spec, TrainingPolicy(estimator=name, params=params, seed=11))
    assert type(est) is cls and est.random_state == 11
    assert all(est.get_params()[k] == v for k, v in params.items())
    pipe = training.build_pipeline(spec, TrainingPolicy(estimator=name, seed=11))
    assert [s for s, _ in pipe.steps] == ["preprocess", "model"] and type(pipe.named_steps["model"]) is cls


def test_every_configured_estimator_name_builds():
    for task, names in training.ESTIMATORS.items():
        for name in names:
            assert training.build_estimator(small_spec(task), TrainingPolicy(estimator=name)) is not None


def test_bad_estimator_config_errors_list_the_choices():
    with pytest.raises(ValueError, match="choices: .*'hist_gradient_boosting'.*'logistic_regression'"):
        training.build_estimator(small_spec(), TrainingPolicy(estimator="xgboost"))
    wrong_task = r"task 'regression' \(it is a binary_classification estimator\); choices: .*'ridge'"
    with pytest.raises(ValueError, match=wrong_task):
        training.build_estimator(small_spec("regression"), TrainingPolicy(estimator="logistic_regression"))
    with pytest.raises(ValueError, match="not parameters of logistic_regression.*valid: .*'C'"):
        training.build_estimator(small_spec(), TrainingPolicy(estimator="logistic_regression",
                                                              params={"depth": 3}))
    with pytest.raises(ValueError, match="training.seed"):
        training.build_estimator(small_spec(), TrainingPolicy(params={"random_state": 1}))


# ------------------------------------------------------------------------------------------- train


def test_train_records_lineage_and_fingerprint_ignores_row_order():
    spec = small_spec()
    policy = TrainingPolicy(estimator="logistic_regression", seed=5)
    frame = labeled_days(spec, days_from(D0, 3))
    manifest = TrainingManifest("2025-03-07", {"train": ["2025-03-01"], "validation": [],
                                                        "benchmark": []}, {"2025-03-01": "abc"})
    model = training.train(spec, policy, frame, manifest=manifest, git_commit="deadbeef")
    lin = model.lineage
    assert (lin.seed, lin.estimator, lin.git_commit, lin.n_rows) == (5, "logistic_regression", "deadbeef", 180)
    assert lin.feature_columns == features.model_input_columns(spec)
    assert lin.feature_code_version == features.FEATURE_CODE_VERSION
    assert set(lin.library_versions) == {"python", "sklearn", "numpy", "pandas", "scipy"}
    assert lin.estimator_params["random_state"] == 5 and lin.manifest == manifest
    assert training.Lineage.from_json(lin.to_json()) == lin

    shuffled = training.train(spec, policy, frame.sample(frac=1.0, random_state=1), git_commit="deadbeef")
    assert shuffled.lineage.data_fingerprint == lin.data_fingerprint
    assert compare_predictions(model, shuffled, frame).identical

    changed = frame.copy()
    changed.loc[0, "x1"] += 1e-9
    assert training.train(spec, policy, changed).lineage.data_fingerprint != lin.data_fingerprint


def test_git_commit_is_read_or_falls_back(tmp_path):
    commit = training.current_git_commit()
    assert commit == "unknown" or len(commit) == 40
    assert training.current_git_commit(tmp_path) == "unknown"  # not a repository


def test_train_refuses_a_single_class_and_missing_labels():
    spec = small_spec()
    frame = labeled_day(spec, D0)
    with pytest.raises(ValueError, match="only one class"):
        training.train(spec, TrainingPolicy(), frame.assign(y=0))
    with pytest.raises(ValueError, match="1 rows have no 'y' label"):
        training.train(spec, TrainingPolicy(), frame.assign(y=frame["y"].where(frame.index != 3)))


def test_predict_scores_is_the_positive_label_probability():
    spec = small_spec(positive_label="yes")
    frame = labeled_days(spec, days_from(D0, 2))
    frame["y"] = np.where(frame["y"] == 1, "yes", "no")
    model = training.train(spec, TrainingPolicy(estimator="logistic_regression"), frame, git_commit="x")
    scores = training.predict_scores(model.pipeline, spec, frame)
    assert scores.shape == (len(frame),) and ((scores >= 0) & (scores <= 1)).all()
    assert scores[frame["y"] == "yes"].mean() > scores[frame["y"] == "no"].mean() + 0.2
    with pytest.raises(ValueError, match="lacks columns \\['x2'\\]"):
        training.predict_scores(model.pipeline, spec, frame.drop(columns="x2"))


def test_scores_of_the_whole_feature_table_equal_those_of_its_model_columns_and_survive_a_refit():
    """predict_scores hands the pipeline the feature table unselected when its ColumnTransformer picks columns by
    name; the scores must be those of the model columns alone, in any column order, and a refit of the same
    pipeline object (other classes order, other columns) must not reuse what was learnt of the first fit."""
    spec = small_spec()
    frame = labeled_days(spec, days_from(D0, 2))
    model = training.train(spec, TrainingPolicy(estimator="logistic_regression"), frame, git_commit="x")
    cols = features.model_input_columns(spec)
    wide = frame.assign(noise=np.arange(len(frame)))[["noise", *reversed(frame.columns)]]
    expected = model.pipeline.predict_proba(frame[cols])[:, 1]
    assert np.array_equal(training.predict_scores(model.pipeline, spec, wide), expected)
    assert training._selects_by_name(model.pipeline, cols)
    # refit the same object with classes (1, 2): class 1 is now column 0, and must still be the score's class
    model.pipeline.fit(frame[cols], 2 - frame["y"])
    assert list(model.pipeline.classes_) == [1, 2]
    refit = training.predict_scores(model.pipeline, spec, wide)
    assert np.array_equal(refit, model.pipeline.predict_proba(frame[cols])[:, 0])
    assert np.corrcoef(refit, expected)[0, 1] > 0.99  # the same rows are class 1 (2 - y): the same ranking
    # a pipeline that does not select by name gets the model columns selected for it
    from sklearn.pipeline import Pipeline

    nested = Pipeline([("inner", Pipeline([("pre", features.make_preprocessor(spec))])),
                       ("model", LogisticRegression())]).fit(frame[cols], frame["y"])
    assert not training._selects_by_name(nested, cols)
    assert np.array_equal(training.predict_scores(nested, spec, wide), nested.predict_proba(frame[cols])[:, 1])


# ------------------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "random_forest"])
def test_retrain_from_lineage_reproduces_predictions_bit_for_bit(estimator):
    spec = small_spec()
    params = {"max_iter": 30} if estimator == "hist_gradient_boosting" else {"n_estimators": 15}
    policy = TrainingPolicy(window_days=7, validation_days=2, benchmark_days=2, estimator=estimator, params=params)
    days = days_from(D0, 7)
    window = plan_training_window(days[-1], days, policy)
    manifest = window.manifest({d: "v1" for d in days})
    original = training.train(spec, policy, labeled_days(spec, window.train_days), manifest=manifest)
    asked = []

    def loader(ds):
        asked.append(list(ds))
        return labeled_days(spec, ds)

    rebuilt = retrain_from_lineage(spec, original.lineage, loader)
    assert asked == [list(window.train_days)]
    result = compare_predictions(original, rebuilt, labeled_days(spec, window.benchmark_days))
    assert result.identical and result.max_abs_diff == 0.0 and result.differences == []


def test_changed_seed_or_param_or_data_is_detected_and_named():
    spec = small_spec()
    policy = TrainingPolicy(estimator="random_forest", params={"n_estimators": 10}, seed=1)
    days = days_from(D0, 3)
    manifest = TrainingManifest("x", {"train": [d.isoformat() for d in days]}, {})
    original = training.train(spec, policy, labeled_days(spec, days), manifest=manifest)
    bench = labeled_day(spec, D0 + dt.timedelta(days=10))

    def loader(ds):
        return labeled_days(spec, ds)

    reseeded = retrain_from_lineage(spec, replace(original.lineage, seed=2), loader)
    r = compare_predictions(original, reseeded, bench)
    assert not r.identical and r.max_abs_diff > 0
    assert any(d.startswith("seed: 1 -> 2") for d in r.differences)
    assert "seed" in r.summary()

    deeper_params = {"n_estimators": 10, "max_depth": 2}
    deeper = retrain_from_lineage(spec, replace(original.lineage, params=deeper_params), loader)
    r = compare_predictions(original, deeper, bench)
    assert not r.identical
    assert any(d.startswith("params (max_depth: '<absent>' -> 2)") for d in r.differences)

    other_data = retrain_from_lineage(spec, original.lineage, lambda ds: labeled_days(spec, ds, seed=9))
    r = compare_predictions(original, other_data, bench)
    assert not r.identical and any(d.startswith("data_fingerprint") for d in r.differences)
    assert not any(d.startswith(("seed", "params")) for d in r.differences)


def test_retrain_needs_a_manifest():
    spec = small_spec()
    model = training.train(spec, TrainingPolicy(estimator="logistic_regression"), labeled_day(spec, D0))
    with pytest.raises(ValueError, match="no manifest"):
        retrain_from_lineage(spec, model.lineage, lambda ds: None)


def test_bundled_synthetic_spec_trains_its_configured_estimator():
    spec = load_spec(SPECS / "synthetic.toml")
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({spec.timestamp: pd.date_range("2025-01-01", periods=n, freq="min"),
                          spec.entity_id: [str(i) for i in range(n)]})
    for f in spec.features:
        frame[f.name] = rng.normal(size=n) if f.is_numeric else rng.choice(list(f.categories), size=n)
    frame[spec.target] = (frame[spec.numeric_features[0]] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    model = training.train(spec, spec.training, frame, git_commit="x")
    assert isinstance(model.pipeline.named_steps["model"], LogisticRegression)
    assert model.lineage.seed == spec.training.seed == model.pipeline.named_steps["model"].random_state
    assert json.loads(model.lineage.to_json())["estimator"] == "logistic_regression"
