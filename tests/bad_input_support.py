"""What the bad-input tests share: a valid base suite, the check every refusal must pass, and an alias bomb."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from mtp_bench import cli


def base_suite(tmp_path: Path) -> dict:
    """A valid suite that validates in milliseconds: synthetic addition, the smallest preset, two steps."""
    return {
        "name": "bad_input",
        "model": {"preset": "micro-llama"},
        "data": {"task": "addition", "params": {"digits": 2, "train_size": 200, "test_size": 20},
                 "validation_size": 10},
        "methods": [{"name": "ntp"}],
        "train": {"max_steps": 2, "lr": 1.0e-3, "batch_size": 4, "max_length": 16, "progress": False},
        "evaluation": {"scorers": [{"name": "exact_match"}], "max_new_tokens": 4},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", "workdir": str(tmp_path / "trials")},
    }


def write_base_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The base suite as ``tmp_path/suite.yaml``, run from ``tmp_path`` with the suite's own tracking URI."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the suite's own tracking.uri is what is checked
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(base_suite(tmp_path), sort_keys=False))
    return path


def refused(args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, *expected: str) -> str:
    """Run the CLI and check the contract every bad input must meet; returns stderr."""
    started = time.monotonic()
    code = cli.main(args)
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    err = captured.err
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}; stderr:\n{err}\nstdout:\n{captured.out[-2000:]}"
    assert 1 <= len(lines) <= 5, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, f"{text!r} not in:\n{err}"
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert not (tmp_path / "store").exists(), "an MLflow store was created"
    assert not (tmp_path / "trials").exists(), "a trial folder was created"
    return err


def bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"
