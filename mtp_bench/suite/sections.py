"""The sections of a suite (model, data, methods, train, evaluation, grid, tracking, resources): pydantic models,
every field documented where it is declared.

A suite names a model, data, the methods to compare, training and evaluation settings, a grid, tracking and
resources. Plugin-owned settings (``methods[].params``, ``data.params``, ``evaluation.scorers[].params``) are
validated by the plugin's own ``Params`` model; see :mod:`mtp_bench.suite.load`.

This module imports neither torch nor ray nor mlflow, so that ``--help`` and validation stay fast.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from mtp_bench.suite.presets import PACKAGED, PRESETS


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a suite must never be silently ignored. Numbers must be finite (``.inf``
    and ``nan`` are refused); ``true`` given for a number is refused in :mod:`mtp_bench.suite.load`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True,
                              allow_inf_nan=False)


class ModelConfig(StrictModel):
    preset: str | None = None
    """A built-in model (see ``mtp-bench presets``). A tiny preset is built from a config with a tokenizer trained
    offline on the task's own text and cached; its weights start random. A packaged preset (``smollm2-135m``) is a
    pretrained checkpoint that a pip package ships as a GGUF file, loaded as ``gguf_file`` is, with its own tokenizer.
    Exactly one of ``preset`` and ``pretrained`` is set."""

    pretrained: str | None = None
    """A Hugging Face hub id (``Qwen/Qwen2.5-0.5B``), a local directory written by ``save_pretrained``, a local
    folder holding ``gguf_file``, or a local ``.gguf`` file."""

    gguf_file: str | None = None
    """A GGUF file (llama.cpp's single-file format) inside the local folder ``pretrained``, loaded with its tokenizer
    instead of Hugging Face weights (``pretrained`` may instead name a ``.gguf`` file itself). transformers converts it
    once into a Hugging Face folder cached under ``$MTP_BENCH_CACHE`` (default ``~/.cache/mtp-bench``)``/gguf``,
    keyed by the file's content, so later loads take seconds. Quantised weights are de-quantised to float: a real
    pretrained network with quantisation noise, not the original checkpoint. Needs the ``gguf`` package."""

    revision: str | None = None
    """Hub revision (branch, tag or commit) of ``pretrained``."""

    tokenizer: str | None = None
    """Tokenizer hub id or directory when it differs from ``pretrained``."""

    config_overrides: dict[str, Any] = Field(default_factory=dict)
    """Fields set on the model config before the model is built (e.g. ``num_hidden_layers: 4``)."""

    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "sdpa"
    """Attention kernel. MuToR and the bidirectional prompt need a 4D mask: use ``eager`` or ``sdpa`` for them."""

    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the weights are loaded in. Keep float32 and set ``train.precision`` for mixed precision training (or
    ``bf16-pure`` for bf16 weights and optimiser state)."""

    tokenizer_vocab_size: int = Field(default=512, ge=16)
    """Tiny presets only: vocabulary size of the tokenizer trained on the task's text (word-level tasks use fewer)."""

    trust_remote_code: bool = False
    """Allow model code from the hub. Off by default: it runs code you have not read."""

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.preset is None) == (self.pretrained is None):
            raise ValueError("set exactly one of model.preset and model.pretrained")
        if self.gguf_file is not None and self.pretrained is None:
            raise ValueError("model.gguf_file names a file inside model.pretrained (a local folder): set that too")
        return self

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str | None) -> str | None:
        if name is not None and name not in PRESETS and name not in PACKAGED:
            raise ValueError(f"unknown preset {name!r}; presets: {', '.join(sorted([*PRESETS, *PACKAGED]))}")
        return name

    @model_serializer(mode="wrap")
    def _omit_unset_gguf_file(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Added after trial ids were first recorded: out of the dump (so out of the id) while unset, as TrainConfig's
        # later knobs, so that every earlier trial keeps its id.
        data = handler(self)
        if self.gguf_file is None:
            data.pop("gguf_file", None)
        return data


class DataConfig(StrictModel):
    task: str = "gsm8k"
    """Task plugin (``mtp-bench tasks`` lists them): where examples come from and how they are formatted."""

    params: dict[str, Any] = Field(default_factory=dict)
    """Settings of the task, validated by the task's own model (e.g. GSM8K ``source``/``path``, star-graph
    ``degree``)."""

    train_limit: int | None = Field(default=None, ge=1)
    """Use only the first N training examples (after carving out validation)."""

    validation_size: int | float = Field(default=0, ge=0)
    """Examples carved from the training split for validation and checkpoint selection: a count, or a fraction if
    below 1. Never taken from the test split."""

    eval_limit: int | None = Field(default=None, ge=1)
    """Score only the first N examples of each evaluation split (validation and test)."""

    prompt_template: str | None = None
    """Override the task's prompt template, a ``str.format`` string over the example's fields (GSM8K's default is the
    MuToR paper's ``Question: {question}\\n\\nAnswer:``)."""

    answer_template: str | None = None
    """Override the task's answer template (GSM8K default: ``" {answer}"``); the end-of-sequence token follows it."""


class MethodEntry(StrictModel):
    name: str
    """Method plugin (``mtp-bench methods`` lists the installed ones)."""

    label: str | None = None
    """Name of this entry in results; defaults to ``name``. Needed when one method appears twice."""

    params: dict[str, Any] = Field(default_factory=dict)
    """The method's own settings, validated by its ``Params`` model."""

    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    """Grid over this method's settings only: ``{"params.a": [0.1, 0.3]}``; crossed with ``grid.overrides``."""

    @property
    def display_name(self) -> str:
        return self.label or self.name


class LoraConfig(StrictModel):
    r: int = Field(default=32, ge=1)
    """LoRA rank (the MuToR paper's LoRA runs use 32)."""

    alpha: float = 64.0
    """LoRA scaling numerator (scale = alpha / r)."""

    dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the LoRA path."""

    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Modules that get adapters: names (``q_proj``, ``v_proj``) or ``all-linear``."""


class TrainConfig(StrictModel):
    mode: Literal["full", "lora", "pretrain"] = "full"
    """``full`` fine-tunes every weight and ``lora`` trains adapters (both: loss on answer tokens only);
    ``pretrain`` starts from random weights built from the model's config and puts the loss on every token."""

    max_steps: int | None = Field(default=None, ge=1)
    """Optimiser steps to train. Exactly one of ``max_steps`` and ``epochs`` is set."""

    epochs: float | None = Field(default=None, gt=0)
    """Passes over the training data (fractions allowed)."""

    max_positions: int | None = Field(default=None, ge=1)
    """Compute budget: stop at the first optimiser step by which the model has processed this many token positions
    (real tokens plus any a method inserts, all workers: the run's ``train/tokens_processed``). ``max_steps`` or
    ``epochs`` stays the upper bound. The steps are counted before training (the method's batch transform over the
    steps, no forward pass), so warm-up and decay span the budgeted run. To match a reference method (the paper's
    compute-matched NTP, Table 3), set it to the reference run's ``train/tokens_processed_total`` (times a ratio)."""

    max_flops: float | None = Field(default=None, gt=0)
    """The same budget in estimated training FLOPs (the run's ``train/flops``: 6 x parameters x positions), e.g. a
    reference run's ``train/flops_total``; methods with more parameters then get fewer positions. At most one of
    ``max_positions`` and ``max_flops``."""

    lr: float = Field(default=5e-5, gt=0)
    """Peak learning rate of AdamW."""

    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW decoupled weight decay (the MuToR paper uses none)."""

    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""

    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    """Share of the steps spent in linear warm-up (ignored when ``warmup_steps`` is set)."""

    warmup_steps: int | None = Field(default=None, ge=0)
    """Warm-up steps; overrides ``warmup_ratio``."""

    schedule: Literal["linear", "cosine", "constant"] = "linear"
    """Learning-rate decay after warm-up (to zero for linear and cosine)."""

    batch_size: int = Field(default=8, ge=1)
    """Sequences per micro-batch on each device."""

    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches per optimiser step. Effective batch = batch_size x grad_accum x data-parallel workers."""

    loss_normalisation: Literal["token", "sequence"] = "token"
    """How each loss term is averaged over an optimiser step. ``token``: a token mean over the whole step (all
    micro-batches, all workers). ``sequence``: the official MuToR code's - each sequence's token mean, then the mean
    over the step's sequences, so every sequence weighs the same (the loop then runs the method on one sequence at
    a time, as that code does with batch size 1: slower on a GPU at large ``batch_size``)."""

    max_length: int = Field(default=512, ge=8)
    """Longest sequence (prompt + answer tokens, before any tokens a method inserts)."""

    overlength: Literal["drop", "truncate"] = "drop"
    """What to do with longer sequences: drop them (the MuToR paper) or cut the answer."""

    clip_grad_norm: float | None = Field(default=1.0, gt=0)
    """Clip the global gradient norm to this value; null to disable."""

    precision: Literal["auto", "fp32", "bf16", "bf16-pure", "fp16"] = "auto"
    """``auto``: bf16 on a GPU that supports it, fp32 on the CPU. ``bf16`` and ``fp16`` are mixed precision:
    weights, gradients and AdamW state stay fp32 and the forward runs under autocast. ``bf16-pure`` keeps the weights
    (the method's extra modules included), gradients and AdamW state in bf16 too, as the MuToR code fine-tunes
    ("loaded and finetuned in bfloat16"): half the memory, coarser updates; the forward still runs under bf16
    autocast, so losses and softmaxes are computed in fp32. Checkpoints and the exported model are then bf16."""

    device: str = "auto"
    """``auto`` (a GPU when one is visible, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""

    torch_threads: int | None = Field(default=None, ge=1)
    """CPU threads for torch in a trial; default: ``resources.cpus_per_trial`` (at least 1), with Ray and without
    (``--no-ray``), so that a trial computes the same numbers under either."""

    deterministic: bool = False
    """Ask torch for deterministic kernels (slower on GPU; CPU runs repeat without it)."""

    lora: LoraConfig = Field(default_factory=LoraConfig)
    """Adapter settings, used when ``mode`` is ``lora``."""

    log_every: int = Field(default=10, ge=1)
    """Log training metrics every N optimiser steps."""

    progress: bool = True
    """Show a progress bar."""

    checkpoint: bool = True
    """Save a checkpoint at each evaluation (and at the end) so an interrupted trial resumes."""

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainConfig:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of train.max_steps and train.epochs")
        if self.max_positions is not None and self.max_flops is not None:
            raise ValueError("set at most one of train.max_positions and train.max_flops")
        return self

    @model_serializer(mode="wrap")
    def _omit_unused_later_knobs(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Knobs added after trial ids were first recorded stay out of the dump (so out of the id) while at their
        # defaults: trials that do not use them keep their ids, and resume or compare against earlier runs.
        data = handler(self)
        for name, default in _LATER_KNOBS.items():
            if getattr(self, name) == default:
                data.pop(name, None)
        return data


_LATER_KNOBS: dict[str, Any] = {"loss_normalisation": "token", "max_positions": None, "max_flops": None}


class ScorerEntry(StrictModel):
    name: str
    """Scorer plugin (``mtp-bench scorers`` lists them)."""

    params: dict[str, Any] = Field(default_factory=dict)
    """The scorer's own settings, validated by its ``Params`` model."""


class LmEvalConfig(StrictModel):
    tasks: list[str] = Field(default_factory=list)
    """lm-eval task names (e.g. ``gsm8k``, or our offline ``gsm8k_local``); empty to skip lm-eval."""

    limit: int | None = Field(default=None, ge=1)
    """Documents per task."""

    num_fewshot: int | None = Field(default=None, ge=0)
    """Few-shot examples; null keeps each task's default."""

    batch_size: int = Field(default=8, ge=1)
    """Batch size lm-eval uses."""

    include_path: str | None = None
    """Extra directory of task YAMLs (our offline GSM8K tasks are always included)."""

    allow_unsafe_code: bool = False
    """Allow tasks that execute model-written code (lm-eval's ``unsafe_code``). Off unless you opt in."""

    data_dir: str | None = None
    """Data folder of the shipped offline tasks: GSM8K ``train.jsonl``/``test.jsonl`` (``gsm8k_local``,
    ``gsm8k_cot_local``, ``gsm8k_mutor_local``), AQuA-RAT's ``test.json`` (``agieval_aqua_rat_local``) or a
    MATH500-format ``test.jsonl`` (``minerva_math500_local``). Default: the family's variable (``$MTP_BENCH_GSM8K_DIR``,
    ``$MTP_BENCH_AQUA_DIR``, ``$MTP_BENCH_MATH500_DIR``), else for GSM8K the suite's own local GSM8K folder
    (``data.params.path``), else the task YAML's (``../shared/data/...``). Relative paths start at the working
    directory."""

    max_gen_toks: int | None = Field(default=None, ge=1)
    """Cap on generated tokens per document of generation tasks; default: each task's own (512 for
    ``gsm8k_mutor_local``, lm-eval's 256 for most others). Lower it for quick CPU checks only."""

    checkpoints: Literal["last", "selected", "both"] = "both"
    """Which checkpoints lm-eval scores: the last, the selected one (``best`` or ``best_on_test``; the last when
    selection is off), or both. Metrics are prefixed like the scorers' (``last/lm_eval/gsm8k_local/...``)."""


class EvalConfig(StrictModel):
    scorers: list[ScorerEntry] = Field(default_factory=list)
    """Scorers run on the exported model (generation-based accuracy and the like)."""

    lm_eval: LmEvalConfig = Field(default_factory=LmEvalConfig)
    """lm-eval tasks run on the exported in-memory model at the end of training."""

    every_steps: int | None = Field(default=None, ge=1)
    """Evaluate on the validation split (and checkpoint) every N optimiser steps."""

    every_epochs: float | None = Field(default=None, gt=0)
    """Evaluate on the validation split every N epochs; default: once per epoch when training by epochs."""

    select_on: Literal["validation", "test", "last"] = "validation"
    """Checkpoint reported as ``best``: best on validation (needs ``data.validation_size``), best on *test* (what the
    MuToR paper did for GSM8K; labelled as such everywhere), or the last only."""

    select_metric: str | None = None
    """Metric that picks the best checkpoint, e.g. ``gsm8k/exact_match``; default: the first scorer's main metric."""

    batch_size: int = Field(default=16, ge=1)
    """Prompts per generation batch."""

    max_new_tokens: int = Field(default=512, ge=1)
    """Greedy-decoding budget per prompt (the MuToR paper uses 512 for GSM8K)."""

    test_split: bool = True
    """Score the test split at the end of training."""

    held_out_loss: bool = True
    """Log every method's loss terms (per-horizon losses and accuracies) on the validation split, or on the test
    split when there is no validation split."""


class GridConfig(StrictModel):
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    """Seeds; every method x override cell runs once per seed."""

    overrides: dict[str, list[Any]] = Field(default_factory=dict)
    """Dotted key -> values, crossed: ``{"train.lr": [1e-4, 3e-4]}``. Each combination is a grid cell."""


class TrackingConfig(StrictModel):
    uri: str = "sqlite:///results/mlflow.db"
    """MLflow tracking URI. Relative SQLite paths are made absolute (trial processes change directory);
    ``MLFLOW_TRACKING_URI`` overrides it."""

    experiment: str | None = None
    """Experiment name; default: the suite's name."""

    log_artifacts: bool = True
    """Save the resolved trial config and per-sample predictions as run artifacts."""

    workdir: str = "results/trials"
    """Folder for checkpoints and exported models, one subfolder per suite and trial id (made absolute)."""


class ResourcesConfig(StrictModel):
    cpus_per_trial: float = Field(default=1.0, gt=0)
    """CPUs reserved for each trial (fractions allowed)."""

    gpus_per_trial: float = Field(default=0.0, ge=0)
    """GPUs reserved for each trial worker (fractions allowed)."""

    num_workers: int = Field(default=1, ge=1)
    """Data-parallel workers per trial; above 1 the trial trains through Ray Train."""

    strategy: Literal["ddp", "fsdp"] = "ddp"
    """How a multi-worker trial shards: DDP replicates the model, FSDP shards it (for models that do not fit)."""

    max_concurrent_trials: int | None = Field(default=None, ge=1)
    """Cap on trials running at once; default: as many as resources allow."""

    max_retries: int = Field(default=0, ge=0)
    """Times a failed trial is retried before it is reported as failed."""
