"""`mlops`: look at and steer the model registry from a shell.

    mlops models                                   every model: champion, canary; versions, key metric, gates
    mlops show VERSION                             lineage, metrics, gate report, alias history
    mlops promote VERSION --to champion [--force --reason TEXT] [--actor NAME]
    mlops rollback --model NAME [--reason TEXT]    restore the previous known-good champion
    mlops retire VERSION --reason TEXT             archive the champion on purpose (the model has none after)
    mlops audit [--version V] [--limit N]          who did what, when and why
    mlops decision ENTITY DAY                      which model decided ENTITY on DAY, and what it said
    mlops predictions --version V [--start --end]  how much a version scored: rows, days, mean score
    mlops spec check FILE | draft CSV ... | keys   write and check a dataset spec (see spec_commands)
    mlops accept-volume DAY --model NAME --reason TEXT   let a genuinely small day pass raw_batch_volume_expected
    mlops serve [--host H --port P] [--model NAME ...]   online predictions over HTTP (serve_commands)

Every command takes `--model NAME` (a dataset spec's name) to look at one model of the portfolio only.
The registry is `--registry URL`, else $MLOPS_REGISTRY_URL, else the project's DuckDB file (Settings).
To add a command, decorate a builder with `@subcommand(name, help)`: it receives its argparse parser, adds
its arguments and returns the handler, `handler(args) -> exit code`. Handlers raise CliError (or a
RegistryError / ArtifactError) for a refusal, which `main` prints as one line and exits with 1. `show`,
`models` and `decision` print a warning line on stderr for each version whose files are damaged or missing.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from typing import Callable

from mlops_assets.core.config.settings import Settings, SettingsError
from mlops_assets.core.config.spec import SpecError
from mlops_assets.core.portfolio import Portfolio, UnknownModel
from mlops_assets.core.registry.artifacts import ArtifactError
from mlops_assets.core.registry.model_registry import ModelRegistry, RegistryError, open_registry

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


class HelpfulParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors suggest the command or option that was probably meant."""

    def error(self, message: str):
        super().error(message + _suggestion(self, message))


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    from mlops_assets.core.config.suggest import did_you_mean

    if m := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message):
        close = did_you_mean(m.group(1), re.findall(r"'([^']*)'", m.group(2)))
        return f"; did you mean {close!r}?" if close else ""
    if m := re.search(r"unrecognized arguments: (.*)", message):
        options = _option_strings(parser)
        hints = [f"{close} (for {word})" for word in m.group(1).split() if word.startswith("-")
                 if (close := did_you_mean(word.split("=")[0], options))]
        return f"; did you mean {', '.join(hints)}?" if hints else ""
    return ""


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option of the parser and of its subcommands, at any depth (argparse reports a subcommand's
    unknown option from the top parser, which does not know the subcommand's options)."""
    out = set()
    for action in parser._actions:
        out |= set(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _option_strings(sub)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = HelpfulParser(prog="mlops", description="Inspect and steer the model registry; write and check "
                                                     "dataset specs.")
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


def existing_registry(args: argparse.Namespace) -> ModelRegistry | None:
    """The registry of --registry (else the environment's), unscoped, if it exists: a command that only reads
    it for warnings does not create a DuckDB file. None (with a warning when it cannot be opened) otherwise."""
    from mlops_assets.core.registry.database import DuckDBBackend, backend_for

    try:
        settings = Settings.from_env()
        url = args.registry or settings.registry
        backend = backend_for(url)
        if isinstance(backend, DuckDBBackend) and not backend.path.exists():
            return None
        return open_registry(settings, url=url, artifacts_dir=args.artifacts)
    except (RegistryError, SettingsError) as exc:
        warn(f"cannot check the models' files against the registry: {exc}")
        return None


def warn(text: str) -> None:
    print(f"mlops: warning: {text}", file=sys.stderr)


def warn_about_files(registry: ModelRegistry, versions) -> None:
    """One warning line on stderr per version whose artifact (or monitoring reference) is missing or no
    longer matches its recorded sha256; versions the registry does not know are passed over."""
    records = {getattr(v, "version", v): v for v in versions}  # version names or ModelVersion records
    for version, record in records.items():
        try:
            problems = registry.file_problems(record)
        except RegistryError:
            continue
        if problems:
            warn(f"{version}: {'; '.join(problems)}; it cannot be served, promoted or restored until fixed")


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


# The commands register themselves with @subcommand when their modules are imported.
from mlops_assets.cli import registry_commands, ledger_commands, spec_commands, ingestion_commands, serve_commands  # noqa: E402,F401,I001  (--help lists them in this order)


