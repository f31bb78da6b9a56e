"""``train.precision: bf16-pure`` (the MuToR code's pure-bf16 fine-tuning): a micro model trains on the CPU with its
weights, the methods' extra modules, gradients and AdamW state in bf16, buffers such as rotary frequencies left in
fp32, finite losses that fall, an exported bf16 model that still decodes, and a resume that reads the bf16
checkpoint; the mixed-precision settings keep fp32 weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import make_suite, write_suite
from mtp_bench.models.device import cast_weights, resolve_precision
from mtp_bench.suite.load import expand_grid, load_suite
from mtp_bench.trial import prepare, run_trial

METHODS = [{"name": "ntp"}, {"name": "mutor", "params": {"d_max": 3, "a": 0.3}},
           {"name": "mtp_heads", "params": {"n_future": 2, "a": 0.1, "init": "random"}},
           {"name": "deepseek_mtp", "params": {"depth": 1, "weight": 0.111, "init": "random"}}]


def trials(tmp_path: Path, gsm8k_dir: Path, precision: str, steps: int = 6) -> list:
    suite = make_suite(tmp_path, gsm8k_dir, methods=METHODS, baseline="ntp")
    suite["train"].update(precision=precision, max_steps=steps, lr=3e-3, loss_normalisation="sequence")
    suite["data"]["train_limit"] = 16
    return expand_grid(load_suite(write_suite(tmp_path, suite)))


def test_the_settings_resolve_to_their_autocast_and_weight_dtypes() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("bf16-pure", cpu) is torch.bfloat16 and resolve_precision("bf16", cpu) is torch.bfloat16
    layer = torch.nn.Linear(2, 2)
    layer.register_buffer("frequencies", torch.ones(2))
    assert cast_weights(layer, "bf16").weight.dtype is torch.float32
    assert cast_weights(layer, "bf16-pure").weight.dtype is torch.bfloat16
    assert layer.bias.dtype is torch.bfloat16 and layer.frequencies.dtype is torch.float32


@pytest.mark.parametrize("index", range(len(METHODS)), ids=[m["name"] for m in METHODS])
def test_pure_bf16_trains_every_weight_in_bf16_on_the_cpu(tmp_path: Path, gsm8k_dir: Path, index: int) -> None:
    trial = trials(tmp_path, gsm8k_dir, "bf16-pure")[index]
    log: list = []
    outcome = run_trial(trial, workdir=tmp_path / "run", progress=False,
                        on_metrics=lambda metrics, step: log.append(metrics))
    losses = [m["train/loss"] for m in log if "train/loss" in m]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-2:]) < losses[0]  # it learns, in bf16
    assert "last/test/gsm8k/exact_match" in outcome.metrics  # the bf16 model decodes and is scored
    checkpoint = tmp_path / "run" / "checkpoint"
    weights = torch.load(checkpoint / "trainable.pt", weights_only=True)
    assert weights and {value.dtype for value in weights.values()} == {torch.bfloat16}
    optimizer = torch.load(checkpoint / "trainer.pt", weights_only=False)["optimizer"]["state"]
    moments = [value for state in optimizer.values() for key, value in state.items() if key.startswith("exp_avg")]
    assert moments and {m.dtype for m in moments} == {torch.bfloat16}


@pytest.mark.parametrize("index", [1, 2], ids=["mutor", "mtp_heads"])  # a register, and decoder-layer heads
def test_pure_bf16_weights_gradients_and_adamw_state_are_bf16(tmp_path: Path, gsm8k_dir: Path, index: int) -> None:
    from mtp_bench.train.loop import Trainer
    from mtp_bench.trial.build import collate_items

    trial = trials(tmp_path, gsm8k_dir, "bf16-pure", steps=1)[index]
    prepared = prepare(trial)
    module = prepared.module
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert module.extra is not None and all(p.dtype is torch.bfloat16 for p in module.extra.parameters())
    rotary = [b for name, b in module.model.named_buffers() if "inv_freq" in name]
    assert rotary and all(b.dtype is torch.float32 for b in rotary)
    batch = collate_items(trial, prepared.tokenizer, prepared.train_data.items[:4])
    trainer = Trainer(module, prepared.method, trial.train, total_steps=1, device=prepared.device,
                      precision=prepared.precision, seed=0, eval_steps=set(), batches_for_step=lambda step: [batch])
    grads: list[torch.dtype] = []
    for parameter in trainer.parameters:
        parameter.register_hook(lambda grad: grads.append(grad.dtype))
    trainer.train_step(0)
    assert len(grads) == 4 * len(trainer.parameters) and set(grads) == {torch.bfloat16}  # 4 sequences, 1 by 1
    state = trainer.optimizer.state_dict()["state"]
    assert len(state) == len(trainer.parameters)
    assert all(s["exp_avg"].dtype is torch.bfloat16 and s["exp_avg_sq"].dtype is torch.bfloat16
               for s in state.values())


def test_mixed_bf16_keeps_fp32_weights(tmp_path: Path, gsm8k_dir: Path) -> None:
    prepared = prepare(trials(tmp_path, gsm8k_dir, "bf16", steps=1)[1])
    assert {p.dtype for p in prepared.module.parameters()} == {torch.float32}
    assert prepared.precision is torch.bfloat16


def test_a_pure_bf16_trial_resumes_from_its_checkpoint(tmp_path: Path, gsm8k_dir: Path, monkeypatch) -> None:
    """Interrupted in its fourth step (its last checkpoint is the one after step 2), the trial resumes from the bf16
    checkpoint and ends with the metrics of an uninterrupted one."""
    from mtp_bench.train.loop import Trainer

    trial = trials(tmp_path, gsm8k_dir, "bf16-pure", steps=4)[1]
    whole = run_trial(trial, workdir=tmp_path / "whole", progress=False)
    original = Trainer.train_step

    def interrupted(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_trial(trial, workdir=tmp_path / "resumed", progress=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = run_trial(trial, workdir=tmp_path / "resumed", progress=False)
    timeless = {k: v for k, v in whole.metrics.items() if k.startswith(("last/", "best/"))}
    assert timeless and {k: resumed.metrics[k] for k in timeless} == timeless
