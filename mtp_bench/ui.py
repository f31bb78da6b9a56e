"""``mtp-bench ui``: the MLflow UI on a suite's store, with links straight to the runs worth comparing.

The server is a child in its own session, so Ctrl-C reaches only us and we stop its whole process group (SIGTERM,
SIGKILL after a timeout), then check that no process seen in its tree, orphaned or not, survived.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
_SQLITE = "sqlite:///"
# The UI opens in its GenAI view; our runs live in the "Model training" one.
_TRAINING_VIEW = {"workflowType": "machine_learning"}
# Never send loopback requests through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class UIError(Exception):
    """Bad input (missing store, busy port): one line, exit code 2."""


class ServerError(Exception):
    """The MLflow server died or never answered."""


# ---------------------------------------------------------------------------------------------------- store ----
def resolve_store(store: str | None, suite_uri: str | None = None) -> str:
    """The tracking URI to serve: ``--store``, else the suite's store, else ``MLFLOW_TRACKING_URI``, else
    ``results/mlflow.db``. A bare path means a SQLite file; relative SQLite paths are made absolute."""
    chosen = store or suite_uri or os.environ.get("MLFLOW_TRACKING_URI") or "results/mlflow.db"
    if "://" not in chosen:
        return _SQLITE + str(Path(chosen).expanduser().resolve())
    if chosen.startswith(_SQLITE) and not chosen.startswith(_SQLITE + "/"):
        return _SQLITE + str((Path.cwd() / chosen[len(_SQLITE) :]).resolve())
    return chosen


def check_store(uri: str) -> Path | None:
    """Refuse what would give an empty or broken UI. Returns the SQLite file, if the store is one."""
    if uri.startswith(("http://", "https://")):
        raise UIError(f"{uri} is already an MLflow server: open it in a browser (`mtp-bench ui` serves stores)")
    if not uri.startswith(_SQLITE):
        return None  # a database server: MLflow reports its own connection errors
    path = Path(uri[len(_SQLITE) :])
    if not path.is_file():
        raise UIError(f"no MLflow store at {path}: run a suite first (`mtp-bench run suites/<name>.yaml`), "
                      "or pass --store / the suite file whose store you want")
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise UIError(f"{path} is not a SQLite database ({exc})") from None
    if not {"experiments", "runs"} <= tables:
        raise UIError(f"{path} is a SQLite file but not an MLflow store (no experiments/runs tables)")
    return path


def pick_port(host: str, port: int) -> int:
    """``port``, checked free on ``host`` (0: any free one), so a busy port is a clear error, not a server log."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            hint = "; pass --port 0 to pick a free one" if port else ""
            raise UIError(f"cannot listen on {host} port {port} ({exc.strerror}){hint}") from None
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------------------------------- server ----
def _die_with_parent() -> None:
    """Linux: if we are killed outright (no chance to clean up), the server still gets SIGTERM, which MLflow
    forwards to its web workers."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class MlflowServer:
    """``mlflow server`` on one store, in its own process group: ``start``, ``wait_ready``, ``stop``."""

    def __init__(self, uri: str, *, host: str = "127.0.0.1", port: int = 0, workers: int = 1, jobs: bool = False,
                 log_path: str | Path | None = None):
        self.uri, self.host, self.workers, self.jobs = uri, host, workers, jobs
        self.port = pick_port(host, port)
        if log_path is None:
            handle, log_path = tempfile.mkstemp(prefix="mtp-bench-ui-", suffix=".log")
            os.close(handle)
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen[bytes] | None = None
        self._known: dict[int, Any] = {}  # pid -> psutil.Process, everything ever seen in the server's tree

    @property
    def url(self) -> str:
        """Where users point a browser."""
        return _http(socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host, self.port)

    @property
    def local_url(self) -> str:
        """Where this process reaches the server (a wildcard bind answers on loopback)."""
        return _http({"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host), self.port)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.uri, "--host", self.host,
               "--port", str(self.port), "--workers", str(self.workers)]
        if self.uri.startswith(_SQLITE):
            from mtp_bench.tracking import artifact_root_for

            # Experiments made by the UI keep their artifacts beside the store, as ours do, whatever the cwd.
            root = artifact_root_for(self.uri)
            cmd += ["--default-artifact-root", root, "--artifacts-destination", root]
        return cmd

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # The job runner serves GenAI features (judges, trace rollups) and adds eight processes that can take
        # long to stop; comparing training runs needs none of it.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true" if self.jobs else "false"
        cwd = Path(self.uri[len(_SQLITE) :]).parent if self.uri.startswith(_SQLITE) else None
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.refresh()

    def poll(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def refresh(self) -> list[Any]:
        """Remember every process now in the server's tree or process group; returns those alive."""
        import psutil

        if self._proc is None:
            return []
        found: list[Any] = []
        with suppress(psutil.Error):
            root = psutil.Process(self._proc.pid)
            found = [root, *root.children(recursive=True)]
        for proc in psutil.process_iter():  # the group too: a worker orphaned between two looks
            with suppress(psutil.Error, OSError):
                if proc.pid not in self._known and os.getpgid(proc.pid) == self._proc.pid:
                    found.append(proc)
        for proc in found:
            self._known.setdefault(proc.pid, proc)
        return _alive(self._known.values())

    def log_tail(self, lines: int = 15) -> str:
        with suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Poll ``/health`` until the server answers; returns the seconds it took."""
        started = time.monotonic()
        while self.poll() is None and time.monotonic() - started < timeout:
            with suppress(OSError, ValueError), _OPENER.open(f"{self.local_url}/health", timeout=3) as response:
                if response.status == 200:
                    return time.monotonic() - started
            self.refresh()
            time.sleep(0.25)
        why = f"exited with code {self.poll()}" if self.poll() is not None else f"did not answer in {timeout:.0f} s"
        raise ServerError(f"the MLflow server {why}; its log ({self.log_path}) ends:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> list[int]:
        """SIGTERM to the group and every process seen, SIGKILL to what is left after ``timeout`` s. Returns the
        pids still alive after that (empty when the stop was clean)."""
        if self._proc is None:
            return []
        alive = self.refresh()
        for sig, seconds in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if alive:
                self._signal(alive, sig)
                alive = self._wait(seconds)
        with suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=1)
        return sorted(proc.pid for proc in alive)

    def _signal(self, procs: list[Any], sig: signal.Signals) -> None:
        import psutil

        assert self._proc is not None
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)
        for proc in procs:  # those that left the group (psutil checks the pid still is that process)
            with suppress(psutil.Error):
                proc.send_signal(sig)

    def _wait(self, timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None:
                self._proc.poll()  # reap our own child so it does not linger as a zombie
            alive = self.refresh()
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(0.1)


def _http(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _alive(procs: Any) -> list[Any]:
    """Processes still running (a zombie has exited: only its parent's bookkeeping is left)."""
    import psutil

    def running(proc: Any) -> bool:
        with suppress(psutil.Error):
            return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
        return False

    return [proc for proc in procs if running(proc)]


# ---------------------------------------------------------------------------------------------------- links ----
def _api(base: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call to the server's REST API (works for any backend the server runs on)."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with _OPENER.open(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def find_experiment(base: str, name: str) -> str | None:
    query = urllib.parse.urlencode({"experiment_name": name})
    try:
        return str(_api(base, f"experiments/get-by-name?{query}")["experiment"]["experiment_id"])
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        return None


def search_runs(base: str, experiment_id: str, filter_string: str, max_results: int = 1000) -> list[dict[str, Any]]:
    payload = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": max_results,
               "order_by": ["attributes.start_time DESC"]}
    return list(_api(base, "runs/search", payload).get("runs", []))


def _fragment(route: str, params: dict[str, str]) -> str:
    return f"/#{route}?{urllib.parse.urlencode(params, quote_via=urllib.parse.quote)}"


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's trial runs as a flat list sorted by name (sorting by anything but date un-nests child
    runs, so every method x seed is one row, ready to select and compare)."""
    from mtp_bench.tracking import TAG_KIND

    return base + _fragment(f"/experiments/{experiment_id}/runs", {
        **_TRAINING_VIEW, "searchFilter": f"tags.`{TAG_KIND}` = 'trial'",
        "orderByKey": "tags.`mlflow.runName`", "orderByAsc": "true",
    })


def run_url(base: str, experiment_id: str, run_id: str, tab: str = "artifacts") -> str:
    return base + _fragment(f"/experiments/{experiment_id}/runs/{run_id}/{tab}", _TRAINING_VIEW)


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    return base + _fragment("/compare-runs", {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])})


def describe(server: MlflowServer, experiment: str | None) -> list[str]:
    """What to open: the suite's runs, its latest invocation and a side-by-side view, or every experiment."""
    from mtp_bench.tracking import TAG_KIND, TAG_PARENT

    api, base = server.local_url, server.url
    if experiment is None:
        found = _api(api, "experiments/search", {"max_results": 50}).get("experiments", [])
        lines = [f"  {e['name']}: {runs_url(base, e['experiment_id'])}" for e in found if e["name"] != "Default"]
        return ["Experiments in this store (trial runs of each):", *lines] if lines else \
            [f"This store has no experiments yet: {base}/#/experiments"]
    experiment_id = find_experiment(api, experiment)
    if experiment_id is None:
        return [f"No experiment {experiment!r} in this store yet: its runs appear once `mtp-bench run` starts. "
                f"All experiments: {base}/#/experiments"]
    lines = [f"Runs of {experiment} to compare (one row per trial): {runs_url(base, experiment_id)}"]
    latest = search_runs(api, experiment_id, f"tags.`{TAG_KIND}` = 'invocation'", max_results=1)
    if latest:
        info = latest[0]["info"]
        lines.append(f"Latest invocation, {info.get('run_name', info['run_id'])!r} (comparison plot and table "
                     f"under Artifacts): {run_url(base, experiment_id, info['run_id'])}")
        trials = search_runs(api, experiment_id, f"tags.`{TAG_PARENT}` = '{info['run_id']}'")
        if len(trials) > 1:
            ids = sorted(run["info"]["run_id"] for run in trials)
            lines.append(f"Its {len(ids)} trial runs side by side: {compare_url(base, experiment_id, ids)}")
    return lines


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
    try:
        return _serve(args)
    except UIError as exc:
        print(f"mtp-bench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _serve(args: argparse.Namespace) -> int:
    from importlib.metadata import version

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
    status, previous = EXIT_OK, _handle_signals(_raise_interrupt)
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
        print(f"mtp-bench: error: {exc}", file=sys.stderr)
        status = EXIT_FAILED
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
        print(f"mtp-bench: error: server processes survived SIGKILL: {leftovers}", file=sys.stderr)
        return EXIT_FAILED
    print(f"MLflow UI stopped in {time.monotonic() - started:.1f} s; no server process is left.", flush=True)
    if status == EXIT_OK:
        server.log_path.unlink(missing_ok=True)
    return status
