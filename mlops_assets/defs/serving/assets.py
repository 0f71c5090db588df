"""Serving: batch scoring into the prediction ledger (champion, canary split, shadow), and the daily canary
step that ramps a canary or rolls it back, every step written to the registry's audit log."""

import datetime as dt
import time

import dagster as dg
import pandas as pd

from ...core.monitoring import reports as monitoring
from ...core.serving import deployment, rollout
from ..resources import PortfolioResource
from ..scope import OWNERS, ModelScope

ACTOR = "dagster:canary_step"


def _canary_file(project) -> rollout.CanaryStateFile:
    return rollout.CanaryStateFile(project.paths.deployment_dir / "canary.json")


def build_assets(scope: ModelScope) -> list[dg.AssetsDefinition]:
    @dg.asset(
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
        champion_version = registry.version_for("champion")
        if champion_version is None:
            raise dg.Failure(f"no champion to score {day} with: train one (train_candidate_job) first")
        champion = deployment.ServingModel(champion_version, registry.load_model(champion_version))
        state = _canary_file(project).load()
        canary = shadow = None
        if state and registry.version_for("canary") == state.plan.version:
            canary = deployment.ServingModel(state.plan.version, registry.load_model(state.plan.version))
        shadow_version = registry.version_for("shadow")
        if shadow_version:
            shadow = deployment.ServingModel(shadow_version, registry.load_model(shadow_version))
        table = project.store.read("feature_table", day)
        cpu, wall = time.process_time(), time.perf_counter()
        rows = deployment.score_batch(table, project.spec, champion, canary, shadow,
                                      canary_share=state.share if canary else 0.0,
                                      salt=state.plan.salt if canary else "")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        project.ledger.write(rows, replace_days=True)
        stats = {"rows": len(table), "cpu_seconds": cpu, "wall_seconds": wall, "champion": champion_version,
                 "canary": canary.version if canary else None, "canary_share": state.share if canary else 0.0,
                 "shadow": shadow_version}
        project.store.write_json("scoring_stats", day, stats)
        routes = rows.groupby("route").size().to_dict()
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(table), "champion": champion_version,
            "canary": f"{canary.version} at {state.share:.0%}" if canary else "(none)",
            "shadow": shadow_version or "(none)", "rows_by_route": dg.MetadataValue.json(routes),
            "wall_seconds_per_1k": 1000 * wall / max(len(table), 1),
        })

    @dg.asset(
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
        state = files.load()
        canary_version = registry.version_for("canary")
        if canary_version and (state is None or state.plan.version != canary_version):
            next_day = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
            state = rollout.begin(project.spec, canary_version, registry.version_for("champion"), next_day)
            files.save(state)
            registry.record(canary_version, "canary_start", actor=ACTOR, reason=f"canary starts on {next_day}",
                            details={"plan_sha256": state.plan.sha256, "share": state.share,
                                     "criteria": state.plan.terms()["criteria"]})
            return dg.MaterializeResult(metadata={"action": "start", "version": canary_version,
                                                  "share": state.share, "plan_sha256": state.plan.sha256})
        if state is None or canary_version is None:
            files.clear()
            return dg.MaterializeResult(metadata={"action": "none", "why": "no canary running"})
        window = [d.isoformat() for d in pd.date_range(state.step_started, day).date]
        rows = pd.concat([project.ledger.day(d) for d in window], ignore_index=True)
        labeled = [d for d in window if project.store.exists("labeled_examples", d)]
        labels = (deployment.ledger_labels(project.store.read_many("labeled_examples", labeled), project.spec)
                  if labeled else None)
        reference = monitoring.profile_of(registry.load_reference(canary_version))
        decision = rollout.canary_step(state, day, rows, labels, latency_ratio=None, score_reference=reference)
        if decision is None:
            return dg.MaterializeResult(metadata={"action": "wait", "share": state.share,
                                                  "window_started": state.step_started})
        reason = "; ".join(decision.reasons) or decision.action
        if decision.action == "rollback":
            registry.promote(canary_version, "archived", actor=ACTOR, reason=f"canary rolled back: {reason}")
            files.clear()
        elif decision.action == "complete":
            registry.promote(canary_version, "champion", actor=ACTOR, reason=f"canary completed: {reason}")
            files.clear()
        elif decision.action == "ramp":
            registry.record(canary_version, "canary_ramp", actor=ACTOR, reason=reason,
                            details={"from": decision.share, "to": decision.next_share, "evidence": decision.evidence})
            state.share = decision.next_share
            state.step_started = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
            files.save(state)
        else:
            registry.record(canary_version, "canary_hold", actor=ACTOR, reason=reason,
                            details={"share": decision.share, "evidence": decision.evidence})
        return dg.MaterializeResult(metadata={"action": decision.action, "version": canary_version,
                                              "share": decision.share, "next_share": decision.next_share,
                                              "reasons": reason, "evidence": dg.MetadataValue.json(decision.evidence)})

    @dg.asset(
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
        labels = (deployment.ledger_labels(project.store.read("labeled_examples", day), project.spec)
                  if project.store.exists("labeled_examples", day) else None)
        report = deployment.shadow_comparison(served, shadow, labels)
        project.store.write_json("shadow_report", day, report)
        metadata = {"shadow": shadow_version, "rows": report["rows"], "labelled_rows": report["labelled_rows"],
                    "comparison": dg.MetadataValue.json(report)}
        metadata.update({k: report[k] for k in ("agreement_rate", "score_correlation", "mean_abs_score_difference",
                                                 "ks_statistic") if report[k] is not None})
        return dg.MaterializeResult(metadata=metadata)

    return [batch_scoring, canary_step, shadow_report]
