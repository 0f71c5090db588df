"""Serving: batch scoring into the prediction ledger (champion, canary split, shadow), and the daily canary
step that ramps a canary or rolls it back, every step written to the registry's audit log."""

import time

import dagster as dg
import pandas as pd

from ...core.monitoring import reports as monitoring
from ...core.serving.canary import AliasMove, CanaryStateFile, CanaryWindow, step_canary
from ...core.serving.plan import current_plan, load_plan
from ...core.serving.scoring import CpuLatency, ledger_labels, score_batch_timed
from ...core.serving.shadow import shadow_comparison
from ..resources import PortfolioResource
from ..retries import STEP_RETRY_POLICY
from ..scope import OWNERS, ModelScope

ACTOR = "dagster:canary_step"


def _canary_file(project) -> CanaryStateFile:
    return CanaryStateFile(project.paths.deployment_dir / "canary.json")


def _canary_latency(store, days: list[str], canary_version: str) -> tuple[CpuLatency, ...]:
    """The days' CPU timings of this canary against the champion, from their scoring stats."""
    out = []
    for day in days:
        stats = store.read_json("scoring_stats", day) if store.has_document("scoring_stats", day) else {}
        if stats.get("canary") == canary_version and stats.get("canary_latency"):
            out.append(CpuLatency.from_dict(stats["canary_latency"]))
    return tuple(out)


def _step_metadata(metadata: dict) -> dict:
    """The step's metadata with each guardrail's estimate, interval and rows as its own entry (the UI shows them
    side by side), and the whole evidence as JSON."""
    out = {k: v for k, v in metadata.items() if k != "evidence"}
    evidence = metadata.get("evidence")
    if not evidence:
        return out
    out["evidence"] = dg.MetadataValue.json(evidence)
    out["verdicts"] = dg.MetadataValue.json(evidence.get("verdicts", {}))
    for name in ("metric", "latency_ratio", "score_shift"):
        figure = evidence.get(name)
        if figure and None not in (figure["estimate"], figure["low"], figure["high"]):
            out[f"{name}_estimate"] = figure["estimate"]
            out[f"{name}_interval"] = f"{figure['low']:.4g} .. {figure['high']:.4g} ({figure['level']:.0%})"
            out[f"{name}_rows"] = figure["rows"]
    return out


def build_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        key_prefix=scope.key_prefix, partitions_def=scope.daily, deps=[scope.key("feature_table")],
        group_name="serving", owners=OWNERS,
        kinds={"scikitlearn", "parquet"}, code_version="scoring-v1",
        description="Scores the day's feature table with the champion; a canary takes its deterministic hash "
                    "share of entities; a shadow scores every row without being acted on. Writes the "
                    "prediction ledger: entity, timestamp, score, decision, model version, route.",
    )
    def batch_scoring(context: dg.AssetExecutionContext, portfolio: PortfolioResource) -> dg.MaterializeResult:
        project = portfolio.model(scope.name)
        day, registry = context.partition_key, project.registry
        plan = current_plan(registry, _canary_file(project))
        if plan.champion is None:
            raise dg.Failure(f"no champion to score {day} with: train one (train_candidate_job) first",
                             allow_retries=False)
        models = load_plan(plan, registry.load_model)
        champion_version, shadow_version = plan.champion, plan.shadow
        champion, canary, shadow = models.champion, models.canary, models.shadow
        table = project.store.read("feature_table", day)
        cpu, wall = time.process_time(), time.perf_counter()
        rows, latency = score_batch_timed(table, project.spec, champion, canary, shadow,
                                          canary_share=plan.canary_share, salt=plan.canary_salt)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        project.ledger.write(rows, replace_days=True)
        stats = {"rows": len(table), "cpu_seconds": cpu, "wall_seconds": wall, "champion": champion_version,
                 "canary": plan.canary, "canary_share": plan.canary_share,
                 "shadow": shadow_version,
                 # the canary guardrail's latency evidence: interleaved CPU timings of canary and champion
                 "canary_latency": latency.to_dict() if latency else None}
        project.store.write_json("scoring_stats", day, stats)
        routes = rows.groupby("route").size().to_dict()
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(table), "champion": champion_version,
            "canary": f"{canary.version} at {plan.canary_share:.0%}" if canary else "(none)",
            "shadow": shadow_version or "(none)", "rows_by_route": dg.MetadataValue.json(routes),
            "wall_seconds_per_1k": 1000 * wall / max(len(table), 1),
        })

    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        key_prefix=scope.key_prefix, partitions_def=scope.daily, deps=[batch_scoring, scope.key("labeled_examples")],
        group_name="serving", owners=OWNERS,
        kinds={"json"}, code_version="canary-v1",
        description="Judges the running canary once its evaluation window has passed: ramps 5 → 25 → 50 → 100 %, "
                    "completes by promoting it to champion, or rolls it back on any guardrail breach. The "
                    "guardrails were frozen (sha256) when the canary started. Starts a canary when one was "
                    "promoted to the canary alias.",
    )
    def canary_step(context: dg.AssetExecutionContext, portfolio: PortfolioResource) -> dg.MaterializeResult:
        project = portfolio.model(scope.name)
        day, registry, files = context.partition_key, project.registry, _canary_file(project)
        canary_version = registry.version_for("canary")

        def read_window(days: list[str]) -> CanaryWindow:
            rows = pd.concat([project.ledger.day(d) for d in days], ignore_index=True)
            labeled = [d for d in days if project.store.exists("labeled_examples", d)]
            labels = (ledger_labels(project.store.read_many("labeled_examples", labeled), project.spec)
                      if labeled else None)
            reference = monitoring.profile_of(project.registry.load_reference(canary_version))
            return CanaryWindow(rows, labels, reference, _canary_latency(project.store, days, canary_version))

        step = step_canary(files.load(), canary_version=canary_version,
                           champion_version=registry.version_for("champion"), day=day, spec=project.spec,
                           read_window=read_window, actor=ACTOR)
        for act in step.registry_actions:
            if isinstance(act, AliasMove):
                registry.promote(act.version, act.to, actor=act.actor, reason=act.reason)
            else:
                registry.record(act.version, act.action, actor=act.actor, reason=act.reason, details=act.details)
        if step.clear_state:
            files.clear()
        elif step.new_state is not None:
            files.save(step.new_state)
        return dg.MaterializeResult(metadata=_step_metadata(step.metadata))

    @dg.asset(
        retry_policy=STEP_RETRY_POLICY,
        key_prefix=scope.key_prefix, partitions_def=scope.daily, deps=[batch_scoring, scope.key("labeled_examples")],
        group_name="serving", owners=OWNERS,
        kinds={"json"}, code_version="shadow-v1",
        description="When a version holds the shadow alias: its opinions against the decisions served on the same "
                    "rows — agreement, score correlation and distance, and both models' realised metrics once the "
                    "day's labels have landed. Shadow predictions are logged, never acted on.",
    )
    def shadow_report(context: dg.AssetExecutionContext, portfolio: PortfolioResource) -> dg.MaterializeResult:
        project = portfolio.model(scope.name)
        day = context.partition_key
        rows = project.ledger.day(day)
        served = rows[rows["acted_on"]]
        shadow_version = project.registry.version_for("shadow")
        shadow = rows[(rows["route"] == "shadow") & (rows["model_version"] == shadow_version)]
        if shadow_version is None or shadow.empty:
            return dg.MaterializeResult(metadata={"shadow": "(none)", "why": "no shadow model scored this day"})
        labels = (ledger_labels(project.store.read("labeled_examples", day), project.spec)
                  if project.store.exists("labeled_examples", day) else None)
        report = shadow_comparison(served, shadow, labels)
        project.store.write_json("shadow_report", day, report)
        metadata = {"shadow": shadow_version, "rows": report["rows"], "labelled_rows": report["labelled_rows"],
                    "comparison": dg.MetadataValue.json(report)}
        metadata.update({k: report[k] for k in ("agreement_rate", "score_correlation", "mean_abs_score_difference",
                                                 "ks_statistic") if report[k] is not None})
        return dg.MaterializeResult(metadata=metadata)

    return [batch_scoring, canary_step, shadow_report]
