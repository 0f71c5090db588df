"""The compiled preprocessor must give the fitted ColumnTransformer's matrix bit for bit, or decline (None) and
leave the call to the pipeline; predict_scores must then give exactly the pipeline's own scores."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlops_assets.core.config.spec import TrainingPolicy
from mlops_assets.core.config.tasks import ESTIMATOR_NAMES
from mlops_assets.core.features import engineering as features
from mlops_assets.core.features.compiled_preprocessor import compile_preprocessor
from mlops_assets.core.training import trainer as training
from test_training import D0, days_from, labeled_days, small_spec


def awkward_rows(rows=400, seed=1, extremes=True):
    """Inputs a preprocessor meets: missing numbers, extremes, signed zeros, unknown and missing categories."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(scale=1e3, size=rows)
    x1[::9] = np.nan
    if extremes:
        x1[1::50] = [0.0, -0.0, 1e300, -1e300, 5e-324, 1.0, 2.0, 3.0][: len(x1[1::50])]
    x2 = rng.normal(size=rows)
    x2[::13] = np.nan
    seg = rng.choice(np.array(["a", "b", "zz", ""], dtype=object), size=rows, p=[0.45, 0.45, 0.05, 0.05])
    seg[::17] = None
    return pd.DataFrame({"x1": x1, "x2": x2, "seg": seg, "other": rng.normal(size=rows)})


def fitted(spec, frame):
    cols = features.model_input_columns(spec)
    return features.make_preprocessor(spec).fit(frame[cols])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_projects_preprocessor_compiles_to_the_same_matrix_bit_for_bit(seed):
    spec = small_spec()
    ct = fitted(spec, labeled_days(spec, days_from(D0, 3), seed=seed))
    compiled = compile_preprocessor(ct)
    assert compiled is not None
    for rows in (1, 2, 100, 400):
        frame = awkward_rows(seed=seed).head(rows)
        expected = ct.transform(frame)
        got = compiled.transform(frame)
        assert got.dtype == expected.dtype == np.float64 and got.shape == expected.shape
        assert np.array_equal(got, expected, equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_compiling_reads_the_frame_without_changing_it():
    spec = small_spec()
    ct = fitted(spec, labeled_days(spec, days_from(D0, 2)))
    frame = pd.DataFrame({"x1": [np.nan, 2.0, 3.0], "x2": [1.0, np.nan, 0.5], "seg": ["a", "b", "a"]})
    before = frame.copy()
    compile_preprocessor(ct).transform(frame)
    pd.testing.assert_frame_equal(frame, before)  # imputing and scaling work on a copy, not on the caller's columns


@pytest.mark.parametrize("task", ["binary_classification", "regression"])
def test_predict_scores_equals_the_pipelines_own_call_for_every_estimator(task):
    spec = small_spec(task=task)
    frame = labeled_days(spec, days_from(D0, 3))
    cols = features.model_input_columns(spec)
    probe = awkward_rows(120, extremes=False)  # a forest casts to float32: 1e300 is refused by both paths
    probe = probe[probe["seg"].isin(["a", "b", "zz"])]  # the encoder's "ignore": unknown categories score too
    for estimator in ESTIMATOR_NAMES[spec.task]:
        params = {"n_estimators": 10} if "forest" in estimator else {}
        model = training.train(spec, TrainingPolicy(estimator=estimator, params=params), frame, git_commit="x")
        assert training._compiled_preprocessor(model.pipeline) is not None, estimator
        expected = (model.pipeline.predict_proba(probe[cols])[:, list(model.pipeline.classes_).index(1)]
                    if spec.is_classification else model.pipeline.predict(probe[cols]))
        assert np.array_equal(training.predict_scores(model.pipeline, spec, probe), expected), estimator


def test_inputs_scikit_learn_would_compute_differently_are_left_to_the_pipeline():
    """float32 is imputed and scaled in float32 by scikit-learn, text parsed by it: the compiled float64 path
    would not be bit-identical, so it declines; integers and booleans convert exactly and stay compiled."""
    spec = small_spec()
    ct = fitted(spec, labeled_days(spec, days_from(D0, 2)))
    compiled = compile_preprocessor(ct)
    frame = pd.DataFrame({"x1": [0.1, 2.0, np.nan], "x2": [1.0, 0.5, 0.25], "seg": ["a", "b", "a"]})
    assert compiled.transform(frame.astype({"x1": np.float32})) is None
    assert compiled.transform(frame.astype({"x2": object})) is None
    whole = frame.assign(x1=[1, 2, 3], x2=pd.array([4, None, 6], dtype="Int64"))
    assert np.array_equal(compiled.transform(whole), ct.transform(whole), equal_nan=True)
    model = training.train(spec, TrainingPolicy(estimator="logistic_regression"), labeled_days(spec, days_from(D0, 2)),
                           git_commit="x")
    narrow = frame.astype({"x1": np.float32})
    assert np.array_equal(training.predict_scores(model.pipeline, spec, narrow),
                          model.pipeline.predict_proba(narrow[["x1", "x2", "seg"]])[:, 1])


def test_a_refit_compiles_again():
    spec = small_spec()
    frame = labeled_days(spec, days_from(D0, 3))
    cols = features.model_input_columns(spec)
    model = training.train(spec, TrainingPolicy(estimator="logistic_regression"), frame, git_commit="x")
    before = training.predict_scores(model.pipeline, spec, frame)
    shifted = frame.assign(x1=frame["x1"] * 10 + 5)
    model.pipeline.fit(shifted[cols], shifted["y"])  # new scaler statistics in the same pipeline object
    after = training.predict_scores(model.pipeline, spec, frame)
    assert not np.array_equal(before, after)
    assert np.array_equal(after, model.pipeline.predict_proba(frame[cols])[:, 1])


def numeric_frame(rows=50, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x1": rng.normal(size=rows), "x2": rng.normal(size=rows),
                         "seg": rng.choice(["a", "b"], size=rows)})


@pytest.mark.parametrize("make", [
    lambda: ColumnTransformer([("n", "passthrough", ["x1"])]),
    lambda: ColumnTransformer([("n", SimpleImputer(add_indicator=True), ["x1"])]),
    lambda: ColumnTransformer([("n", FunctionTransformer(np.log1p), ["x1"])]),
    lambda: ColumnTransformer([("n", Pipeline([("s", StandardScaler()), ("i", SimpleImputer())]), ["x1"])]),
    lambda: ColumnTransformer([("c", OneHotEncoder(drop="first", sparse_output=False), ["seg"])]),
    lambda: ColumnTransformer([("c", OneHotEncoder(sparse_output=True), ["seg"])], sparse_threshold=1.0),
    lambda: ColumnTransformer([("c", OneHotEncoder(sparse_output=False, max_categories=1), ["seg"])]),
    lambda: ColumnTransformer([("n", StandardScaler(), ["x1"])], transformer_weights={"n": 2.0}),
    lambda: ColumnTransformer([("n", StandardScaler(), ["x1"])]).set_output(transform="pandas"),
    lambda: Pipeline([("inner", ColumnTransformer([("n", StandardScaler(), ["x1"])]))]),
])
def test_what_is_not_covered_compiles_to_none(make):
    frame = numeric_frame()
    assert compile_preprocessor(make().fit(frame)) is None


def test_a_transformer_that_differs_from_its_class_is_caught_by_the_probe():
    class Nudged(ColumnTransformer):  # a subclass passes the type checks; its output is not the compiled one
        def transform(self, X, **params):
            return super().transform(X, **params) + 1e-12

    ct = Nudged([("n", Pipeline([("i", SimpleImputer()), ("s", StandardScaler())]), ["x1", "x2"])]).fit(numeric_frame())
    assert compile_preprocessor(ct) is None
    plain = ColumnTransformer([("n", Pipeline([("i", SimpleImputer()), ("s", StandardScaler())]), ["x1", "x2"])])
    assert compile_preprocessor(plain.fit(numeric_frame())) is not None


def test_an_unknown_category_the_encoder_refuses_is_left_to_the_pipeline():
    frame = numeric_frame()
    ct = ColumnTransformer([("n", StandardScaler(), ["x1"]),
                            ("c", OneHotEncoder(handle_unknown="error", sparse_output=False), ["seg"])]).fit(frame)
    compiled = compile_preprocessor(ct)
    assert compiled is not None
    assert np.array_equal(compiled.transform(frame), ct.transform(frame))
    assert compiled.transform(frame.assign(seg="zz")) is None  # the pipeline's call raises scikit-learn's error
    with pytest.raises(ValueError, match="unknown categor"):
        ct.transform(frame.assign(seg="zz"))
