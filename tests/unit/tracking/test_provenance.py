"""The commit recorded under benchmark tables and on runs: "+local changes" means changed code, not written results."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mtp_bench.tracking.provenance import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _repo(path: Path) -> None:
    (path / "results").mkdir()
    (path / "mtp_bench").mkdir()
    (path / "results" / "benchmarks.md").write_text("old\n")
    (path / "mtp_bench" / "code.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "i"]):
        subprocess.run(["git", *args], cwd=path, check=True)


def test_written_results_are_not_local_changes_but_code_is(tmp_path: Path):
    _repo(tmp_path)
    clean = git_commit(tmp_path, short=True, mark_local=True)
    assert clean and "+local" not in clean
    (tmp_path / "results" / "benchmarks.md").write_text("a section a benchmark part just wrote\n")
    assert git_commit(tmp_path, short=True, mark_local=True) == clean
    (tmp_path / "mtp_bench" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path, short=True, mark_local=True) == clean + " +local changes"
    (tmp_path / "mtp_bench" / "code.py").write_text("x = 1\n")
    (tmp_path / "mtp_bench" / "new.py").write_text("y = 1\n")  # a new, untracked module is a change too
    assert git_commit(tmp_path, short=True, mark_local=True) == clean + " +local changes"
    assert git_commit(tmp_path, short=True) == clean  # without mark_local: the bare commit


# ------------------------------------------------------------------------------------------- environment ----
def test_environment_records_versions_cpu_kernels_threads_and_variables(monkeypatch: pytest.MonkeyPatch):
    import platform

    import torch

    from mtp_bench.tracking.provenance import ENV_VARS, PACKAGES, environment

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    env = environment()
    assert env["python"] == platform.python_version()
    assert env["cpu"] and env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["torch_interop_threads"] == torch.get_num_interop_threads()
    assert set(env["packages"]) == set(PACKAGES) and env["packages"]["torch"] == torch.__version__
    assert list(env["env"]) == list(ENV_VARS)
    assert env["env"]["ATEN_CPU_CAPABILITY"] == "avx2" and env["env"]["MKL_CBWR"] is None


def test_environment_survives_the_round_trip_through_run_tags_and_differences_are_named():
    from mtp_bench.tracking.provenance import (
        ENV_VARS,
        environment_differences,
        environment_from_tags,
        environment_tags,
    )

    env = {"python": "3.11.7", "platform": "Linux-6.8-x86_64", "cpu": "AMD EPYC 7763 (AuthenticAMD)",
           "cpu_capability": "AVX2", "torch_threads": 2, "torch_interop_threads": 2,
           "packages": {"mtp-bench": "0.1.0", "torch": "2.5.1", "transformers": "5.0.0", "mlflow": "3.1",
                        "ray": "2.40.0", "numpy": "2.1.0", "scipy": None},
           "env": {name: {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"}.get(name) for name in ENV_VARS}}
    tags = environment_tags(env)
    assert all(key.startswith("mtp_bench.env.") for key in tags)
    assert tags["mtp_bench.env.cpu_capability"] == "AVX2"
    assert tags["mtp_bench.env.vars"] == "ATEN_CPU_CAPABILITY=avx2 OMP_NUM_THREADS=1"
    assert environment_from_tags(tags) == env
    assert environment_from_tags({"mtp_bench.seed": "0"}) is None  # a run from before environments were recorded

    other = {**env, "platform": "Linux-5.15", "cpu": "Intel Xeon (GenuineIntel)", "cpu_capability": "AVX512",
             "packages": {**env["packages"], "torch": "2.6.0"}, "env": {**env["env"], "ATEN_CPU_CAPABILITY": None}}
    lines = environment_differences(env, other)
    assert lines == ["cpu: recorded AMD EPYC 7763 (AuthenticAMD), here Intel Xeon (GenuineIntel)",
                     "cpu_capability: recorded AVX2, here AVX512",
                     "torch: recorded 2.5.1, here 2.6.0",
                     "$ATEN_CPU_CAPABILITY: recorded avx2, here unset"]  # the platform string is not compared
    assert environment_differences(env, env) == []


def test_tracked_by_git_tells_committed_folders_from_new_ones(tmp_path: Path):
    from mtp_bench.tracking.provenance import tracked_by_git

    _repo(tmp_path)
    assert tracked_by_git(tmp_path / "results")
    (tmp_path / "results" / "mine").mkdir()
    (tmp_path / "results" / "mine" / "compare.md").write_text("a run's\n")
    assert not tracked_by_git(tmp_path / "results" / "mine")  # written, never committed
    assert not tracked_by_git(tmp_path / "results" / "absent")
    assert not tracked_by_git(tmp_path.parent)  # no repository there
