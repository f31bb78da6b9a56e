"""Self-speculative decoding: the decoder's bookkeeping with oracle drafters, output identical to greedy for every
drafter (heads, DeepSeek modules, Medusa, MuToR registers) untrained and briefly trained, registers placed as in
training, the ``speculative`` scorer, and an end-to-end run that logs the figures to MLflow."""

from __future__ import annotations

import pytest
import torch

from helpers import ARCHS, ATTNS, gemma_model, make_batch, make_model, make_suite, recorded_trials, write_suite
from mtp_bench import cli
from mtp_bench.api import Drafter, MethodContext, SupportsDrafting, model_attention_mask
from mtp_bench.api.anatomy import anatomy
from mtp_bench.api.decoding import new_cache
from mtp_bench.api.task import Example
from mtp_bench.evaluation.context import ScoringContext
from mtp_bench.evaluation.generate import greedy_generate
from mtp_bench.evaluation.speculative_decoding import DraftStats, compare_with_greedy, speculative_generate
from mtp_bench.methods.deepseek_mtp import DeepSeekMTP, DeepSeekMTPParams
from mtp_bench.methods.medusa import Medusa, MedusaParams
from mtp_bench.methods.mtp_heads import MTPHeadsParams, MultiTokenHeads
from mtp_bench.methods.mutor import RegisterDrafter
from mtp_bench.methods.ntp import NextTokenPrediction, NTPParams
from mtp_bench.models.tokenizer import trained_tokenizer
from mtp_bench.scorers.speculative import SpeculativeDecoding, SpeculativeParams
from mtp_bench.suite.config import TrainConfig
from mtp_bench.train.loop import LoopCallbacks, Trainer, TrainModule

FULL = MethodContext(train_mode="full")
EOS, PAD = 1, 2
PROMPTS = [[5], [7, 9], [11, 30, 12, 40, 8], [3, 14, 15, 9, 26, 5, 35, 8, 9]]


def methods() -> dict[str, object]:
    return {
        "mtp_heads": MultiTokenHeads(MTPHeadsParams(n_future=4, init="random"), FULL),
        "deepseek_mtp": DeepSeekMTP(DeepSeekMTPParams(depth=3, init="random"), FULL),
        "medusa": Medusa(MedusaParams(n_heads=3), FULL),
    }


class OracleDrafter:
    """Drafts from a known continuation: ``right`` drafts of each step are the true ones, the rest are wrong."""

    def __init__(self, model, truth: list[int], k: int, right: int):
        self.model, self.truth, self.max_drafts, self.right = model, truth, k, right
        self.prompt_length = 0

    def forward(self, input_ids, cache, past_length, prefill=False, bidirectional=False):
        if prefill:
            self.prompt_length = input_ids.numel()
        self.past_length = past_length
        return self.model(input_ids=input_ids[None], position_ids=torch.arange(past_length, past_length +
                          input_ids.numel())[None], cache=cache, use_cache=True).logits[0]

    def accept(self, kept, next_token):
        done = self.past_length + kept + 1 - self.prompt_length  # tokens generated so far, next_token included
        upcoming = self.truth[done : done + self.max_drafts]
        return [t if j < self.right else (t + 1) % 61 for j, t in enumerate(upcoming)]


@pytest.mark.parametrize(("right", "tau"), [(3, 4.0), (0, 1.0), (1, 2.0)])
def test_decoder_accepts_exactly_the_matching_prefix(right, tau) -> None:
    model = make_model("llama", "sdpa")
    prompt = PROMPTS[2]
    truth = greedy_generate(model, [prompt], eos_id=-1, pad_id=PAD, max_new_tokens=13)[0]
    drafter = OracleDrafter(model, truth, 3, right)
    assert isinstance(drafter, Drafter)
    stats = DraftStats()
    output = speculative_generate(drafter, prompt, device=torch.device("cpu"), eos_id=-1, max_new_tokens=13,
                                  stats=stats)
    assert output == truth
    # 13 tokens: 1 from the prefill, then 12 from steps of (right + 1) tokens each
    assert stats.steps == 12 // (right + 1) and stats.tau == tau
    metrics = stats.metrics()
    for j in range(3):
        assert metrics[f"acceptance/h{j + 2}"] == (1.0 if j < right else 0.0)
        assert metrics[f"acceptance_given_previous/h{j + 2}"] == (1.0 if j < right else 0.0)


def test_decoder_stops_at_eos_inside_accepted_drafts() -> None:
    model = make_model("qwen2", "eager")
    prompt = PROMPTS[3]
    truth = greedy_generate(model, [prompt], eos_id=-1, pad_id=PAD, max_new_tokens=10)[0]
    eos = truth[5]  # pretend the sixth greedy token is EOS: generation must end right there
    expected = greedy_generate(model, [prompt], eos_id=eos, pad_id=PAD, max_new_tokens=10)[0]
    stats = DraftStats()
    output = speculative_generate(OracleDrafter(model, truth, 3, 3), prompt, device=torch.device("cpu"), eos_id=eos,
                                  max_new_tokens=10, stats=stats)
    assert output == expected and output[-1] == eos
    # tau counts only what is output: neither drafts past the EOS nor the verifier's token after it
    assert stats.tokens == len(output) - 1


# Every architecture under both kernels, Gemma 3 (sliding windows, per-layer-type rotary embeddings), and the
# bidirectional prompt prefill under each kernel and with sliding windows shorter than the longest prompt.
DECODE_CASES = [(arch, attn, False) for arch in ARCHS for attn in ATTNS] + [
    ("gemma3", "eager", False), ("llama", "eager", True), ("gpt2", "sdpa", True), ("gemma2", "eager", True),
    ("gemma3", "eager", True)]


@pytest.mark.parametrize(("arch", "attn", "bidirectional"), DECODE_CASES,
                         ids=[f"{a}-{k}-{'bidirectional' if b else 'causal'}" for a, k, b in DECODE_CASES])
def test_every_drafter_decodes_exactly_like_greedy(arch, attn, bidirectional) -> None:
    model = gemma_model(int(arch[-1])) if arch.startswith("gemma") else make_model(arch, attn)
    drafters = {"registers": RegisterDrafter(model, torch.randn(32, generator=torch.Generator().manual_seed(1)), 3)}
    for name, method in methods().items():
        assert isinstance(method, SupportsDrafting)
        drafters[name] = method.make_drafter(model, method.prepare(model, None).eval(), 3)
    for name, drafter in drafters.items():
        report = compare_with_greedy(model, drafter, PROMPTS[2:], eos_id=EOS, pad_id=PAD, max_new_tokens=8,
                                     bidirectional_prompt=bidirectional, warmup=False)
        assert report.mismatches == 0, name
        assert report.stats.steps > 0 and 1.0 <= report.stats.tau <= 4.0


def test_registers_draft_as_in_training() -> None:
    """Register for offset d after x_t: position id t + d - 1, sees x_0..x_t and itself. Reference: one plain
    forward (no cache) over the real tokens plus all k registers, built by hand."""
    model = make_model("llama", "eager")
    register = torch.randn(32, generator=torch.Generator().manual_seed(5))
    prompt, k = PROMPTS[3], 3
    drafter = RegisterDrafter(model, register, k)
    cache = new_cache()
    logits = drafter.forward(torch.tensor(prompt), cache, 0, prefill=True)
    drafts = drafter.accept(len(prompt), int(logits[-1].argmax()))
    t = len(prompt) - 1
    n = len(prompt)
    allowed = torch.zeros(n + k, n + k, dtype=torch.bool)
    allowed[:n, :n] = torch.ones(n, n).tril().bool()
    allowed[n:, :n] = True
    allowed[n:, n:] = torch.eye(k, dtype=torch.bool)
    embeds = torch.cat([anatomy(model).embed(torch.tensor([prompt])), register.expand(1, k, -1)], dim=1)
    positions = torch.tensor([[*range(n), *[t + d - 1 for d in range(2, k + 2)]]])
    with torch.no_grad():
        reference = model(inputs_embeds=embeds, position_ids=positions,
                          attention_mask=model_attention_mask(allowed[None], model)).logits[0]
    assert drafts == reference[n:].argmax(-1).tolist()
    torch.testing.assert_close(logits, reference[:n], atol=1e-5, rtol=1e-5)
    assert cache.get_seq_length() == n + k  # registers sit after the real tokens: the decoder's crop drops them


CYCLE = list(range(3, 13))


def cycle_pairs(seed: int, count: int, length: int = 16) -> list[tuple[list[int], list[int]]]:
    starts = torch.randint(0, len(CYCLE), (count,), generator=torch.Generator().manual_seed(seed)).tolist()
    rows = [[CYCLE[(s + i) % len(CYCLE)] for i in range(length)] for s in starts]
    return [(row[:4], row[4:]) for row in rows]


@pytest.mark.parametrize("name", ["mtp_heads", "deepseek_mtp", "medusa"])
def test_briefly_trained_heads_get_drafts_accepted_and_output_stays_greedy(name) -> None:
    """A few steps of the shared loop on a deterministic cycle: the heads learn it, so drafts are accepted."""
    model = make_model("llama", "sdpa")
    method = methods()[name]
    extra = method.prepare(model, None)
    steps = 20
    cfg = TrainConfig(max_steps=steps, lr=3e-2, batch_size=8, warmup_steps=0, progress=False, log_every=steps)
    trainer = Trainer(TrainModule(model, extra, method), method, cfg, total_steps=steps, device=torch.device("cpu"),
                      precision=None, seed=0, batches_for_step=lambda s: [make_batch(cycle_pairs(s, 8), pretrain=True)],
                      eval_steps=set())
    trainer.run(LoopCallbacks())
    model.eval()
    extra.eval()
    prompts = [CYCLE[i : i + 3] for i in range(0, 8, 2)]
    report = compare_with_greedy(model, method.make_drafter(model, extra, 3), prompts, eos_id=EOS, pad_id=PAD,
                                 max_new_tokens=16, warmup=False)
    assert report.mismatches == 0
    assert report.greedy[0][:5] == [CYCLE[(3 + i) % len(CYCLE)] for i in range(5)]  # the model learned the cycle
    metrics = report.metrics()
    assert metrics["acceptance/h2"] > 0.5 and metrics["tau"] > 2.0, metrics


def test_mutor_trained_registers_draft_and_get_accepted() -> None:
    """The wiring MuToR's ``make_drafter`` needs: its trained register vector drives a RegisterDrafter."""
    from mtp_bench.methods.mutor import MuToR, MuToRParams

    model = make_model("llama", "sdpa")
    method = MuToR(MuToRParams(d_min=1, d_max=4, a=0.5), FULL)
    extra = method.prepare(model, None)
    steps = 40  # registers learn a little slower than heads here (each register offset gets a quarter of them)
    cfg = TrainConfig(max_steps=steps, lr=1e-2, batch_size=8, warmup_steps=0, progress=False, log_every=steps)
    Trainer(TrainModule(model, extra, method), method, cfg, total_steps=steps, device=torch.device("cpu"),
            precision=None, seed=0, batches_for_step=lambda s: [make_batch(cycle_pairs(s, 8, 24), pretrain=True)],
            eval_steps=set()).run(LoopCallbacks())
    model.eval()
    prompts = [CYCLE[i : i + 3] for i in range(0, 8, 2)]
    report = compare_with_greedy(model, RegisterDrafter(model, extra.register, 3), prompts, eos_id=EOS, pad_id=PAD,
                                 max_new_tokens=16, warmup=False)
    assert report.mismatches == 0
    assert report.metrics()["acceptance/h2"] > 0.5 and report.stats.tau > 2.0


def word_context(method, model=None) -> tuple[ScoringContext, list[Example]]:
    words = [f"w{i}" for i in range(40)]
    tokenizer = trained_tokenizer("word", [" ".join(words)], 64)
    model = model or make_model("llama", "sdpa", vocab=len(tokenizer))
    extra = method.prepare(model, tokenizer)
    examples = [Example(prompt=" ".join(words[i : i + 4]), answer="w1") for i in range(0, 12, 3)]
    return ScoringContext(model=model, tokenizer=tokenizer, method=method, extra=extra, max_new_tokens=10), examples


def test_scorer_reports_acceptance_tau_speedup_and_no_mismatch() -> None:
    context, examples = word_context(MultiTokenHeads(MTPHeadsParams(n_future=3), FULL))
    result = SpeculativeDecoding(SpeculativeParams(k=5, limit=3)).score(context, examples)
    metrics = result.metrics
    assert metrics["mismatches"] == 0 and len(result.samples) == 3
    assert {"acceptance/h2", "acceptance/h3", "tau", "speedup", "greedy_seconds", "speculative_seconds"} <= set(metrics)
    assert "acceptance/h4" not in metrics  # two extra heads: k is capped at what the method has
    assert metrics["speedup"] > 0 and metrics["tau"] >= 1.0
    assert all(sample["matches_greedy"] for sample in result.samples)


def test_scorer_says_na_for_a_method_without_drafter() -> None:
    context, examples = word_context(NextTokenPrediction(NTPParams(), FULL))
    result = SpeculativeDecoding(SpeculativeParams()).score(context, examples)
    assert result.metrics == {} and "n/a" in result.samples[0]["note"]


@pytest.mark.slow
def test_run_logs_speculative_figures_to_mlflow(tmp_path, gsm8k_dir, store) -> None:
    suite = make_suite(tmp_path, gsm8k_dir, methods=[{"name": "ntp"}, {"name": "mtp_heads"}])
    # The accuracy scorer comes first: the first scorer's main metric selects checkpoints.
    speculative = {"name": "speculative", "params": {"k": 2, "limit": 2, "max_new_tokens": 6}}
    suite["evaluation"] = {"scorers": [{"name": "gsm8k"}, speculative], "max_new_tokens": 6, "every_steps": 2}
    assert cli.main(["run", str(write_suite(tmp_path, suite)), "--no-ray", "--no-compare"]) == 0
    _, trials = recorded_trials(store, "tiny")
    heads = trials["mtp_heads"].data.metrics
    assert heads["last/test/speculative/mismatches"] == 0
    for name in ("last/test/speculative/tau", "last/test/speculative/acceptance/h2", "last/test/speculative/speedup",
                 "val/acc/h2", "val/loss/h2", "last/test/acc/h2"):
        assert name in heads, name
    assert heads["params/extra"] > 0
    assert not any("speculative" in key for key in trials["ntp"].data.metrics)
    exports = list((tmp_path / "trials").rglob("heads.json"))
    assert len(exports) == 1
