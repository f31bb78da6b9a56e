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


def set_dotted(document: dict[str, Any], dotted: str, value: Any) -> str:
    """Set ``a.b.c`` in a nested dict/list document, creating mappings on the way. Returns the path it set with list
    items as indices (``methods.mutor.params.a`` -> ``methods.1.params.a``), as validation errors name them."""
    keys = dotted.split(".")
    resolved: list[str] = []
    node: Any = document
    for depth, key in enumerate(keys):
        path = ".".join(keys[: depth + 1])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            index = _find_list_item(node, key, path)
            resolved.append(str(index % len(node)))
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise SuiteError([f"{path}: cannot set a key inside a {type(node).__name__}"])
        resolved.append(key)
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
    return ".".join(resolved)


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
        try:
            set_dotted(document, key, value)
        except SuiteError as exc:
            raise SuiteError([f"override {text!r}: {problem}" for problem in exc.problems]) from None
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


def _relocate(problems: list[str], sources: dict[str, tuple[str, str]], prefix: str) -> list[str]:
    """Problems of a grid cell, named after where the offending value came from. ``sources`` maps the document path
    each cell value was set at to the key path the user wrote it under (``train.lr`` -> ``grid.overrides.train.lr``);
    a problem under none of them (a value that clashes with the base suite) keeps its own path under ``prefix``, and
    says which cell it arose in."""
    ordered = sorted(sources.items(), key=lambda item: -len(item[0]))
    cell = ", ".join(f"{origin}={value}" for origin, value in sources.values())
    out = []
    for line in problems:
        path, _, message = line.partition(": ")
        for resolved, (origin, _value) in ordered:
            if path == resolved or path.startswith(resolved + "."):
                out.append(f"{origin}{path[len(resolved):]}: {message}")
                break
            if resolved.startswith(path + "."):  # a check on the section that holds the value (train: one of ...)
                out.append(f"{origin}: {message}")
                break
        else:
            where = ".".join(part for part in (prefix, "" if path == "(top level)" else path) if part) or path
            out.append(f"{where}: {message}" + (f" (in grid cell {cell})" if cell else ""))
    return out


def _apply_cell(document: dict[str, Any], cell: dict[str, Any], where: str) -> dict[str, tuple[str, str]]:
    """Set a cell's values in ``document``; returns {document path: (origin key path, value)} for :func:`_relocate`."""
    sources = {}
    for key, value in cell.items():
        try:
            resolved = set_dotted(document, key, value)
        except SuiteError as exc:
            raise SuiteError([f"{where}.{problem}" for problem in exc.problems]) from None
        sources[resolved] = (f"{where}.{key}", repr(value))
    return sources


def _checked_shared_cell(base: dict[str, Any], cell: dict[str, Any]) -> SuiteConfig:
    """The suite with one cell of ``grid.overrides`` applied, through every check the suite itself passed."""
    document = copy.deepcopy(base)
    sources = _apply_cell(document, cell, "grid.overrides")
    try:
        checked = SuiteConfig.model_validate(document)
        _check_plugins(checked)
    except ValidationError as exc:
        raise SuiteError(_relocate(_error_lines(exc), sources, "")) from None
    except SuiteError as exc:
        raise SuiteError(_relocate(exc.problems, sources, "")) from None
    return checked


def _checked_method(entry: dict[str, Any], cell: dict[str, Any], index: int) -> MethodEntry:
    """A method with one cell of its sweep applied: settings validated by its plugin and completed with defaults."""
    document = copy.deepcopy(entry)
    document["sweep"] = {}
    sources = _apply_cell(document, cell, f"methods.{index}.sweep")
    try:
        method = MethodEntry.model_validate(document)
        method_cls = _plugin(registry.METHODS, method.name, "name")
        method.params = validate_plugin_params(method_cls.Params, method.params, "params")
    except ValidationError as exc:
        raise SuiteError(_relocate(_error_lines(exc), sources, f"methods.{index}")) from None
    except SuiteError as exc:
        raise SuiteError(_relocate(exc.problems, sources, f"methods.{index}")) from None
    return method


def _collect(problems: list[str], action: Any, *args: Any) -> Any:
    try:
        return action(*args)
    except SuiteError as exc:
        problems += [line for line in exc.problems if line not in problems]
        return None


def expand_grid(suite: SuiteConfig) -> list[TrialConfig]:
    """The trials of a suite: methods x (method sweep x grid overrides) x seeds. Every cell passes the checks the
    suite itself passed (plugin names and settings, data paths), each distinct cell once; a problem is named after
    the key it came from (``grid.overrides.train.lr``, ``methods.1.sweep.params.a``)."""
    base = suite.model_dump(mode="json")
    problems = [f"grid.overrides.{key}: use methods[].sweep for method settings"
                for key in suite.grid.overrides if key == "methods" or key.startswith("methods.")]
    if problems:
        raise SuiteError(problems)
    shared = [(cell, _collect(problems, _checked_shared_cell, base, cell))
              for cell in _cells(suite.grid.overrides, "grid.overrides")]
    methods = []
    for index, entry in enumerate(suite.methods):
        for method_cell in _cells(entry.sweep, f"methods.{index}.sweep"):
            methods.append((method_cell, _collect(problems, _checked_method, base["methods"][index], method_cell,
                                                  index)))
    if problems:
        raise SuiteError(problems)
    trials: list[TrialConfig] = []
    for method_cell, method in methods:
        for shared_cell, checked in shared:
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
