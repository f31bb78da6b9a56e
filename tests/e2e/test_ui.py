"""``mtp-bench ui``: clear errors for bad input, a stop that leaves no server process behind, and, in a real
headless Chromium, the suite's experiment with its method runs where the printed link leads."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from helpers import write_two_method_suite
from mtp_bench.cli import main

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-proxy-server", "--window-size=1600,1000"]
START_TIMEOUT = 240  # seconds for `mtp-bench ui` to print its links (the server needs ~10-60 s on a busy CPU)


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


# ------------------------------------------------------------------------------------------------ bad input ----
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_mlflow = tmp_path / "notes.db"
    not_mlflow.write_text("not a database")
    cases = [
        (["ui", "--store", str(tmp_path / "missing.db")], "no MLflow store at"),
        (["ui", "--store", str(not_mlflow)], "is not a SQLite database"),
        (["ui", "--store", "http://127.0.0.1:5000"], "is already an MLflow server"),
        (["ui", "train.lr=1"], "overrides need a suite file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_a_busy_port_is_refused_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(store).create_experiment("empty")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["ui", "--store", store, "--port", str(port)]) == 2
    assert "pass --port 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the server ----
def _start_ui(argv: list[str], cwd: Path) -> tuple[subprocess.Popen[str], queue.Queue[str | None]]:
    """``mtp-bench ui`` as users start it, in its own session (so the test's Ctrl-C stands for a terminal's)."""
    proc = subprocess.Popen([sys.executable, "-m", "mtp_bench.cli", "ui", *argv, "--port", "0"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _read_until(lines: queue.Queue[str | None], marker: str, timeout: float) -> str:
    seen, deadline = "", time.monotonic() + timeout
    while marker not in seen:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {marker!r} within {timeout:.0f} s; output so far:\n{seen}") from None
        if line is None:
            raise AssertionError(f"`mtp-bench ui` exited before {marker!r}; output:\n{seen}")
        seen += line
    return seen


def _drain(lines: queue.Queue[str | None]) -> str:
    out = ""
    while (line := lines.get(timeout=10)) is not None:
        out += line
    return out


def _cmd(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(proc.cmdline())
    return ""


def _tree(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Still running: gone and zombie (exited, waiting for its parent's bookkeeping) processes are not."""
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            continue
    return out


def _stop_and_check(proc: subprocess.Popen[str], lines: queue.Queue[str | None], sig: int,
                    tree: list[psutil.Process]) -> None:
    """Send ``sig`` as a user or a supervisor would; the command must exit 0 having stopped every process."""
    name = signal.Signals(sig).name
    proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    output = _drain(lines)
    assert rc == 0, f"`mtp-bench ui` exited {rc} on {name}:\n{output}"
    assert "no server process is left" in output, output
    left = [f"{p.pid} {_cmd(p)[:150]}" for p in _running(tree)]
    assert not left, f"still running after {name}: {left}"


def _kill(proc: subprocess.Popen[str], tree: list[psutil.Process]) -> None:
    """Whatever a failed test left behind: never leak servers into the machine."""
    if proc.poll() is None:
        proc.kill()
    for victim in _running(tree):
        with contextlib.suppress(psutil.Error):
            victim.kill()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_ctrl_c_stops_the_server_and_every_worker(tmp_path: Path) -> None:
    """With MLflow's job runner on (--jobs) the server has the most processes: uvicorn, the runner and its huey
    consumers. Ctrl-C must take every one of them down, through SIGKILL if SIGTERM is not enough."""
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(store).create_experiment("empty")
    proc, lines = _start_ui(["--store", store, "--jobs"], tmp_path)
    tree: list[psutil.Process] = []
    try:
        _read_until(lines, "Press Ctrl-C", START_TIMEOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the job runner starts its consumers after the web server answers
            tree = _tree(proc.pid)
            if any("huey" in _cmd(p) for p in _running(tree)):
                break
            time.sleep(0.5)
        names = [_cmd(p) for p in _running(tree)]
        assert any("uvicorn" in n for n in names) and any("huey" in n for n in names), names
        _stop_and_check(proc, lines, signal.SIGINT, tree)
    finally:
        _kill(proc, tree)


# ------------------------------------------------------------------------------------------------- browser ----
def _render(url: str, chromium: str, timeout: float = 120) -> str:
    """The page after its scripts ran, from a fresh profile; Chromium's own helper processes die with it."""
    with tempfile.TemporaryDirectory(prefix="mtp-bench-chromium-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom",
               url]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            dom, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return ""
        return dom


def _render_until(url: str, chromium: str, wanted: list[str], timeout: float = 240) -> str:
    """Render until every ``wanted`` text is on the page (the UI fetches runs after it loads, and a busy CPU is
    slow); the last page is returned either way, for the assertion message."""
    deadline, dom = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        dom = _render(url, chromium)
        if all(text in dom for text in wanted):
            break
        time.sleep(2)
    return dom


@pytest.mark.slow
@pytest.mark.browser
def test_browser_shows_the_suite_and_its_method_runs(tmp_path: Path, store: str, gsm8k_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary: install Debian's chromium and chromium-driver (the CI set-up script does)")
    monkeypatch.chdir(tmp_path)  # `compare` writes results/<suite>/ under the working directory
    suite = write_two_method_suite(tmp_path, gsm8k_dir, "ui_tiny")
    assert main(["run", str(suite), "--no-ray"]) == 0

    proc, lines = _start_ui([str(suite)], tmp_path)
    tree: list[psutil.Process] = []
    try:
        printed = _read_until(lines, "Press Ctrl-C", START_TIMEOUT)
        tree = _tree(proc.pid)
        runs = re.search(r"Runs of ui_tiny to compare .*?: (http://\S+)", printed)
        invocation = re.search(r"Latest invocation.*?: (http://\S+)", printed)
        assert runs and invocation, printed
        assert runs.group(1).startswith("http://127.0.0.1:")  # loopback unless asked otherwise

        labels = ["ntp seed=0", "mutor seed=0"] if "mutor" in suite.read_text() else ["ntp-a seed=0", "ntp-b seed=0"]
        dom = _render_until(runs.group(1), chromium, ["ui_tiny", *labels])
        missing = [text for text in ["ui_tiny", *labels] if text not in dom]
        assert not missing, f"not on the rendered runs page: {missing}\n{dom[-3000:]}"
        # The link opens MLflow's training view (its sidebar has the model registry), not the GenAI one (judges).
        assert "Model registry" in dom and "Judges" not in dom, "the runs link opened the GenAI view"

        dom = _render_until(invocation.group(1), chromium, ["suite.yaml", "trials.json"])
        assert "suite.yaml" in dom and "trials.json" in dom, "the parent run's artifacts are not served"
        _stop_and_check(proc, lines, signal.SIGTERM, tree + _tree(proc.pid))
    finally:
        _kill(proc, tree)
