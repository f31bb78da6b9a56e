"""A committed result reproduces: ``mtp-bench run`` writes ``provenance.yaml`` beside its comparison, and
``mtp-bench reproduce`` (also ``python -m mtp_bench.analysis.reproduce``) re-runs one seed of one method from it and
finds the same value (CPU runs are deterministic); a tampered committed value fails with exit 1. Before re-running,
it names the commit and the environment it runs and compares them with the provenance's: another commit is refused
without ``--allow-other-commit``, another environment is a warning."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import make_suite, write_suite
from mtp_bench import cli
from mtp_bench.analysis import reproduce
from mtp_bench.tracking.provenance import environment

HEAD, OTHER = "a" * 40, "b" * 40


def reproduce_cli(args: list[str]) -> int:
    return cli.main(["reproduce", *args])


@pytest.fixture
def committed(tmp_path: Path, gsm8k_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A results folder whose provenance names commit HEAD and this machine's environment with another CPU
    capability and torch version; the checkout is HEAD (clean), and no trial is ever run."""
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir))
    recorded = {**environment(), "cpu_capability": "AVX512", "torch_threads": 64}
    recorded["packages"] = {**recorded["packages"], "torch": "0.0.1"}
    record = {"suite": str(path), "overrides": [], "metric": "test/gsm8k/exact_match", "commits": [HEAD],
              "trials_by_commit": {HEAD: {"ntp": [0]}}, "values": {"ntp": {"0": {"last": 0.5}}},
              "environment": [{"trials": {"ntp": [0]}, **recorded}]}
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "provenance.yaml").write_text(yaml.safe_dump(record))
    monkeypatch.setattr(reproduce, "git_commit", lambda cwd=None, short=False, mark_local=False: HEAD)

    def fake_rerun(record, overrides, folder):
        (folder / "ran").write_text("yes")
        return "sqlite:///unused.db"

    monkeypatch.setattr(reproduce, "rerun", fake_rerun)
    monkeypatch.setattr(reproduce, "rerun_environment", lambda record, uri, trial_id: {**environment(),
                                                                                       "torch_threads": 3})
    monkeypatch.setattr(reproduce, "check", lambda *args: ["last/test/gsm8k/exact_match: same"])
    return folder


def _provenance(folder: Path, **changes) -> None:
    record = yaml.safe_load((folder / "provenance.yaml").read_text())
    (folder / "provenance.yaml").write_text(yaml.safe_dump({**record, **changes}))


def test_the_commit_and_environment_are_printed_and_differences_warned(committed: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    workdir = tmp_path / "rerun"
    assert reproduce_cli([str(committed), "--method", "ntp", "--seed", "0", "--workdir", str(workdir)]) == 0
    out, err = capsys.readouterr()
    assert (workdir / "ran").is_file()
    assert f"code: commit {HEAD}" in out and f"ntp seed 0 ran at commit {HEAD[:10]}" in out
    here = environment()
    assert f"torch CPU capability {here['cpu_capability']}" in out and "packages " in out
    assert f"warning: environment differs: cpu_capability: recorded AVX512, here {here['cpu_capability']}" in err
    assert f"torch: recorded 0.0.1, here {here['packages']['torch']}" in err
    # threads are the re-run trial's own, compared after it ran (the reproducing process's would mislead)
    assert "torch_threads: recorded 64, here 3" in err and err.count("torch_threads") == 1
    assert "running commit" not in err


def test_another_commit_is_refused_unless_allowed(committed: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    _provenance(committed, commits=[OTHER], trials_by_commit={HEAD: {"ntp": [1]}, OTHER: {"ntp": [0]}})
    workdir = tmp_path / "rerun"
    assert reproduce_cli([str(committed), "--method", "ntp", "--seed", "0", "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert f"this checkout is commit {HEAD[:10]}, the provenance names {OTHER[:10]} for ntp seed 0" in err
    assert "--allow-other-commit" in err and not (workdir / "ran").exists()  # nothing ran

    args = [str(committed), "--method", "ntp", "--seed", "0", "--workdir", str(workdir), "--allow-other-commit"]
    assert reproduce_cli(args) == 0
    assert f"warning: running commit {HEAD[:10]}, not {OTHER[:10]}" in capsys.readouterr().err
    assert (workdir / "ran").is_file()


def test_older_provenance_files_still_reproduce_with_warnings(committed: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    # Written before trials_by_commit and environments: any listed commit is accepted, machines are not compared.
    record = yaml.safe_load((committed / "provenance.yaml").read_text())
    del record["trials_by_commit"], record["environment"]
    (committed / "provenance.yaml").write_text(yaml.safe_dump({**record, "commits": [OTHER, HEAD]}))
    assert reproduce.recorded_commit(record | {"commits": [OTHER, HEAD]}, "ntp", 0) == (None, [OTHER, HEAD])
    assert reproduce_cli([str(committed), "--method", "ntp", "--seed", "0", "--workdir", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    assert f"ran at commit {OTHER[:10]} or {HEAD[:10]}" in out
    assert "records no environment" in err and "environment differs" not in err
    _provenance(committed, commits=[])
    assert reproduce_cli([str(committed), "--method", "ntp", "--seed", "0", "--workdir", str(tmp_path / "r")]) == 0
    assert "names no commit" in capsys.readouterr().err


@pytest.mark.slow
def test_one_seed_of_a_run_reproduces_and_a_changed_value_does_not(tmp_path: Path, gsm8k_dir: Path, store: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)  # the run writes results/<suite>/ under the working directory
    # The commit the trials are tagged with, and the one reproduce finds checked out: fixed, so that commits landing
    # in the checkout meanwhile do not move them apart.
    import mtp_bench.tracking.runs

    monkeypatch.setattr(mtp_bench.tracking.runs, "git_commit", lambda *args, **kwargs: HEAD)
    monkeypatch.setattr(reproduce, "git_commit", lambda *args, **kwargs: HEAD)
    suite = make_suite(tmp_path, gsm8k_dir, methods=[{"name": "ntp"}, {"name": "mutor", "params": {"d_max": 2}}],
                       grid={"seeds": [0, 1]})
    path = write_suite(tmp_path, suite)
    assert cli.main(["run", str(path), "--no-ray"]) == 0
    folder = tmp_path / "results" / "tiny"
    record = yaml.safe_load((folder / "provenance.yaml").read_text())
    assert record["suite"] == str(path) and record["metric"] == "test/gsm8k/exact_match"
    assert set(record["values"]) == {"ntp", "mutor"} and set(record["values"]["mutor"]) == {"0", "1"}
    assert record["command"] == f"mtp-bench run {path}"
    assert record["commits"] == [HEAD] and record["trials_by_commit"] == {HEAD: {"ntp": [0, 1], "mutor": [0, 1]}}
    (ran,) = record["environment"]  # every trial recorded where it ran: one machine
    assert ran["trials"] == {"ntp": [0, 1], "mutor": [0, 1]} and ran["cpu_capability"] and ran["packages"]["torch"]

    capsys.readouterr()
    workdir = tmp_path / "rerun"
    assert reproduce_cli([str(folder), "--method", "mutor", "--seed", "1", "--workdir", str(workdir)]) == 0
    captured = capsys.readouterr()
    assert "mutor seed 1 reproduces" in captured.out
    assert f"code: commit {HEAD}" in captured.out and "environment: cpu " in captured.out
    differs = [line for line in captured.err.splitlines() if "environment differs" in line]
    assert all("threads" in line for line in differs), differs  # same machine (this test caps its own threads)

    # The same re-run against a committed value that differs: exit 1, naming the metric.
    overrides, trial_id = reproduce.narrowed_overrides(record, "mutor", 1)
    record["values"]["mutor"]["1"]["last"] += 0.25
    with pytest.raises(reproduce.RunFailed, match="DIFFERENT"):
        reproduce.check(record, "mutor", 1, f"sqlite:///{workdir / 'mlflow.db'}", trial_id, 0.0)
    assert reproduce_cli([str(folder), "--method", "medusa", "--seed", "0"]) == 2  # not in the suite


def test_a_run_that_overrode_methods_and_seeds_narrows_to_one_trial_of_its_grid():
    """results/arithmetic_repro was made with `methods=[...]` on the command line: the narrowing replaces that override
    (a key may be given once) and still finds the very trial of the committed grid."""
    from mtp_bench.suite import expand_grid, load_suite

    record = {"suite": "suites/quickstart.yaml",
              "overrides": ["name=narrowing", "methods=[{name: ntp}, {name: mutor, params: {a: 0.5}}]",
                            "grid.seeds=[0, 1, 2]", "baseline=ntp"]}
    overrides, trial_id = reproduce.narrowed_overrides(record, "mutor", 2)
    assert sum(o.startswith("methods=") for o in overrides) == 1 and "grid.seeds=[2]" in overrides
    committed = {(t.method.display_name, t.seed): t.trial_id
                 for t in expand_grid(load_suite(record["suite"], record["overrides"]))}
    assert trial_id == committed[("mutor", 2)]


def test_a_later_commit_that_changed_only_results_or_docs_runs_the_same_code(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Results are committed after the run that made them: the next commit has the same code and is accepted
    without --allow-other-commit; a commit that changed the code is still refused."""
    import subprocess

    from mtp_bench.errors import OtherCommit

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    def commit(path: str, text: str) -> str:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
        git("add", path)
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", path)
        return git("rev-parse", "HEAD")

    git("init", "-q")
    ran = commit("mtp_bench/loop.py", "v1")
    results_only = commit("results/quickstart/README.md", "numbers")
    code_changed = commit("methods/mutor.py", "v2")
    monkeypatch.setattr(reproduce, "SOURCE", tmp_path)
    record = {"commits": [ran], "trials_by_commit": {ran: {"ntp": [0]}}}
    assert reproduce.same_code(ran, results_only) and not reproduce.same_code(ran, code_changed)
    lines = reproduce.check_commit(record, "ntp", 0, False, results_only)
    assert f"this checkout is commit {results_only[:10]}: the code" in lines[-1] and f"same as at {ran[:10]}" in lines[-1]
    with pytest.raises(OtherCommit):
        reproduce.check_commit(record, "ntp", 0, False, code_changed)
    assert not reproduce.same_code("0" * 40, results_only)  # a commit this clone does not have: cannot tell
