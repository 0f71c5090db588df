"""`mlops models`, `show`, `promote`, `rollback`, `audit`: the registry from a shell."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from mlops_assets.cli import (Handler, actor_from_args, add_actor_option, add_registry_options, format_table,
                              portfolio, registry_from_args, subcommand, warn_about_files)
from mlops_assets.core.evaluation.gate_names import check_of
from mlops_assets.core.config.settings import SettingsError
from mlops_assets.core.config.spec import SpecError
from mlops_assets.core.registry.model_registry import PROMOTION_TARGETS, ModelRegistry, ModelVersion

# ------------------------------------------------------------------------------------------------ models


def key_metric_of(record: ModelVersion) -> tuple[str, float | None]:
    """The version's key metric and its value, wherever the registering code put them."""
    name = record.key_metric or record.metrics.get("key_metric") or record.gate_report.get("key_metric") or ""
    if not name:
        name = _spec_key_metric(record.dataset)
    places = [record.metrics, record.metrics.get("metrics"), (record.metrics.get("candidate") or {}).get("metrics")]
    for place in places:
        if isinstance(place, dict) and name in place:
            value = place[name]
            value = value.get("value") if isinstance(value, dict) else value
            return name, value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return name, None


def _spec_key_metric(dataset: str) -> str:
    try:
        models = portfolio().models
    except (SettingsError, SpecError, OSError):
        return ""
    return models[dataset].spec.key_metric if dataset in models else ""


def _metric_text(record: ModelVersion) -> str:
    name, value = key_metric_of(record)
    if not name:
        return "-"
    return f"{name}={value:.4f}" if value is not None else f"{name}=?"


def _gates_text(record: ModelVersion) -> str:
    return "passed" if record.gates_passed else "FAILED"


@subcommand("models", "List the models (champion, canary, shadow) and their versions with aliases, key metric, gates.")
def _build_models(parser: argparse.ArgumentParser) -> Handler:
    add_registry_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def run(args: argparse.Namespace) -> int:
        registry = registry_from_args(args)
        records = registry.list_versions()
        warn_about_files(registry, records)
        if args.json:
            print(json.dumps([asdict(r) for r in records], indent=2, default=str))
            return 0
        print(format_table(["MODEL", "TASK", "CHAMPION", "CANARY", "SHADOW", "VERSIONS"],
                           _model_rows(registry, records, args.model)))
        if not records:
            print("\nno model versions registered yet")
            return 0
        rows = [[r.dataset, r.version, ",".join(r.aliases) or "-", _metric_text(r), _gates_text(r),
                 r.created_at[:19]] for r in records]
        print()
        print(format_table(["MODEL", "VERSION", "ALIASES", "KEY METRIC", "GATES", "CREATED (UTC)"], rows))
        return 0

    return run


def _model_rows(registry: ModelRegistry, records: list[ModelVersion], only: str | None) -> list[list[str]]:
    """One row per model: those of the portfolio's specs and any other the registry holds."""
    try:
        tasks = {name: m.spec.task for name, m in portfolio().models.items()}
    except (SettingsError, SpecError, OSError):
        tasks = {}
    tasks.update({r.dataset: r.task for r in records})
    rows = []
    for name in sorted(tasks):
        if only and name != only:
            continue
        holders = {r.aliases[0]: r.version for r in records if r.dataset == name and r.aliases}
        rows.append([name, tasks[name], holders.get("champion", "-"), holders.get("canary", "-"),
                     holders.get("shadow", "-"), str(sum(r.dataset == name for r in records))])
    return rows


# -------------------------------------------------------------------------------------------------- show


@subcommand("show", "Show one version: lineage, metrics, gate report and alias history.")
def _build_show(parser: argparse.ArgumentParser) -> Handler:
    add_registry_options(parser)
    parser.add_argument("version")
    parser.add_argument("--json", action="store_true", help="print JSON")

    def run(args: argparse.Namespace) -> int:
        registry = registry_from_args(args)
        record = registry.get(args.version)
        history = registry.alias_history(args.version)
        warn_about_files(registry, [record])
        if args.json:
            print(json.dumps({**asdict(record), "alias_history": [asdict(h) for h in history]}, indent=2,
                             default=str))
            return 0
        art = record.artifact
        print(format_table(["FIELD", "VALUE"], [
            ["version", record.version],
            ["dataset", f"{record.dataset} ({record.task})"],
            ["registered", f"{record.created_at} by {record.registered_by}, run {record.run_id}"],
            ["aliases", ", ".join(record.aliases) or "-"],
            ["key metric", _metric_text(record)],
            ["gates", _gates_text(record)],
            ["artifact", f"{art.path} ({art.size_bytes} bytes)"],
            ["sha256", art.sha256],
            ["monitoring reference", f"{record.reference.path} (sha256 {record.reference.sha256})"
                                     if record.reference else "-"],
        ]))
        results = (record.gate_report or {}).get("results", [])
        if results:  # named as the UI's gate checks show them, then the criterion
            print("\ngates:")
            print(_indent(format_table(["CHECK", "CRITERION", "RESULT", "MESSAGE"], [
                [check_of(r["name"]) or "-", r["name"], "passed" if r["passed"] else "FAILED", r["message"]]
                for r in results])))
        for title, section in (("lineage", record.lineage), ("metrics", record.metrics),
                               ("gate report", record.gate_report)):
            print(f"\n{title}:")
            print(_indent(json.dumps(section, indent=2, sort_keys=True, default=str)))
        print("\nalias history:")
        print(_indent(format_table(
            ["ALIAS", "FROM", "BY", "UNTIL", "ENDED BY"],
            [[h.alias, h.started_at[:19], h.started_by, (h.ended_at or "now")[:19],
              f"{h.end_action} ({h.ended_by})" if h.end_action else "-"] for h in history])))
        return 0

    return run


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# ------------------------------------------------------------------------------------- promote, rollback


@subcommand("promote", "Move a version to an alias; gate failures need --force and --reason.")
def _build_promote(parser: argparse.ArgumentParser) -> Handler:
    add_registry_options(parser)
    add_actor_option(parser)
    parser.add_argument("version")
    parser.add_argument("--to", required=True, choices=PROMOTION_TARGETS)
    parser.add_argument("--force", action="store_true", help="override failed promotion gates (needs --reason)")
    parser.add_argument("--reason", default="", help="why; recorded in the audit log")

    def run(args: argparse.Namespace) -> int:
        registry = registry_from_args(args)
        was_champion = args.to == "archived" and "champion" in registry.get(args.version).aliases
        replaced = registry.promote(args.version, args.to, actor=actor_from_args(args), reason=args.reason,
                                    force=args.force)
        if was_champion:
            return _retired(registry, args.version)
        note = ""
        if replaced:
            note = f" (previous {args.to} {replaced} " + ("archived)" if args.to == "champion" else "unassigned)")
        print(f"{args.version} is now {args.to}{note}")
        return 0

    return run


@subcommand("retire", "Archive the champion on purpose, leaving its model without one (audited, needs --reason).")
def _build_retire(parser: argparse.ArgumentParser) -> Handler:
    add_registry_options(parser)
    add_actor_option(parser)
    parser.add_argument("version")
    parser.add_argument("--reason", required=True, help="why; recorded in the audit log")

    def run(args: argparse.Namespace) -> int:
        registry = registry_from_args(args)
        registry.retire(args.version, actor=actor_from_args(args), reason=args.reason)
        return _retired(registry, args.version)

    return run


def _retired(registry: ModelRegistry, version: str) -> int:
    print(f"{version} retired: model {registry.get(version).dataset} has no champion now")
    return 0


@subcommand("rollback", "Archive the champion and restore the previous known-good champion.")
def _build_rollback(parser: argparse.ArgumentParser) -> Handler:
    add_registry_options(parser)
    add_actor_option(parser)
    # Required: a rollback overrides what the gates and the canary decided, so it says why.
    parser.add_argument("--reason", required=True, help="why; recorded in the audit log")

    def run(args: argparse.Namespace) -> int:
        registry = registry_from_args(args)
        restored = registry.rollback(actor=actor_from_args(args), reason=args.reason)
        record = registry.get(restored)
        print(f"champion is now {restored} again (artifact sha256 {record.artifact.sha256})")
        return 0

    return run


# ------------------------------------------------------------------------------------------------- audit


@subcommand("audit", "Show the audit log: who changed which alias, when and why.")
def _build_audit(parser: argparse.ArgumentParser) -> Handler:
    add_registry_options(parser)
    parser.add_argument("--version", default=None, help="only entries about this version")
    parser.add_argument("--limit", type=int, default=None, help="only the most recent N entries")

    def run(args: argparse.Namespace) -> int:
        entries = registry_from_args(args).audit_log(limit=args.limit, version=args.version)
        if not entries:
            print("the audit log is empty" + (f" for {args.version}" if args.version else ""))
            return 0
        rows = [[str(e.id), e.at[:19], e.actor, e.action + (" (FORCED)" if e.forced else ""), e.version or "-",
                 f"{e.from_alias or '-'} -> {e.to_alias or '-'}", e.reason or "-"] for e in entries]
        print(format_table(["ID", "AT (UTC)", "ACTOR", "ACTION", "VERSION", "ALIAS", "REASON"], rows))
        return 0

    return run
