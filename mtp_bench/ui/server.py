"""The MLflow server behind ``mtp-bench ui``: which store to serve (and refusing what would give an empty or broken
UI), a free port, and ``mlflow server`` as a child in its own session, so Ctrl-C reaches only us and we stop its whole
process group (SIGTERM, SIGKILL after a timeout), then check that no process seen in its tree, orphaned or not,
survived.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

from mtp_bench.errors import ServerError, UIError

_SQLITE = "sqlite:///"
# Never send loopback requests through an HTTP proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------------------------------- store ----
def resolve_store(store: str | None, suite_uri: str | None = None) -> str:
    """The tracking URI to serve: ``--store``, else the suite's store, else ``MLFLOW_TRACKING_URI``, else
    ``results/mlflow.db``. A bare path means a SQLite file; relative SQLite paths are made absolute."""
    from mtp_bench.tracking.store import DEFAULT_STORE

    chosen = store or suite_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
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
            with suppress(OSError, ValueError), OPENER.open(f"{self.local_url}/health", timeout=3) as response:
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


