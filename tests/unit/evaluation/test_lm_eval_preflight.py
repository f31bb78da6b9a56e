"""The paper suites' lm-eval cross-checks (minerva_math500, AGIEval's aqua-rat): the tasks they name are ones the
installed lm-eval knows, and the preflight that ``validate`` runs checks such hub-data tasks by name without fetching
their data, while it still loads local tasks in full (a missing GSM8K folder, code-executing tasks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import REPO
from mtp_bench.evaluation.lm_eval_bridge import LmEvalError, preflight, task_manager
from mtp_bench.suite.config import LmEvalConfig

CROSS_CHECKS = {"gemma2b_math_1m": ["minerva_math500"], "llama3_8b_math_1m": ["minerva_math500"],
                "gemma2b_aqua_rat": ["agieval_aqua_rat"]}


def suite_tasks() -> dict[str, list[str]]:
    found = {}
    for path in sorted((REPO / "suites" / "paper").glob("*.yaml")):
        tasks = (yaml.safe_load(path.read_text()).get("evaluation") or {}).get("lm_eval", {}).get("tasks") or []
        if tasks:
            found[path.stem] = tasks
    return found


@pytest.fixture
def offline(monkeypatch):
    """lm-eval's dataset loading fails the test: the preflight must not reach the hub."""
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("preflight must not load a dataset from the hub")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)


def test_the_cross_checks_name_tasks_the_installed_lm_eval_knows() -> None:
    assert suite_tasks() == CROSS_CHECKS
    names = sorted({task for tasks in CROSS_CHECKS.values() for task in tasks})
    manager = task_manager(LmEvalConfig(tasks=names))
    for name in names:
        entry = manager.task_index[name]
        assert entry.cfg["output_type"] in ("generate_until", "multiple_choice"), name
    # what the README says about them (a changed lm-eval release would make it wrong)
    minerva = manager.task_index["minerva_math500"].cfg
    assert minerva["dataset_path"] == "HuggingFaceH4/MATH-500" and minerva["num_fewshot"] == 4
    assert minerva["generation_kwargs"]["until"] == ["Problem:"]
    assert [m["metric"] for m in minerva["metric_list"]] == ["exact_match", "math_verify"]
    aqua = manager.task_index["agieval_aqua_rat"].cfg
    assert aqua["output_type"] == "multiple_choice" and [m["metric"] for m in aqua["metric_list"]] == ["acc", "acc_norm"]


def test_hub_tasks_pass_the_preflight_offline(offline) -> None:
    preflight(LmEvalConfig(tasks=["minerva_math500", "agieval_aqua_rat"], max_gen_toks=1024))


def test_the_preflight_still_loads_local_tasks_and_names_unknown_ones(offline, tmp_path: Path) -> None:
    with pytest.raises(LmEvalError, match="lacks train.jsonl, test.jsonl"):  # the shipped GSM8K task, beside a hub one
        preflight(LmEvalConfig(tasks=["minerva_math500", "gsm8k_local"]), tmp_path)
    with pytest.raises(LmEvalError, match="unknown lm-eval task 'minerva_math5000'"):
        preflight(LmEvalConfig(tasks=["minerva_math5000"]))


def test_a_code_executing_hub_task_needs_the_flag_before_any_download(offline) -> None:
    with pytest.raises(LmEvalError, match="allow_unsafe_code"):
        preflight(LmEvalConfig(tasks=["humaneval"]))
    preflight(LmEvalConfig(tasks=["humaneval"], allow_unsafe_code=True))


def test_a_hub_task_missing_an_optional_dependency_fails_the_preflight(offline, monkeypatch) -> None:
    # lm-eval's minerva_math utils refuse to import without antlr4 4.11 (lm-eval's math extra, which pyproject asks
    # for): validate says so before any training, where the trial would otherwise fail after it
    import importlib.metadata
    import sys

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "4.13.2" if name == "antlr4-python3-runtime" else real(name))
    for name in [m for m in sys.modules if m.startswith("lm_eval.tasks.minerva_math")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, under the version above
    with pytest.raises(LmEvalError, match=r"'minerva_math500' cannot import .*antlr4-python3-runtime==4.11"):
        preflight(LmEvalConfig(tasks=["minerva_math500"]))
