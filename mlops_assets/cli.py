"""`mlops`: look at and steer the model registry from a shell.

    mlops models                                   every model: champion, canary; versions, key metric, gates
    mlops show VERSION                             lineage, metrics, gate report, alias history
    mlops promote VERSION --to champion [--force --reason TEXT] [--actor NAME]
    mlops rollback --model NAME [--reason TEXT]    restore the previous known-good champion
    mlops audit [--version V] [--limit N]          who did what, when and why
    mlops decision ENTITY DAY                      which model decided ENTITY on DAY, and what it said
    mlops predictions --version V [--start --end]  how much a version scored: rows, days, mean score

Every command takes `--model NAME` (a dataset spec's name) to look at one model of the portfolio only.
The registry is `--registry URL`, else $MLOPS_REGISTRY_URL, else the project's DuckDB file (Settings).
To add a command, decorate a builder with `@subcommand(name, help)`: it receives its argparse parser, adds
its arguments and returns the handler, `handler(args) -> exit code`. Handlers raise CliError (or a
RegistryError / ArtifactError) for a refusal, which `main` prints as one line and exits with 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import asdict
from typing import Callable

from mlops_assets.core.config.settings import Settings, SettingsError
from mlops_assets.core.config.spec import SpecError
from mlops_assets.core.portfolio import Portfolio, UnknownModel
from mlops_assets.core.registry.artifacts import ArtifactError
from mlops_assets.core.registry.model_registry import (PROMOTION_TARGETS, ModelRegistry, ModelVersion, RegistryError,
                                                       open_registry)

Handler = Callable[[argparse.Namespace], int]
Builder = Callable[[argparse.ArgumentParser], Handler]
SUBCOMMANDS: dict[str, tuple[str, Builder]] = {}


class CliError(Exception):
    """A command refused or failed in an expected way; printed as one line."""


def subcommand(name: str, help: str) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        SUBCOMMANDS[name] = (help, build)
        return build

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description="Inspect and steer the model registry.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, build) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=build(sub))
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error, already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.handler(args)
    except (CliError, RegistryError, ArtifactError, SettingsError, SpecError, UnknownModel) as exc:
        print(f"mlops: error: {exc}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------------------------------ shared options


def add_model_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--model", metavar="NAME", required=required,
                        help="one model of the portfolio (a dataset spec's name)" + ("" if required else
                                                                                      "; default: all models"))


def portfolio() -> Portfolio:
    return Portfolio(Settings.from_env())


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    add_model_option(parser)
    parser.add_argument("--registry", metavar="URL", help="duckdb:///path or postgresql://... "
                        "(default: $MLOPS_REGISTRY_URL, else the project's DuckDB file)")
    parser.add_argument("--artifacts", metavar="DIR",
                        help="artifact folder (default: artifacts/ next to a DuckDB file, else the data dir's)")


def add_actor_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", default=None, help="who is acting, for the audit log (default: the OS user)")


def registry_from_args(args: argparse.Namespace) -> ModelRegistry:
    """The registry, scoped to --model when given (a name neither the portfolio nor the registry knows is an
    error, so a typo does not read as an empty model)."""
    registry = open_registry(Settings.from_env(), url=args.registry, artifacts_dir=args.artifacts)
    if not args.model:
        return registry
    known = set(registry.models())
    try:
        known |= set(portfolio().names)
    except (SettingsError, SpecError):
        pass  # a broken spec folder should not stop a registry look-up
    if args.model not in known:
        raise CliError(f"no model named {args.model!r}: known models are {', '.join(sorted(known)) or '(none)'}")
    return registry.for_model(args.model)


def actor_from_args(args: argparse.Namespace) -> str:
    if args.actor:
        return args.actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return "unknown"


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


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


@subcommand("models", "List registered model versions with their aliases, key metric and gates.")
def _build_models(parser: argparse.ArgumentParser) -> Handler:
    add_registry_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def run(args: argparse.Namespace) -> int:
        registry = registry_from_args(args)
        records = registry.list_versions()
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
        replaced = registry_from_args(args).promote(
            args.version, args.to, actor=actor_from_args(args), reason=args.reason, force=args.force)
        note = ""
        if replaced:
            note = f" (previous {args.to} {replaced} " + ("archived)" if args.to == "champion" else "unassigned)")
        print(f"{args.version} is now {args.to}{note}")
        return 0

    return run


@subcommand("rollback", "Archive the champion and restore the previous known-good champion.")
def _build_rollback(parser: argparse.ArgumentParser) -> Handler:
    add_registry_options(parser)
    add_actor_option(parser)
    parser.add_argument("--reason", default="", help="why; recorded in the audit log")

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


# -------------------------------------------------------------------------------------- prediction ledger


def add_ledger_option(parser: argparse.ArgumentParser) -> None:
    add_model_option(parser)
    parser.add_argument("--ledger", metavar="DIR",
                        help="one prediction ledger folder (default: every model's, $MLOPS_DATA_DIR/models/*/ledger)")


def ledgers_from_args(args: argparse.Namespace) -> dict:
    """{model name: its prediction ledger}: --ledger, else --model's, else every model's of the portfolio."""
    from pathlib import Path

    from mlops_assets.core.serving.ledger import PredictionLedger

    if args.ledger:
        return {args.model: PredictionLedger(Path(args.ledger))}
    models = portfolio()
    if args.model:
        return {args.model: models.model(args.model).ledger}
    return {name: models.model(name).ledger for name in models.names}


def _day_arg(text: str | None) -> str | None:
    from mlops_assets.core.ingestion.landing import UnsafeFileName, check_partition_key

    if text is None:
        return None
    try:
        return check_partition_key(text)
    except UnsafeFileName:
        raise CliError(f"{text!r} is not a day (YYYY-MM-DD)") from None


def _decision_text(row) -> str:
    if row.threshold is None or row.threshold != row.threshold:  # regression: the decision is the prediction
        return f"{row.decision:.6g}"
    verdict = "positive" if row.decision >= 1 else "negative"
    return f"{verdict} ({'>=' if row.decision >= 1 else '<'} {row.threshold:g})"


@subcommand("decision", "Which model decided ENTITY on DAY and what it said, with shadow opinions.")
def _build_decision(parser: argparse.ArgumentParser) -> Handler:
    add_ledger_option(parser)
    parser.add_argument("entity", help="the entity id (or the row's timestamp when the dataset has no entity id)")
    parser.add_argument("day", help="YYYY-MM-DD")

    def run(args: argparse.Namespace) -> int:
        from mlops_assets.core.serving.ledger import LedgerError

        day = _day_arg(args.day)
        found = 0
        for model, ledger in ledgers_from_args(args).items():
            try:
                rows = ledger.for_entity(args.entity, day)
            except LedgerError as exc:
                raise CliError(str(exc)) from None
            if rows.empty:
                continue
            found += 1
            acted = rows[rows["acted_on"]]
            deciders = ", ".join(f"{v} ({r})" for v, r in dict.fromkeys(zip(acted["model_version"], acted["route"])))
            label = f"{model}: " if model else ""
            print(f"{label}entity {args.entity} on {day}: decided by {deciders or 'no model (shadow rows only)'}")
            table = [[str(r.timestamp)[:19], r.model_version, r.route, "yes" if r.acted_on else "no (shadow)",
                      f"{r.score:.4f}", _decision_text(r), str(r.scored_at)[:19]] for r in rows.itertuples()]
            print(format_table(["TIMESTAMP", "VERSION", "ROUTE", "ACTED ON", "SCORE", "DECISION",
                                "SCORED AT (UTC)"], table))
        if not found:
            raise CliError(f"no prediction recorded for entity {args.entity!r} on {day}")
        return 0

    return run


@subcommand("predictions", "Summarise what one model version scored: rows, days and mean score by route.")
def _build_predictions(parser: argparse.ArgumentParser) -> Handler:
    add_ledger_option(parser)
    parser.add_argument("--version", required=True)
    parser.add_argument("--start", default=None, help="first day, YYYY-MM-DD (inclusive)")
    parser.add_argument("--end", default=None, help="last day, YYYY-MM-DD (inclusive)")

    def run(args: argparse.Namespace) -> int:
        from mlops_assets.core.serving.ledger import LedgerError

        start, end = _day_arg(args.start), _day_arg(args.end)
        try:
            for ledger in ledgers_from_args(args).values():  # a version's rows are in its own model's ledger
                total = ledger.totals(args.version, start, end)
                if total["rows"]:
                    break
            summary = ledger.summary(args.version, start, end)
        except LedgerError as exc:
            raise CliError(str(exc)) from None
        span = f" between {start or 'the start'} and {end or 'the end'}" if start or end else ""
        if not total["rows"]:
            print(f"no predictions recorded for {args.version}{span}")
            return 0
        print(f"version {args.version}{span}: {total['rows']} rows over {total['days']} days "
              f"({total['first_day']} .. {total['last_day']}), mean score {total['mean_score']:.4f}")
        print(format_table(["ROUTE", "ROWS", "ACTED ON", "DAYS", "FIRST DAY", "LAST DAY", "MEAN SCORE"], [
            [r.route, str(r.rows), str(r.acted_on), str(r.days), str(r.first_day)[:10], str(r.last_day)[:10],
             f"{r.mean_score:.4f}"] for r in summary.itertuples()]))
        return 0

    return run


if __name__ == "__main__":
    sys.exit(main())
