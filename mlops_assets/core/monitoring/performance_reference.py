"""What performance monitoring needs from the reference period, fitted with the model version.

Limits come from the reference's own variability, as NannyML's: the reference rows are cut into chunks of the
same size as a monitoring window (whole days, `performance_min_rows` rows or `performance_max_days` days), the
metric is taken on each, and a window is judged against the chunks' mean minus (plus, for error metrics) k
standard deviations. With fewer than MIN_CHUNKS chunks the spread cannot be measured, and the metric's
sampling interval (bootstrap std at the window's row count) stands in for it.

Under the sampling interval, rows are not independent: a day's rows share its weather, prices and mix, so
the metric of a window of k days varies between days beyond what its row count says. The reference's days give
that between-day component (the variance of the metric across reference days less what each day's own row
count explains, a random-effects estimate by moments, the variance at its upper confidence bound, with at
least MIN_DAYS_FOR_SPREAD days): a window of n rows over k days then has variance between/k + unit**2/n, and
the center's own standard error is counted the same way over the reference's days. Without it a synthetic
hourly load at 24 rows a day, whose weather runs for days, raised a performance ERROR in a stable fortnight (a
7-day window 3.8 iid standard errors above the reference, 2.5 of these).

Reference rows must have honest scores: the validation days, scored by the version itself. When they give too
few chunks, or too few rows to calibrate on, the training days add out-of-fold scores (cross-fitted: each
block of days scored by a model trained on the other blocks, as scikit-learn's CalibratedClassifierCV with
ensemble=False). The label-free estimate's calibrator is fitted on those rows; when they include out-of-fold
scores, it is then recalibrated (slope and intercept on the logit) on the version's own validation scores: fold
models trained on fewer days can rank worse than the version, and a calibrator fitted on their scores alone is
too flat for the version's, which biased the estimate low (Elec2: -0.06 AUC). The bias left is measured on the
version's own held-out rows only, each block of validation days estimated by a calibrator fitted without it
(isotonic and recalibration both), and stored with its interval across blocks; monitoring subtracts it. Blocks
of a day or two are short windows, where Elec2's realised AUC runs above the estimate: subtracting the bias
took its benchmark bias from -0.048 to -0.014 (synthetic: +0.012 either way), though on a week of validation
days it also carries that week's quirks (its interval, stored and reported, says how far to trust it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.monitoring import performance_metrics as pm
from mlops_assets.core.monitoring.performance_estimation import Calibrator, calibrate, recalibrate
from mlops_assets.core.training import trainer as training

MIN_CHUNKS = 4  # fewer chunks and their std says little: the sampling interval is used instead
MIN_DAYS_FOR_SPREAD = 5  # reference days below which no between-day variance is estimated (rows taken as iid)
SPREAD_CONFIDENCE = 0.95  # the day-to-day variance is taken at this upper confidence bound (chi-square, days - 1)
CALIBRATION_MIN_ROWS = 2_000  # isotonic steps on fewer held-out rows move the estimate by a point or more
CALIBRATION_MAX_ROWS = 500_000  # a seeded subsample beyond this: more rows no longer change the calibrator
CROSS_FIT_FOLDS = 5
CROSS_FIT_ROWS_PER_DAY = 5_000  # fold models are only there to score held-out days; keeps them cheap at scale
BIAS_BLOCKS = 5
RECALIBRATION_MIN_ROWS = 100  # the version's own held-out rows below which its calibrator is not recalibrated


@dataclass(frozen=True)
class Limits:
    center: float  # the reference's level of the metric
    std: float  # std of the metric over a window of this many rows, the center's own uncertainty included
    warn: float
    error: float
    source: str  # where the std came from, in words


@dataclass(frozen=True)
class PerformanceReference:
    metric: str
    higher_is_better: bool
    center: float  # mean of the metric over the reference chunks (the pooled rows' metric with too few chunks)
    center_std: float  # the center's own standard error
    unit_std: float  # sampling std of the metric times sqrt(rows): std at n rows = unit_std / sqrt(n)
    chunk_std: float  # std of the metric across reference chunks (NaN when fewer than 2)
    chunk_rows: int  # median rows per chunk
    n_chunks: int
    reference_rows: int
    reference_days: int
    reference_source: str  # "validation" or "validation + out-of-fold training days"
    calibration_rows: int = 0  # rows the calibrator was fitted on (0: no label-free estimate)
    estimate_bias: float = math.nan  # mean (estimated - realised) on held-out blocks; subtracted before judging
    estimate_error_std: float = math.nan  # spread of (estimated - realised) across those blocks
    bias_rows: int = 0
    bias_blocks: int = 0  # held-out blocks the bias was measured on (its interval's degrees of freedom + 1)
    recalibrated_on_rows: int = 0  # the version's own rows the calibrator was recalibrated on (0: not recalibrated)
    between_day_std: float = math.nan  # std of the metric between days beyond their rows' sampling (NaN: unknown)
    spread_days: int = 0  # reference days that between_day_std was estimated from

    @property
    def bias_correction(self) -> float:
        """What is subtracted from the label-free estimate: the measured bias (0 when none was measured)."""
        return self.estimate_bias if math.isfinite(self.estimate_bias) else 0.0

    def estimate_bias_interval(self, level: float = 0.95) -> tuple[float, float] | None:
        """The bias's confidence interval, from its spread across blocks (t, blocks - 1 degrees of freedom)."""
        if self.bias_blocks < 2 or not (math.isfinite(self.estimate_bias) and math.isfinite(self.estimate_error_std)):
            return None
        t = stats.t.ppf(0.5 + level / 2, self.bias_blocks - 1)
        half = t * self.estimate_error_std / math.sqrt(self.bias_blocks)
        return self.estimate_bias - half, self.estimate_bias + half

    def limits(self, n_rows: int, warn_std: float, error_std: float, n_days: int | None = None) -> Limits:
        """Warn and error limits for a window of `n_rows` rows over `n_days` days, `warn_std` / `error_std` stds
        on the worse side."""
        sampling = self.unit_std / math.sqrt(max(n_rows, 1))
        if self.n_chunks >= MIN_CHUNKS and math.isfinite(self.chunk_std):
            # a smaller window is noisier than a chunk (iid scaling); a larger one keeps the chunks' day-to-day spread
            window_std = max(self.chunk_std * math.sqrt(max(1.0, self.chunk_rows / max(n_rows, 1))), sampling)
            source = (f"chunk-to-chunk std over {self.n_chunks} reference chunks of ~{self.chunk_rows} rows "
                      f"({self.reference_source})")
        else:
            between = _finite(self.between_day_std)
            days = max(n_days or 1, 1)
            window_std = math.sqrt(sampling ** 2 + between ** 2 / days)
            source = (f"sampling interval at {n_rows} rows"
                      + (f" over {days} day(s), with the between-day std of {self.spread_days} reference days"
                         if between > 0 else "")
                      + f": {self.n_chunks} reference chunks ({self.reference_rows} rows) are fewer than {MIN_CHUNKS}")
        return _limits(self.center, math.hypot(window_std, _finite(self.center_std)), self.higher_is_better,
                       warn_std, error_std, source)

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: dict) -> "PerformanceReference":
        out = dict(raw)
        for k in ("center", "center_std", "unit_std", "chunk_std", "estimate_bias", "estimate_error_std",
                  "between_day_std"):
            out[k] = math.nan if out.get(k) is None else float(out[k])
        return cls(**out)


def sampling_limits(metric: str, center: float, unit_std: float, n_rows: int, warn_std: float, error_std: float,
                    why: str) -> Limits:
    """Limits from the sampling interval alone (no chunk spread known)."""
    return _limits(center, unit_std / math.sqrt(max(n_rows, 1)), pm.higher_is_better(metric), warn_std, error_std,
                   f"sampling interval at {n_rows} rows ({why})")


def _limits(center, std, higher_is_better, warn_std, error_std, source) -> Limits:
    worse = -1.0 if higher_is_better else 1.0
    return Limits(center, std, center + worse * warn_std * std, center + worse * error_std * std, source)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


# ------------------------------------------------------------------------------------------------ fitting


def fit_performance_reference(spec: DatasetSpec, pipeline, train_frame: pd.DataFrame,
                              validation_frame: pd.DataFrame) -> tuple[PerformanceReference, Calibrator | None]:
    """The performance part of a version's reference, and the calibrator of its label-free estimate
    (binary classification with both classes among the calibration rows, else None)."""
    metric, threshold, policy = pm.monitored_metric(spec), spec.deployment.decision_threshold, spec.monitoring
    held_out = _rows(spec, validation_frame, training.predict_scores(pipeline, spec, validation_frame))
    chunk_count = len(pm.disjoint_chunks(_day_rows(held_out), policy.performance_min_rows,
                                         policy.performance_max_days))
    short = chunk_count < MIN_CHUNKS or (spec.is_classification and len(held_out) < CALIBRATION_MIN_ROWS)
    pool, source = held_out, "validation"
    if short:
        out_of_fold = _out_of_fold(spec, train_frame)
        if len(out_of_fold):
            pool, source = pd.concat([out_of_fold, held_out], ignore_index=True), "validation + out-of-fold training days"
    calibration_pool = None
    if spec.is_classification:  # validation alone when it holds enough rows: the version's own scores
        calibration_pool = held_out if len(held_out) >= CALIBRATION_MIN_ROWS else pool
    return reference_from_rows(metric, pool, threshold=threshold, min_rows=policy.performance_min_rows,
                               max_days=policy.performance_max_days, seed=spec.training.seed, source=source,
                               calibration_pool=calibration_pool, own_rows=held_out)


def reference_from_rows(metric: str, pool: pd.DataFrame, *, threshold: float, min_rows: int, max_days: int,
                        seed: int, source: str, calibration_pool: pd.DataFrame | None = None,
                        own_rows: pd.DataFrame | None = None) -> tuple[PerformanceReference, Calibrator | None]:
    """The reference from held-out rows (`day`, `score`, `label`): chunks of whole days cut by the window rule,
    the metric on each; and, given `calibration_pool` with both classes, the calibrator and its bias.
    `own_rows`: the version's own held-out rows (default: the whole calibration pool); when the pool holds other
    days too (out-of-fold scores), the calibrator is recalibrated on them and the bias is measured on them."""
    rows_per_day = _day_rows(pool)
    chunks = pm.disjoint_chunks(rows_per_day, min_rows, max_days)
    day_of_row = pool["day"].map({d: i for i, d in enumerate(sorted(pool["day"].unique()))}).to_numpy()
    scores, labels = pool["score"].to_numpy(np.float64), pool["label"].to_numpy(np.float64)
    values, sizes = [], []
    for chunk in chunks:
        mask = np.isin(day_of_row, chunk)
        values.append(pm.realised_metric(metric, scores[mask], labels[mask], threshold))
        sizes.append(int(mask.sum()))
    values = np.array([v for v in values if math.isfinite(v)])
    unit = pm.sampling_unit_std(lambda i: pm.realised_metric(metric, scores[i], labels[i], threshold), len(pool),
                                seed=seed)
    between, spread_days = _between_day_std(metric, scores, labels, day_of_row, threshold, unit)
    if len(values) >= MIN_CHUNKS:
        center, center_std = float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))
    else:
        center = pm.realised_metric(metric, scores, labels, threshold)
        center_std = math.sqrt(unit ** 2 / len(pool) + _finite(between) ** 2 / max(len(rows_per_day), 1))
    calibrator, bias, calibration_rows, recalibrated = None, (math.nan, math.nan, 0, 0), 0, 0
    if calibration_pool is not None:
        calibration_pool = _subsample(calibration_pool, CALIBRATION_MAX_ROWS, seed)
        own = calibration_pool if own_rows is None else own_rows
        if calibration_pool["label"].nunique() == 2:
            calibrator, recalibrated = _fit_calibrator(calibration_pool, own)
            bias, calibration_rows = _estimate_bias(metric, calibration_pool, own, threshold), len(calibration_pool)
    reference = PerformanceReference(
        metric=metric, higher_is_better=pm.higher_is_better(metric), center=center, center_std=center_std,
        unit_std=unit, chunk_std=float(values.std(ddof=1)) if len(values) >= 2 else math.nan,
        chunk_rows=int(np.median(sizes)) if sizes else 0, n_chunks=len(values), reference_rows=len(pool),
        reference_days=len(rows_per_day), reference_source=source, calibration_rows=calibration_rows,
        estimate_bias=bias[0], estimate_error_std=bias[1], bias_rows=bias[2], bias_blocks=bias[3],
        recalibrated_on_rows=recalibrated, between_day_std=between, spread_days=spread_days)
    return reference, calibrator


def _between_day_std(metric: str, scores: np.ndarray, labels: np.ndarray, day_of_row: np.ndarray, threshold: float,
                     unit: float) -> tuple[float, int]:
    """(std of the metric between days beyond each day's own sampling, days used): the variance of the per-day
    metric, at its SPREAD_CONFIDENCE upper bound, less the mean of unit**2 / rows of those days, floored at 0.
    From 20-odd days the variance's point estimate is itself noisy (it came out 0 on two of five synthetic
    worlds whose days do vary): the bound keeps limits from a short reference wide rather than overconfident.
    NaN with fewer than MIN_DAYS_FOR_SPREAD days on which the metric is defined (a day of one class has no AUC)."""
    values, sizes = [], []
    order = np.argsort(day_of_row, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(day_of_row[order])) + 1):
        if len(rows) < 2:
            continue
        value = pm.realised_metric(metric, scores[rows], labels[rows], threshold)
        if math.isfinite(value):
            values.append(value)
            sizes.append(len(rows))
    if len(values) < MIN_DAYS_FOR_SPREAD or not math.isfinite(unit):
        return math.nan, len(values)
    dof = len(values) - 1
    upper = float(np.var(values, ddof=1)) * dof / stats.chi2.ppf(1 - SPREAD_CONFIDENCE, dof)
    excess = upper - float(np.mean([unit ** 2 / n for n in sizes]))
    return math.sqrt(max(excess, 0.0)), len(values)


def _rows(spec: DatasetSpec, frame: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"day": pd.to_datetime(frame[spec.timestamp]).dt.strftime("%Y-%m-%d").to_numpy(),
                         "score": scores, "label": training.labels(spec, frame).astype(np.float64)})


def _day_rows(rows: pd.DataFrame) -> list[int]:
    return rows.groupby("day", sort=True).size().tolist()


def _subsample(rows: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    return rows if len(rows) <= limit else rows.sample(n=limit, random_state=seed).sort_index()


def _out_of_fold(spec: DatasetSpec, train_frame: pd.DataFrame) -> pd.DataFrame:
    """Scores of the training rows by models that did not see their block of days (at most
    CROSS_FIT_ROWS_PER_DAY rows a day, seeded). A fold whose other blocks hold one class only is left out."""
    frame = train_frame.assign(_day=pd.to_datetime(train_frame[spec.timestamp]).dt.strftime("%Y-%m-%d"))
    shuffled = frame.sample(frac=1.0, random_state=spec.training.seed)
    frame = shuffled[shuffled.groupby("_day").cumcount().to_numpy() < CROSS_FIT_ROWS_PER_DAY].sort_index()
    days = sorted(frame["_day"].unique())
    blocks = [list(b) for b in np.array_split(np.array(days), min(CROSS_FIT_FOLDS, len(days))) if len(b)]
    if len(blocks) < 2:
        return pd.DataFrame(columns=["day", "score", "label"])
    out = []
    for block in blocks:
        inside = frame["_day"].isin(block)
        try:  # a fixed commit string: no git subprocess per fold model
            fold = training.train(spec, spec.training, frame[~inside], git_commit="cross-fit")
        except ValueError:  # one class only in the other blocks
            continue
        held = frame[inside]
        out.append(_rows(spec, held, training.predict_scores(fold.pipeline, spec, held)))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["day", "score", "label"])


def _fit_calibrator(pool: pd.DataFrame, own: pd.DataFrame) -> tuple[Calibrator, int]:
    """Isotonic on the pool; recalibrated on `own` (the version's own held-out rows) when the pool holds other
    models' scores too and `own` has enough rows of both classes. Returns it and the rows it was recalibrated on."""
    calibrator = calibrate(pool["score"], pool["label"], "isotonic")
    others = ~pool["day"].isin(set(own["day"]))
    if others.any() and len(own) >= RECALIBRATION_MIN_ROWS and own["label"].nunique() == 2:
        return recalibrate(calibrator, own["score"], own["label"]), len(own)
    return calibrator, 0


def _estimate_bias(metric: str, pool: pd.DataFrame, own: pd.DataFrame,
                   threshold: float) -> tuple[float, float, int, int]:
    """(row-weighted mean, std) of estimated - realised over blocks of the version's own held-out days, each
    estimated by a calibrator fitted as `_fit_calibrator` fits it without that block, the rows and blocks used."""
    days = sorted(own["day"].unique())
    blocks = [set(b) for b in np.array_split(np.array(days), min(BIAS_BLOCKS, len(days))) if len(b)]
    errors, weights = [], []
    for block in blocks:
        fit_pool, fit_own = pool[~pool["day"].isin(block)], own[~own["day"].isin(block)]
        held = own[own["day"].isin(block)]
        if len(blocks) < 2 or fit_pool["label"].nunique() < 2 or held.empty:
            continue
        calibrator, _ = _fit_calibrator(fit_pool, fit_own)
        s, y = held["score"].to_numpy(), held["label"].to_numpy()
        error = (pm.estimated_metric(metric, calibrator(s), s, threshold) - pm.realised_metric(metric, s, y, threshold))
        if math.isfinite(error):
            errors.append(error)
            weights.append(len(held))
    if not errors:
        return math.nan, math.nan, 0, 0
    errors, weights = np.array(errors), np.array(weights, dtype=float)
    mean = float(np.average(errors, weights=weights))
    spread = float(np.sqrt(np.average((errors - mean) ** 2, weights=weights))) if len(errors) > 1 else math.nan
    return mean, spread, int(weights.sum()), len(errors)
