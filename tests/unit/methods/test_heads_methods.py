"""Multi-head MTP baselines (mtp_heads, deepseek_mtp, medusa): equivalence with NTP at zero weight, the shifted
targets of every head by hand, training-time heads agreeing with the drafting path, saving and reloading the heads."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import ARCHS, gemma_model, make_batch, make_model, random_pairs
from mtp_bench.api import IGNORE_INDEX, LossOutput, MethodContext, TokenBatch
from mtp_bench.api.anatomy import anatomy, new_block
from mtp_bench.api.decoding import new_cache
from mtp_bench.api.heads import heads_config
from mtp_bench.methods import deepseek_mtp, medusa, mtp_heads
from mtp_bench.methods.ntp import NextTokenPrediction, NTPParams

FULL = MethodContext(train_mode="full")
CLASSES = {"mtp_heads": mtp_heads.MultiTokenHeads, "deepseek_mtp": deepseek_mtp.DeepSeekMTP, "medusa": medusa.Medusa}
LOADERS = {"mtp_heads": mtp_heads.load_heads, "deepseek_mtp": deepseek_mtp.load_modules, "medusa": medusa.load_heads}


def any_model(arch: str, attn: str) -> torch.nn.Module:
    return gemma_model(int(arch[-1])) if arch.startswith("gemma") else make_model(arch, attn)


ALL_ARCHS = [*ARCHS, "gemma2", "gemma3"]


def build(name: str, context: MethodContext = FULL, **params):
    cls = CLASSES[name]
    return cls(cls.Params(**params), context)


def objective(output: LossOutput, counts: dict, weights: dict[str, float]) -> torch.Tensor:
    """The loop's objective for one micro-batch that is the whole step (terms with weight 0 are skipped)."""
    terms = [w * output.sums[n] / max(float(counts[n]), 1.0) for n, w in weights.items() if w != 0.0]
    return torch.stack(terms).sum()


def base_gradients(model: torch.nn.Module, method, extra, batch: TokenBatch) -> tuple[LossOutput, dict]:
    model.zero_grad(set_to_none=True)
    model_batch = method.transform(batch, torch.Generator().manual_seed(0))
    output = method.loss(model, extra, model_batch)
    objective(output, model_batch.counts, method.loss_weights()).backward()
    return output, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


ZERO_WEIGHT = [
    ("mtp_heads", {"n_future": 1}),
    ("mtp_heads", {"n_future": 2, "a": 0.0}),
    ("mtp_heads", {"n_future": 3, "a": 0.0, "sequential_backward": True}),
    ("deepseek_mtp", {"depth": 1, "weight": 0.0}),
    ("medusa", {"variant": "medusa-2", "n_heads": 1, "head_weight": 0.0, "base_weight": 1.0}),
]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize(("name", "params"), ZERO_WEIGHT, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ZERO_WEIGHT)])
def test_with_zero_head_weight_loss_and_gradients_equal_ntp(name, params, arch, bidirectional) -> None:
    batch = make_batch(random_pairs(1, [(5, 4), (3, 6), (6, 2)]), bidirectional_prompt=bidirectional)
    model = any_model(arch, "eager")
    reference, reference_grads = base_gradients(model, NextTokenPrediction(NTPParams(), FULL), None, batch)
    method = build(name, **params)
    extra = method.prepare(model, None)
    output, grads = base_gradients(model, method, extra, batch)
    assert torch.allclose(output.sums["loss/ntp"], reference.sums["loss/ntp"], rtol=1e-5)
    assert int(output.sums["acc/ntp"]) == int(reference.sums["acc/ntp"])
    assert grads.keys() == reference_grads.keys()
    for key, grad in grads.items():
        assert torch.allclose(grad, reference_grads[key], atol=1e-6, rtol=1e-4), key
    if extra is not None:  # weight 0: the loop leaves the heads out of the objective
        assert all(p.grad is None for p in extra.parameters())


# A hand-worked batch: prompt 10 11 12, answer 20 21 22 EOS(1). Position t of a head of horizon h predicts
# labels[t + h]; the prompt carries no labels, so a target exists only where t + h lands in the answer.
HAND = make_batch([([10, 11, 12], [20, 21, 22, 1])])
N = IGNORE_INDEX
HAND_TARGETS = {
    "ntp": [N, N, 20, 21, 22, 1, N],
    "h2": [N, 20, 21, 22, 1, N, N],
    "h3": [20, 21, 22, 1, N, N, N],
}


@pytest.mark.parametrize(("name", "params"), [("mtp_heads", {"n_future": 3}), ("deepseek_mtp", {"depth": 2}),
                                              ("medusa", {"n_heads": 2})])
def test_every_head_gets_its_hand_worked_shifted_targets(name, params) -> None:
    assert HAND.input_ids.tolist() == [[10, 11, 12, 20, 21, 22, 1]]
    batch = build(name, **params).transform(HAND, torch.Generator())
    for head, expected in HAND_TARGETS.items():
        assert batch.tensors[f"targets_{head}"].tolist() == [expected], head
        assert int(batch.counts[f"loss/{head}"]) == sum(v != N for v in expected)
    if name == "deepseek_mtp":  # module k at position i reads token i + k
        assert batch.tensors["ids_ahead_1"].tolist() == [[11, 12, 20, 21, 22, 1, 0]]
        assert batch.tensors["ids_ahead_2"].tolist() == [[12, 20, 21, 22, 1, 0, 0]]


@pytest.mark.parametrize(("name", "params"), [("mtp_heads", {"n_future": 3, "init": "last_block"}),
                                              ("medusa", {"n_heads": 2})])
def test_fresh_heads_are_scored_against_the_token_h_steps_ahead(name, params) -> None:
    """A copy of the last layer (mtp_heads) and a zero-initialised residual head with a copy of the LM head (Medusa)
    both start out computing the model's own next-token logits, so each head's loss must be the cross-entropy of
    the plain model's logits at t against x_{t+h}: the hand-listed pairs, from an independent forward."""
    model = make_model("llama", "eager")
    method = build(name, **params)
    extra = method.prepare(model, None)
    with torch.no_grad():
        output = method.loss(model, extra, method.transform(HAND, torch.Generator()))
        logits = model(input_ids=HAND.input_ids).logits[0]
    for head in ("h2", "h3"):
        pairs = [(t, target) for t, target in enumerate(HAND_TARGETS[head]) if target != N]
        expected = sum(F.cross_entropy(logits[t], torch.tensor(target)) for t, target in pairs)
        assert torch.allclose(output.sums[f"loss/{head}"], expected, rtol=1e-5), head


def perturbed(extra: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    """Heads pushed away from their initialisation, so that every head predicts something of its own."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in extra.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return extra.eval()


DRAFTING = [("mtp_heads", {"n_future": 4, "init": "random"}), ("deepseek_mtp", {"depth": 3, "init": "random"}),
            ("medusa", {"n_heads": 3})]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize(("name", "params"), DRAFTING, ids=[n for n, _ in DRAFTING])
def test_drafts_are_what_the_trained_heads_predict(name, params, arch, bidirectional) -> None:
    """Two code paths, one meaning: the drafter (incremental, KV-cached, from the verifier's forward) must draft
    exactly the token each head's training-time forward ranks first at the same position and context (prefix
    longer than the Gemma models' sliding window; with a bidirectional prompt, the prefix is the prompt)."""
    model = any_model(arch, "sdpa")
    method = build(name, **params)
    extra = perturbed(method.prepare(model, None))
    drafter = method.make_drafter(model, extra, 3)
    prefix = random_pairs(7, [(6, 0)])[0][0]
    logits = drafter.forward(torch.tensor(prefix), new_cache(), 0, prefill=True, bidirectional=bidirectional)
    next_token = int(logits[-1].argmax())
    drafts = drafter.accept(len(prefix), next_token)
    assert len(drafts) == 3
    sequence = [*prefix, next_token, *drafts]  # the context each deeper DeepSeek module drafts in
    t = len(prefix) - 1
    for index, draft in enumerate(drafts):
        horizon = index + 2
        labels = torch.full((1, len(sequence)), IGNORE_INDEX)
        labels[0, t + horizon] = draft  # the one target of this head: x_{t+h} seen from position t
        batch = TokenBatch(torch.tensor([sequence]), torch.ones(1, len(sequence), dtype=torch.long), labels,
                           torch.tensor([len(prefix) if bidirectional else 0]), bidirectional_prompt=bidirectional)
        with torch.no_grad():
            output = method.loss(model, extra, method.transform(batch, torch.Generator()))
        assert int(output.sums[f"acc/h{horizon}"]) == 1, f"h{horizon}"


@pytest.mark.parametrize(("name", "params"), DRAFTING, ids=[n for n, _ in DRAFTING])
def test_heads_saved_beside_the_export_reload_exactly(name, params, tmp_path) -> None:
    model = make_model("qwen2", "sdpa")
    method = build(name, **params)
    extra = perturbed(method.prepare(model, None))
    method.save_extra(extra, tmp_path / "export" / "extra")  # where trial.py puts them
    reloaded = LOADERS[name](copy.deepcopy(model), tmp_path / "export")
    saved, loaded = extra.state_dict(), reloaded.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[key], loaded[key]) for key in saved)
    prompt = torch.tensor(random_pairs(2, [(5, 0)])[0][0])
    drafts = []
    for heads in (extra, reloaded.eval()):
        drafter = method.make_drafter(model, heads, 3)
        logits = drafter.forward(prompt, new_cache(), 0, prefill=True)
        drafts.append(drafter.accept(len(prompt), int(logits[-1].argmax())))
    assert drafts[0] == drafts[1]
    with pytest.raises(ValueError, match="not 'ntp'"):
        heads_config(tmp_path / "export", "ntp")


def test_medusa_1_trains_only_the_heads_and_rejects_lora() -> None:
    model = make_model("llama", "eager")
    method = build("medusa", variant="medusa-1", n_heads=2)
    extra = method.prepare(model, None)
    assert not any(p.requires_grad for p in model.parameters())
    batch = method.transform(make_batch(random_pairs(0, [(4, 5)])), torch.Generator())
    output = method.loss(model, extra, batch)
    weights = method.loss_weights()
    assert weights["loss/ntp"] == 0.0 and weights["loss/h2"] == 1.0
    assert weights["loss/h3"] == pytest.approx(0.8)
    objective(output, batch.counts, weights).backward()
    assert all(p.grad is not None for p in extra.parameters())
    assert "loss/ntp" in output.sums and not output.sums["loss/ntp"].requires_grad
    with pytest.raises(ValueError, match="medusa-1 freezes the backbone"):
        build("medusa", MethodContext(train_mode="lora"), variant="medusa-1")
    joint = build("medusa", n_heads=3)  # medusa-2: lambda_0 = 0.2 on the heads, decaying by 0.8
    assert joint.head_weights() == pytest.approx([0.2, 0.16, 0.128])


def test_sequential_backward_gives_the_same_gradients() -> None:
    batch = make_batch(random_pairs(4, [(4, 6), (2, 5)]))
    grads = []
    for sequential in (False, True):
        model = make_model("llama", "eager")
        method = build("mtp_heads", n_future=3, a=0.4, init="random", sequential_backward=sequential)
        extra = method.prepare(model, None)
        model_batch = method.transform(batch, torch.Generator())
        output = method.loss(model, extra, model_batch)
        objective(output, model_batch.counts, method.loss_weights()).backward()
        grads.append([p.grad.clone() for p in [*model.parameters(), *extra.parameters()]])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_mtp_heads_weights_and_block_init() -> None:
    model = make_model("gpt2", "eager")
    method = build("mtp_heads", n_future=3, a=0.1)
    output = method.loss(model, method.prepare(model, None), method.transform(HAND, torch.Generator()))
    assert set(output.sums) >= {"loss/ntp", "loss/h2", "loss/h3"}
    assert method.loss_weights() == pytest.approx({"loss/ntp": 0.9, "loss/h2": 0.05, "loss/h3": 0.05})
    anat = anatomy(model)
    copied, fresh = new_block(anat, "last_block"), new_block(anat, "random")
    last = dict(anat.last_layer.named_parameters())
    assert all(torch.equal(p, last[n]) for n, p in copied.named_parameters())
    assert not all(torch.equal(p, last[n]) for n, p in fresh.named_parameters())


def test_deepseek_modules_never_see_their_targets_under_a_bidirectional_prompt() -> None:
    """Module k at position i reads t_{i+k}; with the prompt attending both ways, only positions i < P - k may form
    the two-way block, or a prompt position would see answer tokens through its neighbours' shifted embeddings."""
    prompt, answer = [10, 11, 12, 13, 14], [20, 21, 22, 23]
    method = build("deepseek_mtp", depth=2, init="random")
    model = make_model("llama", "eager")
    extra = perturbed(method.prepare(model, None))

    def outputs(tokens: list[int]) -> list[torch.Tensor]:
        batch = method.transform(make_batch([(prompt, tokens)], bidirectional_prompt=True), torch.Generator())
        with torch.no_grad():
            return method.depth_outputs(model, extra, batch.tensors)[1]

    base = outputs(answer)
    for j in range(len(answer)):  # change answer token at position P + j
        changed = outputs([*answer[:j], 40, *answer[j + 1:]])
        position = len(prompt) + j
        for k, (before, after) in enumerate(zip(base, changed), start=1):
            # positions i with i + k < position never read it; all of their targets lie at or before it
            unaffected = position - k
            assert torch.allclose(before[0, :unaffected], after[0, :unaffected], atol=1e-6), (j, k)
            assert not torch.allclose(before[0, unaffected], after[0, unaffected]), (j, k)
