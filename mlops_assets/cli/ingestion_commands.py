"""`mlops accept-volume`: record that a day's small volume is genuine, so raw_batch_volume_expected passes it."""

from __future__ import annotations

import argparse
import datetime as dt

from mlops_assets.cli import CliError, Handler, actor_from_args, add_actor_option, portfolio, subcommand
from mlops_assets.core.ingestion.volume import accept_volume, row_counts


@subcommand("accept-volume", "Accept a day whose row count failed raw_batch_volume_expected (needs --reason); "
                             "then re-materialise the day's raw_batch and feature_table.")
def _build_accept_volume(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("day", help="the partition, YYYY-MM-DD")
    parser.add_argument("--model", metavar="NAME", required=True, help="the model whose day it is")
    parser.add_argument("--reason", required=True, help="why the small day is genuine; kept with the acceptance")
    add_actor_option(parser)

    def run(args: argparse.Namespace) -> int:
        try:
            day = dt.date.fromisoformat(args.day).isoformat()
        except ValueError:
            raise CliError(f"{args.day!r} is not a day (YYYY-MM-DD)") from None
        store = portfolio().model(args.model).store
        if not store.exists("raw_batch", day):
            raise CliError(f"{args.model} has no raw_batch for {day}: nothing to accept")
        try:
            record = accept_volume(store, day, args.reason, actor_from_args(args),
                                   store.fingerprint("raw_batch", day), row_counts(store, "raw_batch", [day])[day])
        except ValueError as exc:
            raise CliError(str(exc)) from None
        print(f"{args.model} {day}: {record.rows} rows accepted by {record.actor} ({record.reason}); this version "
              f"of the day (raw_batch data version {record.fingerprint[:12]}…) now passes raw_batch_volume_expected. "
              f"Re-materialise the day: the {args.model}_daily_ingestion_job for partition {day}, or raw_batch and "
              "feature_table for that partition in the UI.")
        return 0

    return run
