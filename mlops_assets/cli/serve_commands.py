"""`mlops serve`: the online scoring service (FastAPI app on uvicorn) for the portfolio's models."""

from __future__ import annotations

import argparse

from mlops_assets.cli import CliError, Handler, portfolio, subcommand


@subcommand("serve", "Serve online predictions for the portfolio's models over HTTP (follows the registry).")
def _build_serve(parser: argparse.ArgumentParser) -> Handler:
    from mlops_assets.core.serving.service_config import ServeConfig

    defaults = ServeConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--model", metavar="NAME", action="append", dest="models",
                        help="serve this model of the portfolio (repeat for several; default: every model)")
    parser.add_argument("--poll-seconds", type=float, default=defaults.poll_seconds,
                        help=f"how often the registry is read for promotions and rollbacks (default: "
                             f"{defaults.poll_seconds})")
    parser.add_argument("--max-batch-rows", type=int, default=defaults.max_batch_rows,
                        help=f"rows per model call when requests are batched (default: {defaults.max_batch_rows})")
    parser.add_argument("--model-threads", type=int, default=defaults.model_threads,
                        help="OpenMP/BLAS threads per model call; 0: the libraries' default (one per core) "
                             f"(default: {defaults.model_threads}: more only wait on each other on a busy machine)")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                        help=f"larger request bodies are refused with 413 (default: {defaults.max_body_bytes})")
    parser.add_argument("--ledger-flush-seconds", type=float, default=defaults.ledger_flush_seconds,
                        help="how often buffered predictions are written to the ledger: a crash loses at most "
                             f"this long's predictions (default: {defaults.ledger_flush_seconds})")

    def run(args: argparse.Namespace) -> int:
        import uvicorn

        from mlops_assets.serving_api.app import create_app

        for value, name in ((args.poll_seconds, "--poll-seconds"), (args.ledger_flush_seconds,
                                                                      "--ledger-flush-seconds")):
            if not value > 0:
                raise CliError(f"{name} must be positive, got {value}")
        if args.model_threads < 0:
            raise CliError(f"--model-threads must be 0 (the libraries' default) or more, got {args.model_threads}")
        if args.max_batch_rows < 1 or args.max_body_bytes < 1:
            raise CliError("--max-batch-rows and --max-body-bytes must be at least 1")
        models = portfolio()
        for name in args.models or []:
            models.model(name)  # UnknownModel names the portfolio's models
        config = ServeConfig(poll_seconds=args.poll_seconds, max_batch_rows=args.max_batch_rows,
                             model_threads=args.model_threads or None,
                             max_body_bytes=args.max_body_bytes, ledger_flush_seconds=args.ledger_flush_seconds)
        app = create_app(models=args.models, config=config, portfolio=models)
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info", timeout_keep_alive=75,
                    timeout_graceful_shutdown=10)
        return 0

    return run
