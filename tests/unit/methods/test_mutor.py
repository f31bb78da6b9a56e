"""MuToR: real-token exactness, the paper's positions/targets/mask on a hand-worked example, equivalence with NTP at
a = 0, an independent interleaved reference, export, and an end-to-end suite run logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from helpers import (
    ARCHS,
    ATTNS,
    REPO,
    generator,
    loss_and_gradients,
    make_batch,
    make_model,
    mutor,
    objective,
    random_pairs,
)
from mtp_bench.api import IGNORE_INDEX, MethodContext, allowed_attention, model_attention_mask, shifted_targets
from mtp_bench.methods.mutor import MuToRParams
from mtp_bench.methods.mutor_layout import (
    RegisterLayout,
    attention_with_registers,
    register_forward_inputs,
    select_registers,
)
from mtp_bench.methods.ntp import NextTokenPrediction, NTPParams
from mtp_bench.suite.config import TrainConfig
from mtp_bench.train.loop import Trainer, TrainModule

UNEQUAL = [(3, 4), (5, 7), (2, 2), (4, 1)]  # (prompt, answer) lengths: padding, and a row too short for d > 1


# ----------------------------------------------------------------------------------------------- settings ----
def test_params_defaults_and_validation():
    params = MuToRParams()
    assert (params.a, params.d_min, params.d_max, params.register_init, params.registers_per_sequence) == (
        0.3, 1, 4, "mean", None)
    with pytest.raises(ValidationError, match="d_min \\(5\\) must not exceed d_max \\(4\\)"):
        MuToRParams(d_min=5)
    for bad in ({"a": 1.5}, {"a": -0.1}, {"d_min": 0}, {"registers_per_sequence": 0}, {"offset": 2}):
        with pytest.raises(ValidationError):
            MuToRParams(**bad)


def test_prepare_rejects_kernels_without_4d_masks():
    model = make_model("llama", "sdpa")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="4D mask.*model.attn_implementation"):
        mutor().prepare(model, None)


def test_register_init_mean_and_random_leave_model_and_rng_alone():
    model = make_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model.get_input_embeddings().weight
    assert torch.allclose(mutor().prepare(model, None).register, weight.mean(0))
    torch.manual_seed(7)
    state = torch.get_rng_state()
    random_init = mutor(register_init="random").prepare(model, None).register
    assert torch.equal(torch.get_rng_state(), state)  # a later LoRA init draws the same for NTP and MuToR
    assert random_init.std().item() == pytest.approx(weight.std().item(), rel=0.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.get_input_embeddings().num_embeddings == before["model.embed_tokens.weight"].size(0)


# ------------------------------------------------------------------------------------------ exactness ----
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("attn", ATTNS)
def test_real_token_logits_equal_register_free_logits(arch, attn):
    torch.manual_seed(0)
    model = make_model(arch, attn)
    method = mutor()
    extra = method.prepare(model, None)
    extra.register.data.normal_()  # an arbitrary register: nothing of it may reach the real tokens
    batch = make_batch(random_pairs(1, UNEQUAL))
    model_batch = method.transform(batch, generator())
    assert model_batch.tensors["register_valid"].sum(1).tolist() != [0, 0, 0, 0]
    with torch.no_grad():
        real, registers = method.logits(model, extra, model_batch)
        reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert registers.shape[:2] == model_batch.tensors["anchors"].shape
    on_real = batch.attention_mask.bool()
    assert (real - reference)[on_real].abs().max().item() <= 1e-5


def sliding_window_model(kind: str, attn: str):
    """Tiny models whose attention slides (window 4, shorter than the test rows), or Gemma's global attention."""
    import transformers as hf

    torch.manual_seed(0)
    common = dict(vocab_size=61, bos_token_id=0, eos_token_id=1, pad_token_id=2, hidden_size=32, intermediate_size=64,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    config, cls = {
        "gemma": (lambda: hf.GemmaConfig(**common, head_dim=8), hf.GemmaForCausalLM),
        "gemma2": (lambda: hf.Gemma2Config(**common, head_dim=8, sliding_window=4), hf.Gemma2ForCausalLM),
        "gemma3": (lambda: hf.Gemma3TextConfig(**common, head_dim=8, sliding_window=4, sliding_window_pattern=2),
                   hf.Gemma3ForCausalLM),
        "qwen2": (lambda: hf.Qwen2Config(**common, use_sliding_window=True, sliding_window=4, max_window_layers=1),
                  hf.Qwen2ForCausalLM),
        "mistral": (lambda: hf.MistralConfig(**common, sliding_window=4), hf.MistralForCausalLM),
    }[kind]
    config = config()
    config._attn_implementation = attn
    return cls(config).eval()


@pytest.mark.parametrize("kind,attn", [("gemma", "sdpa"), ("gemma2", "eager"), ("gemma3", "sdpa"), ("qwen2", "eager"),
                                       ("mistral", "sdpa")])
def test_real_token_logits_exact_with_gemma_and_sliding_window_attention(kind, attn):
    model = sliding_window_model(kind, attn)
    method = mutor()
    extra = method.prepare(model, None)
    batch = make_batch(random_pairs(1, UNEQUAL))
    with torch.no_grad():
        real, _ = method.logits(model, extra, method.transform(batch, generator()))
        reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert (real - reference)[batch.attention_mask.bool()].abs().max().item() <= 1e-5


def interleaved_register_logits(model, register, prompt, answer, d, register_id=None):
    """Independent reference, one sequence, the paper's physical layout: prompt, then ``<reg>, a_j`` for every answer
    token, real tokens at their register-free positions, the register before a_j at position (Q + j - 1) + d - 1;
    a real token sees earlier real tokens, a register earlier real tokens and itself. Returns {anchor: logits}.
    With ``register_id`` the register is that vocabulary token, embedded by the model itself (the paper's ``<reg>``
    row); otherwise the ``register`` vector is written into the embeddings."""
    slots = [(token, "real", i, None) for i, token in enumerate(prompt)]  # (token, kind, position, anchor)
    for j, token in enumerate(answer):
        anchor = len(prompt) + j - 1
        slots += [(register_id or 0, "reg", anchor + d - 1, anchor), (token, "real", len(prompt) + j, None)]
    tokens, kinds, positions, anchors = (list(column) for column in zip(*slots))
    n = len(tokens)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for q in range(n):
        for k in range(q + 1):
            allowed[q, k] = kinds[k] == "real" or k == q
    embeds = model.get_input_embeddings()(torch.tensor([tokens]))
    for index, kind in enumerate(kinds):
        if kind == "reg" and register_id is None:
            embeds[0, index] = register
    logits = model(inputs_embeds=embeds, position_ids=torch.tensor([positions]),
                   attention_mask=model_attention_mask(allowed[None], model)).logits[0]
    return {anchors[i]: logits[i] for i in range(n) if kinds[i] == "reg"}


@pytest.mark.parametrize("arch,attn", [("llama", "eager"), ("qwen2", "sdpa"), ("gpt2", "eager"), ("gpt2", "sdpa")])
def test_appended_registers_equal_the_papers_interleaved_layout(arch, attn):
    model = make_model(arch, attn)
    method = mutor(d_min=1, d_max=3)
    extra = method.prepare(model, None)
    pairs = random_pairs(2, UNEQUAL)
    batch = make_batch(pairs)
    model_batch = method.transform(batch, generator(3))
    t = model_batch.tensors
    with torch.no_grad():
        _, registers = method.logits(model, extra, model_batch)
        for row, (prompt, answer) in enumerate(pairs):
            d = int(t["offsets"][row, 0]) if t["offsets"].size(1) else 1
            reference = interleaved_register_logits(model, extra.register, prompt, answer, d)
            kept = t["register_valid"][row]
            assert int(kept.sum()) == max(len(answer) - d + 1, 0)  # registers whose target is inside the answer
            for slot in kept.nonzero().flatten().tolist():
                anchor = int(t["anchors"][row, slot])
                assert torch.allclose(registers[row, slot], reference[anchor], atol=1e-5)


@pytest.mark.parametrize("kind,attn", [("gemma", "sdpa"), ("gemma", "eager")])
def test_register_enters_like_a_vocabulary_row_on_scaled_embeddings(kind, attn):
    # Gemma's embedding module multiplies each row by sqrt(hidden): a register vector equal to row r must reach the
    # model exactly as the paper's <reg> token r would (interleaved, embedded by the model itself), not unscaled.
    model = sliding_window_model(kind, attn)
    method = mutor(d_min=1, d_max=3)
    extra = method.prepare(model, None)
    register_id = 60
    with torch.no_grad():
        extra.register.copy_(model.get_input_embeddings().weight[register_id])
    pairs = random_pairs(4, UNEQUAL)
    model_batch = method.transform(make_batch(pairs), generator(5))
    t = model_batch.tensors
    with torch.no_grad():
        _, registers = method.logits(model, extra, model_batch)
        for row, (prompt, answer) in enumerate(pairs):
            d = int(t["offsets"][row, 0]) if t["offsets"].size(1) else 1
            reference = interleaved_register_logits(model, None, prompt, answer, d, register_id=register_id)
            for slot in t["register_valid"][row].nonzero().flatten().tolist():
                anchor = int(t["anchors"][row, slot])
                assert torch.allclose(registers[row, slot], reference[anchor], atol=1e-5)


# ------------------------------------------------------------------------------------ hand-worked example ----
def test_hand_worked_example_prompt_3_answer_4_d_2():
    # Tokens x0 x1 x2 | x3 x4 x5 x6 (0-based; the paper's x_1..x_7). Registers go after every x_t whose successor is
    # an answer token (t = 2..5) and predict x_{t+2}: the one after x5 would predict x7, past the end, so it is
    # dropped. Position of the register after x_t: t + d - 1 (that of x_{t+1}, whose NTP target x_{t+2} it shares).
    x = [11, 12, 13, 14, 15, 16, 17]
    batch = make_batch([(x[:3], x[3:])])
    layout, targets = select_registers(batch.labels, torch.tensor([2]))
    assert layout.anchors.tolist() == [[2, 3, 4]]
    assert layout.positions.tolist() == [[3, 4, 5]]
    assert targets.tolist() == [[15, 16, 17]]
    model_batch = mutor(d_min=2, d_max=2).transform(batch, generator())
    t = model_batch.tensors
    assert t["register_targets"].tolist() == [[15, 16, 17]] and t["offsets"].tolist() == [[2, 2, 2]]
    assert t["targets"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 14, 15, 16, 17, IGNORE_INDEX]]
    assert model_batch.n_tokens == 7 + 3
    assert model_batch.counts["loss/ntp"] == 4 and model_batch.counts["loss/reg"] == 3
    assert model_batch.counts["loss/h2"] == 3

    expected = [  # keys: x0 .. x6, r(after x2), r(after x3), r(after x4)
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 1, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0, 1, 0],
        [1, 1, 1, 1, 1, 0, 0, 0, 0, 1],
    ]
    assert attention_with_registers(allowed_attention(batch.attention_mask), layout).int().tolist() == [expected]
    # With the bidirectional prompt, only the prompt block changes: x0..x2 see each other; registers see the prompt.
    bidirectional = attention_with_registers(allowed_attention(batch.attention_mask, batch.prompt_lengths), layout)
    expected_bidirectional = [row[:] for row in expected]
    for q in range(3):
        expected_bidirectional[q][:3] = [1, 1, 1]
    assert bidirectional.int().tolist() == [expected_bidirectional]


def test_d1_register_has_the_ntp_target_and_position_at_its_anchor():
    batch = make_batch(random_pairs(4, UNEQUAL))
    t = mutor(d_min=1, d_max=1).transform(batch, generator()).tensors
    valid, anchors = t["register_valid"], t["anchors"]
    ntp = shifted_targets(batch.labels)
    assert torch.equal(t["register_targets"][valid], ntp.gather(1, anchors)[valid])
    layout, _ = select_registers(batch.labels, torch.ones(len(UNEQUAL), dtype=torch.long))
    assert torch.equal(layout.positions[valid], anchors[valid])
    assert valid.sum(1).tolist() == [a for _, a in UNEQUAL]  # one register per target token (before every answer token)


# ----------------------------------------------------------------------------------------- loss terms ----
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a0_equals_ntp_in_loss_and_every_gradient(arch):
    batch = make_batch(random_pairs(5, UNEQUAL))
    results = [loss_and_gradients(method, make_model(arch, "sdpa"), batch)
               for method in (NextTokenPrediction(NTPParams(), MethodContext("full")), mutor(a=0.0))]
    (ntp_loss, ntp_grads), (mutor_loss, mutor_grads) = results
    assert torch.allclose(mutor_loss, ntp_loss, atol=1e-6)
    assert ntp_grads.keys() == mutor_grads.keys()
    for name, grad in ntp_grads.items():
        assert torch.allclose(mutor_grads[name], grad, atol=1e-6), name


def test_loss_terms_and_counts_add_up_and_the_register_learns():
    model = make_model("qwen2")
    method = mutor(a=0.3, d_min=1, d_max=4)
    extra = method.prepare(model, None)
    batch = make_batch(random_pairs(6, [(3, 9), (2, 12), (5, 6)]))
    model_batch = method.transform(batch, generator(1))
    output = method.loss(model, extra, model_batch)
    counts, sums = model_batch.counts, output.sums
    assert method.loss_weights() == pytest.approx({"loss/ntp": 0.7, "loss/reg": 0.3})
    horizons = [f"loss/h{d}" for d in range(1, 5)]
    assert sum(int(counts[h]) for h in horizons) == int(counts["loss/reg"]) > 0
    assert sum(sums[h] for h in horizons).item() == pytest.approx(sums["loss/reg"].item(), rel=1e-5)
    assert sum(int(sums[f"acc/h{d}"]) for d in range(1, 5)) == int(sums["acc/reg"])
    assert model_batch.n_tokens == batch.n_real_tokens + int(counts["loss/reg"])
    _, register_logits = method.logits(model, extra, model_batch)
    valid = model_batch.tensors["register_valid"]
    mean = torch.nn.functional.cross_entropy(register_logits[valid], model_batch.tensors["register_targets"][valid])
    assert (sums["loss/reg"] / counts["loss/reg"]).item() == pytest.approx(mean.item(), rel=1e-5)
    objective(method, TrainModule(model, extra, method), model_batch).backward()
    assert extra.register.grad is not None and extra.register.grad.abs().sum() > 0


def test_pretraining_puts_a_register_before_every_token_but_the_first():
    batch = make_batch(random_pairs(7, [(0, 9), (0, 6)]), pretrain=True)
    t = mutor("pretrain", d_min=2, d_max=2).transform(batch, generator()).tensors
    assert t["register_valid"].sum(1).tolist() == [9 - 2, 6 - 2]  # anchors 0..L-1-d
    assert t["anchors"][0].tolist() == list(range(7))


def test_sparse_registers_are_drawn_from_the_generator():
    batch = make_batch(random_pairs(8, [(2, 12), (3, 10), (2, 2)]))
    method = mutor(registers_per_sequence=3, d_min=2, d_max=2)
    draws = [method.transform(batch, generator(seed)).tensors for seed in range(6)]
    assert all(d["register_valid"].sum(1).tolist() == [3, 3, 1] for d in draws)  # the last row has one target only
    assert torch.equal(draws[0]["anchors"], method.transform(batch, generator(0)).tensors["anchors"])
    assert len({tuple(d["anchors"][0].tolist()) for d in draws}) > 1
    for d in draws:  # every drawn register is one a dense run would have had, with the same target
        dense, targets = select_registers(batch.labels, torch.full((3,), 2))
        for row in range(3):
            table = {int(a): int(y) for a, y, v in zip(dense.anchors[row], targets[row], dense.valid[row]) if v}
            for a, y, v in zip(d["anchors"][row], d["register_targets"][row], d["register_valid"][row]):
                assert not v or table[int(a)] == int(y)


def test_offsets_are_uniform_over_the_range():
    batch = make_batch(random_pairs(9, [(2, 8)] * 4000))
    offsets = mutor(d_min=2, d_max=5).transform(batch, generator()).tensors["offsets"][:, 0]
    frequencies = torch.bincount(offsets, minlength=6)[2:].float() / 4000
    assert offsets.min() == 2 and offsets.max() == 5
    assert (frequencies - 0.25).abs().max() < 0.03  # 4 sigma at n = 4000


# ------------------------------------------------------------------------------- drafting, export, LoRA ----
def trailing_registers(attention_mask: torch.Tensor, offsets: list[int]) -> RegisterLayout:
    """Registers after the last real token of each right-padded row, one per offset: the inputs that draft the
    tokens after a prefix at inference, built independently of the training layout."""
    bsz = attention_mask.size(0)
    last = (attention_mask.sum(1) - 1).clamp(min=0)
    return RegisterLayout(anchors=last[:, None].expand(bsz, len(offsets)),
                          offsets=torch.tensor(offsets)[None, :].expand(bsz, len(offsets)),
                          valid=torch.ones(bsz, len(offsets), dtype=torch.bool))


def test_trailing_registers_reproduce_training_registers():
    model = make_model("llama")
    method = mutor(d_min=3, d_max=3)
    extra = method.prepare(model, None)
    batch = make_batch(random_pairs(10, [(3, 8)]))
    model_batch = method.transform(batch, generator())
    _, registers = method.logits(model, extra, model_batch)
    for slot, anchor in enumerate(model_batch.tensors["anchors"][0].tolist()):
        prefix = batch.input_ids[:, : anchor + 1]
        mask = torch.ones_like(prefix)
        inputs = register_forward_inputs(model, extra.register, prefix, mask, trailing_registers(mask, [1, 3]))
        drafted = model(**inputs).logits[0, -1]
        assert torch.allclose(drafted, registers[0, slot], atol=1e-5)


def test_export_is_the_plain_model_and_generates_without_registers(tmp_path):
    from transformers import AutoModelForCausalLM

    from mtp_bench.evaluation.generate import greedy_generate

    model = make_model("gpt2", "sdpa")
    method = mutor()
    extra = method.prepare(model, None)
    module = TrainModule(model, extra, method)
    objective(method, module, method.transform(make_batch(random_pairs(11, UNEQUAL)), generator())).backward()
    with torch.no_grad():
        for p in module.parameters():
            p -= 0.1 * p.grad
    exported = method.export(model, extra)
    assert exported is model and all("register" not in name for name in exported.state_dict())
    exported.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.vocab_size == model.config.vocab_size
    prompts = [p for p, _ in random_pairs(12, [(4, 0), (6, 0)])]
    kwargs = dict(eos_id=1, pad_id=2, max_new_tokens=6)
    assert greedy_generate(loaded, prompts, **kwargs) == greedy_generate(model.eval(), prompts, **kwargs)


def test_register_trains_under_lora():
    from mtp_bench.models.build import apply_lora
    from mtp_bench.suite.config import LoraConfig

    model = make_model("llama")
    method = mutor()
    extra = method.prepare(model, None)
    module = TrainModule(apply_lora(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])), extra, method)
    config = TrainConfig(max_steps=1, lr=1e-2, progress=False, checkpoint=False, warmup_ratio=0.0)
    before = extra.register.detach().clone()
    trainer = Trainer(module, method, config, total_steps=1, device=torch.device("cpu"), precision=None, seed=0,
                      batches_for_step=lambda step: [make_batch(random_pairs(13, UNEQUAL))], eval_steps=set())
    metrics = trainer.train_step(0)
    assert not torch.equal(extra.register, before)
    assert {"train/loss/reg", "train/loss/h1", "train/acc/h4"} <= metrics.keys()


# ------------------------------------------------------------------------------------------ end to end ----
def test_suite_logs_ntp_and_mutor_with_comparable_metric_names(tmp_path, store, gsm8k_dir):
    import mlflow

    from mtp_bench.cli import main

    code = main(["run", str(REPO / "suites" / "mutor_tiny.yaml"), "--no-ray", "--no-compare",
                 f"data.params.path={gsm8k_dir}", f"tracking.workdir={tmp_path / 'trials'}",
                 "model.preset=micro-llama", "data.train_limit=48", "data.validation_size=4", "data.eval_limit=4",
                 "train.max_steps=3", "train.batch_size=4", "train.progress=false", "evaluation.every_steps=3",
                 "evaluation.max_new_tokens=8", "tracking.log_artifacts=false"])
    assert code == 0
    runs = mlflow.MlflowClient(store).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(store).search_experiments()])
    trials = {r.data.params.get("method.name"): r for r in runs if r.data.params.get("method.name")}
    assert set(trials) == {"ntp", "mutor"}
    ntp, mu = (set(trials[m].data.metrics) for m in ("ntp", "mutor"))
    shared = {"last/test/gsm8k/exact_match", "train/loss/ntp", "train/acc/ntp", "val/loss/ntp", "train/tokens_seen"}
    assert shared <= ntp and shared <= mu
    assert {n for n in ntp if n.startswith(("last/", "best/", "val/gsm8k"))} <= mu  # every scorer metric compares
    assert {"train/loss/reg", "train/loss/h2", "train/acc/h4", "val/loss/reg", "val/loss/h1"} <= mu
    assert trials["mutor"].data.metrics["train/tokens_processed"] > trials["ntp"].data.metrics["train/tokens_processed"]
    export = Path(tmp_path / "trials").rglob("export/config.json")
    assert len(list(export)) == 2
