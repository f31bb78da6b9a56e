"""Shared fixtures: tiny fixed-seed models of real architectures, hand-made batches, local data, a throwaway store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mtp_bench.api import TokenBatch
from mtp_bench.data.pipeline import TokenizedExample, collate

REPO = Path(__file__).resolve().parents[1]
VOCAB = 61  # odd on purpose: catches code that assumes a "nice" vocabulary size

torch.set_num_threads(min(2, torch.get_num_threads()))


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


ARCHS = ["llama", "qwen2", "gpt2"]
ATTNS = ["eager", "sdpa"]


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


@pytest.fixture
def gsm8k_dir() -> Path:
    """The local GSM8K copy: $MTP_BENCH_GSM8K_DIR, else ../shared/data/gsm8k beside the repository."""
    candidates = [os.environ.get("MTP_BENCH_GSM8K_DIR"), REPO.parent / "shared" / "data" / "gsm8k"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train.jsonl").is_file():
            return Path(candidate)
    pytest.skip("GSM8K not found: set MTP_BENCH_GSM8K_DIR to a folder with train.jsonl and test.jsonl")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store; MLFLOW_TRACKING_URI points at it so suites under test use it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokenizer cache shared by the session's tests but never the user's."""
    monkeypatch.setenv("MTP_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_suite(tmp_path: Path, gsm8k_dir: Path, methods: list[dict] | None = None, **sections) -> dict:
    """A GSM8K suite small enough to train and evaluate in seconds; ``sections`` replace top-level keys."""
    suite = {
        "name": "tiny",
        "model": {"preset": "micro-llama", "tokenizer_vocab_size": 300},
        "data": {"task": "gsm8k", "params": {"source": "local", "path": str(gsm8k_dir)}, "train_limit": 64,
                 "validation_size": 8, "eval_limit": 4},
        "methods": methods or [{"name": "ntp"}],
        "train": {"max_steps": 3, "lr": 1e-3, "batch_size": 4, "max_length": 256, "progress": False,
                  "log_every": 1},
        "evaluation": {"scorers": [{"name": "gsm8k"}], "max_new_tokens": 8, "every_steps": 2},
        "tracking": {"workdir": str(tmp_path / "trials")},
    }
    suite.update(sections)
    return suite


def write_suite(tmp_path: Path, suite: dict, name: str = "suite.yaml") -> Path:
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path
