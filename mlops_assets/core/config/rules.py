"""Checks of a spec's policies that need more than a key's type: what the task allows, and ranges.

The spec loader runs them with its other checks, so loading a spec and `mlops spec check` report the same
problems. Range rules are data (table, key, bounds), not code per key, and skip a key a policy no longer has:
policies gain and lose keys, and a rule for a removed key must not break loading.
"""

from __future__ import annotations

from mlops_assets.core.config.tasks import DEFAULT_ESTIMATOR, estimator_problem, metric_problem

# (table, key, lowest, highest, whether the bounds themselves are allowed)
RANGES = [
    ("monitoring", "drift_alpha", 0.0, 1.0, False),  # a false-discovery rate of 0 or 1 tests nothing
    ("monitoring", "performance_min_rows", 1, None, True),
    ("monitoring", "performance_max_days", 1, None, True),
    ("monitoring", "error_drift_share", 0.0, 1.0, True),
    ("gates", "max_slice_drop", 0.0, None, True),
    ("gates", "bootstrap_samples", 1, None, True),
    ("deployment", "max_score_shift", 0.0, 1.0, True),  # a KS statistic
    ("training", "window_days", 1, None, True),
    ("training", "validation_days", 1, None, True),
    ("training", "benchmark_days", 1, None, True),
]
# (table, warn key, error key): the warning level must come first, or the ERROR fires before any WARN.
ORDERED = [
    ("monitoring", "performance_warn_std", "performance_error_std"),
    ("monitoring", "warn_cost_ratio", "error_cost_ratio"),
]


def default_estimator(task: str) -> str:
    return DEFAULT_ESTIMATOR[task]


def task_problems(task: str, training, gates) -> list[str]:
    """Estimator, its parameters, key metric and floors against the task. Parameters are checked against the
    estimator class only when set, so loading a spec without them does not import scikit-learn."""
    out = []
    problem = estimator_problem(task, training.estimator)
    if problem:
        out.append(problem)
    elif training.params:
        from mlops_assets.core.training.trainer import params_problems  # scikit-learn: only when needed

        out.extend(params_problems(training.estimator, training.params))
    if gates.key_metric and (problem := metric_problem(task, gates.key_metric, "gates.key_metric")):
        out.append(problem)
    for metric, floor in sorted(gates.floors.items()):
        if problem := metric_problem(task, metric, f"gates.floors.{metric}"):
            out.append(problem)
        elif isinstance(floor, bool) or not isinstance(floor, (int, float)):
            out.append(f"gates.floors.{metric}: expected a number, got {floor!r}")
    return out


def range_problems(policies: dict[str, object]) -> list[str]:
    """`policies`: table name -> its loaded policy."""
    out = []
    for table, key, low, high, inclusive in RANGES:
        value = getattr(policies.get(table), key, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        below = value < low if inclusive else value <= low
        above = high is not None and (value > high if inclusive else value >= high)
        if below or above:
            left, right = ("[", "]") if inclusive else ("(", ")")
            span = f"in {left}{low}, {high}{right}" if high is not None else f"at least {low}"
            out.append(f"{table}.{key}: must be {span}, got {value!r}")
    for table, warn, error in ORDERED:
        policy = policies.get(table)
        low, high = getattr(policy, warn, None), getattr(policy, error, None)
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            out.append(f"{table}.{warn}: must not exceed {table}.{error} ({low} > {high}): the ERROR level would "
                       "be reached before the WARN level")
    return out
