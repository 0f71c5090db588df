"""`mlops accept-volume`: record that a day's small volume is genuine, so raw_batch_volume_expected passes it."""

from __future__ import annotations

import argparse
import datetime as dt
import re

from mlops_assets.cli import CliError, Handler, actor_from_args, add_actor_option, portfolio, subcommand
from mlops_assets.core.ingestion.volume import accept_volume, row_counts


@subcommand("accept-volume", "Accept a day whose row count failed raw_batch_volume_expected (needs --reason); "
                             "then re-materialise the day's raw_batch and feature_table.")
def _build_accept_volume(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("day", help="the partition, YYYY-MM-DD")
    parser.add_argument("--model", metavar="NAME", required=True, help="the model whose day it is")
    parser.add_argument("--reason", required=True, help="why the small day is genuine; kept with the acceptance")
    parser.add_argument("--fingerprint", metavar="DATA_VERSION",
                        help="accept a held re-delivery (the check's if_genuine line gives it with --rows) instead of "
                             "the day's current table")
    parser.add_argument("--rows", type=int, help="the held re-delivery's rows (with --fingerprint)")
    add_actor_option(parser)

    def run(args: argparse.Namespace) -> int:
        try:
            day = dt.date.fromisoformat(args.day).isoformat()
        except ValueError:
            raise CliError(f"{args.day!r} is not a day (YYYY-MM-DD)") from None
        store = portfolio().model(args.model).store
        if (args.fingerprint is None) != (args.rows is None):
            raise CliError("--fingerprint and --rows go together (both from the check's if_genuine line)")
        if args.fingerprint is not None:
            if not re.fullmatch(r"[0-9a-f]{64}", args.fingerprint) or args.rows < 0:
                raise CliError(f"--fingerprint must be a data version (64 hex digits) and --rows >= 0, got "
                               f"{args.fingerprint!r} and {args.rows}")
            fingerprint, rows = args.fingerprint, args.rows
        elif not store.exists("raw_batch", day):
            raise CliError(f"{args.model} has no raw_batch for {day}: nothing to accept")
        else:
            fingerprint, rows = store.fingerprint("raw_batch", day), row_counts(store, "raw_batch", [day])[day]
        try:
            record = accept_volume(store, day, args.reason, actor_from_args(args), fingerprint, rows)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        then = ("Deliver the held file again (its copy is in the quarantine, named by the check's held_as) to the "
                "landing zone: the landing sensor ingests it and it now passes." if args.fingerprint else
                f"Re-materialise the day: the {args.model}_daily_ingestion_job for partition {day}, or raw_batch "
                "and feature_table for that partition in the UI.")
        print(f"{args.model} {day}: {record.rows} rows accepted by {record.actor} ({record.reason}); this version "
              f"of the day (raw_batch data version {record.fingerprint[:12]}…) now passes raw_batch_volume_expected. "
              f"{then}")
        return 0

    return run
