"""The faithful-reproduction knobs of the MuToR paper: sequence loss normalisation (every sequence weighs the same,
as in the official code), one register embedding per offset (Table 6), and compute budgets (Table 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from conftest import make_batch, make_model, random_pairs
from mtp_bench.api import MethodContext
from mtp_bench.api.decoding import new_cache
from mtp_bench.methods.mutor import MuToR, MuToRParams
from mtp_bench.methods.ntp import NextTokenPrediction, NTPParams
from mtp_bench.suite.config import TrainConfig
from mtp_bench.train.loop import LoopCallbacks, Trainer, TrainModule
from mtp_bench.train.optim import lr_multiplier

UNEQUAL = [(3, 2), (5, 7), (2, 4), (4, 1)]  # (prompt, answer) lengths
EQUAL = [(3, 4)] * 4


def ntp() -> NextTokenPrediction:
    return NextTokenPrediction(NTPParams(), MethodContext(train_mode="full"))


def mutor(**params) -> MuToR:
    return MuToR(MuToRParams(**params), MethodContext(train_mode="full"))


def trainer(method, pairs, *, normalisation: str, grad_accum: int = 1, steps: int = 1, **train) -> Trainer:
    """A trainer over the same examples every step, split into ``grad_accum`` micro-batches."""
    model = make_model("llama", seed=0)
    size = len(pairs) // grad_accum
    cfg = TrainConfig(max_steps=steps, lr=1e-2, batch_size=size, grad_accum=grad_accum, warmup_steps=0,
                      progress=False, log_every=1, loss_normalisation=normalisation, **train)
    micro = [make_batch(pairs[i * size:(i + 1) * size]) for i in range(grad_accum)]
    return Trainer(TrainModule(model, method.prepare(model, None), method), method, cfg, total_steps=steps,
                   device=torch.device("cpu"), precision=None, seed=0, batches_for_step=lambda step: micro,
                   eval_steps=set())


def step_gradients(trainer: Trainer) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Metrics and gradients of the first step (the optimiser step is skipped)."""
    captured: list[torch.Tensor] = []

    def capture() -> float:
        captured.extend(p.grad.clone() for p in trainer.parameters)
        trainer.optimizer.zero_grad(set_to_none=True)
        return 0.0

    trainer._optimizer_step = capture
    return trainer.train_step(0), captured


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


# ------------------------------------------------------------------------------- per-offset registers ----
def test_per_offset_registers_start_as_the_shared_one_and_give_identical_losses():
    pairs = random_pairs(6, UNEQUAL)
    outputs, extras = [], []
    for registers in ("shared", "per_offset"):
        method = mutor(d_min=1, d_max=4, registers=registers)
        model = make_model("llama", seed=0)
        extra = method.prepare(model, None)
        batch = method.transform(make_batch(pairs), torch.Generator().manual_seed(0))
        output = method.loss(model, extra, batch)
        (output.sums["loss/reg"] / batch.counts["loss/reg"]).backward()
        outputs.append(output)
        extras.append(extra)
    shared, per_offset = extras
    assert per_offset.register.shape == (4, shared.register.numel())
    assert all(torch.equal(row, shared.register) for row in per_offset.register)
    for name, value in outputs[0].sums.items():
        torch.testing.assert_close(outputs[1].sums[name], value, rtol=0, atol=0)
    # each offset's vector gets the gradient of its own registers; together, the shared vector's
    torch.testing.assert_close(per_offset.register.grad.sum(0), shared.register.grad, rtol=1e-5, atol=1e-7)


def test_each_register_uses_its_offsets_vector_and_never_changes_real_tokens():
    torch.manual_seed(0)
    method = mutor(d_min=1, d_max=3, registers="per_offset")
    model = make_model("llama", seed=0)
    extra = method.prepare(model, None)
    extra.register.data.normal_()
    batch = make_batch(random_pairs(7, [(3, 8), (4, 6), (2, 7), (5, 5)]))
    model_batch = method.transform(batch, torch.Generator().manual_seed(1))
    offsets, valid = model_batch.tensors["offsets"], model_batch.tensors["register_valid"]
    with torch.no_grad():
        real, registers = method.logits(model, extra, model_batch)
        reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        assert (real - reference)[batch.attention_mask.bool()].abs().max().item() <= 1e-5
        changed = int(offsets[valid][0])
        extra.register[changed - 1].normal_()  # a new vector for one offset only
        _, after = method.logits(model, extra, model_batch)
    moved = (after - registers).abs().amax(-1) > 1e-6
    assert torch.equal(moved[valid], offsets[valid] == changed) and moved[valid].any()


def test_per_offset_with_a0_equals_ntp():
    pairs = random_pairs(8, UNEQUAL)
    losses = [step_gradients(trainer(method, pairs, normalisation="token"))[0]["train/loss"]
              for method in (ntp(), mutor(a=0.0, registers="per_offset"))]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_per_offset_drafter_uses_the_vector_of_each_drafted_offset():
    model = make_model("llama", seed=0).eval()
    prompt = torch.tensor(random_pairs(9, [(6, 0)])[0][0])
    drafts = {}
    for registers in ("shared", "per_offset"):
        method = mutor(d_min=1, d_max=4, registers=registers)
        extra = method.prepare(model, None)
        drafter = method.make_drafter(model, extra, 3)
        drafter.forward(prompt, new_cache(), 0, prefill=True)
        drafts[registers] = drafter.accept(len(prompt), 5)
    assert drafts["per_offset"] == drafts["shared"] and len(drafts["shared"]) == 3
    with torch.no_grad():
        extra.register[1:].normal_()  # offsets 2.. (rows 1..) now differ from the shared vector
    drafter = method.make_drafter(model, extra, 3)
    drafter.forward(prompt, new_cache(), 0, prefill=True)
    assert drafter.accept(len(prompt), 5) != drafts["shared"]


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
