"""Scoring the detection benchmark's runs against their ground truth: plain functions over day records, with the
targets each figure is judged by. No model and no core call here, so the scoring is tested on hand-made input
(tests/tools/test_bench_detection.py)."""

from __future__ import annotations

import datetime as dt
import math
import operator
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

SEVERITY = {"OK": 0, "WARN": 1, "ERROR": 2}


@dataclass
class DayRecord:
    """One served day: what monitoring said about it and what serving it cost in errors."""

    day: str  # ISO date of the served (monitored) day
    model_as_of: str
    drift_status: str  # OK, WARN or ERROR
    performance_status: str
    flagged: list[str] = field(default_factory=list)  # features drifting beyond their floor
    rows: int = 0
    correct: int = 0  # classification: decisions that matched the label
    abs_error: float = 0.0  # regression: sums over the day's rows
    sq_error: float = 0.0
    estimated: float | None = None  # label-free estimate of the monitored metric (classification), bias removed
    realised: float | None = None  # the same metric on the same rows once their labels landed
    drift_share: float = 0.0
    performance_metric: str = ""

    @property
    def status(self) -> str:
        """The day's worst monitoring status over data drift and performance."""
        return max(self.drift_status, self.performance_status, key=SEVERITY.__getitem__)

    def to_dict(self) -> dict:
        return asdict(self)


def _split(records: list[DayRecord], onset: dt.date | None) -> tuple[list[DayRecord], list[DayRecord]]:
    if onset is None:
        return list(records), []
    cut = onset.isoformat()
    return [r for r in records if r.day < cut], [r for r in records if r.day >= cut]


def stable_alerts(records: list[DayRecord], onset: dt.date | None) -> dict:
    """Alert days among the served days before the onset (all of them when nothing changes): a day counts once,
    at its worst status over data drift and performance, and each monitor is also counted on its own."""
    stable, _ = _split(records, onset)
    return {
        "days": len(stable),
        "error_days": sum(r.status == "ERROR" for r in stable),
        "warn_days": sum(r.status == "WARN" for r in stable),
        "drift_error_days": sum(r.drift_status == "ERROR" for r in stable),
        "drift_warn_days": sum(r.drift_status == "WARN" for r in stable),
        "performance_error_days": sum(r.performance_status == "ERROR" for r in stable),
        "performance_warn_days": sum(r.performance_status == "WARN" for r in stable),
        "wrong_flags": sum(len(r.flagged) for r in stable),
    }


def onset_to_flag(records: list[DayRecord], onset: dt.date | None, watched=()) -> dict:
    """Days from the onset to the first served day on or after it whose status is at least WARN (a flag), and to
    the first ERROR (what requests a retrain). With `watched` features (the ones the ground truth changed), only
    data drift naming one of them counts: on real data other alerts may already be running at the onset.
    Counted on the monitored day's date: a realised-performance flag is only known once that day's labels
    have landed. None: never flagged (or nothing changed)."""
    if onset is None:
        return {"first_flag": None, "delay_days": None, "first_error": None, "delay_to_error_days": None,
                "monitor_at_flag": None}
    _, after = _split(records, onset)
    watched = set(watched)

    def level(r: DayRecord) -> str:
        return (r.drift_status if watched & set(r.flagged) else "OK") if watched else r.status

    flag = next((r for r in after if level(r) != "OK"), None)
    error = next((r for r in after if level(r) == "ERROR"), None)

    def delay(r):
        return (dt.date.fromisoformat(r.day) - onset).days if r else None

    monitor = None
    if flag:
        monitor = "+".join(name for name, s in (("drift", flag.drift_status), ("performance", flag.performance_status))
                           if s != "OK" and (name == "drift" or not watched))
    return {"first_flag": flag.day if flag else None, "delay_days": delay(flag),
            "first_error": error.day if error else None, "delay_to_error_days": delay(error),
            "monitor_at_flag": monitor}


def quality(records: list[DayRecord], task: str, start: dt.date | None = None, end: dt.date | None = None) -> dict:
    """Served quality over the days in [start, end]: accuracy at the decision threshold, or MAE and RMSE."""
    first, last = start.isoformat() if start else "", end.isoformat() if end else "9999"
    chosen = [r for r in records if first <= r.day <= last]
    rows = sum(r.rows for r in chosen)
    if not rows:
        return {"rows": 0}
    if task == "binary_classification":
        return {"rows": rows, "accuracy": sum(r.correct for r in chosen) / rows}
    return {"rows": rows, "mae": sum(r.abs_error for r in chosen) / rows,
            "rmse": math.sqrt(sum(r.sq_error for r in chosen) / rows)}


ESTIMATE_BLOCK_DAYS = 14  # the longest monitoring window: days further apart share no window rows


def estimate_error(records: list[DayRecord], onset: dt.date | None) -> dict:
    """The label-free estimate against the figure realised on the same rows once labels landed, per day: mean
    signed error (bias: positive = optimistic for a higher-is-better metric) and mean absolute error, before
    and after the onset; and the bias of each run of ESTIMATE_BLOCK_DAYS consecutive days (`block_biases`):
    consecutive days' windows overlap, so the bias's interval comes from these runs (`bias_interval`), not days."""
    out = {}
    for name, part in zip(("stable", "after_onset"), _split(records, onset)):
        pairs = [(r.estimated, r.realised) for r in part if r.estimated is not None and r.realised is not None]
        diff = np.array([e - a for e, a in pairs])
        blocks = [float(diff[i:i + ESTIMATE_BLOCK_DAYS].mean()) for i in range(0, len(diff), ESTIMATE_BLOCK_DAYS)]
        out[name] = {"days": len(pairs), "bias": float(diff.mean()) if len(diff) else None,
                     "mean_abs_error": float(np.abs(diff).mean()) if len(diff) else None,
                     "block_biases": blocks}
    return out


def bias_interval(block_biases: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """t interval of the mean of run biases (independent runs of days); None with fewer than two runs."""
    x = np.asarray([b for b in block_biases if b is not None and math.isfinite(b)], dtype=float)
    if len(x) < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return float(x.mean()) - half, float(x.mean()) + half


def no_worse(served: float | None, never: float | None, rows: int, task: str) -> bool | None:
    """Whether serving with retraining did no worse than never retraining, beyond two standard errors of the
    figure on `rows` rows (accuracy: binomial; MAE: about 0.75 MAE / sqrt(rows) for normal-ish errors), so a
    tie within noise is not called a loss. None: no figure."""
    if served is None or never is None or not rows:
        return None
    if task == "binary_classification":
        return served >= never - 2 * math.sqrt(max(never * (1 - never), 1e-12) / rows)
    return served <= never + 2 * 0.75 * never / math.sqrt(rows)


def canary_tally(runs: list[dict]) -> dict:
    """Outcomes of canaries whose candidate is known to be better or worse than the champion: each run is
    {"kind": "better" | "worse", "outcome": "complete" | "rollback" | "pending"}."""
    out = {}
    for kind in ("better", "worse"):
        mine = [r["outcome"] for r in runs if r["kind"] == kind]
        n = len(mine)
        tally = {"n": n, "completed": mine.count("complete"), "rolled_back": mine.count("rollback"),
                 "pending": mine.count("pending")}
        tally["completed_share"] = tally["completed"] / n if n else None
        tally["rolled_back_share"] = tally["rolled_back"] / n if n else None
        out[kind] = tally
    return out


def volume_tally(verdicts: list[dict | None], expect_blocked: bool) -> dict:
    """How many days the volume check judged as expected; `None` verdicts mean the check does not exist yet."""
    known = [v for v in verdicts if v is not None]
    if not known:
        return {"available": False, "days": len(verdicts)}
    right = sum(bool(v["blocked"]) == expect_blocked for v in known)
    return {"available": True, "days": len(known), "as_expected": right, "share": right / len(known)}


# ------------------------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    """A figure's target, e.g. Target("<=", 2): `judge` says "met", "NOT met" or "n/a" (no figure)."""

    op: str
    bound: float
    percent: bool = False  # the figure is a share: print the bound as a percentage

    _OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt}

    def judge(self, value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return "met" if self._OPS[self.op](value, self.bound) else "NOT met"

    def __str__(self) -> str:
        return f"{self.op} {self.bound:.0%}" if self.percent else f"{self.op} {self.bound:g}"


TARGETS = {
    "stable_error_days": Target("==", 0),
    "onset_to_flag_days": Target("<=", 2),
    "canary_better_completed": Target(">=", 0.9, percent=True),
    "canary_worse_rolled_back": Target(">=", 1.0, percent=True),
    "volume_low_day_blocked": Target(">=", 1.0, percent=True),
    "volume_ordinary_days_passed": Target(">=", 1.0, percent=True),
    "leak_blocked": Target(">=", 1.0, percent=True),
    "honest_passed": Target(">=", 1.0, percent=True),
    "estimate_abs_bias_stable": Target("<=", 0.02),
}
