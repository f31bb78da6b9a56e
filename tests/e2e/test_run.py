"""End-to-end `mtp-bench` runs on tiny configs: the MLflow runs, metrics, params and artifacts a user relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from helpers import make_suite, write_suite
from mtp_bench import cli

pytestmark = pytest.mark.slow


def _runs(store: str, experiment: str = "tiny"):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mtp_bench.kind") == "invocation"]
    children = [r for r in runs if r.data.tags.get("mtp_bench.kind") == "trial"]
    return client, parents, children


def test_run_records_parent_child_runs_metrics_and_artifacts(tmp_path, gsm8k_dir, store, capsys) -> None:
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir))
    assert cli.main(["run", str(path), "--no-ray", "--no-compare"]) == 0
    client, parents, children = _runs(store)
    assert len(parents) == 1 and len(children) == 1
    child = children[0]
    assert child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert child.data.tags["mtp_bench.method"] == "ntp" and child.data.tags["mtp_bench.seed"] == "0"
    metrics = child.data.metrics
    for name in ("train/loss", "train/loss/ntp", "train/acc/ntp", "train/lr", "train/tokens_per_s",
                 "train/grad_norm", "val/loss/ntp", "val/gsm8k/exact_match", "last/test/gsm8k/exact_match",
                 "last/test/gsm8k/exact_match_flexible", "last/test/loss/ntp", "params/extra", "train/flops_total"):
        assert name in metrics, name
    assert metrics["params/extra"] == 0
    history = client.get_metric_history(child.info.run_id, "train/loss/ntp")
    assert [m.step for m in history] == [1, 2, 3]
    params = child.data.params
    assert params["train.lr"] == "0.001" and params["method.name"] == "ntp" and len(params["trial_id"]) == 12
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert "trial.yaml" in artifacts and "predictions" in artifacts
    rows = client.download_artifacts(child.info.run_id, "predictions/last/test_gsm8k.jsonl", str(tmp_path))
    records = [json.loads(line) for line in Path(rows).read_text().splitlines()]
    assert len(records) == 4 and {"completion", "gold", "correct"} <= set(records[0])
    out = capsys.readouterr().out
    assert "FINISHED" in out


def test_lora_and_pretrain_modes_train(tmp_path, gsm8k_dir, store) -> None:
    lora = make_suite(tmp_path, gsm8k_dir, name="tiny")
    lora["train"]["mode"] = "lora"
    lora["train"]["lora"] = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    assert cli.main(["run", str(write_suite(tmp_path, lora, "lora.yaml")), "--no-ray", "--no-compare"]) == 0
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the cat number {i} sat on mat {i % 7} and ate {i * 3} fish" for i in range(80)))
    pretrain = make_suite(tmp_path, name="tiny",
                          data={"task": "text", "params": {"train_file": str(corpus)}, "validation_size": 4})
    pretrain["train"]["mode"] = "pretrain"
    pretrain["evaluation"] = {"every_steps": 2}
    assert cli.main(["run", str(write_suite(tmp_path, pretrain, "pretrain.yaml")), "--no-ray", "--no-compare"]) == 0
    _, _, children = _runs(store)
    by_mode = {r.data.params["train.mode"]: r for r in children}
    lora_run, pretrain_run = by_mode["lora"], by_mode["pretrain"]
    assert lora_run.data.metrics["params/trainable"] < lora_run.data.metrics["params/total"] / 5
    assert pretrain_run.data.metrics["params/trainable"] == pretrain_run.data.metrics["params/total"]
    # pretraining puts the loss on every token: more targets than answer-only fine-tuning of the same text would
    assert pretrain_run.data.metrics["val/loss/ntp"] > 0 and pretrain_run.info.status == "FINISHED"


def test_failed_trial_is_recorded_and_exit_code_is_1(tmp_path, gsm8k_dir, store, capsys) -> None:
    suite = make_suite(tmp_path, gsm8k_dir, methods=[{"name": "ntp"}, {"name": "ntp", "label": "exploding"}],
                       grid={"seeds": [0], "overrides": {"train.lr": [1e-3, 1e30]}})
    code = cli.main(["run", str(write_suite(tmp_path, suite)), "--no-ray", "--no-compare"])
    assert code == 1
    _, parents, children = _runs(store)
    statuses = sorted(r.info.status for r in children)
    assert statuses.count("FINISHED") >= 2 and "FAILED" in statuses
    failed = [r for r in children if r.info.status == "FAILED"]
    assert all("non-finite" in r.data.tags["mtp_bench.error"].lower() or r.data.tags["mtp_bench.error"] for r in failed)
    assert parents[0].info.status == "FAILED"
    assert "trials failed" in capsys.readouterr().out


def test_listing_commands_show_installed_plugins(capsys) -> None:
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "ntp" in out and "mtp_bench.methods.ntp:NextTokenPrediction" in out
    assert cli.main(["scorers"]) == 0 and "gsm8k" in capsys.readouterr().out
    assert cli.main(["tasks"]) == 0 and "gsm8k" in capsys.readouterr().out
    assert cli.main(["presets"]) == 0 and "tiny-llama" in capsys.readouterr().out
