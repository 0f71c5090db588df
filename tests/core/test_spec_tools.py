"""Spec tooling in the core: the loader's task checks, drafting a spec from a CSV, the key reference."""

from __future__ import annotations

import datetime as dt
import tomllib

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.config import reference
from mlops_assets.core.config.draft import DraftOptions, draft_spec
from mlops_assets.core.config.profile import ProfileError, profile_csv
from mlops_assets.core.config.spec import SpecError, spec_from_dict
from mlops_assets.core.ingestion.validation import read_batch, validate_batch
from mlops_assets.demo.history import _csv, split_by_day

from conftest import REPO
from test_spec import minimal


def problems_of(raw) -> list[str]:
    with pytest.raises(SpecError) as err:
        spec_from_dict(raw, source="s.toml")
    return err.value.problems


# ------------------------------------------------------------------------------------------- the loader


def test_task_mistakes_are_collected_with_the_others_each_naming_its_key():
    raw = minimal(dataset__task="regression", training__estimator="logistic_regression",
                  gates__key_metric="roc_auc", gates__floors={"accuracy": 0.6, "r2": 0.1},
                  monitoring__performance_warn_std=4.0, monitoring__performance_error_std=3.0,
                  monitoring__drift_alpha=1.0, training__windows_days=30, trainig={})
    problems = problems_of(raw)
    expected = [
        "training.estimator 'logistic_regression' cannot be used for task 'regression' "
        "(it is a binary_classification estimator)",
        "gates.key_metric: 'roc_auc' is not a regression metric (it is a binary_classification metric)",
        "gates.floors.accuracy: 'accuracy' is not a regression metric",
        "monitoring.performance_warn_std: must not exceed monitoring.performance_error_std (4.0 > 3.0)",
        "monitoring.drift_alpha: must be in (0.0, 1.0), got 1.0",
        "training.windows_days: unknown key, did you mean 'window_days'?",
        "trainig: unknown section, did you mean 'training'?",
    ]
    for needle in expected:
        assert any(p.startswith(needle) for p in problems), (needle, problems)
    assert not any(p.startswith("gates.floors.r2") for p in problems)  # r2 is a regression metric
    assert len(problems) == len(expected)


def test_estimator_parameters_are_checked_when_loading_and_an_unknown_estimator_gets_a_suggestion():
    problems = problems_of(minimal(training__estimator="logistic_regresion", training__params={"C": 1.0}))
    assert problems == ["training.estimator 'logistic_regresion' cannot be used for task 'binary_classification' "
                        "(unknown estimator, did you mean 'logistic_regression'?); choices: "
                        "['hist_gradient_boosting', 'logistic_regression', 'random_forest']"]
    [problem] = problems_of(minimal(training__estimator="logistic_regression", training__params={"depth": 3}))
    assert problem.startswith("training.params ['depth'] are not parameters of logistic_regression")


def test_a_regression_spec_without_an_estimator_gets_the_regression_default():
    assert spec_from_dict(minimal(dataset__task="regression")).training.estimator == "hist_gradient_boosting_regressor"
    assert spec_from_dict(minimal()).training.estimator == "hist_gradient_boosting"
    assert spec_from_dict(minimal(dataset__task="regression", training__estimator="ridge")).training.estimator == "ridge"


# ------------------------------------------------------------------------------------------------ draft


def history_csv(path, task: str, days: int = 40, rows_per_day: int = 30, seed: int = 0):
    """A history like a user's: an entity id, a numeric and a categorical feature, a row counter, free text."""
    rng = np.random.default_rng(seed)
    n = days * rows_per_day
    start = pd.Timestamp("2024-03-01")
    stamps = start + pd.to_timedelta(np.repeat(np.arange(days), rows_per_day), unit="D") + pd.to_timedelta(
        np.tile(np.arange(rows_per_day), days) * 40, unit="min")
    x = rng.normal(50, 10, n)
    plan = rng.choice(["basic", "plus", "pro"], n)
    score = x / 10 + (plan == "pro") + rng.normal(0, 1, n)
    frame = pd.DataFrame({
        "event_time": stamps.strftime("%Y-%m-%d %H:%M:%S"), "customer": [f"c{i}" for i in range(n)],
        "row_no": np.arange(n), "spend": x.round(3), "plan": plan,
        "note": [f"free text {i}" for i in range(n)],
        "label": (score > np.median(score)).astype(int) if task == "binary_classification" else score.round(4),
    })
    frame.to_csv(path, index=False)
    return frame


@pytest.mark.parametrize("task", ["binary_classification", "regression"])
def test_a_drafted_spec_loads_and_every_day_of_its_history_passes_ingestion(tmp_path, task):
    csv = tmp_path / "shop history.csv"
    frame = history_csv(csv, task)
    profile = profile_csv(csv, "event_time", "customer")
    draft = draft_spec(profile, DraftOptions(timestamp="event_time", target="label", entity_id="customer"))
    spec = spec_from_dict(tomllib.loads(draft.text), source="draft")
    assert spec.name == "shop_history" and spec.task == task and draft.task == task
    assert spec.start_date == dt.date(2024, 3, 1) and spec.end_date is None
    assert spec.feature_names == ["spend", "plan"]
    assert set(draft.excluded) == {"event_time", "customer", "row_no", "note", "label"}
    assert spec.feature("plan").categories == ("basic", "plus", "pro")
    spend = spec.feature("spend")
    assert spend.min <= frame.spend.min() and spend.max >= frame.spend.max()
    assert spend.max - spend.min < 3 * (frame.spend.max() - frame.spend.min())  # widened, not unbounded
    # 30 rows a day: the window holds the targeted rows, capped at half the 40-day history.
    assert spec.training.window_days == 20 and spec.training.benchmark_days >= 1
    assert spec.key_metric == ("roc_auc" if task == "binary_classification" else "rmse")
    assert spec.training.estimator == ("hist_gradient_boosting" if task == "binary_classification"
                                       else "hist_gradient_boosting_regressor")
    if task == "binary_classification":
        assert spec.positive_label == "1" and 0.5 < spec.gates.floors["roc_auc"] < 0.7
    for day, rows in split_by_day(frame.astype(str), spec).items():
        for kind, columns in (("features", spec.batch_columns), ("labels", spec.label_columns)):
            batch = read_batch(_csv(rows[columns]), "f.csv", day.isoformat(), spec, kind)
            assert validate_batch(batch, spec, day.isoformat(), kind).passed, (day, kind)


def test_draft_policy_follows_the_volume(tmp_path):
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    history_csv(small, "binary_classification", days=400, rows_per_day=20)
    history_csv(large, "binary_classification", days=40, rows_per_day=1000)
    options = DraftOptions(timestamp="event_time", target="label", entity_id="customer")
    sparse = spec_from_dict(tomllib.loads(draft_spec(profile_csv(small, "event_time", "customer"), options).text))
    dense = spec_from_dict(tomllib.loads(draft_spec(profile_csv(large, "event_time", "customer"), options).text))
    assert sparse.training.window_days * 20 >= 2000 + 2 * 500  # enough rows at 20 a day
    assert dense.training.window_days == 14 + 1 + 1  # two weeks of training is plenty at 1,000 a day
    assert sparse.monitoring.drift_min_effect > dense.monitoring.drift_min_effect
    assert sparse.deployment.min_rows_per_step < dense.deployment.min_rows_per_step


def test_draft_task_override_and_refusals(tmp_path):
    csv = tmp_path / "h.csv"
    history_csv(csv, "binary_classification")
    profile = profile_csv(csv, "event_time", "customer")
    forced = draft_spec(profile, DraftOptions("event_time", "label", "customer", task="regression"))
    assert spec_from_dict(tomllib.loads(forced.text)).task == "regression"
    with pytest.raises(ProfileError, match="'plan' has 3 distinct values: .*multi-class is not supported"):
        draft_spec(profile, DraftOptions("event_time", "plan", "customer"))
    words = tmp_path / "words.csv"
    words.write_text("t,x,churned\n2024-01-01 10:00:00,1.5,yes\n2024-01-02 10:00:00,2.5,no\n")
    with pytest.raises(ProfileError, match=r"'churned' holds \['no', 'yes'\]: labels must be 0 and 1"):
        draft_spec(profile_csv(words, "t"), DraftOptions("t", "churned"))
    with pytest.raises(ProfileError, match=r"--target lable: not a column .*, label\)"):
        draft_spec(profile, DraftOptions("event_time", "lable", "customer"))
    with pytest.raises(ProfileError, match="--timestamp 'spend'.*not ISO 8601"):
        profile_csv(csv, "spend")


# -------------------------------------------------------------------------------------------- reference


def test_every_spec_key_in_the_code_is_documented_and_no_documented_key_is_gone():
    missing = reference.undocumented_keys()
    assert not missing, ("spec keys without a description: add each to KEY_DOCS in "
                         f"mlops_assets/core/config/reference.py: {', '.join(missing)}")
    stale = reference.stale_keys()
    assert not stale, f"KEY_DOCS describes keys the dataclasses no longer have: {', '.join(stale)}"


def test_the_reference_file_is_the_generated_one():
    on_disk = (REPO / "docs" / "spec-reference.md").read_text()
    assert on_disk == reference.render_markdown(), (
        "docs/spec-reference.md is out of date: run `mlops spec keys --markdown > docs/spec-reference.md`")


def test_reference_defaults_come_from_the_dataclasses(monkeypatch):
    from mlops_assets.core.config.policies import MonitoringPolicy

    row = next(r for r in reference.rows() if (r.table, r.key) == ("monitoring", "retrain_cooldown_days"))
    assert row.default == str(MonitoringPolicy().retrain_cooldown_days) and row.unit == "days"
    monkeypatch.delitem(reference.KEY_DOCS, ("slo", "label_grace_days"))
    assert reference.undocumented_keys() == ["slo.label_grace_days"]
    assert "UNDOCUMENTED" in reference.render_text()
