"""Serving the MLflow UI for ``mtp-bench ui`` (:mod:`mtp_bench.cli.ui` reads the command line): start the server,
print links straight to the runs worth comparing, and stop it cleanly on Ctrl-C. The server's process management is
in :mod:`mtp_bench.ui.server`, the links in :mod:`mtp_bench.ui.links`; errors are raised as :mod:`mtp_bench.errors`
types for the command line to report.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from mtp_bench.errors import EXIT_OK, RunFailed, ServerError
from mtp_bench.ui.server import MlflowServer, check_store


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _handle_signals(handler: Any) -> dict[int, Any]:
    """Install ``handler`` for SIGINT, SIGTERM and SIGHUP; returns the previous ones."""
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", 0))
            if sig}


def serve(uri: str, experiment: str | None, *, host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
          jobs: bool = False, start_timeout: float = 120.0, stop_timeout: float = 10.0) -> int:
    """Serve the store ``uri`` until Ctrl-C (returns 0), printing links to ``experiment``'s runs; a server that dies
    raises :class:`ServerError`, bad input (a busy port, a store that is not one) :class:`UIError`."""
    from importlib.metadata import version

    from mtp_bench.ui.links import describe

    check_store(uri)
    server = MlflowServer(uri, host=host, port=port, workers=workers, jobs=jobs)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"mtp-bench: warning: listening on {host}: whoever reaches port {server.port} can read and "
              "delete runs (the MLflow UI has no login); an SSH tunnel to 127.0.0.1 is safer", file=sys.stderr)
    print(f"Starting the MLflow {version('mlflow')} UI on {uri} (server log: {server.log_path})", flush=True)
    failure: ServerError | None = None
    previous = _handle_signals(_raise_interrupt)
    try:
        server.start()
        print(f"MLflow UI ready at {server.url} (in {server.wait_ready(start_timeout):.0f} s)", flush=True)
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
            leftovers = server.stop(stop_timeout)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if leftovers:
        raise RunFailed(f"server processes survived SIGKILL: {leftovers}")
    print(f"MLflow UI stopped in {time.monotonic() - started:.1f} s; no server process is left.", flush=True)
    if failure is not None:
        raise failure  # the server log stays for reading
    server.log_path.unlink(missing_ok=True)
    return EXIT_OK
