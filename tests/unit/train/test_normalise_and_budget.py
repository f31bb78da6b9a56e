"""Two of the faithful-reproduction knobs of the MuToR paper, through the shared loop: sequence loss normalisation
(every sequence weighs the same, as in the official code) and compute budgets (Table 3); unused, they leave the
dump and so the trial ids of earlier suites. The third knob, one register embedding per offset (Table 6), is
MuToR's: ``tests/unit/methods/test_mutor_per_offset.py``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from helpers import make_batch, make_model, mutor, ntp, random_pairs, step_gradients, trainer
from mtp_bench.suite.config import TrainConfig
from mtp_bench.train.loop import LoopCallbacks
from mtp_bench.train.optim import lr_multiplier

UNEQUAL = [(3, 2), (5, 7), (2, 4), (4, 1)]  # (prompt, answer) lengths
EQUAL = [(3, 4)] * 4


# ------------------------------------------------------------------------------- loss normalisation ----
def test_equal_lengths_token_and_sequence_normalisation_agree():
    pairs = random_pairs(3, EQUAL)
    token, token_grads = step_gradients(trainer(ntp(), pairs, normalisation="token"))
    sequence, sequence_grads = step_gradients(trainer(ntp(), pairs, normalisation="sequence"))
    assert sequence["train/loss"] == pytest.approx(token["train/loss"], rel=1e-6)
    for a, b in zip(token_grads, sequence_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_sequence_normalisation_is_the_mean_of_per_sequence_means_at_any_accumulation():
    pairs = random_pairs(4, UNEQUAL)
    # By hand: each sequence's mean cross-entropy over its answer tokens, then the plain mean over sequences.
    model = make_model("llama", seed=0)
    means = []
    for prompt, answer in pairs:
        ids = torch.tensor([prompt + answer])
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1]
        means.append(F.cross_entropy(logits, torch.tensor(answer)))
    by_hand = torch.stack(means).mean()
    by_hand.backward()
    hand_grads = [p.grad for p in model.parameters()]

    results = {accum: step_gradients(trainer(ntp(), pairs, normalisation="sequence", grad_accum=accum))
               for accum in (1, 2)}
    for metrics, grads in results.values():
        assert metrics["train/loss"] == pytest.approx(by_hand.item(), rel=1e-5)
        assert metrics["train/loss/ntp"] == pytest.approx(by_hand.item(), rel=1e-5)
        for a, b in zip(hand_grads, grads):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    token, _ = step_gradients(trainer(ntp(), pairs, normalisation="token"))
    assert abs(token["train/loss"] - by_hand.item()) > 1e-3  # a token mean differs here: the test has teeth


def test_sequence_normalisation_of_mutor_does_not_depend_on_accumulation():
    """Register offsets are drawn per sequence from its place in the step, so the same examples give the same
    loss, terms and gradients however the step is split."""
    pairs = random_pairs(5, UNEQUAL)
    (one, grads_one), (two, grads_two) = (
        step_gradients(trainer(mutor(d_min=1, d_max=3), pairs, normalisation="sequence", grad_accum=accum))
        for accum in (1, 2))
    for name in ("train/loss", "train/loss/ntp", "train/loss/reg"):
        assert two[name] == pytest.approx(one[name], rel=1e-5), name
    for a, b in zip(grads_one, grads_two):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_loss_normalisation_is_validated():
    with pytest.raises(ValidationError, match="loss_normalisation"):
        TrainConfig(max_steps=1, loss_normalisation="batch")


# ---------------------------------------------------------------------------------------- budgets ----
def test_position_budget_stops_at_the_step_that_reaches_it_and_the_schedule_spans_it():
    pairs = random_pairs(10, UNEQUAL)
    per_step = make_batch(pairs).n_real_tokens  # NTP processes the real tokens only
    budget = 3 * per_step - 1  # reached during the third step
    run = trainer(ntp(), pairs, normalisation="token", steps=50, max_positions=budget, schedule="linear")
    assert run.total_steps == 3
    lrs: list[float] = []
    run.run(LoopCallbacks(log=lambda metrics, step: lrs.append(metrics["train/lr"])))
    assert run.state.step == 3 and run.state.tokens_processed == 3 * per_step >= budget
    assert lrs == pytest.approx([1e-2 * lr_multiplier(step, total=3, warmup=0, schedule="linear")
                                 for step in range(1, 4)])


def test_mutor_budget_counts_its_registers_and_flops_budget_converts_through_parameters():
    pairs = random_pairs(11, UNEQUAL)
    reference = trainer(mutor(d_min=1, d_max=2), pairs, normalisation="token", steps=4)
    reference.run(LoopCallbacks())
    positions, flops = reference.state.tokens_processed, reference.state.flops
    per_step = make_batch(pairs).n_real_tokens
    assert positions > 4 * per_step  # registers are positions too
    # an NTP run matched to MuToR's positions trains more steps; the budget stops where they are reached
    matched = trainer(ntp(), pairs, normalisation="token", steps=100, max_positions=positions)
    matched.run(LoopCallbacks())
    assert matched.total_steps == -(-positions // per_step) and matched.state.tokens_processed >= positions
    by_flops = trainer(mutor(d_min=1, d_max=2), pairs, normalisation="token", steps=100, max_flops=flops)
    assert by_flops.total_steps == 4
    capped = trainer(ntp(), pairs, normalisation="token", steps=2, max_positions=10 ** 9)
    assert capped.total_steps == 2  # max_steps stays the upper bound


def test_budgets_are_validated():
    with pytest.raises(ValidationError, match="at most one of train.max_positions and train.max_flops"):
        TrainConfig(max_steps=10, max_positions=100, max_flops=1e9)
    with pytest.raises(ValidationError):
        TrainConfig(max_steps=10, max_positions=0)


def test_unused_knobs_leave_the_dump_and_so_the_trial_ids_of_earlier_suites():
    plain = TrainConfig(max_steps=10).model_dump(mode="json")
    assert not {"loss_normalisation", "max_positions", "max_flops"} & set(plain)
    used = TrainConfig(max_steps=10, loss_normalisation="sequence", max_flops=1e12)
    dumped = used.model_dump(mode="json")
    assert dumped["loss_normalisation"] == "sequence" and dumped["max_flops"] == 1e12
    assert TrainConfig.model_validate(dumped) == used
