"""``mtp-bench ui``: the MLflow UI on a suite's store, with links straight to the runs worth comparing. The server's
process management is in :mod:`mtp_bench.ui.server`, the links in :mod:`mtp_bench.ui.links`; errors are raised as
:mod:`mtp_bench.errors` types for the command line to report.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mtp_bench.errors import RunFailed
from mtp_bench.ui.server import MlflowServer, ServerError, UIError, check_store, resolve_store


# ------------------------------------------------------------------------------------------------------ cli ----
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", help="suite YAML: serve its store and link straight to its runs")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value",
                        help="overrides applied to the suite, as for `run` (e.g. tracking.experiment=...)")
    add = parser.add_argument
    add("--store", metavar="URI", help="tracking URI or SQLite file (default: the suite's store, else "
        "$MLFLOW_TRACKING_URI, else results/mlflow.db)")
    add("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: the UI has no login)")
    add("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    add("--workers", type=int, default=1, help="web worker processes (default 1: enough for one user)")
    add("--jobs", action="store_true", help="also run MLflow's job runner (GenAI judges; training runs need none)")
    add("--start-timeout", type=float, default=120.0, metavar="S", help="seconds to wait for the server (120)")
    add("--stop-timeout", type=float, default=10.0, metavar="S", help="seconds from SIGTERM to SIGKILL (10)")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _handle_signals(handler: Any) -> dict[int, Any]:
    """Install ``handler`` for SIGINT, SIGTERM and SIGHUP; returns the previous ones."""
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", 0))
            if sig}


def main(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (exit 0); a server that dies raises :class:`ServerError`, bad input :class:`UIError`."""
    from importlib.metadata import version

    from mtp_bench.ui.links import describe

    experiment, suite_uri, store = None, None, args.store
    if args.suite and Path(args.suite).suffix in (".db", ".sqlite", ".sqlite3") and store is None:
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
    uri = resolve_store(store, suite_uri)
    check_store(uri)
    server = MlflowServer(uri, host=args.host, port=args.port, workers=args.workers, jobs=args.jobs)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"mtp-bench: warning: listening on {args.host}: whoever reaches port {server.port} can read and "
              "delete runs (the MLflow UI has no login); an SSH tunnel to 127.0.0.1 is safer", file=sys.stderr)
    print(f"Starting the MLflow {version('mlflow')} UI on {uri} (server log: {server.log_path})", flush=True)
    failure: ServerError | None = None
    previous = _handle_signals(_raise_interrupt)
    try:
        server.start()
        print(f"MLflow UI ready at {server.url} (in {server.wait_ready(args.start_timeout):.0f} s)", flush=True)
        try:
            lines = describe(server, experiment)
        except (OSError, ValueError, KeyError) as exc:  # the links are a convenience; the UI itself is up
            lines = [f"(could not list the runs: {exc})"]
        print("\n".join([*lines, "Press Ctrl-C to stop the server."]), flush=True)
        while server.poll() is None:
            time.sleep(1.0)
            server.refresh()  # remember workers as they come, so the stop finds them even if orphaned
        raise ServerError(f"the MLflow server exited with code {server.poll()}; its log ends:\n{server.log_tail()}")
    except ServerError as exc:
        failure = exc  # reported once the server is stopped
    except KeyboardInterrupt:
        print("Stopping the MLflow UI ...", flush=True)
    finally:
        _handle_signals(signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        started = time.monotonic()
        try:
            leftovers = server.stop(args.stop_timeout)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if leftovers:
        raise RunFailed(f"server processes survived SIGKILL: {leftovers}")
    print(f"MLflow UI stopped in {time.monotonic() - started:.1f} s; no server process is left.", flush=True)
    if failure is not None:
        raise failure  # the server log stays for reading
    server.log_path.unlink(missing_ok=True)
    return 0
