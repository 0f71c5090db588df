"""Monitoring: one report per day and axis — data drift, prediction drift, performance, cost — each with a
check whose severity follows relative thresholds from the spec, and whose description is its runbook."""

import functools

import dagster as dg

from ...core.monitoring import reports as monitoring
from ...core.monitoring.drift import (CONFIRM_DAYS, confirm_drift, drift_report, earlier_days, earlier_reports,
                                      prediction_drift)
from ...core.monitoring.drift_plots import drift_plots, prediction_drift_plot
from ...core.monitoring.served import CostSummary, NothingServed, served_rows, window_day_reader
from ..metadata import table
from ..resources import PortfolioResource
from ..retries import STEP_RETRY_POLICY
from ..scope import OWNERS, ModelScope

SEVERITY = {"WARN": dg.AssetCheckSeverity.WARN, "ERROR": dg.AssetCheckSeverity.ERROR}
RUNBOOKS = {
    "data_drift_ok": "Runbook: open data_drift_report; `reason` says why the status is what it is, the per-feature "
                     "table gives each feature's effect against its floor (how far the training data's own days "
                     "sit from it), the importance weight and whether it drifted; the plots compare reference and "
                     "today. WARN: a monitored feature moved, but the model leans little on it — often a pipeline "
                     "bug (units, a new default value, a join) → fix upstream and re-deliver; or it leans on them "
                     "but they moved on this day only (`day_status` ERROR): watch the next days. ERROR: features "
                     "the model leans on moved, and had already moved on an earlier day → the retrain sensor "
                     "requests a candidate (once per cooldown); review its gates before promoting.",
    "prediction_drift_ok": "Runbook: the champion's score distribution moved against its training scores. Check "
                           "data_drift_report for the cause; if inputs are stable, suspect concept drift and "
                           "watch performance_report as labels land.",
    "performance_ok": "Runbook: the key metric over the trailing window (`realised` once labels land, else "
                      "`estimated` from calibrated scores, less its measured bias) against limits from the "
                      "reference period's own chunk-to-chunk spread (`limits_source`). Past the ERROR limit on "
                      "the worse side → a retrain is requested; if the candidate fails its gates, consider "
                      "rolling back (`mlops rollback`) to the last known-good champion.",
    "cost_ok": "Runbook: scoring time per 1,000 predictions against the champion's benchmark latency. Look for a "
               "larger model, a slower feature path or a starved machine; retraining counts are shown too.",
}


def _check(scope: ModelScope, name: str, asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=scope.key(asset), partitions_def=scope.daily, description=RUNBOOKS[name])


def _served(project, day: str):
    """The day's acted-on rows of the serving model, that version, its monitoring reference, and metadata on
    what was left out (rows of another version after a promotion during the day; repeated decisions)."""
    try:
        served = served_rows(project.ledger.day(day), day)
    except NothingServed as exc:
        raise dg.Failure(f"{exc}: run batch_scoring first", allow_retries=False) from None
    left_out = {"served_rows": len(served.rows)}
    if served.other_versions:
        left_out["other_versions_rows"] = dg.MetadataValue.json(dict(served.other_versions))
    if served.repeated_rows:
        left_out["repeated_decisions_left_out"] = served.repeated_rows
    return served.rows, served.version, project.registry.load_reference(served.version), left_out


def _result(name: str, status: str, metadata: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=name, passed=status == "OK", severity=SEVERITY.get(status, SEVERITY["WARN"]),
                               metadata={"status": status, **metadata})


def build_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    feature_table, labeled_examples = scope.key("feature_table"), scope.key("labeled_examples")
    batch_scoring = scope.key("batch_scoring")
    # Every report: one per day of this model, in the monitoring group.
    report = functools.partial(dg.asset, retry_policy=STEP_RETRY_POLICY, key_prefix=scope.key_prefix, partitions_def=scope.daily,
                               group_name="monitoring", owners=OWNERS)

    # the day's features and the previous CONFIRM_DAYS days' (what confirms an ERROR-level day): declared, so a
    # backfill materialises those feature tables before this report reads them
    earlier_features = dg.AssetDep(feature_table, partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-CONFIRM_DAYS))

    @report(deps=[earlier_features, batch_scoring], kinds={"scipy", "json"}, code_version="data-drift-v3",
            check_specs=[_check(scope, "data_drift_ok", "data_drift_report")],
            description="Per-feature drift of the day's inputs against the serving model's training profile: "
                        "KS / chi-square by type and size, Benjamini-Hochberg across features, Wasserstein / "
                        "Jensen-Shannon effects against per-feature floors from the training data's own "
                        "day-to-day spread. ERROR by the drifting features' importance weight, once one of "
                        "them drifted on one of the two previous days with rows too (read from the stored "
                        "feature tables); WARN on any monitored feature drifting, even one the model ignores.")
    def data_drift_report(context: dg.AssetExecutionContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        day = context.partition_key
        _, version, reference, _ = _served(project, day)
        profile = monitoring.profile_of(reference)
        current = project.store.read("feature_table", day)
        report = drift_report(profile, current, project.spec.monitoring)
        if report.day_status == "ERROR":  # an ERROR needs its features drifting on an earlier day too
            earlier = earlier_days(day, project.store.partitions("feature_table"))
            report = confirm_drift(report, earlier_reports(profile, earlier,
                                                           lambda d: project.store.read("feature_table", d),
                                                           project.spec.monitoring))
        project.store.write_json("data_drift_report", day, {"model_version": version, **report.to_dict()})
        frame = report.to_frame()[["feature", "drifted", "effect_size", "floor", "floor_source", "weight", "monitored",
                                   "effect_name", "test", "p_adjusted", "psi"]]
        frame = frame.sort_values(["drifted", "weight"], ascending=False)
        # Plot what a person should look at: the drifting features, heaviest first, else the one the model leans
        # on most (each plot costs ~0.3 s, paid every day).
        by_weight = sorted(report.features, key=lambda f: -f.weight)
        shown = [f.feature for f in by_weight if f.drifted and f.monitored][:4] or [by_weight[0].feature]
        plots = drift_plots(profile, current, shown)
        drifted = ", ".join(report.drifted_features) or "(none)"
        # an ERROR-level day says which earlier day confirmed it, or that none did (then the status is WARN)
        confirmation = {"day_status": report.day_status, "compared_with_day": report.previous_day or "(none)"} \
            if report.day_status == "ERROR" else {}
        yield dg.MaterializeResult(metadata={
            "model_version": version, "status": report.status, "reason": report.reason,
            "drift_share": report.drift_share, "drifted_features": drifted, **confirmation,
            "features": table(frame, significant=4),
            "plots": dg.MetadataValue.md("\n\n".join(f"### {k}\n{v}" for k, v in plots.items())),
        })
        yield _result("data_drift_ok", report.status, {
            "reason": report.reason, "drift_share": report.drift_share, "drifted_features": drifted,
            "error_at": project.spec.monitoring.error_drift_share, **confirmation})

    @report(deps=[batch_scoring],
            kinds={"scipy", "json"}, code_version="prediction-drift-v2",
            check_specs=[_check(scope, "prediction_drift_ok", "prediction_drift_report")],
            description="The champion's score distribution today against its scores on the training data.")
    def prediction_drift_report(context: dg.AssetExecutionContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        day = context.partition_key
        rows, version, reference, left_out = _served(project, day)
        profile = monitoring.profile_of(reference)
        result = prediction_drift(profile, rows["score"].to_numpy(float), project.spec.monitoring)
        status = "WARN" if result.drifted else "OK"
        project.store.write_json("prediction_drift_report", day, {"model_version": version, **result.to_dict()})
        yield dg.MaterializeResult(metadata={
            "model_version": version, "ks_statistic": result.statistic, "p_value": result.p_value,
            "wasserstein_std": result.effect_size, "floor": result.floor, "floor_source": result.floor_source,
            "mean_score": float(rows["score"].mean()), **left_out,
            "plot": dg.MetadataValue.md(prediction_drift_plot(profile, rows["score"].to_numpy(float)))})
        yield _result("prediction_drift_ok", status, {"effect_size": result.effect_size, "floor": result.floor,
                                                      "p_value": result.p_value})

    @report(deps=[batch_scoring, labeled_examples],
            kinds={"json"}, code_version="performance-v2",
            check_specs=[_check(scope, "performance_ok", "performance_report")],
            description="The key metric over a trailing window of days holding enough rows: realised on the rows "
                        "whose labels landed, else a label-free estimate from calibrated scores (CBPE), judged "
                        "against limits from the reference period's chunk-to-chunk variability.")
    def performance_report(context: dg.AssetExecutionContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        day, spec_ = context.partition_key, project.spec
        rows, version, reference, left_out = _served(project, day)
        read_day = window_day_reader(project.ledger, project.store, spec_, version, today=(day, rows))
        window = monitoring.collect_window(day, read_day, spec_.monitoring)
        perf = monitoring.judge_performance(spec_, reference, window, spec_.monitoring)
        project.store.write_json("performance_report", day, {"model_version": version, **perf.to_dict()})
        shown = ("metric", "judged", "realised", "estimated", "estimate_bias", "estimate_bias_interval",
                 "estimate_correction", "reference_level", "warn_limit",
                 "error_limit", "limits_source", "window_first_day", "window_last_day", "window_days", "window_rows",
                 "labelled_rows", "label_coverage", "baseline", "message")
        metadata = {"model_version": version, "status": perf.status, **{k: getattr(perf, k) for k in shown},
                    **left_out}
        yield dg.MaterializeResult(metadata={k: v for k, v in metadata.items() if v is not None})
        yield _result("performance_ok", perf.status, {k: v for k, v in {
            "metric": perf.metric, "judged": perf.judged, "value": perf.value, "worse_by": perf.worse_by,
            "warn_at": perf.warn_limit, "error_at": perf.error_limit, "limits_source": perf.limits_source,
            "window_rows": perf.window_rows, "message": perf.message}.items() if v is not None})

    @report(deps=[batch_scoring], kinds={"json"},
            code_version="cost-v1", check_specs=[_check(scope, "cost_ok", "cost_report")],
            description="Scoring CPU and wall time per 1,000 predictions against the same champion's first "
                        "served days, model size, and retraining count and time so far.")
    def cost_report(context: dg.AssetExecutionContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        day = context.partition_key
        _, version, reference, _ = _served(project, day)
        store = project.store
        stats = store.read_json("scoring_stats", day)
        summary = CostSummary(store, project.monitoring_file("cost_summary.json"))
        history = summary.history(version, day)  # reads only the documents new or changed since the last report
        for unreadable in summary.unreadable:
            context.log.warning(f"left out of the cost history, cannot be read: {unreadable}")
        cost = monitoring.cost_day(reference, stats, history.scoring, retrains=history.retrains,
                                   retrain_seconds=history.retrain_seconds, policy=project.spec.monitoring)
        project.store.write_json("cost_report", day, {"model_version": version, **cost})
        yield dg.MaterializeResult(metadata={k: v for k, v in cost.items() if k != "status" and v is not None})
        yield _result("cost_ok", cost["status"], {"wall_ratio_to_baseline": cost["wall_ratio_to_baseline"]})

    return [data_drift_report, prediction_drift_report, performance_report, cost_report]
