"""What every benchmark part shares: sizes (full and ``--quick``), the run context (machine, versions, command, load
average), interleaved timing with medians and spread, and GSM8K-shaped batches built through the real trial path.

Timing under load. These machines are shared and noisy, so compared variants run interleaved: every round runs each
variant once on the *same* batch (order reversed every other round, so that neither always goes first), and the
reported ratio is the median of the per-round ratios, with its inter-quartile range. A ratio taken inside one round is
measured under (nearly) the same load on both sides; a ratio of two separate averages is not.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mtp_bench.api import TokenBatch

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sizes:
    """How big each part runs. ``FULL`` fits the whole run in about 10 minutes on 2 loaded cores; ``QUICK`` is the
    smoke test (seconds a part)."""

    quick: bool
    model: dict[str, Any]  # suite ``model`` section of the GSM8K parts (overhead, methods, eval)
    train_limit: int | None  # GSM8K training examples kept (tokenizer text and batch pool); None: all of them
    batch_size: int
    n_batches: int  # distinct GSM8K batches, cycled over the rounds
    max_length: int  # longer GSM8K examples are dropped, as in the paper
    overhead_rounds: int
    overhead_warmup: int
    method_rounds: int
    method_warmup: int
    memory_steps: int  # training steps in each fresh memory-probe process
    eval_prompts: int
    eval_new_tokens: int
    eval_batch: int
    eval_rounds: int
    spec_model: dict[str, Any]
    spec_steps: int
    spec_batch: int
    spec_prompts: int
    spec_new_tokens: int
    spec_k: int  # drafts per verifier step
    makespan_trials: int
    makespan_steps: int


FULL = Sizes(
    quick=False, model={"preset": "tiny-llama", "tokenizer_vocab_size": 512}, train_limit=None, batch_size=8,
    n_batches=4, max_length=512, overhead_rounds=20, overhead_warmup=2, method_rounds=6, method_warmup=1,
    memory_steps=3, eval_prompts=64, eval_new_tokens=128, eval_batch=16, eval_rounds=3,
    spec_model={"preset": "tiny-llama", "tokenizer_vocab_size": 512}, spec_steps=150, spec_batch=8,
    spec_prompts=12, spec_new_tokens=128, spec_k=3, makespan_trials=4, makespan_steps=100,
)
QUICK = Sizes(
    quick=True, model={"preset": "micro-llama", "tokenizer_vocab_size": 256}, train_limit=200, batch_size=2,
    n_batches=2, max_length=256, overhead_rounds=3, overhead_warmup=1, method_rounds=2, method_warmup=1,
    memory_steps=1, eval_prompts=4, eval_new_tokens=8, eval_batch=2, eval_rounds=1,
    spec_model={"preset": "micro-llama", "tokenizer_vocab_size": 256}, spec_steps=4, spec_batch=4,
    spec_prompts=2, spec_new_tokens=12, spec_k=3, makespan_trials=2, makespan_steps=5,
)


def sizes_for(quick: bool, model: str | None) -> Sizes:
    """The sizes of a run; ``model`` (a preset name, hub id or local directory) replaces the default model."""
    sizes = QUICK if quick else FULL
    if model is None:
        return sizes
    from mtp_bench.models.presets import PRESETS

    section = {"preset": model, "tokenizer_vocab_size": sizes.model.get("tokenizer_vocab_size", 512)} \
        if model in PRESETS else {"pretrained": model}
    return replace(sizes, model=section, spec_model=section)


# ------------------------------------------------------------------------------------------- run context ----
@dataclass
class Settings:
    """What the user chose for this run (recorded with every table)."""

    sizes: Sizes
    device: str  # "auto", "cpu", "cuda", ...
    threads: int  # torch CPU threads
    command: str  # the equivalent command line


def load_average() -> str:
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int) -> str:
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram = psutil.virtual_memory().total / 2**30
    gpu = "no GPU"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{torch.cuda.device_count()} x {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return (f"{_cpu_model()}, {os.cpu_count()} cores ({usable} usable), {ram:.1f} GiB RAM, {gpu}; "
            f"torch CPU threads {threads}; {platform.system()} {platform.release()}")


def git_commit() -> str:
    """Short commit of the checkout that ran, with ``+local changes`` when the code differs from it (tracked files
    changed, or new files in the package). Read-only: ``GIT_OPTIONAL_LOCKS=0`` keeps ``git status`` from refreshing
    the index."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10, env=env).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True, timeout=10, env=env).stdout.strip()
        status += subprocess.run(["git", "status", "--porcelain", "--", "mtp_bench", "methods"], cwd=REPO,
                                 capture_output=True, text=True, timeout=10, env=env).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + (" +local changes" if status else "")


def versions() -> str:
    import importlib.metadata as metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (f"python {platform.python_version()}, torch {torch.__version__}, transformers {version('transformers')}, "
            f"lm-eval {version('lm_eval')}, mtp-bench {version('mtp-bench')} (git {git_commit()})")


@dataclass
class RunContext:
    """Machine, versions, command, load and time of one part: written under its table."""

    machine: str
    versions: str
    command: str
    load_before: str
    started: float = field(default_factory=time.time)
    load_after: str = ""
    seconds: float = 0.0

    @classmethod
    def begin(cls, settings: Settings) -> RunContext:
        return cls(machine(settings.threads), versions(), settings.command, load_average())

    def end(self) -> RunContext:
        self.load_after = load_average()
        self.seconds = time.time() - self.started
        return self


# ---------------------------------------------------------------------------------------------- timing ----
@dataclass
class Spread:
    median: float
    q1: float
    q3: float
    n: int

    def text(self, digits: int = 3) -> str:
        return f"{self.median:.{digits}f} [{self.q1:.{digits}f}–{self.q3:.{digits}f}]"


def spread(values: list[float]) -> Spread:
    """Median and inter-quartile range (the range itself with fewer than 4 values)."""
    if not values:
        raise ValueError("no values")
    if len(values) < 4:
        return Spread(statistics.median(values), min(values), max(values), len(values))
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Spread(statistics.median(values), q1, q3, len(values))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Interleaved:
    """Wall-clock seconds, CPU seconds of this process and return values of each variant, one entry per measured
    round (warm-up rounds excluded). CPU time does not run while other processes hold the cores, so on a loaded
    CPU-only machine its ratios are far less noisy than wall-clock ones (on a GPU it is meaningless: kernels run
    asynchronously)."""

    seconds: dict[str, list[float]]
    cpu_seconds: dict[str, list[float]]
    results: dict[str, list[Any]]

    def ratios(self, name: str, baseline: str, cpu: bool = False) -> list[float]:
        """Per-round time ratio ``name / baseline`` (same round, same batch)."""
        times = self.cpu_seconds if cpu else self.seconds
        return [a / b for a, b in zip(times[name], times[baseline])]


def interleave(calls: dict[str, Callable[[int], Any]], *, rounds: int, warmup: int,
               device: torch.device) -> Interleaved:
    """Run every call once per round, ``warmup`` rounds untimed first; ``calls[name](index)`` gets the round index
    (warm-up rounds included), so that all variants of a round see the same batch."""
    names = list(calls)
    for index in range(warmup):
        for name in names:
            calls[name](index)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, list[Any]] = {name: [] for name in names}
    for offset in range(rounds):
        index = warmup + offset
        for name in names if offset % 2 == 0 else reversed(names):
            synchronize(device)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = calls[name](index)
            synchronize(device)
            seconds[name].append(time.perf_counter() - started)
            cpu_seconds[name].append(time.process_time() - cpu_started)
            results[name].append(result)
    return Interleaved(seconds, cpu_seconds, results)


# ---------------------------------------------------------------------------------------- GSM8K batches ----
def gsm8k_dir() -> Path:
    """``$MTP_BENCH_GSM8K_DIR``, else ``../shared/data/gsm8k`` beside the repository or the working directory."""
    from mtp_bench.data.tasks import DataError

    candidates = [os.environ.get("MTP_BENCH_GSM8K_DIR"), REPO.parent / "shared" / "data" / "gsm8k",
                  Path("../shared/data/gsm8k")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train.jsonl").is_file() and (Path(candidate) / "test.jsonl").is_file():
            return Path(candidate).resolve()
    raise DataError("GSM8K not found: set MTP_BENCH_GSM8K_DIR to a folder with train.jsonl and test.jsonl")


def trials(document: dict[str, Any]) -> list[Any]:
    """Trials of a suite document, validated and expanded exactly as ``mtp-bench run`` does."""
    from mtp_bench.suite import expand_grid
    from mtp_bench.suite.load import validate_suite

    return expand_grid(validate_suite(document))


def gsm8k_suite(settings: Settings, methods: list[dict[str, Any]], *, bidirectional: bool = False,
                lr: float = 1e-4) -> dict[str, Any]:
    """A GSM8K suite document: the paper's prompt format, the preset's tokenizer trained on GSM8K, AdamW, clipping
    1.0, no warm-up (a linear decay from the first step), the run's device and precision."""
    sizes = settings.sizes
    data: dict[str, Any] = {"task": "gsm8k", "params": {"source": "local", "path": str(gsm8k_dir())}}
    if sizes.train_limit:
        data["train_limit"] = sizes.train_limit
    return {
        "name": "bench-gsm8k",
        "model": dict(sizes.model),
        "data": data,
        "methods": methods,
        "baseline": methods[0].get("label") or methods[0]["name"],
        "bidirectional_prompt": bidirectional,
        "train": {"max_steps": 100_000, "lr": lr, "batch_size": sizes.batch_size, "max_length": sizes.max_length,
                  "warmup_ratio": 0.0, "clip_grad_norm": 1.0, "device": settings.device, "progress": False,
                  "checkpoint": False},
    }


def batch_indices(n_items: int, sizes: Sizes, seed: int = 0) -> list[list[int]]:
    """Fixed training examples for every batch: the same for every variant that tokenized the same data."""
    rng = random.Random(seed)
    chosen = rng.sample(range(n_items), min(n_items, sizes.batch_size * sizes.n_batches))
    return [chosen[i : i + sizes.batch_size] for i in range(0, len(chosen), sizes.batch_size)]


def make_batches(prepared: Any, indices: list[list[int]]) -> list[TokenBatch]:
    from mtp_bench.data.pipeline import collate

    items = prepared.train_data.items
    return [collate([items[i] for i in group], prepared.tokenizer.pad_token_id,
                    bidirectional_prompt=prepared.trial.bidirectional_prompt) for group in indices]


def trainer_for(prepared: Any, batches: list[TokenBatch]) -> Any:
    """The shared loop over ``batches`` (step s trains on batch s mod n), as a trial builds it."""
    from mtp_bench.train.loop import Trainer

    return Trainer(prepared.module, prepared.method, prepared.trial.train, total_steps=prepared.trial.train.max_steps,
                   device=prepared.device, precision=prepared.precision, seed=prepared.trial.seed,
                   batches_for_step=lambda step: [batches[step % len(batches)]], eval_steps=set())


def number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"
