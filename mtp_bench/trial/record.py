"""What a running trial records, and where: metrics (each step once, also after a resume that finds steps the run
holds already), per-sample rows and scorers' files as artifacts, its params and tags. Everything goes to the
:class:`~mtp_bench.tracking.Tracker` when the trial has one, from rank 0 only; metrics also go to ``on_metrics`` (a
scheduler's live view)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mtp_bench.suite.config import TrialConfig
from mtp_bench.tracking import flatten, metric_name


class Recorder:
    """The trial's reporting; a no-op where there is no tracker or on ranks other than 0."""

    def __init__(self, trial: TrialConfig, tracker: Any, run_id: str | None, is_main: bool,
                 on_metrics: Callable[[dict[str, float], int], None] | None = None):
        self.trial, self.tracker, self.run_id, self.is_main = trial, tracker, run_id, is_main
        self.on_metrics = on_metrics
        self.logged: dict[str, set[int]] = {}  # metric -> steps the run already holds (a resumed run's)

    @property
    def tracked(self) -> bool:
        """Whether anything is written: a tracker, and this is rank 0."""
        return self.tracker is not None and self.is_main

    @property
    def artifacts(self) -> bool:
        return self.tracked and self.trial.tracking.log_artifacts

    def resumed(self) -> None:
        """A resumed run: never log a step twice (the killed process may have logged past its last checkpoint)."""
        if self.tracked:
            self.logged = self.tracker.logged_steps(self.run_id)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.logged:
            metrics = {k: v for k, v in metrics.items() if step not in self.logged.get(metric_name(k), ())}
        if self.tracked and metrics:
            self.tracker.log_metrics(self.run_id, metrics, step)
        if self.on_metrics is not None and self.is_main:
            self.on_metrics(metrics, step)

    def started(self, prepared: Any, parameters: dict[str, float]) -> None:
        """A new run: the trial's params (flattened), its parameter counts and, with artifacts, its config."""
        if not self.tracked:
            return
        params = flatten(self.trial.model_dump(mode="json", exclude={"tracking", "description"}))
        params["trial_id"] = self.trial.trial_id
        params["device"] = str(prepared.device)
        params["precision"] = str(prepared.precision or "fp32")
        self.tracker.log_params(self.run_id, params)
        self.log(parameters, 0)
        if self.artifacts:
            self.tracker.log_text(self.run_id, yaml.safe_dump(self.trial.model_dump(mode="json"), sort_keys=False),
                                  "trial.yaml")

    def params(self, params: dict[str, str]) -> None:
        if self.tracked:
            self.tracker.log_params(self.run_id, params)

    def tags(self, tags: dict[str, str]) -> None:
        if self.tracked:
            self.tracker.set_tags(self.run_id, tags)

    def rows(self, rows: list[dict[str, Any]], path: str) -> None:
        """Per-sample rows as ``path`` (JSON lines) under the run's artifacts."""
        if self.artifacts:
            self.tracker.log_jsonl(self.run_id, rows, path)

    def samples(self, samples: dict[str, list[dict[str, Any]]], split: str, tag: str = "",
                files: dict[str, dict[str, bytes]] | None = None) -> None:
        """One periodic evaluation's per-sample rows and scorer files, under ``predictions/{tag}{split}_{scorer}``."""
        if not self.artifacts:
            return
        for scorer, rows in samples.items():
            self.tracker.log_jsonl(self.run_id, rows, f"predictions/{tag}{split}_{scorer}.jsonl")
        for scorer, named in (files or {}).items():
            self.files(named, f"predictions/{tag}{split}_{scorer}")

    def files(self, files: dict[str, bytes], artifact_dir: str) -> None:
        """A scorer's extra artifacts (bytes by file name) into ``artifact_dir`` of the run."""
        with tempfile.TemporaryDirectory(prefix="mtp-bench-artifacts-") as folder:
            for name, data in files.items():
                path = Path(folder) / name
                path.write_bytes(data)
                self.tracker.log_file(self.run_id, path, artifact_dir)
