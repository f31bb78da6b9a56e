"""Suite configuration: the suite and the trial (one grid cell), built from the sections in
:mod:`mtp_bench.suite.sections` (re-exported here). Every field is documented where it is declared.

What a suite names and which settings plugins own: see :mod:`mtp_bench.suite.sections`. Like the sections, this
module imports neither torch nor ray nor mlflow, so that ``--help`` and validation stay fast.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from mtp_bench.suite.reference import ReferenceConfig, cell_names
from mtp_bench.suite.sections import (
    DataConfig,
    EvalConfig,
    GridConfig,
    LmEvalConfig,
    LoraConfig,
    MethodEntry,
    ModelConfig,
    ResourcesConfig,
    ScorerEntry,
    StrictModel,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig", "EvalConfig", "GridConfig", "LmEvalConfig", "LoraConfig", "MethodEntry", "ModelConfig",
    "ReferenceConfig", "ResourcesConfig", "ScorerEntry", "StrictModel", "SuiteConfig", "TrackingConfig", "TrainConfig",
    "TrialConfig",
]


class SuiteConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Suite name: the MLflow experiment and the ``results/<name>/`` folder."""

    description: str = ""
    """What the suite measures, shown in listings."""

    model: ModelConfig
    """The model every method starts from."""

    data: DataConfig = Field(default_factory=DataConfig)
    """Task and splits."""

    methods: list[MethodEntry] = Field(min_length=1)
    """Methods to compare."""

    baseline: str = "ntp"
    """Label of the method others are tested against in ``mtp-bench compare``."""

    bidirectional_prompt: bool = False
    """Prompt tokens attend to each other in both directions, in training and in evaluation prefill, for every
    method alike (the MuToR paper's setting). Default: causal."""

    train: TrainConfig
    """Training settings shared by every method."""

    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    """What is measured, and when."""

    grid: GridConfig = Field(default_factory=GridConfig)
    """Seeds and hyper-parameter values to cross with the methods."""

    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """Where runs are recorded."""

    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    """What each trial reserves from the scheduler."""

    reference: ReferenceConfig | None = None
    """Published numbers to hold ours against (a paper's table): ``mtp-bench compare`` prints each beside our mean
    with the gap. Changes no trial."""

    @field_validator("methods")
    @classmethod
    def _unique_labels(cls, methods: list[MethodEntry]) -> list[MethodEntry]:
        labels = [m.display_name for m in methods]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"method labels must be unique, repeated: {', '.join(duplicates)} (set `label`)")
        return methods

    @model_validator(mode="after")
    def _reference_names(self) -> SuiteConfig:
        """The reference's method labels, scorers and lm-eval tasks exist in this suite; each problem is reported
        at its own key path (``reference.metrics.<metric>.<label>``)."""
        if self.reference is None:
            return self
        problems = self.reference.problems([m.display_name for m in self.methods],
                                           [s.name for s in self.evaluation.scorers], self.evaluation.lm_eval.tasks,
                                           cell_names({m.display_name: m.sweep for m in self.methods},
                                                      self.grid.overrides))
        if problems:
            raise ValidationError.from_exception_data("SuiteConfig", [
                InitErrorDetails(type=PydanticCustomError("reference_name", message), loc=("reference", *where),
                                 input=name)
                for where, message, name in problems])
        return self


# Fields of a trial that do not change what it computes; kept out of its id so a resumed grid finds its trials
# after, say, the tracking URI, the concurrency or the progress bar changes.
_NOT_IN_TRIAL_ID: dict[str, Any] = {"tracking": True, "resources": True, "description": True,
                                    "train": {"progress"}}


class TrialConfig(StrictModel):
    """One grid cell: a method with its settings, the shared settings after overrides, and one seed."""

    suite: str
    """Name of the suite this trial belongs to."""

    description: str = ""
    """The suite's description."""

    model: ModelConfig
    """Model settings after overrides."""

    data: DataConfig
    """Data settings after overrides."""

    method: MethodEntry
    """The method, with ``params`` validated and completed with its defaults, and ``sweep`` emptied."""

    bidirectional_prompt: bool = False
    """See ``SuiteConfig.bidirectional_prompt``."""

    train: TrainConfig
    """Training settings after overrides."""

    evaluation: EvalConfig
    """Evaluation settings after overrides."""

    tracking: TrackingConfig
    """Tracking settings."""

    resources: ResourcesConfig
    """Resources per trial."""

    seed: int
    """Seed of this trial (model init, data order, method randomness)."""

    cell: dict[str, Any] = Field(default_factory=dict)
    """The grid values that make this cell (dotted key -> value), for labels and comparison."""

    @property
    def trial_id(self) -> str:
        """Stable id: a hash of everything that determines the result."""
        payload = self.model_dump(mode="json", exclude=_NOT_IN_TRIAL_ID)
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """Human-readable name: method label, grid values, seed."""
        parts = [self.method.display_name]
        parts += [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in sorted(self.cell.items())]
        parts.append(f"seed={self.seed}")
        return " ".join(parts)
