"""Progress a person can plan by: trials done of N, the running trials' step of total, and an ETA computed from
what the grid measured (no ETA before any measurement), on the live view, as plain lines when the output is not a
terminal, and in the grid's log file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from mtp_bench.bench.quickstart import events
from mtp_bench.scheduler import live
from mtp_bench.scheduler.live import GridView, progress_log
from mtp_bench.scheduler.progress import Running, kind_of, remaining_seconds
from mtp_bench.scheduler.reports import TrialReport


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(live.time, "monotonic", fake)
    return fake


def _report(trial_id: str, label: str, seconds: float, status: str = "FINISHED") -> TrialReport:
    method = label.split()[0]
    return TrialReport(trial_id, label, method, int(label.rsplit("=", 1)[1]), status, seconds=seconds)


# ------------------------------------------------------------------------------------------- the estimate ----
def test_nothing_measured_means_no_eta_and_nothing_left_means_zero():
    assert remaining_seconds({}, [], ["ntp"], slots=2) is None  # only queued trials: nothing measured
    assert remaining_seconds({}, [Running("ntp", 5.0, 0, 100)], ["ntp"], slots=2) is None  # no step yet
    assert remaining_seconds({}, [Running("ntp", 5.0, 3, None)], [], slots=1) is None  # total unknown
    assert remaining_seconds({"ntp": [9.0]}, [], [], slots=2) == 0.0


def test_a_running_trial_projects_its_step_rate():
    # 40 s for 100 of 400 steps: 160 s in all, 120 s left.
    assert remaining_seconds({}, [Running("ntp", 40.0, 100, 400)], [], slots=1) == pytest.approx(120.0)
    # A queued trial of the same kind takes as long as the running one's projection.
    assert remaining_seconds({}, [Running("ntp", 40.0, 100, 400)], ["ntp"], slots=1) == pytest.approx(280.0)


def test_waiting_trials_fill_free_slots_with_their_kinds_measured_durations():
    finished = {"ntp": [60.0, 80.0], "mutor": [100.0]}
    # Two slots, nothing running: ntp (70) and mutor (100) start together, the second ntp follows the first.
    assert remaining_seconds(finished, [], ["ntp", "mutor", "ntp"], slots=2) == pytest.approx(140.0)
    # A kind that never finished takes the mean of every finished trial ((60 + 80 + 100) / 3 = 80).
    assert remaining_seconds(finished, [], ["medusa"], slots=1) == pytest.approx(80.0)
    # A running mutor at half of its steps after 45 s: its projection (90) and its kind's mean (100) average to 95.
    assert remaining_seconds(finished, [Running("mutor", 45.0, 50, 100)], [], slots=1) == pytest.approx(50.0)


def test_kind_is_the_label_without_its_seed():
    assert kind_of("mutor d_max=2 seed=3") == "mutor d_max=2"
    assert kind_of("ntp seed=0") == kind_of("ntp seed=11") == "ntp"


# ---------------------------------------------------------------------------------------------- the view ----
def _grid(console=None, log: Path | None = None, every: float = 30.0) -> GridView:
    trials = [("a", "ntp seed=0"), ("b", "mutor seed=0"), ("c", "ntp seed=1"), ("d", "mutor seed=1")]
    return GridView(trials, console, log=log, every=every)


def test_progress_line_names_done_running_steps_and_eta(clock: Clock):
    view = _grid()
    assert view.progress_line() == "0/4 done; ETA —"
    view.start("a")
    view.start("b")
    assert view.slots == 2
    # placed, no step reported yet: no ETA
    assert view.progress_line() == "0/4 done, 2 running: ntp seed=0 starting, mutor seed=0 starting; ETA —"
    clock.now += 30.0
    view.update("a", {"train/total_steps": 300.0, "train/loss": 1.0}, step=100)  # 30 s per 100 steps: 60 s left
    view.update("b", {"train/total_steps": 300.0}, step=50)  # 180 s in all: 150 s left
    line = view.progress_line()
    assert line.startswith("0/4 done, 2 running: ntp seed=0 step 100/300, mutor seed=0 step 50/300; ")
    # c (ntp, 90 s) takes a's slot at 60 s -> 150 s; d (mutor, 180 s) takes the first free slot (150 s) -> 330 s.
    assert line.endswith("ETA 5m30s")
    clock.now += 60.0
    view.finish(_report("a", "ntp seed=0", 90.0))
    view.finish(_report("b", "mutor seed=0", 91.0, status="FAILED"))
    line = view.progress_line()
    assert line.startswith("2/4 done (1 failed); ") and "running" not in line
    # Only ntp finished (90 s): both waiting trials take 90 s each, side by side on the two slots.
    assert line.endswith("ETA 1m30s")


def test_live_view_header_shows_done_of_total_and_eta(clock: Clock):
    view = _grid()
    view.start("a")
    clock.now += 10.0
    view.update("a", {"train/total_steps": 100.0}, step=50)
    console = Console(width=160, record=True)
    console.print(view.render())
    text = console.export_text()
    assert "grid: 0/4 done" in text and "1 running" in text and "3 queued" in text
    assert "ETA 1m10s" in text  # a: 10 s left; then three more of 20 s each on the one slot seen
    assert "50/100" in text


def test_plain_output_and_log_file_get_progress_lines_at_a_modest_rate(clock: Clock, tmp_path: Path):
    out = io.StringIO()
    console = Console(file=out, width=200)  # not a terminal: plain lines
    log = progress_log(tmp_path / "trials", "tiny")
    assert log == tmp_path / "trials" / "tiny" / "progress.log"
    with _grid(console, log=log, every=30.0) as view:
        view.start("a")
        view.start("b")
        clock.now += 5.0
        view.update("a", {"train/total_steps": 10.0}, step=5)
        view.tick()  # 5 s since the start: too soon
        clock.now += 30.0
        view.update("b", {"train/total_steps": 10.0}, step=5)
        view.tick()  # 35 s: a progress line
        view.tick()  # just written: nothing
        clock.now += 10.0
        view.finish(_report("a", "ntp seed=0", 45.0))  # an end always writes one
    printed = out.getvalue().splitlines()
    progress = [line for line in printed if " done" in line]
    assert len(progress) == 2, printed
    # Both at 5 of 10 steps after 35 s: 35 s left each; then the two waiting ones, 70 s each, side by side.
    assert progress[0] == "[35s] 0/4 done, 2 running: ntp seed=0 step 5/10, mutor seed=0 step 5/10; ETA 1m45s"
    assert progress[1].startswith("[45s] 1/4 done, 1 running: mutor seed=0 step 5/10; ETA ")
    # The benchmark that times the main job reads the start and end lines, and only those.
    starts, finishes = events(out.getvalue())
    assert starts == [0.0, 0.0] and finishes == [45.0]
    written = log.read_text().splitlines()
    assert written[0].startswith("--- ") and "a grid of 4 trials" in written[0]
    assert written[1:] == printed  # the same lines (the state at the end was the last one already)


def test_on_a_terminal_the_lines_go_to_the_log_only(clock: Clock, tmp_path: Path):
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True)
    log = tmp_path / "progress.log"
    with _grid(console, log=log, every=0.0) as view:
        view.start("a")
        view.update("a", {"train/total_steps": 10.0}, step=1)
        clock.now += 1.0
        view.tick()
    assert "ntp seed=0: started" in log.read_text() and "0/4 done, 1 running" in log.read_text()
    assert "[0s] ntp seed=0: started" not in out.getvalue()  # the live table shows it instead


def test_an_interrupted_grid_leaves_its_state_in_the_log(clock: Clock, tmp_path: Path):
    log = tmp_path / "progress.log"
    with pytest.raises(KeyboardInterrupt), _grid(log=log) as view:
        view.start("a")
        clock.now += 3.0
        raise KeyboardInterrupt
    assert log.read_text().splitlines()[-1] == "[3s] 0/4 done, 1 running: ntp seed=0 starting; ETA — (interrupted)"
