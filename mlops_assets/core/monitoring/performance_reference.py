"""What performance monitoring needs from the reference period, fitted with the model version.

Limits come from the reference's own variability, as NannyML's: the reference rows are cut into chunks of the
same size as a monitoring window (whole days, `performance_min_rows` rows or `performance_max_days` days), the
metric is taken on each, and a window is judged against the chunks' mean minus (plus, for error metrics) k
standard deviations. With fewer than MIN_CHUNKS chunks the spread cannot be measured, and the metric's
sampling interval (bootstrap std at the window's row count) stands in for it.

What k means: the policy's `performance_warn_std` / `performance_error_std` are normal-equivalent, each a
designed one-sided false-alarm probability per judged window, Phi(-k) (k = 3.5 for ERROR: 2.3e-4, so a year
of daily windows on a steady model raises a false ERROR with probability at most 365 x 2.3e-4 = 8.5 %, less
since overlapping windows are not independent). That probability holds when the std is known. A std measured
on n chunks is itself uncertain (from 4 chunks its 95 % interval spans 0.57-3.7 times it), so a window of the
reference's own process falls beyond center +- k std far more often than Phi(-k). The limit is therefore the
prediction bound of a new chunk: a Student t quantile with n - 1 degrees of freedom at the same probability,
times std * sqrt(1 + 1/n) (the window's own spread and the center's, `center_std` = chunk std / sqrt(n)).
Few chunks widen the limits by themselves (ERROR at 3.5: 16.7 std from 4 chunks, 6.2 from 8, 4.2 from 20,
3.75 from 50) and many converge to k.

A window of several days (a low-volume feed) is cut into few chunks: Elec2's 49 reference days give 4 chunks
of 11 days, whose std has 3 degrees of freedom (ERROR at 16.7 std: its performance, which really decays,
never reached ERROR). Its spread is then measured on the reference's days instead: the days resampled whole
into windows (a cluster bootstrap: a day's rows share its conditions, so they do not count as independent
rows), never below the row bootstrap, with d - 1 degrees of freedom for d days (ERROR at 3.8 std from 49
days, 4.1 from 23). This assumes days independent of each other, where chunks also keep week-long runs; a
day holding a whole window keeps the chunk spread. With neither (a reference stored before days were
resampled and fewer than MIN_CHUNKS chunks) the row bootstrap's sampling interval stands in, with k as given.
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
    warn_k: float = math.nan  # stds from the center to each limit: k itself, or its t equivalent (few chunks)
    error_k: float = math.nan


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
    # as unit_std, resampling whole reference days: measured when chunks span several days or are too few
    # (NaN otherwise, and in a reference fitted before it existed)
    day_unit_std: float = math.nan

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

    def limits(self, n_rows: int, warn_std: float, error_std: float) -> Limits:
        """Warn and error limits for a window of `n_rows` rows, `warn_std` / `error_std` stds on the worse side."""
        sampling = self.unit_std / math.sqrt(max(n_rows, 1))
        if math.isfinite(self.day_unit_std):
            dof = self.reference_days - 1
            window_std = max(self.unit_std, self.day_unit_std) / math.sqrt(max(n_rows, 1))
            warn_k, error_k = t_equivalent(warn_std, dof), t_equivalent(error_std, dof)
            source = (f"spread at {n_rows} rows from {self.reference_days} reference days resampled whole "
                      f"({self.reference_source}; {self.n_chunks} chunks of ~{self.chunk_rows} rows); Student t "
                      f"with {dof} degrees of freedom: WARN at {warn_k:.2f}, ERROR at {error_k:.2f} std")
        elif self.n_chunks >= MIN_CHUNKS and math.isfinite(self.chunk_std):
            # a smaller window is noisier than a chunk (iid scaling); a larger one keeps the chunks' day-to-day spread
            window_std = max(self.chunk_std * math.sqrt(max(1.0, self.chunk_rows / max(n_rows, 1))), sampling)
            dof = self.n_chunks - 1
            warn_k, error_k = t_equivalent(warn_std, dof), t_equivalent(error_std, dof)
            source = (f"chunk-to-chunk std over {self.n_chunks} reference chunks of ~{self.chunk_rows} rows "
                      f"({self.reference_source}); Student t with {dof} degrees of freedom: WARN at "
                      f"{warn_k:.2f}, ERROR at {error_k:.2f} std")
        else:
            window_std, warn_k, error_k = sampling, warn_std, error_std
            source = (f"sampling interval at {n_rows} rows: {self.n_chunks} reference chunks "
                      f"({self.reference_rows} rows) are fewer than {MIN_CHUNKS}")
        return _limits(self.center, math.hypot(window_std, _finite(self.center_std)), self.higher_is_better,
                       warn_k, error_k, source)

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: dict) -> "PerformanceReference":
        out = dict(raw)
        for k in ("center", "center_std", "unit_std", "chunk_std", "estimate_bias", "estimate_error_std",
                  "day_unit_std"):
            out[k] = math.nan if out.get(k) is None else float(out[k])
        return cls(**out)


def sampling_limits(metric: str, center: float, unit_std: float, n_rows: int, warn_std: float, error_std: float,
                    why: str) -> Limits:
    """Limits from the sampling interval alone (no chunk spread known)."""
    return _limits(center, unit_std / math.sqrt(max(n_rows, 1)), pm.higher_is_better(metric), warn_std, error_std,
                   f"sampling interval at {n_rows} rows ({why})")


def t_equivalent(k: float, dof: int) -> float:
    """The Student t quantile (`dof` degrees of freedom) with the one-sided tail probability of k normal stds:
    the multiplier that keeps k's false-alarm rate when the std is estimated rather than known."""
    if dof < 1:
        return math.inf
    return float(stats.t.isf(stats.norm.sf(k), dof))


def _limits(center, std, higher_is_better, warn_std, error_std, source) -> Limits:
    worse = -1.0 if higher_is_better else 1.0
    return Limits(center, std, center + worse * warn_std * std, center + worse * error_std * std, source,
                  warn_std, error_std)


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
    day_unit = math.nan
    if len(values) < MIN_CHUNKS or np.median([len(c) for c in chunks]) > 1:  # windows of several days
        day_unit = pm.day_unit_std(lambda i: pm.realised_metric(metric, scores[i], labels[i], threshold), day_of_row,
                                   seed=seed)
    if len(values) >= MIN_CHUNKS and not math.isfinite(day_unit):
        center, center_std = float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))
    else:
        center = pm.realised_metric(metric, scores, labels, threshold)
        center_std = max(unit, _finite(day_unit)) / math.sqrt(len(pool))
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
        recalibrated_on_rows=recalibrated, day_unit_std=day_unit)
    return reference, calibrator


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
