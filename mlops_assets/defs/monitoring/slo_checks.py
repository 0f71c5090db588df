"""Loop-health SLOs as asset checks: the unattended loop says when it is stalled.

Five checks, each on the asset whose part of the loop it watches (raw_batch, batch_scoring, labeled_examples,
candidate_model, model_promotion); the decisions are core/monitoring/slo.py's, from dates gathered here. The
model's loop-health schedule evaluates all five each morning and writes its tick time into the run's
`mlops/slo_now` tag: that is "now" — the wall clock under the daemon, the replayed morning under `make demo`.
Only that job evaluates them: the other jobs' selections and the landing sensor's run requests leave them out
(ModelScope.without_loop_health), because a check of an unpartitioned SLO in a partitioned run is left planned
for that partition. A run that does evaluate them outside the schedule (a person launching the job) judges as of
the schedule's latest tick (`slo.loop_now`). Each check reads only what its SLO needs.

For a live feed (a model whose partitions have no end_date) Dagster's own time-partition freshness check on
raw_batch runs in the same job: it judges by the wall clock, which is right for a live feed and meaningless
for a replay of 1997, so historical datasets do not get it (their data freshness SLO follows the replay's
clock). It is evaluated by this schedule rather than `build_sensor_for_freshness_checks`, whose untargeted
run requests the replay's runner does not execute and whose clock cannot be replayed.
"""

import datetime as dt
import warnings

import dagster as dg
from dagster._time import get_current_datetime  # Dagster's clock: its freshness check and tests' freeze_time use it

from ...core.monitoring import slo
from ..resources import PortfolioResource
from ..scope import ModelScope

NOW_TAG = "mlops/slo_now"
TRIGGER_TAG = "mlops/trigger"  # set by the retrain sensor on every run it requests

CHECKED_ASSET = {
    slo.DATA_FRESHNESS: "raw_batch",
    slo.PREDICTION_STALENESS: "batch_scoring",
    slo.LABEL_COVERAGE: "labeled_examples",
    slo.RETRAINING_CADENCE: "candidate_model",
    slo.CHAMPION_AGE: "model_promotion",
}

RUNBOOKS = {
    slo.DATA_FRESHNESS:
        "Loop-health SLO, data freshness: the last complete day's features must be ingested (raw batch "
        "stored) within [slo] max_ingest_delay_days. Fails naming the first day not ingested. Look at: the landing "
        "zone (is the day's features file there?), the landing sensor's ticks, the quarantine folder and the "
        "raw_batch_matches_spec check (a rejected file withdraws the day), failed runs of raw_batch. Do: have the "
        "producer deliver or re-deliver the file (the landing sensor picks it up by its hash), or backfill the "
        "days with the daily_ingestion_job.",
    slo.PREDICTION_STALENESS:
        "Loop-health SLO, prediction staleness: the champion must have scored the last complete day within "
        "[slo] max_scoring_delay_days. Fails naming the first day without predictions. Look at: the daily "
        "monitoring schedule's ticks (skipped: no feature table, or no champion), failed batch_scoring runs, and "
        "slo_data_freshness (nothing ingested, nothing to score). Do: fix the cause, then run the "
        "score_and_monitor_job for each missing day (a backfill over the partitions).",
    slo.LABEL_COVERAGE:
        "Loop-health SLO, label coverage: labels of every ingested day of the last training window must land "
        "within label_delay_days + [slo] label_grace_days. Fails naming the oldest day without labels. Without "
        "them the next retrain's window is incomplete (training fails naming the same days) and monitoring "
        "stays on estimated performance. Look at: the landing zone for labels_YYYY-MM-DD.csv, the "
        "raw_labels_matches_spec check, failed raw_labels / labeled_examples runs. Do: have the label source "
        "deliver the days; a day that will never be labeled needs a decision (shorter window, or accept it).",
    slo.RETRAINING_CADENCE:
        "Loop-health SLO, retraining cadence: every retrain the retrain sensor requested (runs tagged "
        "mlops/trigger) must produce a candidate trained on the data it asked for within label_delay_days + "
        "[slo] max_retrain_wait_days of its incident. Fails naming the request, its run and status. Look at: the "
        "run (QUEUED or NOT_STARTED: is the daemon or run queue stuck? FAILURE: training_set names missing "
        "labeled days, or candidate_model failed), the retrain sensor's ticks. Do: fix the cause and re-run the "
        "train_candidate_job for the request's as-of date.",
    slo.CHAMPION_AGE:
        "Loop-health SLO, champion age (WARN): the champion's as-of date (the last day of data it learnt from) "
        "must be within [slo] max_champion_age_days of now. Fails naming its age and any newer versions. Look "
        "at: `mlops models` (newer candidates waiting for a person? a canary stuck or rolled back?), their gate "
        "reports, and whether retrains are being requested at all (no drift or performance alarm requests none). "
        "Do: promote a passing candidate (`mlops promote VERSION --to canary`), request a retrain "
        "(train_candidate_job as of the latest labeled day), or raise the limit if the world is that stable.",
}


def _dates(values) -> frozenset[dt.date]:
    return frozenset(dt.date.fromisoformat(v) for v in values)


def retrain_requests(instance: dg.DagsterInstance, scope: ModelScope, limit: int = 500) -> list[slo.RetrainRequestInfo]:
    """The model's retrain requests: the train_candidate_job runs the retrain sensor tagged with their trigger,
    in any status (a queued run that never starts is a request nobody answered)."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=scope.named("train_candidate_job"),
                                                   tags={"mlops/model": scope.name}), limit=limit)
    out = []
    for run in runs:
        trigger, partition = run.tags.get(TRIGGER_TAG), run.tags.get("dagster/partition")
        if trigger and partition:
            as_of = dt.date.fromisoformat(partition)
            out.append(slo.RetrainRequestInfo(slo.incident_day_of(trigger, as_of), as_of, trigger, run.run_id,
                                              run.status.value))
    return out


def latest_seen_day(project) -> dt.date | None:
    """The latest day the loop has seen anything of: delivered to the landing zone, quarantined or stored."""
    days = [p for asset in ("raw_batch", "raw_labels", "feature_table", "labeled_examples")
            for p in project.store.partitions(asset)[-1:]]
    files, _ = project.landing.list_files()
    days += [f.partition for f in files] + [r.partition for r in project.quarantine.records()]
    return dt.date.fromisoformat(max(days)) if days else None


def loop_state(project, instance: dg.DagsterInstance, scope: ModelScope, now: dt.datetime,
               names=slo.SLOS) -> slo.LoopState:
    """The dates the SLOs `names` need (the registry and the run list only when one of them reads it)."""
    spec, store = project.spec, project.store
    versions, champion, requests = (), None, ()
    if slo.NEEDS_REGISTRY & set(names):
        registered = [slo.VersionInfo(v.version, slo.as_of_of(v.version, v.lineage))
                      for v in project.registry.list_versions()]
        # a candidate trained but not (yet) evaluated and registered answers a retrain request too
        known = {v.version for v in registered}
        trained = [slo.VersionInfo(doc["version"], dt.date.fromisoformat(p))
                   for p in store.documents("candidate_model") for doc in [store.read_json("candidate_model", p)]
                   if doc.get("version") not in known]
        versions = tuple(registered + trained)
        champion_name = project.registry.version_for("champion")
        champion = next((v for v in registered if v.version == champion_name), None)
    if slo.NEEDS_REQUESTS & set(names):
        requests = tuple(retrain_requests(instance, scope))
    return slo.LoopState(
        now=now, start_date=spec.start_date, end_date=spec.end_date,
        # a day is ingested once its raw batch is stored (the check on raw_batch runs before the run builds the
        # day's feature table) or its feature table is built (history loaded straight into the warehouse)
        ingested_days=_dates(store.partitions("raw_batch")) | _dates(store.partitions("feature_table")),
        scored_days=_dates(store.documents("scoring_stats")),
        labeled_days=_dates(store.partitions("labeled_examples")), label_delay_days=spec.label_delay_days,
        window_days=spec.training.window_days, champion=champion, versions=versions, retrain_requests=requests,
    )


def last_tick(instance: dg.DagsterInstance, scope: ModelScope) -> str | None:
    """The tick time of the latest run the model's loop-health schedule launched."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=scope.named("loop_health_job"),
                                                   tags={"dagster/schedule_name": scope.named("loop_health_schedule")}),
                             limit=1)
    return runs[0].tags.get(NOW_TAG) if runs else None


def evaluation_now(tags: dict, instance: dg.DagsterInstance, scope: ModelScope, project,
                   wall_clock: dt.datetime | None = None) -> tuple[dt.datetime, str]:
    return slo.loop_now(tags.get(NOW_TAG), None if tags.get(NOW_TAG) else last_tick(instance, scope),
                        wall_clock or get_current_datetime(), project.spec.end_date,
                        lambda: latest_seen_day(project), project.spec.slo.evaluation_hour_utc)


def build_slo_checks(scope: ModelScope) -> dg.AssetChecksDefinition:
    specs = [dg.AssetCheckSpec(name, asset=scope.key(asset), description=RUNBOOKS[name])
             for name, asset in CHECKED_ASSET.items()]

    @dg.multi_asset_check(specs=specs, name=scope.named("loop_health_slos"), can_subset=True)
    def loop_health_slos(context: dg.AssetCheckExecutionContext, portfolio: PortfolioResource):
        project = portfolio.model(scope.name)
        now, source = evaluation_now(context.run.tags, context.instance, scope, project)
        names = {key.name for key in context.selected_asset_check_keys}
        state = loop_state(project, context.instance, scope, now, names)
        for result in slo.evaluate(state, project.spec.slo, names):
            yield dg.AssetCheckResult(
                asset_key=scope.key(CHECKED_ASSET[result.name]), check_name=result.name, passed=result.passed,
                severity=dg.AssetCheckSeverity[result.severity], description=result.message,
                metadata={"summary": result.message, "now_from": source, **result.metadata})

    return loop_health_slos


def build_freshness_checks(scope: ModelScope) -> list[dg.AssetChecksDefinition]:
    """Dagster's own freshness check on raw_batch, for live feeds only (see the module docstring)."""
    if scope.spec.end_date is not None:
        return []
    hour = scope.spec.slo.evaluation_hour_utc
    # Dagster marks this factory superseded by FreshnessPolicy, which is attached to the asset itself (raw_batch
    # belongs to ingestion) and evaluated by the daemon on the wall clock; this check runs in the loop-health job.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return list(dg.build_time_partition_freshness_checks(assets=[scope.key("raw_batch")],
                                                             deadline_cron=f"0 {hour} * * *", timezone="UTC"))


def check_keys(scope: ModelScope) -> list[dg.AssetCheckKey]:
    keys = [scope.check_key(asset, name) for name, asset in CHECKED_ASSET.items()]
    return keys + [key for checks in build_freshness_checks(scope) for key in checks.check_keys]


def build_loop_health_job(scope: ModelScope):
    return dg.define_asset_job(
        scope.named("loop_health_job"), selection=dg.AssetSelection.checks(*check_keys(scope)), tags=scope.run_tags,
        description=f"Evaluate {scope.name}'s loop-health SLOs (data freshness, prediction staleness, label "
                    "coverage, retraining cadence, champion age); materialises nothing.")


def build_loop_health_schedule(scope: ModelScope) -> dg.ScheduleDefinition:
    hour = scope.spec.slo.evaluation_hour_utc

    @dg.schedule(name=scope.named("loop_health_schedule"), job_name=scope.named("loop_health_job"),
                 cron_schedule=f"0 {hour} * * *", execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Each morning, judge whether every part of {scope.name}'s loop kept up, as of the "
                             "tick's time (the replayed morning in a replay).")
    def loop_health_schedule(context: dg.ScheduleEvaluationContext):
        now = context.scheduled_execution_time or get_current_datetime()
        now = now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
        return dg.RunRequest(run_key=f"loop-health:{now.isoformat()}",
                             tags={NOW_TAG: now.isoformat(), "mlops/model": scope.name})

    return loop_health_schedule
