"""``mtp-bench ui``: the MLflow UI on a suite's store (or any store), with links straight to its runs, stopped cleanly
on Ctrl-C. This module reads the command line; :mod:`mtp_bench.ui.serve` serves."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtp_bench.cli.command import Command, suite_arguments
from mtp_bench.errors import UIError

DESCRIPTION = "Serve the MLflow UI on a suite's store (127.0.0.1) and stop it cleanly on Ctrl-C"
STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    suite_arguments(parser, optional=True, suite_help="suite YAML: serve its store and link straight to its runs",
                    overrides_help="overrides applied to the suite, as for `run` (e.g. tracking.experiment=...)")
    add = parser.add_argument
    add("--store", metavar="URI", help="tracking URI or SQLite file (default: the suite's store, else "
        "$MLFLOW_TRACKING_URI, else results/mlflow.db)")
    add("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: the UI has no login)")
    add("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    add("--workers", type=int, default=1, help="web worker processes (default 1: enough for one user)")
    add("--jobs", action="store_true", help="also run MLflow's job runner (GenAI judges; training runs need none)")
    add("--start-timeout", type=float, default=120.0, metavar="S", help="seconds to wait for the server (120)")
    add("--stop-timeout", type=float, default=10.0, metavar="S", help="seconds from SIGTERM to SIGKILL (10)")


def execute(args: argparse.Namespace) -> int:
    from mtp_bench.ui.serve import serve
    from mtp_bench.ui.server import resolve_store

    experiment, suite_uri, store = None, None, args.store
    if args.suite and Path(args.suite).suffix in STORE_SUFFIXES and store is None:
        store, args.suite = args.suite, None  # `mtp-bench ui results/mlflow.db` names the store
    if args.suite and "=" in args.suite and not Path(args.suite).exists():
        raise UIError(f"{args.suite}: overrides need a suite file before them")
    if args.suite:
        from mtp_bench.suite import load_suite

        suite = load_suite(args.suite, args.overrides)
        suite_uri, experiment = suite.tracking.uri, suite.tracking.experiment or suite.name
    elif args.overrides:
        raise UIError(f"overrides ({' '.join(args.overrides)}) need a suite file")
    if not 0 <= args.port <= 65535 or args.workers < 1:
        raise UIError("--port must be 0-65535 and --workers at least 1")
    return serve(resolve_store(store, suite_uri), experiment, host=args.host, port=args.port, workers=args.workers,
                 jobs=args.jobs, start_timeout=args.start_timeout, stop_timeout=args.stop_timeout)


COMMANDS = (Command("ui", DESCRIPTION, execute, configure),)
