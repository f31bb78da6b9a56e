"""What the tests share, in one place (``conftest.py`` holds only fixtures and hooks; no test module imports another):
the repository's paths and the data beside it, tiny models and hand-made batches, the one suite builder and its
writer, the contract every refused input must meet, image-code folders, and small stand-ins.

The test folder is on ``sys.path`` (``pythonpath`` in pyproject.toml), so a test reads ``from helpers import ...``.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mtp_bench import cli, registry
from mtp_bench.api import MethodContext, TokenBatch
from mtp_bench.cache import cache_root
from mtp_bench.data.pipeline import TokenizedExample, collate

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # real data sets beside the repository (GSM8K, AQuA-RAT, DialogSum)
USER_CACHE = cache_root()  # read at import, before any test points $MTP_BENCH_CACHE at a temporary folder
VOCAB = 61  # odd on purpose: catches code that assumes a "nice" vocabulary size
ARCHS = ["llama", "qwen2", "gpt2"]
ATTNS = ["eager", "sdpa"]
HEAVY = ("torch", "mlflow", "ray", "scipy", "transformers", "matplotlib")


# The package's layers, bottom up (docs/architecture.md has the same table; tests/unit/test_architecture.py enforces
# it). A module may import its own part and any part of a lower layer, never a part of its own layer or above.
LAYERS: list[set[str]] = [
    {"errors", "cpu_kernels", "cache"},
    {"registry"},
    {"api", "suite", "tracking"},
    {"data", "models"},
    {"tasks"},
    {"train", "evaluation", "methods"},
    {"scorers"},
    {"trial"},
    {"scheduler", "analysis", "ui", "preflight"},
    {"bench"},
    {"cli", "__main__"},
]
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


# --------------------------------------------------------------------------------- data beside the repository ----
def find_gsm8k() -> Path:
    """The local GSM8K copy: $MTP_BENCH_GSM8K_DIR, else ../shared/data/gsm8k beside the repository; else the test
    is skipped."""
    for candidate in (os.environ.get("MTP_BENCH_GSM8K_DIR"), SHARED_DATA / "gsm8k"):
        if candidate and (Path(candidate) / "train.jsonl").is_file():
            return Path(candidate)
    pytest.skip("GSM8K not found: set MTP_BENCH_GSM8K_DIR to a folder with train.jsonl and test.jsonl")


def shared_data(name: str, probe: str | None = None, label: str | None = None) -> Path:
    """The folder ``name`` of the shared data beside the repository, holding the file ``probe`` (or just existing);
    else the test is skipped, naming the data set as ``label`` (``name`` by default)."""
    folder = SHARED_DATA / name
    if not ((folder / probe).is_file() if probe else folder.is_dir()):
        pytest.skip(f"{label or name} not found at {folder} (the shared data folder beside the repository)")
    return folder


# ------------------------------------------------------------------------------------- models and batches ----
def make_model(arch: str = "llama", attn: str = "sdpa", seed: int = 0, vocab: int = VOCAB, layers: int = 2):
    """A randomly initialised model of a real Hugging Face architecture, small enough for seconds-long tests."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    if arch == "llama":
        config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=256, **common)
        model = LlamaForCausalLM(config)
    elif arch == "qwen2":
        config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=256, **common)
        model = Qwen2ForCausalLM(config)
    elif arch == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=layers, n_head=4, n_positions=256, **common)
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(arch)
    model.config._attn_implementation = attn
    return model.eval()


def gemma_model(version: int, seed: int = 0) -> torch.nn.Module:
    """Gemma-style models (scaled embeddings; Gemma 2: logit soft-capping; both: sliding-window layers, Gemma 3 with
    per-layer-type rotary embeddings), eager attention, at test size."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    common = dict(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=256, sliding_window=4, bos_token_id=0,
                  eos_token_id=1, pad_token_id=2)
    if version == 2:
        config, cls = Gemma2Config(**common, final_logit_softcapping=5.0), Gemma2ForCausalLM
    else:
        config, cls = Gemma3TextConfig(**common), Gemma3ForCausalLM
    config._attn_implementation = "eager"
    return cls(config).eval()


def make_batch(pairs: list[tuple[list[int], list[int]]], pad_id: int = 2, *, bidirectional_prompt: bool = False,
               pretrain: bool = False) -> TokenBatch:
    """A right-padded batch from (prompt ids, answer ids) pairs."""
    items = [TokenizedExample(prompt_ids=list(p), answer_ids=list(a)) for p, a in pairs]
    return collate(items, pad_id, loss_on_prompt=pretrain, bidirectional_prompt=bidirectional_prompt)


def random_pairs(seed: int, lengths: list[tuple[int, int]], vocab: int = VOCAB) -> list[tuple[list[int], list[int]]]:
    """Random token pairs of the given (prompt, answer) lengths, avoiding the special ids 0-2."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(3, vocab, (p,), generator=g).tolist(), torch.randint(3, vocab, (a,), generator=g).tolist())
        for p, a in lengths
    ]


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ntp(**context):
    """The NTP baseline for full fine-tuning (``context``: more MethodContext settings)."""
    from mtp_bench.methods.ntp import NextTokenPrediction, NTPParams

    return NextTokenPrediction(NTPParams(), MethodContext(train_mode="full", **context))


def mutor(train_mode: str = "full", **params):
    """MuToR with these params."""
    from mtp_bench.methods.mutor import MuToR, MuToRParams

    return MuToR(MuToRParams(**params), MethodContext(train_mode=train_mode))


def objective(method, module, model_batch) -> torch.Tensor:
    """The loop's objective for one micro-batch that is the whole step: sum of weight x sum / count over the
    weighted terms."""
    output = method.loss(module.model, module.extra, model_batch)
    return sum(w * output.sums[n] / max(float(model_batch.counts[n]), 1.0) for n, w in method.loss_weights().items() if w)


def loss_and_gradients(method, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One backward pass of ``method``'s objective on ``batch`` (its extra module prepared on ``model``, its
    randomness from :func:`generator`): the loss and the gradient of every model weight."""
    from mtp_bench.train.loop import TrainModule

    module = TrainModule(model, method.prepare(model, None), method)
    loss = objective(method, module, method.transform(batch, generator()))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def trainer(method, pairs, *, normalisation: str, grad_accum: int = 1, steps: int = 1, **train):
    """A trainer over the same examples every step, split into ``grad_accum`` micro-batches."""
    from mtp_bench.suite.config import TrainConfig
    from mtp_bench.train.loop import Trainer, TrainModule

    model = make_model("llama", seed=0)
    size = len(pairs) // grad_accum
    cfg = TrainConfig(max_steps=steps, lr=1e-2, batch_size=size, grad_accum=grad_accum, warmup_steps=0,
                      progress=False, log_every=1, loss_normalisation=normalisation, **train)
    micro = [make_batch(pairs[i * size:(i + 1) * size]) for i in range(grad_accum)]
    return Trainer(TrainModule(model, method.prepare(model, None), method), method, cfg, total_steps=steps,
                   device=torch.device("cpu"), precision=None, seed=0, batches_for_step=lambda step: micro,
                   eval_steps=set())


def step_gradients(trainer) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Metrics and gradients of the first step (the optimiser step is skipped)."""
    captured: list[torch.Tensor] = []

    def capture() -> float:
        captured.extend(p.grad.clone() for p in trainer.parameters)
        trainer.optimizer.zero_grad(set_to_none=True)
        return 0.0

    trainer._optimizer_step = capture
    return trainer.train_step(0), captured


# ------------------------------------------------------------------------------------------------- suites ----
def make_suite(folder: Path, gsm8k_dir: Path | None = None, *, base: str = "gsm8k", **sections: Any) -> dict:
    """The one suite builder: a suite small enough for tests, with ``sections`` replacing top-level keys whole
    (``name``, ``model``, ``data``, ``methods``, ``train``, ``evaluation``, ``tracking``), adding others
    (``baseline``, ``grid``, ``reference``, ...) or, given as None, leaving a section out. Two starting points:

    - ``base="gsm8k"``: the 2-layer preset on the GSM8K folder ``gsm8k_dir`` (unless ``sections`` has a ``data``),
      3 steps and 4 test questions: trains and evaluates in seconds; tracked where $MLFLOW_TRACKING_URI says.
    - ``base="addition"``: synthetic addition, 2 steps: validates in milliseconds; its own SQLite store at
      ``folder/store/mlflow.db`` (the bad-input tests' base: nothing may be written there).

    Trial folders go to ``folder/trials``.
    """
    if base == "gsm8k":
        if gsm8k_dir is None and "data" not in sections:
            raise ValueError("a GSM8K suite needs gsm8k_dir (the fixture's folder) or a data section")
        suite = {
            "name": "tiny",
            "model": {"preset": "micro-llama", "tokenizer_vocab_size": 300},
            "data": {"task": "gsm8k", "params": {"source": "local", "path": str(gsm8k_dir)}, "train_limit": 64,
                     "validation_size": 8, "eval_limit": 4},
            "methods": [{"name": "ntp"}],
            "train": {"max_steps": 3, "lr": 1e-3, "batch_size": 4, "max_length": 256, "progress": False,
                      "log_every": 1},
            "evaluation": {"scorers": [{"name": "gsm8k"}], "max_new_tokens": 8, "every_steps": 2},
            "tracking": {"workdir": str(folder / "trials")},
        }
    elif base == "addition":
        suite = {
            "name": "bad_input",
            "model": {"preset": "micro-llama"},
            "data": {"task": "addition", "params": {"digits": 2, "train_size": 200, "test_size": 20},
                     "validation_size": 10},
            "methods": [{"name": "ntp"}],
            "train": {"max_steps": 2, "lr": 1.0e-3, "batch_size": 4, "max_length": 16, "progress": False},
            "evaluation": {"scorers": [{"name": "exact_match"}], "max_new_tokens": 4},
            "tracking": {"uri": f"sqlite:///{folder / 'store' / 'mlflow.db'}", "workdir": str(folder / "trials")},
        }
    else:
        raise ValueError(f"no base suite {base!r}: 'gsm8k' or 'addition'")
    suite.update(sections)
    return {key: value for key, value in suite.items() if value is not None}


def write_suite(folder: Path, suite: dict, name: str = "suite.yaml") -> Path:
    """``suite`` as the YAML file ``folder/name``."""
    path = folder / name
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def write_own_store_suite(folder: Path, monkeypatch: pytest.MonkeyPatch, **sections: Any) -> Path:
    """The addition suite (``make_suite(folder, base="addition", **sections)``) as ``folder/suite.yaml``, run from
    ``folder`` with the suite's own tracking URI ($MLFLOW_TRACKING_URI unset: the suite's ``tracking.uri`` is what
    is checked)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(folder)
    return write_suite(folder, make_suite(folder, base="addition", **sections))


def use_gsm8k(suite_file: Path, folder: Path | str) -> None:
    """Point the suite file at a GSM8K folder (scored by the gsm8k scorer), the rest as it was."""
    suite = yaml.safe_load(suite_file.read_text())
    suite["data"] = {"task": "gsm8k", "params": {"source": "local", "path": str(folder)}, "validation_size": 2}
    suite["evaluation"]["scorers"] = [{"name": "gsm8k"}]
    suite_file.write_text(yaml.safe_dump(suite, sort_keys=False))


def use_text(suite_file: Path, **params: str) -> None:
    """Point the suite file at a local plain-text corpus (``params``: the text task's), pretraining, no scorers."""
    suite = yaml.safe_load(suite_file.read_text())
    suite["data"] = {"task": "text", "params": {"source": "local", **params}}
    suite["train"]["mode"] = "pretrain"
    suite["evaluation"] = {"scorers": []}
    suite_file.write_text(yaml.safe_dump(suite, sort_keys=False))


def two_methods() -> list[dict[str, Any]]:
    """NTP against MuToR where MuToR is installed (then "the same metric names" is a real claim), else two
    labelled NTP entries: the run shape is the same."""
    try:
        registry.load(registry.METHODS, "mutor")
    except registry.PluginError:
        return [{"name": "ntp", "label": "ntp-a"}, {"name": "ntp", "label": "ntp-b"}]
    return [{"name": "ntp"}, {"name": "mutor"}]


def write_two_method_suite(folder: Path, gsm8k_dir: Path, name: str, seeds: tuple[int, ...] = (0,)) -> Path:
    """Two methods on GSM8K with the 2-layer preset: 2 steps, validation at each, 4 test prompts of 8 tokens; written
    as ``folder/<name>.yaml``."""
    methods = two_methods()
    suite = make_suite(folder, gsm8k_dir, name=name,
                       model={"preset": "micro-llama", "tokenizer_vocab_size": 128},
                       methods=methods, baseline=methods[0].get("label", methods[0]["name"]),
                       train={"max_steps": 2, "batch_size": 8, "max_length": 256, "progress": False},
                       evaluation={"scorers": [{"name": "gsm8k"}], "every_steps": 1, "max_new_tokens": 8,
                                   "batch_size": 4},
                       grid={"seeds": list(seeds)})
    return write_suite(folder, suite, f"{name}.yaml")


# -------------------------------------------------------------------------------------------- bad input ----
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
    """A YAML alias bomb: ``levels`` nested lists of nine aliases each."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def cuda_devices() -> int:
    """How many CUDA devices this machine has."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def heavy_imports(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Run ``code`` in a fresh interpreter (in the repository's root) and return which of ``heavy`` it imported."""
    probe = f"""
import json, sys
{code}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- stand-ins ----
class CannedContext:
    """Stands in for EvalContext: returns fixed completions and records the decoding budget asked for."""

    def __init__(self, completions: list[str]):
        self.completions = completions
        self.budgets: list[int | None] = []

    def generate(self, examples: list, max_new_tokens: int | None = None) -> list[str]:
        self.budgets.append(max_new_tokens)
        assert len(examples) == len(self.completions)
        return list(self.completions)


def qa_example(**record):
    """An Example with a question prompt whose record is ``record`` (its answer the record's summary, if any)."""
    from mtp_bench.api.task import Example

    return Example(prompt="Question: ?\n\nAnswer:", answer=" " + str(record.get("summary", "")), record=record)


def node(host: str, cpus: float, gpus: float = 0) -> dict:
    """A Ray node as the scheduler's checks see it."""
    return {"id": host + "-id", "host": host, "resources": {"CPU": cpus, "GPU": gpus}}


# ---------------------------------------------------------------------------------------------- image codes ----
def write_codes(root: Path, n: int = 6, views: int = 2, side: int = 4, codebook: int = 32, classes: int = 5,
                seed: int = 0, size: int = 64):
    """A codes folder as LlamaGen's extract_codes_c2i.py writes it: <i>.npy of shape (1, views, side*side), labels
    of shape (1,), in imagenet<size>_codes / _labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    codes_dir, labels_dir = root / f"imagenet{size}_codes", root / f"imagenet{size}_labels"
    codes_dir.mkdir(parents=True)
    labels_dir.mkdir()
    for i in range(n):
        np.save(codes_dir / f"{i}.npy", rng.integers(0, codebook, (1, views, side * side)))
        np.save(labels_dir / f"{i}.npy", np.array([i % classes]))
    return codes_dir, labels_dir


def codes_params(root: Path, **kw):
    """The image_codes task's settings for a folder written by :func:`write_codes` (its defaults)."""
    from mtp_bench.tasks.image_codes import ImageCodesParams

    return ImageCodesParams(path=str(root), image_size=64, downsample=16, codebook_size=32, num_classes=5,
                            test_size=2, **kw)


def inject_failures(plan_path: str) -> None:
    """Runs at the start of every Ray worker (a ``worker_process_setup_hook``): ``Trainer.train_step`` fails as the
    plan file says, for the trials a rule matches by ``seed``, ``lr`` and ``method`` (each optional) at ``step``:
    ``how`` is ``raise`` (an error in the trial) or ``exit`` (the process dies, as an out-of-memory kill would);
    ``once`` fires the rule only the first time, ``per_rank`` once on every rank of a data-parallel trial."""
    import json as json_
    import os as os_
    from pathlib import Path as Path_

    from mtp_bench.train.loop import Trainer

    original = Trainer.train_step

    def train_step(self, step):
        plan = json_.loads(Path_(plan_path).read_text()) if Path_(plan_path).is_file() else []
        for index, rule in enumerate(plan):
            wanted = {"seed": self.seed, "lr": self.cfg.lr, "method": self.method.name, "step": step}
            if any(key in rule and rule[key] != value for key, value in wanted.items()):
                continue
            rank = f".{self.dist.rank}" if rule.get("per_rank") else ""
            marker = Path_(f"{plan_path}.{index}{rank}.done")
            if rule.get("once") and marker.exists():
                continue
            marker.touch()
            if rule.get("how", "raise") == "exit":
                os_._exit(1)
            raise RuntimeError(f"injected failure at step {step + 1}")
        return original(self, step)

    Trainer.train_step = train_step


def write_failure_plan(plan: Path, rules: list[dict]) -> None:
    """The rules :func:`inject_failures` follows from now on, with no rule counted as fired yet."""
    for old in plan.parent.glob(plan.name + ".*.done"):
        old.unlink()
    plan.write_text(json.dumps(rules))


@contextmanager
def local_ray_with_failure_plan(base: Path, plan: Path) -> Iterator[None]:
    """A 2-CPU local Ray whose worker processes follow the failure ``plan`` (:func:`inject_failures`): how the Ray
    tests inject failures into trials, with no test hook in the product code. The cache is set before the workers
    start, as conftest sets it for this process."""
    import ray
    from ray import cloudpickle

    os.environ["MTP_BENCH_CACHE"] = str(base / "cache")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test helper module
    plan_path = str(plan)

    def follow_the_plan() -> None:  # Ray wants a named function here, not a partial
        inject_failures(plan_path)

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": follow_the_plan})
    try:
        yield
    finally:
        ray.shutdown()
        for path in plan.parent.glob(plan.name + "*"):
            path.unlink()


def recorded_trials(store: str, experiment: str) -> tuple[Any, dict[str, Any]]:
    """(MLflow client, the experiment's trial runs by method) of a suite run with one trial per method."""
    from mtp_bench.tracking import Tracker

    tracker = Tracker(store, experiment)
    return tracker.client, {run.data.tags["mtp_bench.method"]: run for run in tracker.trial_runs()}


def metric_history(tracker, run_id: str, name: str) -> list[tuple[int, float]]:
    """One metric of a recorded run as (step, value) pairs in step order."""
    return sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, name))


def metric_values(history: list[tuple[int, float]]) -> list[float]:
    return [value for _, value in history]


# ------------------------------------------------------------------------------------- `mtp-bench bench` reports ----
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def section(text: str, key: str) -> str:
    match = re.search(rf"<!-- bench:{key} -->\n(.*?)<!-- /bench:{key} -->", text, re.DOTALL)
    assert match, f"no {key} section"
    return match.group(1)


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table of a section, each as rows keyed by header."""
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("|"):
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    out = []
    for lines in filter(None, blocks):
        headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
        assert set(lines[1].replace("|", "")) == {"-"}
        out.append([dict(zip(headers, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]])
    return out


def table(text: str) -> list[dict[str, str]]:
    """The first markdown table of a section."""
    return tables(text)[0]


def first_number(cell: str) -> float:
    match = NUMBER.search(cell)
    assert match, f"no number in {cell!r}"
    return float(match.group(0).replace(",", ""))


def sane(value: float) -> bool:
    return math.isfinite(value) and value > 0
