"""The plugin guides' examples work as written: the task of docs/tasks.md ("Writing a task") and the scorer of
docs/scorers.md ("Writing a scorer"), installed as an out-of-tree distribution with entry points, are found, refuse
bad settings in one line, and train and score a model through `mtp-bench run`. (The method guide's example is
tests/unit/test_registry.py's.)"""

from __future__ import annotations

import re
import sys

import pytest
from mlflow import MlflowClient

from helpers import REPO, make_suite, write_suite
from mtp_bench import cli, registry
from mtp_bench.api.task import Example


def guide_example(page: str, section: str) -> str:
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    return re.search(r"```python\n(.*?)```", text[text.index(f"## {section}"):], re.S).group(1)


@pytest.fixture
def guide_plugins(tmp_path, monkeypatch):
    """The two examples as one installed distribution (modules + dist-info with their entry points)."""
    site = tmp_path / "site"
    info = site / "my_plugins-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "my_tasks.py").write_text(guide_example("tasks.md", "Writing a task"))
    (site / "my_scorers.py").write_text(guide_example("scorers.md", "Writing a scorer"))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mtp_bench.tasks]\nreverse = my_tasks:Reverse\n\n"
                                           "[mtp_bench.scorers]\nposition_accuracy = my_scorers:PositionAccuracy\n")
    monkeypatch.syspath_prepend(str(site))
    for cached in (registry._entry_points, registry.load, registry.load_params):
        cached.cache_clear()
    yield
    for cached in (registry._entry_points, registry.load, registry.load_params):
        cached.cache_clear()
    for module in ("my_tasks", "my_scorers"):
        sys.modules.pop(module, None)


def suite(tmp_path, **params) -> dict:
    """The guides' task and scorer on the addition suite's model, tracked where $MLFLOW_TRACKING_URI says."""
    return make_suite(tmp_path, base="addition", name="guides",
                      data={"task": "reverse", "params": {"length": 3, "train_size": 96, "test_size": 8, **params},
                            "validation_size": 8},
                      train={"max_steps": 3, "lr": 1e-2, "batch_size": 8, "max_length": 16, "progress": False},
                      evaluation={"scorers": [{"name": "position_accuracy"}, {"name": "exact_match"}],
                                  "every_steps": 2, "max_new_tokens": 4},
                      tracking={"workdir": str(tmp_path / "trials")})


def test_the_guides_plugins_are_found(guide_plugins) -> None:
    tasks = {i.name: i.distribution for i in registry.available(registry.TASKS)}
    scorers = {i.name: i.distribution for i in registry.available(registry.SCORERS)}
    assert tasks["reverse"] == "my-plugins" and scorers["position_accuracy"] == "my-plugins"


def test_the_task_writes_disjoint_fixed_splits(guide_plugins) -> None:
    cls = registry.load(registry.TASKS, "reverse")
    task = cls(cls.Params(length=3, train_size=50, test_size=10))
    train, test = task.records("train"), task.records("test")
    assert len(train) == 50 and len(test) == 10 and task.records("train") == train
    assert not {r["digits"] for r in train} & {r["digits"] for r in test}
    assert all(r["reversed"] == " ".join(reversed(r["digits"].split())) for r in train)
    bigger = cls(cls.Params(length=3, train_size=80, test_size=10))
    assert bigger.records("test") == test  # the test split does not move when train_size changes


def test_the_scorer_gives_partial_credit(guide_plugins) -> None:
    cls = registry.load(registry.SCORERS, "position_accuracy")
    scorer = cls(cls.Params())
    examples = [Example("3 1 4 =", " 4 1 3"), Example("5 6 7 =", " 7 6 5")]

    class Canned:
        def generate(self, examples, max_new_tokens=None):
            return ["4 1 3", "7 0 5"]

    result = scorer.score(Canned(), examples)
    assert result.metrics == pytest.approx({"position_accuracy": (1 + 2 / 3) / 2, "exact_match": 0.5})
    assert [row["correct"] for row in result.samples] == [True, False]


def test_bad_settings_are_refused_in_one_line(guide_plugins, tmp_path, capsys) -> None:
    assert cli.main(["validate", str(write_suite(tmp_path, suite(tmp_path, length=0)))]) == 2
    assert "data.params.length" in capsys.readouterr().err
    assert cli.main(["validate", str(write_suite(tmp_path, suite(tmp_path, length=1, train_size=20)))]) == 2
    assert "reverse: 1 digits give only 10 strings" in capsys.readouterr().err  # the task's preflight


@pytest.mark.slow
def test_a_model_trains_on_the_task_and_is_scored(guide_plugins, tmp_path, store) -> None:
    assert cli.main(["run", str(write_suite(tmp_path, suite(tmp_path))), "--no-ray", "--no-compare"]) == 0
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("guides").experiment_id])
    trial = next(r for r in runs if r.data.tags.get("mtp_bench.kind") == "trial")
    metrics = trial.data.metrics
    partial, exact = metrics["best/test/position_accuracy/position_accuracy"], metrics["best/test/exact_match/exact_match"]
    assert 0 <= exact <= partial <= 1  # partial credit is never below exact match
    assert trial.data.tags["mtp_bench.select_metric"] == "position_accuracy/position_accuracy"  # its main metric
