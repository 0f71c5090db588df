"""`mlops decision` and `mlops predictions`: the prediction ledger from a shell."""

from __future__ import annotations

import argparse

from mlops_assets.cli import (CliError, Handler, add_model_option, existing_registry, format_table, portfolio,
                              subcommand, warn_about_files)

# -------------------------------------------------------------------------------------- prediction ledger


def add_ledger_option(parser: argparse.ArgumentParser) -> None:
    add_model_option(parser)
    parser.add_argument("--ledger", metavar="DIR",
                        help="one prediction ledger: a folder or s3://bucket/prefix (default: every model's, "
                             "in $MLOPS_STORAGE_URL or $MLOPS_DATA_DIR, models/*/ledger)")


def ledgers_from_args(args: argparse.Namespace) -> dict:
    """{model name: its prediction ledger}: --ledger, else --model's, else every model's of the portfolio."""
    from mlops_assets.core.io.objects import open_object_store
    from mlops_assets.core.serving.ledger import PredictionLedger

    if args.ledger:
        return {args.model: PredictionLedger(open_object_store(args.ledger))}  # a folder or s3://bucket/prefix
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
    parser.add_argument("--registry", metavar="URL", help="the registry whose checksums the deciding versions' "
                        "files are checked against (default: $MLOPS_REGISTRY_URL, else the project's DuckDB file)")
    parser.add_argument("--artifacts", metavar="DIR", help="artifact folder (default: as for the registry commands)")

    def run(args: argparse.Namespace) -> int:
        from mlops_assets.core.serving.ledger import LedgerError

        day = _day_arg(args.day)
        found, versions = 0, []
        for model, ledger in ledgers_from_args(args).items():
            try:
                rows = ledger.for_entity(args.entity, day)
            except LedgerError as exc:
                raise CliError(str(exc)) from None
            if rows.empty:
                continue
            found += 1
            versions += rows["model_version"].tolist()
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
        registry = existing_registry(args)
        if registry is not None:
            warn_about_files(registry, versions)
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
