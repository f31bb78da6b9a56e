"""The front door: ``--help`` works for the command and every sub-command, building the parser and ``validate``
import no torch, mlflow, ray or scipy, plugin settings are read from light modules identical to the plugins' own, and
``cli.main`` alone turns typed errors into messages and exit codes."""

from __future__ import annotations

import pytest

from helpers import heavy_imports
from mtp_bench import cli, registry
from mtp_bench.cli import validate
from mtp_bench.errors import BadInput, DataError, PluginError, RunFailed, SuiteError, UsageError


def _sub_commands() -> list[str]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices)


def test_every_documented_sub_command_exists() -> None:
    assert {"run", "validate", "methods", "scorers", "tasks", "presets", "compare", "ui", "bench"} <= set(
        _sub_commands())


@pytest.mark.parametrize("argv", [["--help"], ["-h"], *([name, "--help"] for name in _sub_commands())],
                         ids=lambda argv: " ".join(argv))
def test_help_works(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mtp-bench") and len(out.splitlines()) > 3


def test_building_the_parser_imports_nothing_heavy() -> None:
    assert heavy_imports("from mtp_bench import cli\ncli.build_parser()") == []


def test_help_imports_nothing_heavy() -> None:
    commands = [["--help"], *([name, "--help"] for name in ("run", "validate", "ui", "bench"))]
    code = ("from mtp_bench import cli\nimport contextlib, io\n"
            f"for argv in {commands!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        cli.main(argv)")
    assert heavy_imports(code) == []


@pytest.mark.parametrize("suite", ["quickstart.yaml", "star_graph.yaml", "mutor_tiny.yaml"])
def test_validate_imports_nothing_heavy(suite: str) -> None:
    code = ("from mtp_bench import cli\nimport contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert cli.main(['validate', 'suites/{suite}']) == 0")
    assert heavy_imports(code) == []


@pytest.mark.parametrize("group", [registry.METHODS, registry.SCORERS, registry.TASKS])
def test_light_params_are_the_plugins_own(group: str) -> None:
    """The light entry points name the very class each plugin uses, so validation and training agree."""
    for name in registry.names(group):
        try:
            plugin = registry.load(group, name)
        except registry.PluginError:
            continue  # a plugin still being written: its own tests cover it
        assert registry.load_params(group, name) is plugin.Params, f"{group}:{name}"


def test_plugin_without_a_light_entry_still_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Out-of-tree plugins need not declare params: the plugin itself is imported to read them."""
    registry.load_params.cache_clear()
    monkeypatch.setitem(registry.PARAMS_GROUPS, registry.METHODS, "mtp_bench.no_such_group")
    try:
        assert registry.load_params(registry.METHODS, "ntp") is registry.load(registry.METHODS, "ntp").Params
        with pytest.raises(PluginError, match="unknown method 'ntpp'"):
            registry.load_params(registry.METHODS, "ntpp")
    finally:
        registry.load_params.cache_clear()


@pytest.mark.parametrize(("error", "code", "shown"), [
    (SuiteError(["train.lr: bad"]), 2, ["mtp-bench: error: s.yaml: train.lr: bad"]),
    (SuiteError(["s.yaml:3: not UTF-8"]), 2, ["mtp-bench: error: s.yaml:3: not UTF-8"]),
    (SuiteError([f"k{i}: bad" for i in range(9)]), 2,
     [*(f"mtp-bench: error: s.yaml: k{i}: bad" for i in range(4)), "mtp-bench: error: ... and 5 more problems"]),
    (UsageError("give a suite\nor an experiment"), 2, ["mtp-bench: error: give a suite or an experiment"]),
    (DataError("x.jsonl:8: not valid JSON"), 2, ["mtp-bench: error: x.jsonl:8: not valid JSON"]),
    (BadInput("resources: none"), 2, ["mtp-bench: error: resources: none"]),
    (RunFailed("2 of 4 trials failed"), 1, ["mtp-bench: error: 2 of 4 trials failed"]),
])
def test_main_alone_maps_typed_errors_to_messages_and_exit_codes(monkeypatch, capsys, error, code, shown) -> None:
    def raising(args, **kwargs):
        raise error

    monkeypatch.setattr(validate, "load_trials", raising)
    assert cli.main(["validate", "s.yaml"]) == code
    assert capsys.readouterr().err.strip().splitlines() == shown


def test_interrupt_exits_130(monkeypatch, capsys) -> None:
    def interrupted(args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "load_trials", interrupted)
    assert cli.main(["validate", "s.yaml"]) == 130
    assert "interrupted" in capsys.readouterr().err
