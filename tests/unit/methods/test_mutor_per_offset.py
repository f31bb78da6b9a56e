"""One register embedding per offset (the MuToR paper's Table 6, ``registers: per_offset``): the vectors start as the
shared one and give identical losses, each register uses its offset's vector and never changes real tokens, a = 0 is
NTP, and the drafter uses the vector of each drafted offset."""

from __future__ import annotations

import pytest
import torch

from helpers import make_batch, make_model, mutor, ntp, random_pairs, step_gradients, trainer
from mtp_bench.api.decoding import new_cache

UNEQUAL = [(3, 2), (5, 7), (2, 4), (4, 1)]  # (prompt, answer) lengths


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
