"""Suites: every shipped suite validates, every config field is documented, and bad suites fail clearly (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from helpers import REPO, make_suite, write_suite
from mtp_bench import cli, registry
from mtp_bench.suite import SuiteError, expand_grid, load_suite
from mtp_bench.suite import config as suite_models
from mtp_bench.suite import sections as suite_sections
from mtp_bench.tasks.make_math_twin import make_twin
from mtp_bench.tasks.make_samsum_twin import make_twin as make_samsum_twin

SUITES = sorted((REPO / "suites").glob("*.yaml"))


@pytest.mark.parametrize("path", SUITES, ids=[p.name for p in SUITES])
def test_every_shipped_suite_validates(path: Path, gsm8k_dir: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTP_BENCH_GSM8K_DIR", str(gsm8k_dir))
    if path.name == "math_tiny.yaml":  # its data is written by a command first (git ignores the default folder)
        make_twin(tmp_path / "twin", gsm8k=gsm8k_dir, n_train=400, n_test=100)
        monkeypatch.setenv("MTP_BENCH_MATH_TWIN_DIR", str(tmp_path / "twin"))
    if path.name == "samsum_tiny.yaml":  # likewise; generated chats need no data folder
        make_samsum_twin(tmp_path / "samsum", counts={"train": 60, "validation": 4, "test": 8})
        monkeypatch.setenv("MTP_BENCH_SAMSUM_TWIN_DIR", str(tmp_path / "samsum"))
    suite = load_suite(path)
    trials = expand_grid(suite)
    assert trials and len({t.trial_id for t in trials}) == len(trials)


def _config_models() -> list[type[BaseModel]]:
    found = [obj for module in (suite_models, suite_sections) for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__]
    for group in (registry.METHODS, registry.SCORERS, registry.TASKS):
        for name in registry.names(group):
            try:
                found.append(registry.load(group, name).Params)
            except registry.PluginError:
                continue  # a plugin still being written: its own tests cover it
    return found


@pytest.mark.parametrize("model", _config_models(), ids=lambda m: m.__qualname__)
def test_every_config_field_is_documented(model: type[BaseModel]) -> None:
    undocumented = [name for name, field in model.model_fields.items() if not (field.description or "").strip()]
    assert not undocumented, f"{model.__qualname__}: fields without a docstring: {undocumented}"


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err


BAD_SUITES = [
    ({"train": {"max_steps": 3, "lrr": 0.1}}, "train.lrr: unknown key"),
    ({"train": {"max_steps": "many"}}, "train.max_steps: Input should be a valid integer"),
    ({"methods": [{"name": "mutr0"}]}, "methods.0.name: unknown method 'mutr0'"),
    ({"data": {"task": "gsm8k", "params": {"source": "local", "path": "/no/such/dir"}}},
     "data.params.path: data directory '/no/such/dir' does not exist; /no is missing"),
    ({"data": {"task": "gsm8kk"}}, "data.task: unknown task 'gsm8kk' (did you mean 'gsm8k'?)"),
    ({"evaluation": {"scorers": [{"name": "gsm8k", "params": {"budget": 3}}]}},
     "evaluation.scorers.0.params.budget: unknown key"),
    ({"methods": [{"name": "ntp", "params": {"a": 0.3}}]}, "methods.0.params.a: unknown key"),
    ({"train": {"lr": 0.1}}, "set exactly one of train.max_steps and train.epochs"),
    ({"model": {"preset": "huge-llama"}}, "model.preset: unknown preset 'huge-llama'"),
    ({"grid": {"seeds": []}}, "grid.seeds: List should have at least 1 item"),
]


@pytest.mark.parametrize(("change", "message"), BAD_SUITES, ids=[m for _, m in BAD_SUITES])
def test_bad_suite_gives_one_clear_line_and_exit_2(tmp_path, gsm8k_dir, capsys, change, message) -> None:
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, **change))
    code, err = _run_cli(["validate", str(path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


# Grid cells go through every check the suite itself does, and a problem names the key its value came from.
BAD_GRIDS = [
    ({"grid": {"overrides": {"train.lrr": [1]}}}, "grid.overrides.train.lrr: unknown key"),
    ({"grid": {"overrides": {"train.lr": [1e-3, "big"]}}}, "grid.overrides.train.lr: Input should be a valid number"),
    ({"grid": {"overrides": {"train.max_steps": [None]}}},
     "grid.overrides.train.max_steps: set exactly one of train.max_steps and train.epochs"),
    ({"grid": {"overrides": {"data.params.digitz": [3]}}}, "grid.overrides.data.params.digitz: unknown key"),
    ({"grid": {"overrides": {"data.task": ["nosuch"]}}}, "grid.overrides.data.task: unknown task 'nosuch'"),
    ({"grid": {"overrides": {"data.params.path": ["/nonexistent"]}}},
     "grid.overrides.data.params.path: data directory '/nonexistent' does not exist"),
    ({"grid": {"overrides": {"evaluation.scorers": [[{"name": "nosuch"}]]}}},
     "grid.overrides.evaluation.scorers.0.name: unknown scorer 'nosuch'"),
    ({"grid": {"overrides": {"methods.0.params.a": [1]}}},
     "grid.overrides.methods.0.params.a: use methods[].sweep for method settings"),
    ({"methods": [{"name": "ntp"}, {"name": "ntp", "label": "b", "sweep": {"paramz.a": [1]}}]},
     "methods.1.sweep.paramz.a: unknown key"),
    ({"methods": [{"name": "ntp"}, {"name": "ntp", "label": "b", "sweep": {"params.a": [0.1, 0.2]}}]},
     "methods.1.sweep.params.a: unknown key"),
    ({"methods": [{"name": "ntp", "sweep": {"name": ["nosuch"]}}]}, "methods.0.sweep.name: unknown method 'nosuch'"),
]


@pytest.mark.parametrize(("change", "message"), BAD_GRIDS, ids=[m for _, m in BAD_GRIDS])
def test_bad_grid_cell_gives_one_clear_line_and_exit_2(tmp_path, gsm8k_dir, capsys, change, message) -> None:
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, **change))
    code, err = _run_cli(["validate", str(path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{path}: {message}" in lines[0], err
    assert "Traceback" not in err


def test_grid_cell_clashing_with_the_base_suite_names_the_cell(tmp_path, gsm8k_dir, capsys) -> None:
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, grid={"overrides": {"data.task": ["addition"]}}))
    code, err = _run_cli(["validate", str(path)], capsys)
    assert code == 2 and "Traceback" not in err
    assert "data.params.path: unknown key (in grid cell grid.overrides.data.task='addition')" in err


BAD_OVERRIDES = [
    (["train"], "override 'train': expected key.path=value"),
    (["=3"], "override '=3': bad key path ''"),
    (["methods.9.name=ntp"], "override 'methods.9.name=ntp': methods.9: index 9 out of range (1 items)"),
    (["methods.nosuch.params.a=1"], "override 'methods.nosuch.params.a=1': methods.nosuch: no list item named"),
    (["train.lr.x=1"], "override 'train.lr.x=1': train.lr.x: cannot set a key inside a float"),
    (["grid.overrides={train.lrr: [1]}"], "grid.overrides.train.lrr: unknown key"),
    (["methods.ntp.sweep={paramz.a: [1]}"], "methods.0.sweep.paramz.a: unknown key"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_OVERRIDES, ids=[m for _, m in BAD_OVERRIDES])
def test_bad_override_gives_one_clear_line_and_exit_2(tmp_path, gsm8k_dir, capsys, overrides, message) -> None:
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir))
    code, err = _run_cli(["validate", str(path), *overrides], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{path}: {message}" in lines[0], err
    assert "Traceback" not in err


def test_unknown_lm_eval_task_fails_validation(tmp_path, gsm8k_dir, capsys) -> None:
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir))
    code, err = _run_cli(["validate", str(path), "evaluation.lm_eval={tasks: [gsm8k_locl]}"], capsys)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"{path}: evaluation.lm_eval.tasks: unknown lm-eval task 'gsm8k_locl' (did you mean gsm8k_local" in lines[0]


def test_bad_yaml_and_missing_file(tmp_path, capsys) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nmethods: [ntp\n")
    code, err = _run_cli(["validate", str(broken)], capsys)
    assert code == 2 and f"{broken}:3: not valid YAML (column 1)" in err, err
    code, err = _run_cli(["validate", str(tmp_path / "absent.yaml")], capsys)
    assert code == 2 and f"{tmp_path / 'absent.yaml'}: no such file" in err


def test_overrides_apply_before_validation(tmp_path, gsm8k_dir, capsys) -> None:
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir))
    suite = load_suite(path, ["train.lr=3e-5", "grid.seeds=[1,2]", "methods.ntp.label=baseline", "baseline=baseline"])
    assert suite.train.lr == pytest.approx(3e-5)
    assert [t.seed for t in expand_grid(suite)] == [1, 2]
    assert suite.methods[0].display_name == "baseline"
    code, err = _run_cli(["validate", str(path), "train.batch_size=zero"], capsys)
    assert code == 2 and "train.batch_size: Input should be a valid integer" in err


def test_grid_expansion_and_stable_trial_ids(tmp_path, gsm8k_dir) -> None:
    suite_dict = make_suite(tmp_path, gsm8k_dir, methods=[{"name": "ntp"}, {"name": "ntp", "label": "ntp-b"}],
                            grid={"seeds": [0, 1], "overrides": {"train.lr": [1e-3, 3e-4]}})
    path = write_suite(tmp_path, suite_dict)
    trials = expand_grid(load_suite(path))
    assert len(trials) == 2 * 2 * 2
    assert {t.cell["train.lr"] for t in trials} == {1e-3, 3e-4}
    again = expand_grid(load_suite(path))
    assert [t.trial_id for t in trials] == [t.trial_id for t in again]
    # the id ignores where results are recorded, but not what is computed
    moved = expand_grid(load_suite(path, ["tracking.experiment=elsewhere"]))
    assert [t.trial_id for t in moved] == [t.trial_id for t in trials]
    changed = expand_grid(load_suite(path, ["train.max_steps=4"]))
    assert not {t.trial_id for t in changed} & {t.trial_id for t in trials}


def test_environment_interpolation(tmp_path, gsm8k_dir, monkeypatch) -> None:
    suite_dict = make_suite(tmp_path, gsm8k_dir)
    suite_dict["data"]["params"]["path"] = "${TEST_GSM8K_DIR:-/nowhere}"
    path = write_suite(tmp_path, suite_dict)
    monkeypatch.setenv("TEST_GSM8K_DIR", str(gsm8k_dir))
    assert load_suite(path).data.params["path"] == str(gsm8k_dir)
    monkeypatch.delenv("TEST_GSM8K_DIR")
    with pytest.raises(SuiteError, match="data.params.path: data directory '/nowhere' does not exist"):
        load_suite(path)


def test_mlflow_uri_from_environment_wins_and_sqlite_paths_become_absolute(tmp_path, gsm8k_dir, monkeypatch) -> None:
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_suite(path).tracking.uri == f"sqlite:///{tmp_path.resolve()}/results/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert load_suite(path).tracking.uri == "http://tracking.example:5000"


def test_the_suite_layer_imports_no_layer_above_it() -> None:
    """Presets are data the suite owns: models/ imports suite/, never the reverse (nor anything else above it)."""
    import ast

    allowed = ("mtp_bench.suite", "mtp_bench.errors", "mtp_bench.registry")
    for path in sorted((REPO / "mtp_bench" / "suite").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("mtp_bench."):
                    assert name.startswith(allowed), f"{path.name} imports {name}"
