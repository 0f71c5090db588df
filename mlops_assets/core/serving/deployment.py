"""Serving a day's rows: canary routing, ledger rows, the frozen canary plan and its ramp, shadow reports.

- Routing hashes each entity with sha256 (stable across processes, machines and Python's hash seed) to a
  uniform value u in [0, 1); an entity is in the canary when u < share. So the same entity always goes the
  same way for a salt, and raising the share only adds entities: those in a 5 % canary stay in it at 25 %.
  Use the canary's plan salt (its version by default) so each canary gets its own set of entities.
- While a canary serves, the champion also scores the canary's rows as a shadow (not acted on): the
  guardrails then compare both models on the *same* rows, and the final 100 % step still has a comparison.
  Both are also timed on those rows, and the times go into the ledger, so the evidence is all in the ledger.
- A `CanaryPlan` is frozen at start: its terms (steps, window, guardrails copied from the spec's
  [deployment] policy) are stored with a sha256 of their canonical JSON; `verify` refuses an edited plan.
- The score-shift guardrail compares the canary's live scores with its *own* scores on its training data
  (its monitoring reference, as prediction_drift_report does for the champion): it catches training/serving
  skew and a model gone wild. Against the champion's scores it would also fire on a retrain that legitimately
  differs from a stale champion, which is the point of retraining after drift; that comparison is kept as
  evidence, and the labels judge quality.
- `advance` is a pure function of a plan and one window's evidence; the caller records each decision in the
  registry's audit log and promotes or rolls back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.core.monitoring.drift import prediction_drift
from mlops_assets.core.monitoring.drift_profile import ReferenceProfile
from mlops_assets.core.evaluation.report import HIGHER_IS_BETTER, compute_metrics, latency_ms_per_1k, metric_function
from mlops_assets.core.serving.ledger import LEDGER_COLUMNS, entity_keys
from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.training.trainer import labels as label_values
from mlops_assets.core.training.trainer import predict_scores

ACTIONS = ("hold", "ramp", "complete", "rollback")
LATENCY_SAMPLE_ROWS = 1000  # canary rows timed per batch, bounding the measuring cost on large batches
_KEY = ["entity", "timestamp"]


class ServingModel(NamedTuple):
    version: str
    pipeline: Any  # a fitted scikit-learn Pipeline, as training builds it


# ------------------------------------------------------------------------------------------------ routing


def route_values(entity_ids, salt: str = "") -> np.ndarray:
    """Each entity's uniform value in [0, 1): the first 8 bytes of sha256(salt, id) over 2**64."""
    ids = pd.Series(entity_ids, dtype=object).astype(str).to_numpy()
    unique, inverse = np.unique(ids, return_inverse=True)
    prefix = f"{len(salt)}:{salt}".encode()  # length-prefixed, so (salt, id) pairs never collide as text
    values = np.fromiter(
        (int.from_bytes(hashlib.sha256(prefix + u.encode()).digest()[:8], "big") for u in unique),
        dtype=np.float64, count=len(unique),
    ) / 2.0 ** 64
    return values[inverse]


def canary_route(entity_ids, share: float, salt: str = "") -> np.ndarray:
    """Boolean mask: True where the entity is served by the canary at this share."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"canary share must be within [0, 1], got {share!r}")
    return route_values(entity_ids, salt) < share


# ------------------------------------------------------------------------------------------------ scoring


def score_batch(feature_table: pd.DataFrame, spec: DatasetSpec, champion: ServingModel,
                canary: ServingModel | None = None, shadow: ServingModel | None = None,
                canary_share: float = 0.0, salt: str = "", *, scored_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """Ledger rows for one batch: each row decided by the champion or the canary (acted on), plus
    not-acted-on shadow rows: the shadow model's on every row, and the champion's on the canary's rows.

    While a canary serves, both it and the champion are timed on (up to LATENCY_SAMPLE_ROWS of) the canary's
    rows, as the promotion gates time models, and the figures go into their rows' `latency_ms_per_1k`."""
    if canary is None and canary_share > 0:
        raise ValueError(f"canary_share is {canary_share} but no canary model was given")
    scored_at = pd.Timestamp.now(tz="UTC") if scored_at is None else pd.Timestamp(scored_at).tz_convert("UTC")
    frame = feature_table.reset_index(drop=True)
    timestamps = pd.to_datetime(frame[spec.timestamp])
    entities = entity_keys(timestamps, frame[spec.entity_id] if spec.entity_id else None)
    to_canary = (canary_route(entities, canary_share, salt) if canary is not None
                 else np.zeros(len(frame), dtype=bool))
    threshold = spec.deployment.decision_threshold if spec.is_classification else None
    latency = {}
    if canary is not None and to_canary.any():
        sample = frame[to_canary].iloc[:LATENCY_SAMPLE_ROWS]
        latency = {"canary": latency_ms_per_1k(canary.pipeline, spec, sample),
                   "shadow": latency_ms_per_1k(champion.pipeline, spec, sample)}

    def rows(model: ServingModel, mask: np.ndarray, route: str, timed: bool = False) -> pd.DataFrame:
        scores = predict_scores(model.pipeline, spec, frame[mask]) if mask.any() else np.empty(0)
        ts = timestamps[mask].reset_index(drop=True)
        return pd.DataFrame({
            "day": ts.dt.date, "entity": entities[mask].reset_index(drop=True), "timestamp": ts,
            "score": scores,
            "decision": (scores >= threshold).astype(np.float64) if threshold is not None else scores,
            "threshold": np.full(len(scores), np.nan if threshold is None else threshold),
            "model_version": model.version, "route": route, "acted_on": route != "shadow",
            "scored_at": pd.Series([scored_at] * len(scores), dtype="datetime64[us, UTC]"),
            "latency_ms_per_1k": np.full(len(scores), latency.get(route, np.nan) if timed else np.nan),
        }, columns=list(LEDGER_COLUMNS))

    parts = [rows(champion, ~to_canary, "champion")]
    if canary is not None:
        parts += [rows(canary, to_canary, "canary", timed=True), rows(champion, to_canary, "shadow", timed=True)]
    if shadow is not None:
        parts.append(rows(shadow, np.ones(len(frame), dtype=bool), "shadow"))
    return pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)


def ledger_labels(labels_frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """A labels table (the spec's key columns and target) keyed like the ledger: entity, timestamp, label."""
    ts = pd.to_datetime(labels_frame[spec.timestamp]).reset_index(drop=True)
    return pd.DataFrame({
        "entity": entity_keys(ts, labels_frame[spec.entity_id] if spec.entity_id else None),
        "timestamp": ts, "label": label_values(spec, labels_frame.reset_index(drop=True)),
    })


def _paired(left: pd.DataFrame, right: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of two models on the same (entity, timestamp), as columns *_a / *_b, with the label if known."""
    def keyed(frame, suffix):
        # One model scores a row once; a duplicate (the champion passed as shadow too) says the same thing.
        out = frame[_KEY + ["score", "decision"]].drop_duplicates(_KEY).copy()
        out["timestamp"] = pd.to_datetime(out["timestamp"]).astype("datetime64[us]")
        return out.rename(columns={"score": f"score{suffix}", "decision": f"decision{suffix}"})

    pairs = keyed(left, "_a").merge(keyed(right, "_b"), on=_KEY, how="inner", validate="one_to_one")
    if labels is not None:
        lab = labels[_KEY + ["label"]].copy()
        lab["timestamp"] = pd.to_datetime(lab["timestamp"]).astype("datetime64[us]")
        pairs = pairs.merge(lab, on=_KEY, how="left", validate="many_to_one")
    return pairs


def _ks(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(stats.ks_2samp(a, b, method="asymp").statistic) if len(a) and len(b) else None


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# ------------------------------------------------------------------------------------------ shadow report


def shadow_comparison(champion_rows: pd.DataFrame, shadow_rows: pd.DataFrame, labels: pd.DataFrame | None = None,
                      *, task: str | None = None) -> dict:
    """How a shadow model's opinions compare with the decisions served, on the rows both scored.

    Agreement is the share of equal decisions (classification only); correlation is Pearson's on scores;
    KS is the two-sample statistic between the two score distributions. With `labels` (see `ledger_labels`)
    both models' realised metrics are computed on the labelled rows. The task is read from the rows
    (a threshold means classification) unless given.
    """
    if task is None:
        task = "binary_classification" if champion_rows["threshold"].notna().any() else "regression"
    pairs = _paired(champion_rows, shadow_rows, labels)
    a, b = pairs["score_a"].to_numpy(float), pairs["score_b"].to_numpy(float)
    corr = None
    if len(a) > 1 and a.std() > 0 and b.std() > 0:
        corr = float(np.corrcoef(a, b)[0, 1])
    report = {
        "task": task,
        "champion_versions": sorted(set(champion_rows["model_version"])),
        "shadow_versions": sorted(set(shadow_rows["model_version"])),
        "rows": len(pairs),
        "unmatched_champion_rows": len(champion_rows) - len(pairs),
        "unmatched_shadow_rows": len(shadow_rows) - len(pairs),
        "agreement_rate": (float((pairs["decision_a"] == pairs["decision_b"]).mean())
                           if task == "binary_classification" and len(pairs) else None),
        "score_correlation": corr,
        "mean_abs_score_difference": float(np.abs(a - b).mean()) if len(a) else None,
        "ks_statistic": _ks(a, b),
        "labelled_rows": 0,
        "metrics": None,
    }
    if labels is not None:
        known = pairs["label"].notna().to_numpy()
        report["labelled_rows"] = int(known.sum())
        if known.any():
            y = pairs.loc[known, "label"].to_numpy(float)
            report["metrics"] = {
                side: {k: _finite(v) for k, v in compute_metrics(task, y, s[known],
                                                                  threshold=_threshold_of(champion_rows)).items()}
                for side, s in (("champion", a), ("shadow", b))
            }
    return report


# ------------------------------------------------------------------------------------------------ canary


class PlanTampered(ValueError):
    """A canary plan's terms no longer match the sha256 recorded when it started."""


@dataclass(frozen=True)
class CanaryCriteria:
    steps: tuple[float, ...]
    window_days: int
    key_metric: str
    higher_is_better: bool
    max_metric_drop: float
    max_score_shift: float
    max_latency_ratio: float
    min_rows_per_step: int


@dataclass(frozen=True)
class CanaryPlan:
    version: str
    champion_version: str
    salt: str
    started_at: str
    criteria: CanaryCriteria
    sha256: str  # of the canonical JSON of the terms: everything above except started_at

    def terms(self) -> dict:
        return {"version": self.version, "champion_version": self.champion_version, "salt": self.salt,
                "criteria": asdict(self.criteria)}

    @property
    def first_share(self) -> float:
        return self.criteria.steps[0]

    def to_json(self) -> str:
        return json.dumps({**self.terms(), "started_at": self.started_at, "sha256": self.sha256},
                          sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "CanaryPlan":
        raw = json.loads(text)
        crit = dict(raw["criteria"])
        crit["steps"] = tuple(crit["steps"])
        return cls(raw["version"], raw["champion_version"], raw["salt"], raw["started_at"],
                   CanaryCriteria(**crit), raw["sha256"])


def _terms_sha256(terms: dict) -> str:
    canonical = json.dumps(terms, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def start_canary(spec: DatasetSpec, version: str, champion_version: str, *, salt: str | None = None,
                 started_at: str | None = None) -> CanaryPlan:
    """Freeze the spec's current [deployment] guardrails into a plan for this canary."""
    policy = spec.deployment
    criteria = CanaryCriteria(
        steps=tuple(float(s) for s in policy.canary_steps), window_days=policy.canary_window_days,
        key_metric=spec.key_metric, higher_is_better=HIGHER_IS_BETTER[spec.key_metric],
        max_metric_drop=policy.max_metric_drop, max_score_shift=policy.max_score_shift,
        max_latency_ratio=policy.max_latency_ratio, min_rows_per_step=policy.min_rows_per_step,
    )
    salt = version if salt is None else salt
    started_at = started_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    draft = CanaryPlan(version, champion_version, salt, started_at, criteria, "")
    return CanaryPlan(version, champion_version, salt, started_at, criteria, _terms_sha256(draft.terms()))


def verify(plan: CanaryPlan) -> CanaryPlan:
    """The plan, if its terms still hash to the sha256 recorded at start; else PlanTampered."""
    actual = _terms_sha256(plan.terms())
    if actual != plan.sha256:
        raise PlanTampered(
            f"canary plan for {plan.version} was changed after it started (recorded sha256 {plan.sha256[:12]}…, "
            f"now {actual[:12]}…); refusing to judge it by criteria that moved. Roll back and start a new canary."
        )
    return plan


@dataclass(frozen=True)
class WindowEvidence:
    """One window of canary traffic at one share, compared with the champion on the same rows."""

    share: float  # the canary share served during the window
    days: int  # days of traffic in the window
    rows: int  # canary rows the champion also scored (compared rows)
    canary_metric: float | None = None  # realised key metric on the labelled compared rows; None: labels not in
    champion_metric: float | None = None
    labelled_rows: int = 0
    score_shift: float | None = None  # KS statistic, canary's live scores vs its own training scores
    score_shift_vs_champion: float | None = None  # KS, canary vs champion scores on the compared rows (evidence)
    latency_ratio: float | None = None  # canary / champion scoring time per row


@dataclass(frozen=True)
class CanaryDecision:
    action: str  # "hold" | "ramp" | "complete" | "rollback"
    share: float  # the share the evidence was collected at
    next_share: float  # the share to serve next (0 after a rollback)
    reasons: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)  # the window's figures, for the audit log

    def to_dict(self) -> dict:
        return asdict(self)


def canary_evidence(rows: pd.DataFrame, plan: CanaryPlan, share: float, labels: pd.DataFrame | None = None,
                    latency_ratio: float | None = None, score_reference: ReferenceProfile | None = None,
                    ) -> WindowEvidence:
    """Evidence from one window's ledger rows: the canary's rows paired with the champion's opinion on them.
    `score_reference` is the canary's monitoring reference profile (without it, score shift is not judged
    and the step cannot pass)."""
    canary = rows[(rows["model_version"] == plan.version) & (rows["route"] == "canary")]
    champion = rows[(rows["model_version"] == plan.champion_version) & (rows["route"] != "canary")]
    pairs = _paired(canary, champion, labels)
    days = pd.to_datetime(rows["timestamp"]).dt.date.nunique() if len(rows) else 0
    if latency_ratio is None:
        latency_ratio = _recorded_latency_ratio(canary, champion[champion["route"] == "shadow"])
    canary_scores = pairs["score_a"].to_numpy(float)
    own_shift = (_finite(prediction_drift(score_reference, canary_scores).statistic)
                 if score_reference is not None and len(pairs) else None)
    evidence = dict(share=share, days=int(days), rows=len(pairs), latency_ratio=latency_ratio, score_shift=own_shift,
                    score_shift_vs_champion=_ks(canary_scores, pairs["score_b"].to_numpy(float)))
    if labels is not None:
        known = pairs["label"].notna().to_numpy()
        metric = metric_function(_task_of(rows), plan.criteria.key_metric, threshold=_threshold_of(rows))
        evidence["labelled_rows"] = int(known.sum())
        if known.any():
            y = pairs.loc[known, "label"].to_numpy(float)
            evidence["canary_metric"] = _finite(metric(y, pairs.loc[known, "score_a"].to_numpy(float)))
            evidence["champion_metric"] = _finite(metric(y, pairs.loc[known, "score_b"].to_numpy(float)))
    return WindowEvidence(**evidence)


def _recorded_latency_ratio(canary: pd.DataFrame, champion_shadow: pd.DataFrame) -> float | None:
    """Median over the window's days of canary / champion time per row, as score_batch recorded them."""
    if "latency_ms_per_1k" not in canary.columns or "latency_ms_per_1k" not in champion_shadow.columns:
        return None

    def per_day(frame):
        day = pd.to_datetime(frame["timestamp"]).dt.date
        return frame["latency_ms_per_1k"].astype(float).groupby(day).median()

    ratios = (per_day(canary) / per_day(champion_shadow)).dropna()
    ratios = ratios[np.isfinite(ratios)]
    return float(ratios.median()) if len(ratios) else None


def latency_ratio(spec: DatasetSpec, canary: ServingModel, champion: ServingModel, frame: pd.DataFrame) -> float:
    """Canary / champion scoring time on the same rows (median of repeats, as the promotion gates measure it)."""
    return latency_ms_per_1k(canary.pipeline, spec, frame) / latency_ms_per_1k(champion.pipeline, spec, frame)


def _task_of(rows: pd.DataFrame) -> str:
    return "binary_classification" if rows["threshold"].notna().any() else "regression"


def _threshold_of(rows: pd.DataFrame) -> float:
    """The decision threshold score_batch recorded on the rows (the last row's; NaN for regression)."""
    recorded = rows["threshold"].dropna()
    return float(recorded.iloc[-1]) if len(recorded) else math.nan


def advance(plan: CanaryPlan, evidence: WindowEvidence) -> CanaryDecision:
    """Judge one window: a guardrail breach rolls back; a clean, complete window ramps to the next step
    (or completes after the last); anything short of enough evidence holds at the current share.

    Latency is judged on any window; metric and score shift only once the window holds `min_rows_per_step`
    compared rows (fewer would roll back on noise). Passing needs the full window of days and the labels.
    """
    c = verify(plan).criteria
    step = next((i for i, s in enumerate(c.steps) if math.isclose(s, evidence.share)), None)
    if step is None:
        raise ValueError(f"share {evidence.share} is not a step of the plan {list(c.steps)}")
    share = c.steps[step]
    breaches, waiting = [], []

    if evidence.latency_ratio is not None and evidence.latency_ratio > c.max_latency_ratio:
        breaches.append(f"latency ratio {evidence.latency_ratio:.2f} exceeds {c.max_latency_ratio:.2f}")
    enough_rows = evidence.rows >= c.min_rows_per_step
    if not enough_rows:
        waiting.append(f"{evidence.rows} compared rows, need {c.min_rows_per_step}")
    if enough_rows and evidence.score_shift is not None and evidence.score_shift > c.max_score_shift:
        breaches.append(f"score shift from its training scores (KS) {evidence.score_shift:.3f} exceeds "
                        f"{c.max_score_shift:.3f}")
    have_metric = evidence.canary_metric is not None and evidence.champion_metric is not None
    if enough_rows and have_metric:
        drop = evidence.champion_metric - evidence.canary_metric
        drop = drop if c.higher_is_better else -drop
        if drop > c.max_metric_drop:
            breaches.append(f"{c.key_metric} {evidence.canary_metric:.4f} vs champion {evidence.champion_metric:.4f}: "
                            f"drop {drop:.4f} exceeds {c.max_metric_drop:.4f}")
    seen = asdict(evidence)
    if breaches:
        return CanaryDecision("rollback", share, 0.0, breaches, seen)

    if evidence.days < c.window_days:
        waiting.append(f"{evidence.days} of {c.window_days} days observed")
    if not have_metric:
        waiting.append(f"no realised {c.key_metric} for both models yet (labels pending)")
    if evidence.latency_ratio is None:
        waiting.append("no latency measurement")
    if evidence.score_shift is None:
        waiting.append("no score shift against the canary's training scores")
    if waiting:
        return CanaryDecision("hold", share, share, waiting, seen)

    passed = [f"{c.key_metric} {evidence.canary_metric:.4f} vs champion {evidence.champion_metric:.4f}",
              f"score shift {evidence.score_shift:.3f}",
              f"latency ratio {evidence.latency_ratio:.2f}",
              f"{evidence.rows} rows over {evidence.days} days"]
    if step == len(c.steps) - 1:
        return CanaryDecision("complete", share, 1.0, [f"all guardrails passed at {share:.0%}: promote"] + passed, seen)
    return CanaryDecision("ramp", share, c.steps[step + 1], [f"all guardrails passed at {share:.0%}"] + passed, seen)
