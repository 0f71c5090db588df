"""`mlops spec draft`: a first dataset spec from a CSV of history, with a comment on every value it chose.

Feature types, ranges and categories come from the whole file (profiled by DuckDB, see `profile`); the task
from the target; the policy from the data's volume (rows a day) and task, so the same rules fit 20 rows a day
and 5 million. Only values that differ from the defaults are written (see `mlops spec keys` for the rest).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field

from mlops_assets.core.config.policies import DeploymentPolicy, GatePolicy, MonitoringPolicy
from mlops_assets.core.config.profile import MAX_CATEGORIES, ColumnProfile, CsvProfile, ProfileError
from mlops_assets.core.config.tasks import CLASSIFICATION, DEFAULT_ESTIMATOR, DEFAULT_KEY_METRIC, REGRESSION

# Rows a candidate's window should hold: enough to fit a boosted model, and benchmark and validation sets
# large enough that a 95 % bootstrap CI of the key metric is a few hundredths wide, not a coin flip.
TRAIN_ROWS, EVAL_ROWS = 2_000, 500
MIN_TRAIN_DAYS = 14  # two of every weekday, whatever the volume
# On a stable day, one day of n independent rows sits up to about this / sqrt(n) reference stds (Wasserstein)
# from the reference through sampling noise alone (0.16 at 500 rows in the synthetic benchmark's stable runs).
NULL_EFFECT_AT_ONE_ROW = 3.6


@dataclass
class DraftOptions:
    timestamp: str
    target: str
    entity_id: str | None = None
    name: str | None = None
    task: str | None = None  # inferred from the target when None
    label_delay_days: int = 1
    categorical: tuple[str, ...] = ()  # numeric-looking columns that are codes (e.g. a weekday 1..7)
    exclude: tuple[str, ...] = ()


@dataclass
class Draft:
    text: str
    task: str
    features: list[str]
    excluded: dict[str, str]  # column -> why it is not a feature
    warnings: list[str] = field(default_factory=list)


def draft_spec(profile: CsvProfile, options: DraftOptions) -> Draft:
    cols = profile.columns
    for flag, names in (("--target", [options.target]), ("--categorical", options.categorical),
                        ("--exclude", options.exclude)):
        missing = [n for n in names if n not in cols]
        if missing:
            raise ProfileError(f"{flag} {', '.join(missing)}: not a column (columns: {', '.join(cols)})")
    target = cols[options.target]
    task, positive, task_why = _task(target, options.task)
    name = options.name or _slug(profile.path)
    rpd = profile.median_rows_per_day
    span_days = (profile.last_day - profile.first_day).days + 1
    warnings = []
    if profile.duplicate_keys:
        keys = "timestamp and entity id" if options.entity_id else "timestamp"
        warnings.append(f"{profile.duplicate_keys} rows repeat another row's {keys}: ingestion rejects a day with "
                        "duplicate keys" + ("" if options.entity_id else "; pass --entity-id if rows are per entity"))

    out = [f"# Drafted by `mlops spec draft` from {_base(profile.path)}: {profile.rows:,} rows, {profile.days_with_rows} "
           f"days with rows ({profile.first_day} .. {profile.last_day}), {rpd:,.0f} rows a day (median).",
           "# Review every value, then `mlops spec check` this file. Keys not written keep their defaults "
           "(`mlops spec keys`).", "", "[dataset]", f"name = {_s(name)}", f"timestamp = {_s(options.timestamp)}"]
    if options.entity_id:
        out.append(f"entity_id = {_s(options.entity_id)}")
    out += [f"target = {_s(options.target)}", f"task = {_s(task)}  # {task_why}"]
    if positive is not None:
        out.append(f"positive_label = {_s(positive)}")
    out += [f"label_delay_days = {options.label_delay_days}  # labels of day D land on D + this: set your feed's",
            f"start_date = {_s(profile.first_day.isoformat())}  # the history's first day",
            f"# end_date = {_s((profile.last_day + dt.timedelta(days=1)).isoformat())}  # the day after the history: set it only if "
            "no new data will come (a historical dataset)"]

    features, excluded, feature_lines = _features(profile, options)
    categoricals = [f for f in features if cols[f].values and (f in options.categorical or not cols[f].is_numeric)]
    out.append(f"# slices = {json.dumps(categoricals[:1])}  # categorical features to evaluate and gate one value "
               "at a time" if categoricals else "# slices: none (only categorical features can be slices)")
    if excluded:
        out.append("# Not features: " + "; ".join(f"{c} ({why})" for c, why in excluded.items()))
    out += feature_lines
    out += _training(rpd, span_days, task)
    out += _gates(rpd, task, target, positive, profile)
    out += _monitoring(rpd)
    out += _deployment(rpd)
    return Draft("\n".join(out) + "\n", task, features, excluded, warnings)


# ------------------------------------------------------------------------------------------------ dataset


def _task(target: ColumnProfile, forced: str | None) -> tuple[str, str | None, str]:
    values = target.values
    binary = 0 < len(values) <= 2
    if forced == REGRESSION or (forced is None and not binary and target.is_numeric):
        if not target.is_numeric:
            raise ProfileError(f"--target {target.name!r}: not every value is a number; regression needs a "
                               "numeric target")
        return REGRESSION, None, ("set by --task" if forced else f"the target has {target.distinct} distinct "
                                                                 "numeric values")
    if not binary:
        raise ProfileError(f"--target {target.name!r} has {target.distinct} distinct values: binary "
                           "classification needs two (multi-class is not supported)")
    # The labels' schema takes 0 and 1 (1 = positive), so a target in other words must be recoded first.
    codes = {_whole(v) for v in values}
    if not codes <= {"0", "1"}:
        raise ProfileError(f"--target {target.name!r} holds {list(values)}: labels must be 0 and 1 (1 = the "
                           "positive outcome); recode the column, or use --task regression for a number")
    share = target.counts.get(next((v for v in values if _whole(v) == "1"), ""), 0) / max(target.non_null, 1)
    why = "set by --task" if forced else "the target holds two values, 0 and 1"
    return CLASSIFICATION, "1", f"{why}; 1 is positive ({share:.1%} of rows)"


def _features(profile: CsvProfile, options: DraftOptions) -> tuple[list[str], dict[str, str], list[str]]:
    roles = {options.timestamp: "the timestamp", options.target: "the target"}
    if options.entity_id:
        roles[options.entity_id] = "the entity id"
    features, excluded, lines = [], {}, []
    for name, col in profile.columns.items():
        why = roles.get(name) or ("--exclude" if name in options.exclude else _not_a_feature(col, profile.rows,
                                                                                         name in options.categorical))
        if why:
            excluded[name] = why
            continue
        features.append(name)
        lines += ["", f"[features.{_key(name)}]"]
        if col.is_numeric and name not in options.categorical:
            lo, hi, note = _bounds(col)
            lines += ['type = "numeric"', f"min = {lo!r}  # {note}", f"max = {hi!r}"]
        else:
            how = "--categorical" if name in options.categorical else f"{len(col.values)} distinct text values"
            lines += ['type = "categorical"', f"categories = {json.dumps(list(col.values))}  # {how}, all the "
                      "history's: another value fails the day's schema check"]
        if col.non_null < profile.rows:
            lines.append(f"nullable = true  # {profile.rows - col.non_null:,} empty values in the history")
    if not features:
        raise ProfileError("no column is left as a feature: name fewer in --exclude")
    return features, excluded, lines


def _not_a_feature(col: ColumnProfile, rows: int, forced_categorical: bool) -> str | None:
    if col.non_null == 0:
        return "always empty"
    if forced_categorical:
        return None if col.values else f"more than {MAX_CATEGORIES} distinct values, too many for categories"
    if col.is_timestamp:
        return "a timestamp"
    if col.is_numeric:
        if col.whole == col.non_null == rows and col.distinct >= rows and rows >= 20:
            return "every value distinct and whole: an identifier? add it back if not"
        return None
    if not col.values:
        return f"about {col.distinct:,} distinct text values: free text or an identifier"
    return None


def _bounds(col: ColumnProfile) -> tuple[float, float, str]:
    """Observed range widened by half its span each side, kept at or above 0 when the history never went below:
    loose enough for ordinary new values, tight enough to reject a unit change or a sign flip."""
    span = (col.high - col.low) or abs(col.high) or 1.0
    lo = col.low - span / 2
    if col.low >= 0:
        lo = max(lo, 0.0)
    hi = col.high + span / 2
    lo, hi = _round(lo, span, math.floor), _round(hi, span, math.ceil)
    kept = ", kept >= 0 as in the history" if col.low >= 0 else ""
    return lo, hi, f"observed {col.low:g} .. {col.high:g}, widened by half the span each side{kept}"


def _round(value: float, span: float, how) -> float:
    step = 10.0 ** (math.floor(math.log10(span)) - 1)  # two significant digits of the span, rounded outwards
    return float(round(how(value / step) * step, 12))


# ------------------------------------------------------------------------------------------------ policies


def _training(rpd: float, span_days: int, task: str) -> list[str]:
    bench = val = max(1, math.ceil(EVAL_ROWS / rpd))
    train = max(MIN_TRAIN_DAYS, math.ceil(TRAIN_ROWS / rpd))
    window = train + val + bench
    note = (f"{train} training days hold >= {TRAIN_ROWS:,} rows (and at least {MIN_TRAIN_DAYS} days: two of each "
            f"weekday); validation and benchmark {val} day(s) each hold >= {EVAL_ROWS} rows")
    if window > span_days // 2:  # leave the history's second half to serve and monitor
        window = max(3, span_days // 2)
        val = bench = max(1, min(val, (window - 1) // 3))
        note = f"capped at half the history ({span_days} days): fewer rows than the {TRAIN_ROWS:,} targeted"
    return ["", "[training]", f"window_days = {window}  # at {rpd:,.0f} rows a day: {note}",
            f"validation_days = {val}", f"benchmark_days = {bench}",
            f"estimator = {_s(DEFAULT_ESTIMATOR[task])}  # the task's default", "seed = 42"]


def _gates(rpd: float, task: str, target: ColumnProfile, positive: str | None, profile: CsvProfile) -> list[str]:
    bench_rows = max(1, math.ceil(EVAL_ROWS / rpd)) * rpd
    lines = ["", "[gates]", f"key_metric = {_s(DEFAULT_KEY_METRIC[task])}  # the task's default"]
    if task == REGRESSION:
        return lines + ["floors = { r2 = 0.0 }  # a first model must beat predicting the benchmark's mean"]
    share = next((n for v, n in target.counts.items() if _whole(v) == positive), 0) / max(target.non_null, 1)
    n1, n0 = max(bench_rows * share, 1.0), max(bench_rows * (1 - share), 1.0)
    chance = math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))  # std of a useless model's AUC on such a benchmark
    floor = min(0.95, math.ceil((0.5 + 2 * chance) * 100) / 100)
    lines.append(f"floors = {{ roc_auc = {floor} }}  # above chance by 2 stds of a useless model's AUC on "
                 f"~{bench_rows:,.0f} benchmark rows")
    # A calibrated model's ECE over 10 bins is sampling noise of about sqrt(p(1-p) * 10 / n) * 0.8.
    noise = math.sqrt(max(share * (1 - share), 0.01) * 10 / bench_rows) * 0.8
    budget = math.ceil(2 * noise * 100) / 100
    if budget > GatePolicy().max_calibration_error:
        lines.append(f"max_calibration_error = {budget}  # twice a calibrated model's ECE noise on "
                     f"~{bench_rows:,.0f} rows")
    return lines


def _monitoring(rpd: float) -> list[str]:
    effect = math.ceil(NULL_EFFECT_AT_ONE_ROW / math.sqrt(rpd) * 100) / 100
    if effect <= MonitoringPolicy().drift_min_effect:
        return []
    return ["", "[monitoring]", f"drift_min_effect = {effect}  # a day of {rpd:,.0f} rows differs from the "
            f"reference by up to ~{NULL_EFFECT_AT_ONE_ROW}/sqrt(rows) stds on a stable day; autocorrelated rows "
            "(a sensor, a price) need more"]


def _deployment(rpd: float) -> list[str]:
    default = DeploymentPolicy()
    first, window = default.canary_steps[0], default.canary_window_days
    seen = rpd * first * window
    if seen >= default.min_rows_per_step:
        return []
    rows = max(20, round(rpd * first * 7))
    return ["", "[deployment]", f"min_rows_per_step = {rows}  # a {first:.0%} canary sees ~{seen:,.1f} rows in "
            f"{window} days: a step holds until about a week of them"]


# ------------------------------------------------------------------------------------------------- format


def _whole(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else value


def _s(text: str) -> str:
    return json.dumps(text)  # a TOML basic string: JSON's escapes are TOML's


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _s(name)


def _slug(path: str) -> str:
    stem = re.sub(r"[^a-z0-9_]+", "_", _base(path).rsplit(".", 1)[0].lower()).strip("_")
    return stem or "my_model"


def _base(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]
