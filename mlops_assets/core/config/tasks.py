"""What each task allows: its metrics and its estimators, by name only.

Plain data, no scikit-learn: the spec loader checks a spec's estimator and key metric against these without
paying for importing the estimators. `core/training/trainer.py` maps the same names onto estimator classes
and `core/evaluation/report.py` computes the same metrics, so a name valid here is one they accept.
"""

from __future__ import annotations

from mlops_assets.core.config.suggest import did_you_mean

CLASSIFICATION, REGRESSION = "binary_classification", "regression"
TASKS = (CLASSIFICATION, REGRESSION)

METRICS = {
    CLASSIFICATION: ("roc_auc", "f1", "accuracy", "log_loss", "brier", "ece"),
    REGRESSION: ("mae", "rmse", "r2"),
}
DEFAULT_KEY_METRIC = {CLASSIFICATION: "roc_auc", REGRESSION: "rmse"}

ESTIMATOR_NAMES = {
    CLASSIFICATION: ("logistic_regression", "hist_gradient_boosting", "random_forest"),
    REGRESSION: ("ridge", "hist_gradient_boosting_regressor", "random_forest_regressor"),
}
# A spec that names no estimator gets its task's: TrainingPolicy's own default is the classification one.
DEFAULT_ESTIMATOR = {CLASSIFICATION: "hist_gradient_boosting", REGRESSION: "hist_gradient_boosting_regressor"}


def estimator_problem(task: str, estimator: str) -> str | None:
    """Why `estimator` cannot train `task`, or None. The same message whether the spec loader or the trainer
    finds it."""
    choices = ESTIMATOR_NAMES[task]
    if estimator in choices:
        return None
    other = next((t for t, names in ESTIMATOR_NAMES.items() if estimator in names), None)
    why = f"it is a {other} estimator" if other else "unknown estimator" + _did_you_mean(estimator, choices)
    return (f"training.estimator {estimator!r} cannot be used for task {task!r} ({why}); "
            f"choices: {sorted(choices)}")


def metric_problem(task: str, metric: str, where: str) -> str | None:
    """Why `metric` (a key metric or a floor) is not one of `task`'s metrics, or None."""
    if metric in METRICS[task]:
        return None
    other = next((t for t, names in METRICS.items() if metric in names), None)
    why = f"it is a {other} metric" if other else "unknown metric" + _did_you_mean(metric, METRICS[task])
    return f"{where}: {metric!r} is not a {task} metric ({why}); choices: {list(METRICS[task])}"


def _did_you_mean(word: str, choices) -> str:
    hint = did_you_mean(word, choices)
    return f", did you mean {hint!r}?" if hint else ""
