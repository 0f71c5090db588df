"""Promotion gates: one pass/fail result per criterion, each with the observed value, threshold and margin.

The key-metric rule, in one sentence: the candidate *fails* only when the paired bootstrap shows it is worse
than the champion (plus `min_improvement`) beyond the benchmark noise. Concretely, with the improvement
oriented so that positive means "candidate better" (candidate - champion for AUC, champion - candidate for
RMSE), the gate passes iff the upper bound of the improvement's CI >= min_improvement. So with the default
min_improvement = 0: "matches within noise" passes (the CI straddles 0), "worse beyond noise" fails (the whole
CI is below 0). A positive min_improvement demands that an improvement of at least that size be plausible.
An undefined key metric (e.g. AUC on a one-class benchmark) fails closed: nothing can be concluded.

Floors apply only to a first model (no champion): once a champion exists, a candidate that beats it must be
promotable even if the world got harder and both sit below the floor, or the worse model would stay.

`margin` is always oriented "positive = passed with this much room, negative = failed by this much".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

import pandas as pd

from mlops_assets.core.evaluation.metric_scale import drop_units
from mlops_assets.core.evaluation.leakage import LeakageAnalysis
from mlops_assets.core.evaluation.report import HIGHER_IS_BETTER, EvaluationReport
from mlops_assets.core.io.json_safe import json_safe
from mlops_assets.core.config.spec import GatePolicy


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    observed: float | None
    threshold: float | None
    margin: float | None
    message: str


@dataclass
class GateReport:
    results: list[GateResult]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict:
        return json_safe({"passed": self.passed, "failures": [r.name for r in self.failures],
                          "results": [asdict(r) for r in self.results], "notes": self.notes})

    def summary(self) -> str:
        n = len(self.results)
        if self.passed:
            text = f"Promotion gates PASSED ({n} of {n}): " + "; ".join(r.message for r in self.results) + "."
        else:
            fails = self.failures
            passed = [r.name for r in self.results if r.passed]
            text = (f"Promotion gates FAILED ({len(fails)} of {n} criteria): "
                    + "; ".join(f"{r.name}: {r.message}" for r in fails) + "."
                    + (f" Passed: {', '.join(passed)}." if passed else ""))
        return text + (" Notes: " + " ".join(self.notes) if self.notes else "")


def comparison_champion(candidate_version: str, champion_version: str | None) -> str | None:
    """The champion a candidate is compared with; None (judge it on the floors) when there is none, or when
    the candidate *is* the champion, re-evaluated: a model is no baseline for itself."""
    return None if champion_version == candidate_version else champion_version


def evaluate_gates(report: EvaluationReport, policy: GatePolicy, has_champion: bool, *,
                   training_keys: Iterable[tuple] | pd.DataFrame | None = None,
                   benchmark_keys: Iterable[tuple] | pd.DataFrame | None = None,
                   leakage: LeakageAnalysis | None = None) -> GateReport:
    """Every criterion of `policy` applied to `report`.

    The key sets are the training and benchmark rows' keys (spec.key_columns): frames of those columns, or
    iterables of key tuples; timestamps compare by their ISO text, so the two may come from different files.
    `leakage` is `analyse_target_leakage` of the same training and benchmark rows; without it the target
    leakage gates fail closed, as the row-overlap gate does without keys.
    """
    results: list[GateResult] = []
    notes: list[str] = []
    if has_champion:
        results.append(_key_metric_gate(report, policy))
        results.append(_slice_gate(report, policy, notes))
    else:
        results.extend(_floor_gates(report, policy))
    results.append(_budget("latency", report.candidate.latency_ms_per_1k, policy.max_latency_ms_per_1k,
                           "ms per 1,000 rows"))
    results.append(_budget("artifact_size", report.candidate.artifact_bytes / 1e6, policy.max_artifact_mb,
                           "MB (10^6 bytes) pickled"))
    if report.task == "binary_classification":
        results.append(_budget("calibration", report.candidate.metrics["ece"], policy.max_calibration_error,
                               "expected calibration error"))
    results.append(row_overlap_gate(training_keys, benchmark_keys))
    results.extend(target_leakage_gates(leakage, report.candidate.metrics, policy))
    return GateReport(results, notes)


# ---------------------------------------------------------------------------------------------- gates


def _key_metric_gate(report: EvaluationReport, policy: GatePolicy) -> GateResult:
    name, key = "key_metric_vs_champion", report.key_metric
    b = report.bootstrap
    if report.champion is None or b.difference_ci is None:
        return GateResult(name, False, None, policy.min_improvement, None,
                          "a champion exists but was not evaluated on the benchmark; cannot compare")
    sign = 1.0 if report.higher_is_better else -1.0
    lo, hi = sorted(sign * v for v in b.difference_ci)
    point = sign * b.difference if b.difference is not None else math.nan
    if any(math.isnan(v) for v in (lo, hi, point)):
        return GateResult(name, False, None, policy.min_improvement, None,
                          f"{key} is undefined on this benchmark, so the candidate cannot be shown to match "
                          "the champion (see the evaluation notes)")
    margin = hi - policy.min_improvement
    level = f"{b.level:.0%}"
    detail = (f"{key} improvement over champion {point:+.4f} ({level} CI {lo:+.4f} .. {hi:+.4f}, "
              f"{b.n_samples} paired resamples)")
    if margin >= 0:
        verdict = "better beyond noise" if lo > 0 else "matches within noise"
        return GateResult(name, True, hi, policy.min_improvement, margin, f"{detail}: {verdict}")
    return GateResult(name, False, hi, policy.min_improvement, margin,
                      f"{detail}: worse beyond noise; the CI's upper bound is {-margin:.4f} short of "
                      f"the required {policy.min_improvement:+.4f}")


def _slice_gate(report: EvaluationReport, policy: GatePolicy, notes: list[str]) -> GateResult:
    """Fails only when a slice's paired bootstrap interval of the key metric's drop lies wholly beyond
    `max_slice_drop` (absolute for bounded scores, relative to the champion's value for error metrics; see
    metric_scale). Slices under `min_slice_rows` are reported in the notes, not gated."""
    name, key = "slice_regression", report.key_metric
    if report.champion is None:
        return GateResult(name, False, None, policy.max_slice_drop, None,
                          "champion not evaluated; cannot compare slices")
    limit, units = policy.max_slice_drop, drop_units(key)
    worst, checked = None, 0  # worst: the slice whose drop is surest (highest lower bound)
    for col, values in report.slice_drops.items():
        for value, drop in values.items():
            where = f"{col}={value}"
            if drop["rows"] < policy.min_slice_rows:
                notes.append(f"slice {where} not gated: {drop['rows']} rows < min_slice_rows {policy.min_slice_rows}")
                continue
            if any(math.isnan(drop[k]) for k in ("estimate", "low", "high")):
                notes.append(f"slice {where} not gated: {key} undefined there")
                continue
            checked += 1
            if worst is None or drop["low"] > worst[1]["low"]:
                worst = (where, drop)
    if not checked:
        return GateResult(name, True, None, limit, None, "no slice large enough to gate")
    where, drop = worst
    detail = (f"{where}: {key} drop vs champion {drop['estimate']:+.4f} ({units}; {drop['level']:.0%} CI "
              f"{drop['low']:+.4f} .. {drop['high']:+.4f}, {drop['rows']} rows)")
    margin = limit - drop["low"]
    if margin >= 0:
        return GateResult(name, True, drop["low"], limit, margin,
                          f"no slice of {checked} is worse than allowed ({limit}) beyond noise; surest drop {detail}")
    return GateResult(name, False, drop["low"], limit, margin,
                      f"slice {detail}: worse beyond noise, the CI's lower bound {-margin:.4f} beyond the allowed "
                      f"{limit}")


def _floor_gates(report: EvaluationReport, policy: GatePolicy) -> list[GateResult]:
    if not policy.floors:
        return [GateResult("floors", True, None, None, None, "first model; no floors configured")]
    out = []
    for metric, floor in sorted(policy.floors.items()):
        name = f"floor_{metric}"
        if metric not in report.candidate.metrics:
            out.append(GateResult(name, False, None, floor, None,
                                  f"floor on {metric!r}, which is not a {report.task} metric "
                                  f"(known: {sorted(report.candidate.metrics)})"))
            continue
        value, higher = report.candidate.metrics[metric], HIGHER_IS_BETTER[metric]
        if math.isnan(value):
            out.append(GateResult(name, False, None, floor, None, f"{metric} is undefined on this benchmark"))
            continue
        margin = (value - floor) if higher else (floor - value)
        bound = "floor" if higher else "ceiling"
        verdict = "meets" if margin >= 0 else f"misses by {-margin:.4f}"
        out.append(GateResult(name, margin >= 0, value, floor, margin,
                              f"first model {metric} {value:.4f} {verdict} the {bound} {floor}"))
    return out


def _budget(name: str, observed: float, budget: float, unit: str) -> GateResult:
    if observed is None or math.isnan(observed):
        return GateResult(name, False, None, budget, None, f"{unit} could not be measured")
    margin = budget - observed
    if margin >= 0:
        return GateResult(name, True, observed, budget, margin, f"{observed:.4g} {unit} within budget {budget:g}")
    return GateResult(name, False, observed, budget, margin,
                      f"{observed:.4g} {unit} exceeds the budget {budget:g} by {-margin:.4g}")


# -------------------------------------------------------------------------------------------- leakage


def row_keys(frame: pd.DataFrame, columns: list[str]) -> set[tuple]:
    """Key tuples of `frame`, datetimes as ISO text, so frames read from different files compare equal."""
    parts = [frame[c].map(_key_text) for c in columns]
    return set(zip(*parts)) if parts else set()


def row_overlap_gate(training_keys, benchmark_keys) -> GateResult:
    name = "row_overlap"
    if training_keys is None or benchmark_keys is None:
        return GateResult(name, False, None, 0, None,
                          "not checked: the training and benchmark row keys were not provided")
    train_set, bench_set = _key_set(training_keys), _key_set(benchmark_keys)
    overlap = train_set & bench_set
    if not overlap:
        return GateResult(name, True, 0, 0, 0, f"no benchmark row key among {len(train_set)} training keys")
    examples = ", ".join(str(k) for k in sorted(overlap, key=str)[:3])
    return GateResult(name, False, len(overlap), 0, -len(overlap),
                      f"{len(overlap)} of {len(bench_set)} benchmark rows also appear in the training set "
                      f"(e.g. {examples})")


def _key_set(keys) -> set[tuple]:
    if isinstance(keys, pd.DataFrame):
        return row_keys(keys, list(keys.columns))
    return {tuple(_key_text(v) for v in (k if isinstance(k, (tuple, list)) else (k,))) for k in keys}


def _key_text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


# ------------------------------------------------------------------------------------- target leakage

TARGET_LEAKAGE_GATES = ("target_leakage_single_feature", "target_leakage_vs_model", "target_leakage_linear")


def target_leakage_gates(analysis: LeakageAnalysis | None, candidate_metrics: dict,
                         policy: GatePolicy) -> list[GateResult]:
    """Three results from one analysis (core/evaluation/leakage.py), all judged on lower confidence bounds:
    a feature alone is (near-)deterministic of the target; a feature alone leaves far fewer errors than the
    whole candidate does (a model cannot be that much worse than one of its own inputs unless that input is
    not what it seems); a linear fit of the numeric features is (near-)deterministic, naming what it needs."""
    if analysis is None:
        return [GateResult(name, False, None, None, None, "not checked: the training and benchmark rows were not "
                                                          "provided") for name in TARGET_LEAKAGE_GATES]
    metric = analysis.metric
    limit = policy.max_leakage_auc if metric == "roc_auc" else policy.max_leakage_r2
    scored = {f: s for f, s in analysis.single.items() if not math.isnan(s.lower)}
    if not scored:
        why = "; ".join(analysis.notes) or "no feature could be scored"
        return [GateResult(name, True, None, None, None, f"not measurable: {why}") for name in TARGET_LEAKAGE_GATES]
    where = f"fitted on {analysis.train_rows} training rows, judged on {analysis.benchmark_rows} benchmark rows"

    def describe(features):
        return ", ".join(f"{f} {metric} {scored[f].score:.4f} (lower bound {scored[f].lower:.4f}, "
                         f"{scored[f].encoding})" for f in features)

    ranked = sorted(scored, key=lambda f: -scored[f].lower)
    best = ranked[0]
    leaking = [f for f in ranked if scored[f].lower >= limit]
    out = [_leak_result("target_leakage_single_feature", scored[best].lower, limit,
                        f"{describe(leaking)} alone reach(es) the near-deterministic {limit} ({where})" if leaking
                        else f"best single feature {describe([best])} stays below {limit} ({where})")]

    model_error = 1.0 - float(candidate_metrics.get(metric, math.nan))
    ratio_limit = policy.leakage_error_ratio
    if math.isnan(model_error) or model_error <= 0:
        out.append(GateResult("target_leakage_vs_model", True, None, ratio_limit, None,
                              f"not measurable: the candidate's {metric} leaves no error to compare with"))
    else:
        ratios = {f: (1.0 - scored[f].lower) / model_error for f in scored}
        lowest = min(ratios, key=ratios.get)
        beaten = sorted((f for f in ratios if ratios[f] < ratio_limit), key=ratios.get)
        detail = (f"the candidate's own {metric} is {1 - model_error:.4f}; " + "; ".join(
            f"{f} alone leaves {ratios[f]:.3f} of its error ({describe([f])})" for f in (beaten or [lowest])))
        verdict = (f"feature(s) predict the target far better than the whole model, beyond the allowed "
                   f"{ratio_limit} of its error" if beaten else f"no feature alone below {ratio_limit} of its error")
        out.append(GateResult("target_leakage_vs_model", not beaten, ratios[lowest], ratio_limit,
                              ratios[lowest] - ratio_limit, f"{detail}: {verdict}"))

    linear = analysis.linear
    if linear is None or math.isnan(linear.score.lower):
        out.append(GateResult("target_leakage_linear", True, None, limit, None,
                              "not measurable: no numeric feature varies in training"))
    else:
        fit = (f"a linear fit of the target on {len(linear.features)} numeric features reaches {metric} "
               f"{linear.score.score:.4f} (lower bound {linear.score.lower:.4f}; {where})")
        if linear.score.lower < limit:
            out.append(_leak_result("target_leakage_linear", linear.score.lower, limit, f"{fit}, below {limit}"))
        else:
            needed = sorted((f for f, s in linear.without.items() if not s >= limit), key=linear.without.get)
            named = ("; without " + ", without ".join(f"{f} it falls to {linear.without[f]:.4f}" for f in needed)
                     if needed else "; no single feature removal breaks it (redundant copies?): largest weights "
                     + ", ".join(linear.without))
            out.append(_leak_result("target_leakage_linear", linear.score.lower, limit,
                                    f"{fit}: the numeric features combine into the target{named}"))
    return out


def _leak_result(name: str, observed: float, limit: float, message: str) -> GateResult:
    return GateResult(name, observed < limit, observed, limit, limit - observed, message)
