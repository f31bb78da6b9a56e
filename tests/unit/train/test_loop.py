"""The shared loop and the NTP baseline: exact loss, token-mean normalisation across accumulation, repeatability,
and a clear error on a non-finite loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import make_batch, make_model, ntp, random_pairs
from mtp_bench.api import IGNORE_INDEX
from mtp_bench.suite.config import TrainConfig
from mtp_bench.train.loop import LoopCallbacks, NonFiniteLossError, Trainer, TrainModule
from mtp_bench.train.optim import lr_multiplier

LENGTHS = [(3, 4), (5, 2), (2, 6), (4, 3)]


def test_ntp_loss_equals_cross_entropy_over_answer_tokens() -> None:
    model = make_model("llama")
    batch = make_batch(random_pairs(0, LENGTHS))
    method = ntp()
    out = method.loss(model, None, method.transform(batch, torch.Generator()))
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    # reference: every answer token predicted from the position before it, nothing else
    preds, golds = [], []
    for row, (prompt, answer) in enumerate(random_pairs(0, LENGTHS)):
        for offset in range(len(answer)):
            position = len(prompt) + offset
            preds.append(logits[row, position - 1])
            golds.append(answer[offset])
    expected = F.cross_entropy(torch.stack(preds), torch.tensor(golds), reduction="sum")
    model_batch = method.transform(batch, torch.Generator())
    assert int(model_batch.counts["loss/ntp"]) == sum(a for _, a in LENGTHS)
    torch.testing.assert_close(out.sums["loss/ntp"], expected, rtol=1e-5, atol=1e-5)
    assert method.loss_weights() == {"loss/ntp": 1.0}


def _trainer(model, batches_for_step, *, grad_accum: int, batch_size: int, steps: int = 2) -> Trainer:
    cfg = TrainConfig(max_steps=steps, lr=1e-2, batch_size=batch_size, grad_accum=grad_accum, warmup_steps=0,
                      progress=False, log_every=1)
    method = ntp()
    return Trainer(TrainModule(model, None, method), method, cfg, total_steps=steps, device=torch.device("cpu"),
                   precision=None, seed=0, batches_for_step=batches_for_step, eval_steps=set())


def test_accumulation_is_a_token_mean_over_the_whole_step() -> None:
    """Unequal answer lengths: two micro-batches of 2 must give the gradient of one batch of 4 (a mean per
    micro-batch would not), and the same logged loss."""
    pairs = random_pairs(1, LENGTHS)
    whole = _trainer(make_model("llama"), lambda step: [make_batch(pairs)], grad_accum=1, batch_size=4)
    split = _trainer(make_model("llama"), lambda step: [make_batch(pairs[:2]), make_batch(pairs[2:])], grad_accum=2,
                     batch_size=2)
    gradients = {}
    for name, trainer in (("whole", whole), ("split", split)):
        def capture(trainer=trainer, name=name) -> float:
            gradients[name] = [p.grad.clone() for p in trainer.parameters]
            trainer.optimizer.zero_grad(set_to_none=True)
            return 0.0

        trainer._optimizer_step = capture
    metrics_whole, metrics_split = whole.train_step(0), split.train_step(0)
    assert metrics_split["train/loss"] == pytest.approx(metrics_whole["train/loss"], abs=1e-6)
    for a, b in zip(gradients["whole"], gradients["split"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        unweighted = 0.5 * (
            split.method.loss(split.module.model, None, split.method.transform(make_batch(pairs[:2]), None)).sums[
                "loss/ntp"] / sum(a for _, a in LENGTHS[:2])
            + split.method.loss(split.module.model, None, split.method.transform(make_batch(pairs[2:]), None)).sums[
                "loss/ntp"] / sum(a for _, a in LENGTHS[2:])
        )
    assert abs(float(unweighted) - metrics_whole["train/loss"]) > 1e-4  # the naive mean differs: the test has teeth


def test_training_repeats_exactly_under_a_seed() -> None:
    def run() -> list[float]:
        losses: list[float] = []
        trainer = _trainer(make_model("qwen2", seed=3), lambda step: [make_batch(random_pairs(7, LENGTHS))],
                           grad_accum=1, batch_size=4, steps=3)
        trainer.run(LoopCallbacks(log=lambda m, s: losses.append(m["train/loss"])))
        return losses

    first, second = run(), run()
    assert first == second and first[-1] < first[0]


def test_non_finite_loss_stops_with_a_clear_error() -> None:
    model = make_model("gpt2")
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    trainer = _trainer(model, lambda step: [make_batch(random_pairs(0, LENGTHS))], grad_accum=1, batch_size=4)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 1: loss/ntp=nan"):
        trainer.run(LoopCallbacks())


def test_warmup_then_linear_and_cosine_decay() -> None:
    assert lr_multiplier(0, total=10, warmup=4, schedule="linear") == pytest.approx(1 / 5)
    assert lr_multiplier(3, total=10, warmup=4, schedule="linear") == pytest.approx(4 / 5)
    assert lr_multiplier(4, total=10, warmup=4, schedule="linear") == pytest.approx(1.0)
    assert lr_multiplier(7, total=10, warmup=4, schedule="linear") == pytest.approx(0.5)
    assert lr_multiplier(7, total=10, warmup=4, schedule="cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_multiplier(9, total=10, warmup=0, schedule="constant") == 1.0


def test_bidirectional_prompt_changes_prompt_states_only_where_allowed() -> None:
    """With the option, prompt tokens see later prompt tokens; answer positions never see the future."""
    model = make_model("llama")
    pairs = random_pairs(2, [(4, 3)])
    causal, bidi = make_batch(pairs), make_batch(pairs, bidirectional_prompt=True)
    method = ntp()
    base = model(input_ids=causal.input_ids).logits
    from mtp_bench.api import plain_forward_inputs

    t = method.transform(bidi, torch.Generator()).tensors
    both = model(**plain_forward_inputs(t["input_ids"], t["attention_mask"], model, t["prompt_lengths"])).logits
    assert not torch.allclose(both[0, :3], base[0, :3], atol=1e-4)  # prompt positions now see the whole prompt
    changed_tail = model(**plain_forward_inputs(
        torch.cat([t["input_ids"][:, :-1], torch.tensor([[5]])], 1), t["attention_mask"], model, t["prompt_lengths"]
    )).logits
    torch.testing.assert_close(changed_tail[0, :-1], both[0, :-1])  # the last answer token is seen by no one before it
    assert (t["targets"][0, :3] == IGNORE_INDEX).all()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_custom_masks_keep_sliding_windows(attn: str) -> None:
    """A 4D mask is used as-is by every layer in Hugging Face: our masks must re-apply a sliding window. With a
    one-token prompt the bidirectional mask is plain causal, so the logits must equal the model's own masking."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, MistralConfig, MistralForCausalLM

    from mtp_bench.api import plain_forward_inputs
    from mtp_bench.evaluation.generate import prefill_inputs

    torch.manual_seed(0)
    common = dict(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, sliding_window=3, pad_token_id=2)
    gemma = Gemma2Config(**common, attn_logit_softcapping=None)  # sdpa has no soft-capping
    for model in (MistralForCausalLM(MistralConfig(**common)), Gemma2ForCausalLM(gemma)):
        model.config._attn_implementation = attn
        model.eval()
        batch = make_batch(random_pairs(4, [(1, 8), (1, 5)]), bidirectional_prompt=True)
        reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        ours = model(**plain_forward_inputs(batch.input_ids, batch.attention_mask, model,
                                            batch.prompt_lengths)).logits
        real = batch.attention_mask.bool()
        torch.testing.assert_close(ours[real], reference[real], rtol=1e-5, atol=1e-5)
        # the generation prefill (left-padded, bidirectional) of a one-token prompt is causal too
        ids = torch.tensor([[2, 2, 7, 9, 11, 13, 17, 19], [5, 6, 7, 8, 9, 10, 11, 12]])
        mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])
        windowed = model(**prefill_inputs(ids[1:], mask[1:], model, bidirectional_prompt=False)).logits
        torch.testing.assert_close(windowed, model(input_ids=ids[1:]).logits, rtol=1e-5, atol=1e-5)
