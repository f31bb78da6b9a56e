"""The offline twins of the paper suites' lm-eval cross-checks: ``agieval_aqua_rat_local`` (lm-eval's
``agieval_aqua_rat`` on AQuA-RAT's original files) and ``minerva_math500_local`` (lm-eval's ``minerva_math500`` on a
MATH500-format file). They show a document exactly as the hub tasks do (checked on a real AQuA line against a hub
document written out by hand, rendered by lm-eval's own hub config), keep the hub tasks' settings, name bad data by
file and line, and run inside the CPU twins aqua_tiny and math_tiny on the trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO, shared_data
from mtp_bench import cli
from mtp_bench.evaluation.lm_eval_bridge import LmEvalError, _read_yaml, load_tasks, preflight, task_manager
from mtp_bench.suite.config import LmEvalConfig
from mtp_bench.tasks.make_math_twin import main as make_math_twin

TASKS = REPO / "mtp_bench" / "evaluation" / "lm_eval_tasks"

# The first line of AQuA-RAT's test.json as lm-eval's hub set (hails/agieval-aqua-rat, AGIEval's zero-shot prompt)
# holds it: written out by hand, not by the code under test.
HUB_DOC = {
    "query": "Q: A car is being driven, in a straight line and at a uniform speed, towards the base of a vertical "
             "tower. The top of the tower is observed from the car and, in the process, it takes 10 minutes for the "
             "angle of elevation to change from 45° to 60°. After how much more time will this car reach the base of "
             "the tower? Answer Choices: (A)5(√3 + 1) (B)6(√3 + √2) (C)7(√3 – 1) (D)8(√3 – 2) (E)None of these\n"
             "A: Among A through E, the answer is",
    "choices": ["(A)5(√3 + 1)", "(B)6(√3 + √2)", "(C)7(√3 – 1)", "(D)8(√3 – 2)", "(E)None of these"],
    "gold": [0],
}
# Keys where a local twin may differ from the hub task it stands in for: its name, where its data comes from, the
# mapping of the original rows (AQuA only), lm-eval's tag list, and metadata (our data family, a protocol note).
DATA_KEYS = {"task", "dataset_path", "dataset_name", "dataset_kwargs", "process_docs", "tag", "metadata"}


def hub_config(name: str) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(task_manager(LmEvalConfig(tasks=[name])).task_index[name].yaml_path, resolve_func=True)


def named(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config with its functions as ``module.name`` (lm-eval loads a task's module afresh, so the same
    function can be two objects) and the keys a twin may change left out."""

    def plain(value: Any) -> Any:
        if callable(value):
            return f"{value.__module__}.{value.__qualname__}"
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return [plain(v) for v in value] if isinstance(value, list) else value

    return {k: plain(v) for k, v in config.items() if k not in DATA_KEYS}


def requests_of(task: Any, doc: dict[str, Any]) -> tuple[str, list[str], Any]:
    return task.doc_to_text(doc), task.doc_to_choice(doc), task.doc_to_target(doc)


@pytest.mark.parametrize(("local", "hub"), [("agieval_aqua_rat_local", "agieval_aqua_rat"),
                                            ("minerva_math500_local", "minerva_math500")])
def test_the_twins_keep_the_hub_tasks_settings(local: str, hub: str) -> None:
    ours, theirs = _read_yaml(TASKS / f"{local}.yaml", resolve=True), hub_config(hub)
    assert named(ours) == named(theirs)
    assert ours["metadata"]["version"] == theirs["metadata"]["version"]
    if hub == "minerva_math500":  # lm-eval's own row processing too (the gold read from the solution's last box)
        assert named({"f": ours["process_docs"]}) == named({"f": theirs["process_docs"]})


def test_a_real_aqua_line_renders_as_the_hub_task_renders_its_document(tmp_path: Path) -> None:
    # lm-eval's hub config, with only its data source moved to a file holding the hand-written hub document
    hub_file = tmp_path / "hub.jsonl"
    hub_file.write_text(json.dumps(HUB_DOC, ensure_ascii=False) + "\n")
    spec = hub_config("agieval_aqua_rat") | {"dataset_path": "json", "dataset_name": None,
                                             "dataset_kwargs": {"data_files": {"test": str(hub_file)}}}
    manager = task_manager(LmEvalConfig(tasks=["agieval_aqua_rat"]))
    hub_task = manager.load([spec])["tasks"]["agieval_aqua_rat"]
    aqua = shared_data("aqua", "test.json", "AQuA-RAT")
    _, tasks = load_tasks(LmEvalConfig(tasks=["agieval_aqua_rat_local"], data_dir=str(aqua)), None)
    local_task = tasks["agieval_aqua_rat_local"]
    hub_doc, local_doc = next(iter(hub_task.test_docs())), next(iter(local_task.test_docs()))
    assert local_doc == hub_doc == HUB_DOC
    assert requests_of(local_task, local_doc) == requests_of(hub_task, hub_doc)
    # what lm-eval asks the model: the query, then each bracketed option after a space
    requests = local_task.construct_requests(local_doc, local_task.fewshot_context(local_doc, 0))
    assert [r.arguments for r in requests] == [(HUB_DOC["query"], f" {c}") for c in HUB_DOC["choices"]]
    # the same scores: option A (the gold) most likely, option E (16 characters, the others 12) once divided by length
    loglikelihoods = [(-7.0, False), (-9.5, False), (-9.0, False), (-12.0, False), (-8.0, False)]
    assert local_task.process_results(local_doc, loglikelihoods) == hub_task.process_results(hub_doc, loglikelihoods)
    assert local_task.process_results(local_doc, loglikelihoods) == {"acc": 1.0, "acc_norm": 0.0}
    assert len(list(local_task.test_docs())) == 254


def test_the_math500_twin_reads_lm_evals_prompt_and_gold(tmp_path: Path) -> None:
    row = {"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "solution": "We add: $\\boxed{\\dfrac34}$.",
           "answer": "\\frac{3}{4}", "subject": "Algebra", "level": 1, "unique_id": "x"}
    (tmp_path / "test.jsonl").write_text(json.dumps(row) + "\n")
    _, tasks = load_tasks(LmEvalConfig(tasks=["minerva_math500_local"], data_dir=str(tmp_path)), None)
    task = tasks["minerva_math500_local"]
    doc = next(iter(task.test_docs()))
    # lm-eval's process_docs sets the gold from the solution's last box (shorthand TeX expanded), not the file's answer
    assert doc["answer"] == "\\dfrac{3}{4}"
    context = task.fewshot_context(doc, 4)
    assert context.count("Problem:\n") == 5 and context.endswith(f"Problem:\n{row['problem']}\n\nSolution:")
    assert "Final Answer: The final answer is $[2,5)$. I hope it is correct." in context  # Minerva's first shot
    right = "We add.\nFinal Answer: The final answer is $0.75$. I hope it is correct."
    assert task.process_results(doc, [right]) == {"exact_match": 1, "math_verify": 1}
    assert task.process_results(doc, ["Final Answer: The final answer is $1$."]) == {"exact_match": 0,
                                                                                   "math_verify": 0}


def test_missing_or_malformed_local_data_is_named_before_any_trial(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MTP_BENCH_AQUA_DIR", raising=False)
    with pytest.raises(LmEvalError, match=r"reads .*nowhere, which lacks test.json; set evaluation.lm_eval.data_dir "
                                          r"or \$MTP_BENCH_AQUA_DIR"):
        preflight(LmEvalConfig(tasks=["agieval_aqua_rat_local"], data_dir=str(tmp_path / "nowhere")))
    lines = (shared_data("aqua", "test.json", "AQuA-RAT") / "test.json").read_text().splitlines()[:3]
    bad = json.loads(lines[1]) | {"correct": "F"}
    (tmp_path / "test.json").write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n")
    monkeypatch.setenv("MTP_BENCH_AQUA_DIR", str(tmp_path))  # the family's variable, as for GSM8K
    with pytest.raises(LmEvalError, match=rf"{tmp_path / 'test.json'}:2: correct answer 'F' is not one of"):
        preflight(LmEvalConfig(tasks=["agieval_aqua_rat_local"]))
    (tmp_path / "test.jsonl").write_text(json.dumps({"problem": "p", "solution": "no box", "answer": "1"}) + "\n")
    with pytest.raises(LmEvalError, match=rf"{tmp_path / 'test.jsonl'}:1: the solution has no .boxed"):
        preflight(LmEvalConfig(tasks=["minerva_math500_local"], data_dir=str(tmp_path)))


# ------------------------------------------------------------------------------------------- inside the twins ----
SHRINK = ["grid.seeds=[0]", "model.preset=micro-llama", "model.tokenizer_vocab_size=300", "train.max_steps=2",
          "train.batch_size=4", "evaluation.every_steps=2", "data.validation_size=4", "data.eval_limit=4",
          "evaluation.max_new_tokens=12", "evaluation.lm_eval.limit=4", "methods=[{name: ntp}]"]


def trial_metrics(store: str, experiment: str) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    trials = [r for r in runs if r.data.tags.get("mtp_bench.kind") == "trial"]
    assert len(trials) == 1 and trials[0].info.status == "FINISHED"
    return trials[0].data.metrics


@pytest.mark.slow
def test_aqua_tiny_logs_lm_evals_numbers_beside_ours(tmp_path: Path, store: str, monkeypatch) -> None:
    monkeypatch.setenv("MTP_BENCH_AQUA_DIR", str(shared_data("aqua", "test.json", "AQuA-RAT")))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(REPO / "suites" / "aqua_tiny.yaml"), "--no-ray", "--no-compare", *SHRINK,
                     f"tracking.workdir={tmp_path / 'trials'}"]) == 0
    metrics = trial_metrics(store, "aqua_tiny")
    task = "best/lm_eval/agieval_aqua_rat_local"
    assert metrics[f"{task}/n_samples"] == 4
    for name in (f"{task}/acc/none", f"{task}/acc_norm/none", "best/test/multiple_choice/accuracy"):
        assert 0.0 <= metrics[name] <= 1.0, name


@pytest.mark.slow
def test_math_tiny_logs_lm_evals_numbers_beside_ours(tmp_path: Path, store: str, monkeypatch) -> None:
    assert make_math_twin([str(tmp_path / "twin"), "--word-problems", "--train", "120", "--test", "8"]) == 0
    monkeypatch.setenv("MTP_BENCH_MATH_TWIN_DIR", str(tmp_path / "twin"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(REPO / "suites" / "math_tiny.yaml"), "--no-ray", "--no-compare", *SHRINK,
                     "evaluation.lm_eval.max_gen_toks=12", f"tracking.workdir={tmp_path / 'trials'}"]) == 0
    metrics = trial_metrics(store, "math_tiny")
    task = "best/lm_eval/minerva_math500_local"
    assert metrics[f"{task}/n_samples"] == 4
    for name in (f"{task}/exact_match/none", f"{task}/math_verify/none", "best/test/math/exact_match"):
        assert 0.0 <= metrics[name] <= 1.0, name
