"""The production profile on this machine: `python -m mlops_assets.profiles.production COMMAND [ARGS...]`.

    demo [REPLAY ARGS]   start the services, replay the demo (`make demo PROFILE=production`), stop them
    ui   [DEV ARGS]      start the services, `dagster dev` on the profile's instance (`make ui PROFILE=production`)
    up                   start the services and print their environment; Ctrl-C stops them
    clean                drop the profile's databases and broker vhost, remove its folders

Every command stops what it started on exit, on an error and on Ctrl-C (passed on once to the command it
runs, which finishes its run in progress). The services: PostgreSQL databases for the Dagster instance and
the registry (server from MLOPS_PG_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres), a
RabbitMQ vhost of the profile's own (or MLOPS_CELERY_BROKER), an S3 server (moto) with the profile's bucket,
and --workers Celery workers (default 2).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path

from mlops_assets.core.config.settings import PROJECT_DIR
from mlops_assets.profiles.production.stack import BIN, Stack, StackConfig, StackError

NAME = "production"


def config(args) -> StackConfig:
    return StackConfig(NAME, Path(args.home), Path(args.data_dir), workers=args.workers)


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # progress as it happens, also through a pipe
    parser = argparse.ArgumentParser(prog="python -m mlops_assets.profiles.production",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("command", choices=["demo", "ui", "up", "clean"])
    parser.add_argument("--workers", type=int, default=2, help="Celery workers to start (default 2)")
    parser.add_argument("--home", default=str(PROJECT_DIR / ".dagster_home_production"),
                        help="DAGSTER_HOME of the profile (default .dagster_home_production)")
    parser.add_argument("--data-dir", default=str(PROJECT_DIR / "data" / "production"),
                        help="MLOPS_DATA_DIR of the profile (default data/production)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "clean":
        return clean(args)
    commands = {
        # a day takes seconds here (every step a Celery task): a progress line a day, not every two weeks
        "demo": [sys.executable, "-m", "mlops_assets.demo.replay", "--progress-days", "1", *rest],
        "ui": [str(BIN / "dagster"), "dev", "-w", str(PROJECT_DIR / "workspace.yaml"), *rest],
    }
    signal.signal(signal.SIGTERM, _interrupt)  # stops the services as Ctrl-C does (leaving the `with` below)
    try:
        with Stack(config(args)) as stack:
            if args.command == "up":
                for key in sorted(k for k in stack.env if k.startswith(("MLOPS_", "DAGSTER_", "AWS_"))):
                    print(f"export {key}='{stack.env[key]}'")
                print("[production] up; Ctrl-C stops the services")
                signal.pause()
                return 0
            print(f"[production] running: {' '.join(commands[args.command][1:])}")
            code = stack.run(commands[args.command])
            if args.command == "demo":
                print("[production] the runs and their steps' workers are in the instance: `make ui PROFILE=production`")
            return code
    except StackError as exc:
        print(f"[production] cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("[production] stopped", file=sys.stderr)
        return 130


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def clean(args) -> int:
    stack = Stack(config(args))
    stack.drop()
    for folder in (Path(args.home), Path(args.data_dir)):
        shutil.rmtree(folder, ignore_errors=True)
    print(f"[production] dropped {', '.join(stack.databases.values())}; removed {args.home} and {args.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
