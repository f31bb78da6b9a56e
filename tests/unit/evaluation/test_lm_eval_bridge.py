"""lm-eval offline on a tiny in-memory model with the shipped local GSM8K tasks; result keys renamed to stable,
MLflow-legal names."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
import torch
from mlflow.utils.validation import _validate_metric_name

from mtp_bench.data.pipeline import encode_prompt
from mtp_bench.evaluation.generate import greedy_generate
from mtp_bench.evaluation.lm_eval_bridge import (
    LmEvalError,
    load_tasks,
    metric_key,
    rename_results,
    run_lm_eval,
    sample_rows,
    shipped_tasks,
    unknown_tasks,
)
from mtp_bench.suite.config import LmEvalConfig


@pytest.fixture
def tiny_lm(gsm8k_dir: Path) -> tuple[torch.nn.Module, object]:
    """A 2-layer, 32-wide Llama with a BPE tokenizer trained on 200 GSM8K solutions (random weights)."""
    from transformers import AutoModelForCausalLM

    from mtp_bench.models.presets import preset_config
    from mtp_bench.models.tokenizer import trained_tokenizer

    rows = [json.loads(line) for line in (gsm8k_dir / "train.jsonl").read_text().splitlines()[:200]]
    tokenizer = trained_tokenizer("bpe", [r["question"] + r["answer"] for r in rows], 256)
    config = preset_config("micro-llama", len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, {})
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


def test_local_task_runs_offline_with_legal_stable_names(tiny_lm, gsm8k_dir: Path) -> None:
    model, tokenizer = tiny_lm
    cfg = LmEvalConfig(tasks=["gsm8k_mutor_local"], limit=4, max_gen_toks=6, batch_size=4, data_dir=str(gsm8k_dir))
    result = run_lm_eval(model, tokenizer, cfg)
    task = "lm_eval/gsm8k_mutor_local"
    assert set(result.metrics) == {f"{task}/exact_match/strict-match", f"{task}/exact_match/flexible-extract",
                                   f"{task}/exact_match_stderr/strict-match",
                                   f"{task}/exact_match_stderr/flexible-extract", f"{task}/n_samples"}
    for name in result.metrics:
        _validate_metric_name(name)  # raises on a name MLflow would reject
    assert result.metrics[f"{task}/n_samples"] == 4
    assert result.params["lm_eval.version"] == importlib.metadata.version("lm_eval")
    assert result.params["lm_eval.gsm8k_mutor_local.filters"] == "strict-match,flexible-extract"
    assert result.params["lm_eval.gsm8k_mutor_local.num_fewshot"] == "0"
    assert result.params["lm_eval.gsm8k_mutor_local.dataset"] == str(gsm8k_dir.resolve())
    rows = result.samples["gsm8k_mutor_local"]
    assert [row["index"] for row in rows] == [0, 1, 2, 3]
    for key in ("exact_match/strict-match", "exact_match/flexible-extract"):  # per-doc scores average to the metric
        assert sum(row["scores"][key] for row in rows) / 4 == pytest.approx(result.metrics[f"{task}/{key}"])
    # lm-eval scored the in-memory model itself: its greedy text is our own KV-cache decoder's, token for token.
    test_rows = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines()[:4]]
    prompts = [encode_prompt(tokenizer, f"Question: {r['question']}\n\nAnswer:") for r in test_rows]
    ours = greedy_generate(model, prompts, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                           max_new_tokens=6)
    for row, tokens in zip(rows, ours):
        expected = tokenizer.decode(tokens, skip_special_tokens=True)  # no stop string: EOS only, like ours
        assert row["response"] == expected


def test_bidirectional_prompt_reaches_lm_eval_generation(tiny_lm, gsm8k_dir: Path) -> None:
    # A suite with bidirectional_prompt trains every method with the prompt attending both ways; lm-eval's
    # generation must then prefill the same way: its text is our bidirectional decoder's, token for token.
    model, tokenizer = tiny_lm
    with torch.no_grad():  # large random weights: varied text that depends on how the prompt attends
        generator = torch.Generator().manual_seed(1)
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    cfg = LmEvalConfig(tasks=["gsm8k_mutor_local"], limit=4, max_gen_toks=6, batch_size=4, data_dir=str(gsm8k_dir))
    result = run_lm_eval(model, tokenizer, cfg, bidirectional_prompt=True)
    assert result.params["lm_eval.prompt_attention"].startswith("bidirectional")
    test_rows = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines()[:4]]
    prompts = [encode_prompt(tokenizer, f"Question: {r['question']}\n\nAnswer:") for r in test_rows]
    decoded = {}
    for bidirectional in (True, False):
        tokens = greedy_generate(model, prompts, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                                 max_new_tokens=6, bidirectional_prompt=bidirectional)
        decoded[bidirectional] = [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
    assert [row["response"] for row in result.samples["gsm8k_mutor_local"]] == decoded[True]
    assert decoded[True] != decoded[False]  # the option changes what this model generates: the check has teeth


def test_result_keys_are_renamed_stably() -> None:
    results = {
        "results": {"gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.25,
                              "exact_match_stderr,strict-match": "N/A"},
                    "mmlu:high school/chem": {"acc,none": 0.5}},
        "groups": {"mmlu": {"acc,none": 0.4}},
        "n-samples": {"gsm8k": {"original": 1319, "effective": 8}},
    }
    metrics = rename_results(results)
    assert metrics == {"lm_eval/gsm8k/exact_match/strict-match": 0.25, "lm_eval/mmlu_high school_chem/acc/none": 0.5,
                       "lm_eval/mmlu/acc/none": 0.4, "lm_eval/gsm8k/n_samples": 8.0}
    for name in metrics:
        _validate_metric_name(name)
    assert metric_key("gsm8k", "alias") is None


def test_sample_rows_merge_filters_per_document() -> None:
    samples = [
        {"doc_id": 1, "filter": "strict-match", "metrics": ["exact_match"], "exact_match": 0.0,
         "resps": [["#### 5"]], "filtered_resps": ["5"], "target": "#### 6"},
        {"doc_id": 0, "filter": "strict-match", "metrics": ["exact_match"], "exact_match": 1.0,
         "resps": [["#### 6"]], "filtered_resps": ["6"], "target": "#### 6"},
        {"doc_id": 0, "filter": "flexible-extract", "metrics": ["exact_match"], "exact_match": 1.0,
         "resps": [["#### 6"]], "filtered_resps": ["6"], "target": "#### 6"},
    ]
    rows = sample_rows(samples)
    assert [r["index"] for r in rows] == [0, 1]
    assert rows[0]["scores"] == {"exact_match/strict-match": 1.0, "exact_match/flexible-extract": 1.0}
    assert rows[0]["correct"] is True and rows[1]["correct"] is False
    assert rows[1]["filtered"] == {"strict-match": "5"}


def test_unsafe_tasks_need_the_suite_flag(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.jsonl").write_text(json.dumps({"q": "1+1", "a": "2"}) + "\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "runs_code.yaml").write_text(
        "task: runs_code\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {tmp_path / 'data' / 'test.jsonl'}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n"
        "unsafe_code: true\nmetric_list:\n  - metric: exact_match\n")
    cfg = LmEvalConfig(tasks=["runs_code"], include_path=str(tmp_path / "tasks"))
    with pytest.raises(LmEvalError, match="allow_unsafe_code"):
        load_tasks(cfg, None)
    _, tasks = load_tasks(cfg.model_copy(update={"allow_unsafe_code": True}), None)
    assert list(tasks) == ["runs_code"]


def test_problems_are_named(tmp_path: Path) -> None:
    message = unknown_tasks(["gsm8k_locall", "gsm8k_local"], ["gsm8k_local", "gsm8k_cot_local"])
    assert "'gsm8k_locall'" in message and "did you mean gsm8k_local" in message
    assert unknown_tasks(["gsm8k_local"], ["gsm8k_local"]) is None
    assert shipped_tasks() == ["agieval_aqua_rat_local", "gsm8k_cot_local", "gsm8k_local", "gsm8k_mutor_local",
                              "minerva_math500_local"]
    with pytest.raises(LmEvalError, match="lacks train.jsonl, test.jsonl"):
        load_tasks(LmEvalConfig(tasks=["gsm8k_local"]), tmp_path)
    with pytest.raises(LmEvalError, match="include_path"):
        load_tasks(LmEvalConfig(tasks=["x"], include_path=str(tmp_path / "nowhere")), None)
