"""Reading a suite: YAML -> environment interpolation -> dotted overrides -> validation -> grid of trials.

Every problem becomes a :class:`SuiteError` whose message names the key path, so the CLI prints one line per problem
and exits 2 instead of showing a traceback.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mtp_bench import registry
from mtp_bench.suite.models import MethodEntry, SuiteConfig, TrialConfig


class SuiteError(ValueError):
    """A suite that cannot be used; ``problems`` holds one ``key.path: message`` line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# ------------------------------------------------------------------------------------------------ raw documents ----

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, path: str) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in strings (as docker compose does), so machine-specific paths
    such as a local data copy stay out of the suite."""
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}.{i}") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ and os.environ[name] != "":
            return os.environ[name]
        if default is not None:
            return default
        raise SuiteError([f"{path}: environment variable {name} is not set and has no default (${{{name}:-...}})"])

    return _ENV.sub(substitute, value)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SuiteError([f"suite file: {path} does not exist"])
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError([f"suite file: {path} is not valid YAML{where}: {problem}"]) from None
    if not isinstance(document, dict):
        raise SuiteError([f"suite file: {path} must hold a mapping at the top level"])
    return document


def _find_list_item(items: list[Any], key: str, path: str) -> int:
    if key.lstrip("-").isdigit():
        index = int(key)
        if not -len(items) <= index < len(items):
            raise SuiteError([f"{path}: index {index} out of range ({len(items)} items)"])
        return index
    # Lists of named entries (methods, scorers) may be addressed by label or name: methods.mutor.params.a=0.1
    for index, item in enumerate(items):
        if isinstance(item, dict) and key in (item.get("label"), item.get("name")):
            return index
    raise SuiteError([f"{path}: no list item named {key!r}"])


def set_dotted(document: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict/list document, creating mappings on the way."""
    keys = dotted.split(".")
    node: Any = document
    for depth, key in enumerate(keys):
        path = ".".join(keys[: depth + 1])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            index = _find_list_item(node, key, path)
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise SuiteError([f"{path}: cannot set a key inside a {type(node).__name__}"])
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=3e-5`` -> ("train.lr", "3e-5"); values are YAML (``grid.seeds=[0,1,2]``)."""
    if "=" not in text:
        raise SuiteError([f"override {text!r}: expected key.path=value"])
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or not re.fullmatch(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*", key):
        raise SuiteError([f"override {text!r}: bad key path {key!r}"])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


# ------------------------------------------------------------------------------------------------- validation ----


def _error_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"])
        path = ".".join(part for part in (prefix, location) if part) or "(top level)"
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif "input" in error and not isinstance(error["input"], dict | list):
            message = f"{message} (got {error['input']!r})"
        lines.append(f"{path}: {message}")
    return lines


def validate_plugin_params(params_model: type[BaseModel], params: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Validate a plugin's settings; return them completed with defaults (so trial ids see every value)."""
    try:
        return params_model.model_validate(params).model_dump(mode="json")
    except ValidationError as exc:
        raise SuiteError(_error_lines(exc, prefix)) from None


def _plugin(group: str, name: str, path: str) -> Any:
    try:
        return registry.load(group, name)
    except registry.PluginError as exc:
        raise SuiteError([f"{path}: {exc}"]) from None


def _check_plugins(suite: SuiteConfig) -> None:
    problems: list[str] = []
    for index, entry in enumerate(suite.methods):
        try:
            _plugin(registry.METHODS, entry.name, f"methods.{index}.name")
        except SuiteError as exc:
            problems += exc.problems
    for index, scorer in enumerate(suite.evaluation.scorers):
        try:
            cls = _plugin(registry.SCORERS, scorer.name, f"evaluation.scorers.{index}.name")
            scorer.params = validate_plugin_params(cls.Params, scorer.params, f"evaluation.scorers.{index}.params")
        except SuiteError as exc:
            problems += exc.problems
    try:
        task = _plugin(registry.TASKS, suite.data.task, "data.task")
        suite.data.params = validate_plugin_params(task.Params, suite.data.params, "data.params")
    except SuiteError as exc:
        problems += exc.problems
    labels = [m.display_name for m in suite.methods]
    if not problems and suite.baseline not in labels:
        problems.append(f"baseline: {suite.baseline!r} is not one of the suite's methods ({', '.join(labels)})")
    if problems:
        raise SuiteError(problems)


def _absolute_sqlite(uri: str) -> str:
    """MLflow wants SQLite at an absolute path, and Ray trials run in their own working directories."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((Path.cwd() / uri[len(prefix) :]).resolve())
    return uri


def load_suite(path: str | Path, overrides: list[str] | None = None) -> SuiteConfig:
    """Read, override and validate a suite (plugins included). Raises :class:`SuiteError`."""
    document = _interpolate(read_yaml(path), "")
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(document, key, value)
    return validate_suite(document)


def validate_suite(document: dict[str, Any]) -> SuiteConfig:
    try:
        suite = SuiteConfig.model_validate(document)
    except ValidationError as exc:
        raise SuiteError(_error_lines(exc)) from None
    _check_plugins(suite)
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    suite.tracking.uri = _absolute_sqlite(env_uri or suite.tracking.uri)
    suite.tracking.workdir = str(Path(suite.tracking.workdir).resolve())
    if suite.tracking.experiment is None:
        suite.tracking.experiment = suite.name
    return suite


# ------------------------------------------------------------------------------------------------------- grid ----


def _cells(axes: dict[str, list[Any]], where: str) -> list[dict[str, Any]]:
    for key, values in axes.items():
        if not values:
            raise SuiteError([f"{where}.{key}: needs at least one value"])
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def expand_grid(suite: SuiteConfig) -> list[TrialConfig]:
    """The trials of a suite: methods x (method sweep x grid overrides) x seeds, each validated."""
    base = suite.model_dump(mode="json")
    shared_cells = _cells(suite.grid.overrides, "grid.overrides")
    trials: list[TrialConfig] = []
    for index, entry in enumerate(suite.methods):
        method_cls = registry.load_method(entry.name)
        for method_cell in _cells(entry.sweep, f"methods.{index}.sweep"):
            for shared_cell in shared_cells:
                document = copy.deepcopy(base)
                method_doc = copy.deepcopy(document["methods"][index])
                method_doc["sweep"] = {}
                for key, value in method_cell.items():
                    set_dotted(method_doc, key, value)
                for key, value in shared_cell.items():
                    if key.startswith("methods."):
                        raise SuiteError([f"grid.overrides.{key}: use methods[].sweep for method settings"])
                    set_dotted(document, key, value)
                try:
                    checked = SuiteConfig.model_validate(document)
                    method = MethodEntry.model_validate(method_doc)
                except ValidationError as exc:
                    raise SuiteError(_error_lines(exc, "grid")) from None
                method.params = validate_plugin_params(method_cls.Params, method.params, f"methods.{index}.params")
                cell = {**{f"method.{k}": v for k, v in method_cell.items()}, **shared_cell}
                for seed in suite.grid.seeds:
                    trials.append(
                        TrialConfig(
                            suite=checked.name,
                            description=checked.description,
                            model=checked.model,
                            data=checked.data,
                            method=method,
                            bidirectional_prompt=checked.bidirectional_prompt,
                            train=checked.train,
                            evaluation=checked.evaluation,
                            tracking=suite.tracking,
                            resources=checked.resources,
                            seed=seed,
                            cell=cell,
                        )
                    )
    ids = [t.trial_id for t in trials]
    if len(set(ids)) != len(ids):
        raise SuiteError(["grid: two cells resolve to the same trial (a sweep repeats a value?)"])
    return trials
