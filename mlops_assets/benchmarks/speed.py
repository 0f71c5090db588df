"""Speed of the monitoring statistics, printed as figures (`make bench`, i.e. `python -m mlops_assets.benchmarks.speed`).

- drift: the data-drift report for ROWS rows x 20 features (15 numeric, 5 categorical) against a stored
  reference profile built from ROWS training rows; wall time, rows/s, peak extra memory (tracemalloc) as a
  share of the day's frame, and the ratio against a naive baseline run in the same process
  (scipy.stats.ks_2samp per numeric feature against the full reference column, chi-square per categorical).
- estimation: the label-free performance estimate (CBPE) on ROWS calibrated scores; wall time and the
  estimated against the realised ROC AUC.

Options: --rows N (default 1,000,000), --only drift|estimation, --repeats R (best of R timed runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
import tracemalloc

import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.core.monitoring.drift import drift_report
from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.monitoring.performance_estimation import estimate_performance, realised_performance
from mlops_assets.core.config.spec import DatasetSpec, MonitoringPolicy, spec_from_dict

N_NUMERIC, N_CATEGORICAL = 15, 5
DRIFT_TARGET_SECONDS = 0.5
MEMORY_TARGET_RATIO = 1.5


def bench_spec() -> DatasetSpec:
    """A made-up dataset spec for the benchmark: its column names come from here, like any spec's."""
    features = {f"num_{i:02d}": {"type": "numeric"} for i in range(N_NUMERIC)}
    features |= {f"cat_{i}": {"type": "categorical", "categories": [f"c{k}" for k in range(3 + 2 * i)]}
                 for i in range(N_CATEGORICAL)}
    return spec_from_dict({
        "dataset": {"name": "bench", "timestamp": "ts", "target": "y", "task": "binary_classification",
                    "start_date": dt.date(2025, 1, 1)},
        "features": features,
    }, source="<bench>")


def make_frame(spec: DatasetSpec, rows: int, seed: int, shifted: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mixed shapes (normal, skewed, uniform, discrete) with 1% nulls; `shifted` features move."""
    rng = np.random.default_rng(seed)
    columns = {}
    for i, name in enumerate(spec.numeric_features):
        shape = i % 4
        if shape == 0:
            x = rng.normal(10.0, 2.0, rows)
        elif shape == 1:
            x = rng.lognormal(0.0, 1.0, rows)
        elif shape == 2:
            x = rng.uniform(-1.0, 1.0, rows)
        else:
            x = rng.poisson(4.0, rows).astype(np.float64)
        if name in shifted:
            x += 0.5 * x.std()
        x[rng.random(rows) < 0.01] = np.nan
        columns[name] = x
    for name in spec.categorical_features:
        cats = np.array(list(spec.feature(name).categories) + [None], dtype=object)
        weights = np.linspace(1.0, 2.0, len(cats))
        if name in shifted:
            weights = weights[::-1]
        columns[name] = cats[rng.choice(len(cats), rows, p=weights / weights.sum())]
    return pd.DataFrame(columns)


def naive_drift(reference: pd.DataFrame, current: pd.DataFrame, spec: DatasetSpec) -> dict[str, float]:
    """What one would write first: the full reference kept around, scipy's tests per feature."""
    out = {}
    for name in spec.numeric_features:
        out[name] = stats.ks_2samp(reference[name].dropna(), current[name].dropna()).pvalue
    for name in spec.categorical_features:
        table = pd.concat([reference[name].value_counts(dropna=False),
                           current[name].value_counts(dropna=False)], axis=1).fillna(0)
        out[name] = stats.chi2_contingency(table.to_numpy().T).pvalue
    return out


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_drift(rows: int, repeats: int) -> dict:
    spec = bench_spec()
    shifted = (spec.numeric_features[0], spec.numeric_features[5], spec.categorical_features[1])
    reference = make_frame(spec, rows, seed=1)
    start = time.perf_counter()
    profile = ReferenceProfile.build(reference, spec)
    build_s = time.perf_counter() - start
    profile_kb = len(json.dumps(profile.to_dict())) / 1024
    current = make_frame(spec, rows, seed=2, shifted=shifted)
    frame_bytes = int(current.memory_usage(deep=True).sum())
    policy = MonitoringPolicy()

    report = drift_report(profile, current, policy)  # warm-up, and the answer to check
    seconds = best_of(lambda: drift_report(profile, current, policy), repeats)
    tracemalloc.start()
    drift_report(profile, current, policy)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    start = time.perf_counter()
    naive_drift(reference, current, spec)
    naive_s = time.perf_counter() - start

    print(f"drift report: {rows:,} rows x {len(spec.features)} features "
          f"({len(spec.numeric_features)} numeric float64, {len(spec.categorical_features)} categorical "
          f"{current[spec.categorical_features[0]].dtype})")
    print(f"  reference profile: built in {build_s:.2f} s from {rows:,} rows, {profile_kb:.0f} KiB as JSON")
    print(f"  time:        {seconds:.3f} s (best of {repeats}; target <= {DRIFT_TARGET_SECONDS} s)"
          f"  -> {'PASS' if seconds <= DRIFT_TARGET_SECONDS else 'FAIL'}")
    print(f"  throughput:  {rows / seconds:,.0f} rows/s")
    print(f"  peak extra memory: {peak / 2**20:.1f} MiB = {peak / frame_bytes:.3f} x the frame "
          f"({frame_bytes / 2**20:.0f} MiB; target < {MEMORY_TARGET_RATIO} x)"
          f"  -> {'PASS' if peak < MEMORY_TARGET_RATIO * frame_bytes else 'FAIL'}")
    print(f"  naive baseline (ks_2samp / chi2_contingency against the full reference): {naive_s:.2f} s"
          f" = {naive_s / seconds:.0f} x slower")
    print(f"  drifted: {report.drifted_features} (shifted: {list(shifted)}); status {report.status}, "
          f"weighted share {report.drift_share:.2f}")
    return {"seconds": seconds, "rows_per_s": rows / seconds, "peak_ratio": peak / frame_bytes,
            "naive_ratio": naive_s / seconds}


def bench_estimation(rows: int, repeats: int) -> dict:
    rng = np.random.default_rng(3)
    probabilities = rng.beta(2.0, 3.0, rows)  # a calibrated model: the labels follow its scores
    labels = (rng.random(rows) < probabilities).astype(np.int8)
    threshold = bench_spec().deployment.decision_threshold
    estimate = estimate_performance(probabilities, threshold)
    seconds = best_of(lambda: estimate_performance(probabilities, threshold), repeats)
    realised = realised_performance(probabilities, labels, threshold)
    print(f"performance estimation (CBPE): {rows:,} calibrated scores, threshold {threshold:g}")
    print(f"  time:        {seconds:.3f} s (best of {repeats}), {rows / seconds:,.0f} rows/s")
    for metric in ("roc_auc", "accuracy", "precision", "recall", "f1"):
        est, real = getattr(estimate, metric), getattr(realised, metric)
        print(f"  {metric:9s}  estimated {est:.4f}  realised {real:.4f}  |error| {abs(est - real):.4f}")
    return {"seconds": seconds, "auc_error": abs(estimate.roc_auc - realised.roc_auc)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("drift", "estimation"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.only in (None, "drift"):
        bench_drift(args.rows, args.repeats)
    if args.only in (None, "estimation"):
        bench_estimation(args.rows, args.repeats)


if __name__ == "__main__":
    main()
