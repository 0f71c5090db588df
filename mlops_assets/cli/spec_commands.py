"""`mlops spec check | draft | keys`: write and check a dataset spec before anything runs.

    mlops spec check FILE [--csv CSV]     every mistake at once, each with its table.key; exit 0 clean, 1 not
    mlops spec draft CSV --timestamp COL --target COL [--entity-id COL] [--name NAME] [--task TASK] [--out FILE]
    mlops spec keys [--markdown]          every key with its default, unit and meaning
"""

from __future__ import annotations

import argparse
import csv
import sys
import tomllib
from pathlib import Path

from mlops_assets.cli import CliError, Handler, subcommand
from mlops_assets.core.config import reference
from mlops_assets.core.config.spec import DatasetSpec, SpecError, load_spec, spec_from_dict
from mlops_assets.core.config.tasks import TASKS

EXIT_USAGE = 2


@subcommand("spec", "write and check a dataset spec: check FILE, draft CSV, keys")
def build_spec(parser: argparse.ArgumentParser) -> Handler:
    actions = parser.add_subparsers(dest="spec_command", metavar="ACTION", required=True)

    check = actions.add_parser("check", help="report every mistake in a spec at once (exit 0 clean, 1 not)",
                               description="Report every mistake in a dataset spec at once, each with its "
                                           "table.key; exit 0 when clean (with a summary), 1 when not.")
    check.add_argument("file", metavar="FILE", type=Path, help="the spec (TOML)")
    check.add_argument("--csv", metavar="CSV", type=Path,
                       help="also check that the spec's columns are in this CSV's header")
    check.set_defaults(spec_handler=run_check)

    draft = actions.add_parser("draft", help="draft a spec from a CSV of history",
                               description="Draft a dataset spec from a CSV of history: feature types, ranges "
                                           "and categories, the task, and a policy for the data's volume.")
    draft.add_argument("csv", metavar="CSV", type=Path, help="the history, one row per event, with a header")
    draft.add_argument("--timestamp", metavar="COL", required=True, help="the rows' time column (ISO 8601)")
    draft.add_argument("--target", metavar="COL", required=True, help="the column to predict")
    draft.add_argument("--entity-id", metavar="COL", help="who or what a row is about (optional)")
    draft.add_argument("--name", help="the model's name (default: from the CSV's file name)")
    draft.add_argument("--task", choices=TASKS, help="default: inferred from the target (0/1: classification)")
    draft.add_argument("--label-delay-days", type=int, default=1, metavar="N",
                       help="labels of day D land on D + N (default 1)")
    draft.add_argument("--categorical", metavar="COL", nargs="+", default=[],
                       help="numeric-looking columns that are codes, e.g. a weekday 1..7")
    draft.add_argument("--exclude", metavar="COL", nargs="+", default=[], help="columns that are not features")
    draft.add_argument("--out", metavar="FILE", type=Path, help="write here (default: standard output)")
    draft.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    draft.set_defaults(spec_handler=run_draft)

    keys = actions.add_parser("keys", help="every spec key with its default, unit and meaning",
                              description="Every dataset spec key with its default, unit and meaning.")
    keys.add_argument("--markdown", action="store_true",
                      help="as docs/spec-reference.md (`mlops spec keys --markdown > docs/spec-reference.md`)")
    keys.set_defaults(spec_handler=run_keys)
    return lambda args: args.spec_handler(args)


# ------------------------------------------------------------------------------------------------- check


def run_check(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        return _usage(f"spec check: {args.file}: no such file")
    if args.csv is not None and not args.csv.is_file():
        return _usage(f"spec check: --csv {args.csv}: no such file")
    try:
        spec = load_spec(args.file)
    except SpecError as exc:
        return _report(args.file, exc.problems)
    if args.csv is not None and (problems := column_problems(spec, csv_header(args.csv), args.csv.name)):
        return _report(args.file, problems)
    print(f"{args.file}: OK")
    print(summary(spec))
    return 0


def _report(path: Path, problems: list[str]) -> int:
    print(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
    for problem in problems:
        print(f"  - {problem}")
    return 1


def csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return next(csv.reader(f), [])


def column_problems(spec: DatasetSpec, header: list[str], where: str) -> list[str]:
    """The spec's columns that the CSV lacks, each named by the key that declares it."""
    present, out = set(header), []
    named = [("dataset.timestamp", spec.timestamp), ("dataset.target", spec.target)]
    named += [("dataset.entity_id", spec.entity_id)] if spec.entity_id else []
    named += [(f"features.{f}", f) for f in spec.feature_names]
    named += [("dataset.slices", s) for s in spec.slices if s not in spec.feature_names]
    for key, column in named:
        if column not in present:
            out.append(f"{key}: column {column!r} is not in {where} (columns: {', '.join(header)})")
    return out


def summary(spec: DatasetSpec) -> str:
    t = spec.training
    numeric, categorical = spec.numeric_features, spec.categorical_features
    lines = [
        f"  model {spec.name}: {spec.task}, target {spec.target}"
        + (f" (positive {spec.positive_label!r})" if spec.is_classification else ""),
        f"  rows keyed by {', '.join(spec.key_columns)}; days from {spec.start_date}"
        + (f" to {spec.end_date} (exclusive)" if spec.end_date else " on (a live feed)")
        + f"; labels {spec.label_delay_days} day(s) later",
        f"  {len(spec.features)} features: {len(numeric)} numeric, {len(categorical)} categorical"
        + (f"; slices {', '.join(spec.slices)}" if spec.slices else ""),
        f"  training: {t.estimator}, {t.window_days}-day window ({t.validation_days} validation, "
        f"{t.benchmark_days} benchmark), seed {t.seed}",
        f"  gates on {spec.key_metric}" + (f"; first-model floors {spec.gates.floors}" if spec.gates.floors else "")
        + f"; auto_canary {str(spec.deployment.auto_canary).lower()}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- draft


def run_draft(args: argparse.Namespace) -> int:
    from mlops_assets.core.config.draft import DraftOptions, draft_spec
    from mlops_assets.core.config.profile import ProfileError, profile_csv

    if not args.csv.is_file():
        return _usage(f"spec draft: {args.csv}: no such file")
    if args.out is not None and args.out.exists() and not args.force:
        return _usage(f"spec draft: {args.out} exists; --force to overwrite it")
    if args.label_delay_days < 0:
        return _usage("spec draft: --label-delay-days must not be negative")
    try:
        profile = profile_csv(args.csv, args.timestamp, args.entity_id)
        draft = draft_spec(profile, DraftOptions(
            timestamp=args.timestamp, target=args.target, entity_id=args.entity_id, name=args.name, task=args.task,
            label_delay_days=args.label_delay_days, categorical=tuple(args.categorical),
            exclude=tuple(args.exclude)))
    except ProfileError as exc:
        raise CliError(f"spec draft: {exc}") from None
    try:  # a draft the check refuses is this command's bug: say so rather than write it silently
        spec_from_dict(tomllib.loads(draft.text), source=str(args.out or "<draft>"))
    except SpecError as exc:
        raise CliError(f"spec draft: the drafted spec does not pass its own check: {exc}") from None
    if args.out is None:
        sys.stdout.write(draft.text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(draft.text)
    for warning in draft.warnings:
        print(f"mlops: warning: {warning}", file=sys.stderr)
    where = args.out or "standard output"
    print(f"spec draft: wrote {where}: {draft.task}, {len(draft.features)} features"
          + (f"; not features: {', '.join(draft.excluded)}" if draft.excluded else "")
          + (f". Next: mlops spec check {args.out} --csv {args.csv}" if args.out else ""), file=sys.stderr)
    return 0


# -------------------------------------------------------------------------------------------------- keys


def run_keys(args: argparse.Namespace) -> int:
    missing = reference.undocumented_keys()
    sys.stdout.write(reference.render_markdown() if args.markdown else reference.render_text())
    if missing:  # still printed, marked UNDOCUMENTED, so the output shows what to add
        print(f"mlops: warning: keys without a description: {', '.join(missing)}", file=sys.stderr)
    return 0


def _usage(message: str) -> int:
    print(f"mlops: error: {message}", file=sys.stderr)
    return EXIT_USAGE
