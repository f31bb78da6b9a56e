"""Validating a suite: document (see :mod:`mtp_bench.suite.document`) -> pydantic models and plugin settings ->
grid of trials.

Every problem becomes a :class:`~mtp_bench.errors.SuiteError` whose message names the key path, so the CLI prints one
line per problem and exits 2 instead of showing a traceback. Validation imports no plugin: names are checked against
the installed entry points and settings against the plugins' light ``Params`` models (see :mod:`mtp_bench.registry`).
"""

from __future__ import annotations

import copy
import itertools
import math
import os
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from mtp_bench import registry
from mtp_bench.errors import SuiteError
from mtp_bench.suite.config import MethodEntry, SuiteConfig, TrialConfig
from mtp_bench.suite.document import interpolate, parse_override, read_yaml, set_dotted
from mtp_bench.suite.tracking_uri import check_tracking_uri

MAX_TRIALS = 10_000
"""Most trials a suite may expand to (methods x cells x seeds); more is a typo, not a plan."""

MAX_NAME_CHARS = 200
"""Longest suite name: it names folders (``results/<name>/``, the trials' workdir: 255 bytes a name on common file
systems) and the invocation's MLflow run (250 characters, with `` (N trials)`` after it)."""

MAX_EXPERIMENT_CHARS = 500
"""Longest ``tracking.experiment``: MLflow's limit on an experiment name."""

MAX_SEED = 2**32 - 1
"""Seeds run from 0 to this: what numpy's generator accepts (torch takes more; one range for both)."""


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
        elif "input" in error and not isinstance(error["input"], dict | list) and str(error["input"]) not in message:
            message = f"{message} (got {_short(error['input'])})"
        lines.append(f"{path}: {message}")
    return lines


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _strictness(raw: Any, checked: Any, path: str) -> list[str]:
    """What pydantic's lax mode lets through: ``true`` read as the number 1 (compared against what the suite wrote),
    and infinities or NaN anywhere (``.inf`` or the string ``inf`` read as a float)."""
    where = path or "(top level)"
    if isinstance(checked, float) and not math.isfinite(checked):
        return [f"{where}: must be a finite number (got {_short(raw)})"]
    if isinstance(raw, bool) and isinstance(checked, int | float) and not isinstance(checked, bool):
        return [f"{where}: expected a number, got {str(raw).lower()}"]
    problems: list[str] = []
    if isinstance(checked, dict):
        for key, value in checked.items():
            child = raw.get(key) if isinstance(raw, dict) else None
            problems += _strictness(child, value, f"{path}.{key}" if path else str(key))
    elif isinstance(checked, list | tuple):
        for index, value in enumerate(checked):
            child = raw[index] if isinstance(raw, list | tuple) and index < len(raw) else None
            problems += _strictness(child, value, f"{path}.{index}" if path else str(index))
    return problems


def _accepts_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    return any(_accepts_bool(arg) for arg in get_args(annotation))


def validate_plugin_params(params_model: type[BaseModel], params: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Validate a plugin's settings; return them completed with defaults (so trial ids see every value)."""
    fields = params_model.model_fields
    problems = [f"{prefix}.{key}: expected a number, got {str(value).lower()}" for key, value in params.items()
                if isinstance(value, bool) and key in fields and not _accepts_bool(fields[key].annotation)]
    if problems:  # before pydantic, which would read true as 1 and may then complain about something else
        raise SuiteError(problems)
    try:
        validated = params_model.model_validate(params)
    except ValidationError as exc:
        raise SuiteError(_error_lines(exc, prefix)) from None
    problems = _strictness(params, validated.model_dump(), prefix)
    if problems:
        raise SuiteError(problems)
    return validated.model_dump(mode="json")


def _params_model(group: str, name: str, path: str) -> type[BaseModel]:
    try:
        return registry.load_params(group, name)
    except registry.PluginError as exc:
        raise SuiteError([f"{path}: {exc}"]) from None


def _check_plugins(suite: SuiteConfig) -> None:
    """Plugin names against the installed entry points and their settings against their ``Params``, importing no
    plugin module (see :func:`mtp_bench.registry.load_params`)."""
    problems: list[str] = []
    for index, entry in enumerate(suite.methods):
        try:
            registry.check_name(registry.METHODS, entry.name)
        except registry.PluginError as exc:
            problems.append(f"methods.{index}.name: {exc}")
    for index, scorer in enumerate(suite.evaluation.scorers):
        try:
            model = _params_model(registry.SCORERS, scorer.name, f"evaluation.scorers.{index}.name")
            scorer.params = validate_plugin_params(model, scorer.params, f"evaluation.scorers.{index}.params")
        except SuiteError as exc:
            problems += exc.problems
    try:
        model = _params_model(registry.TASKS, suite.data.task, "data.task")
        suite.data.params = validate_plugin_params(model, suite.data.params, "data.params")
    except SuiteError as exc:
        problems += exc.problems
    labels = [m.display_name for m in suite.methods]
    if not problems and suite.baseline not in labels:
        problems.append(f"baseline: {suite.baseline!r} is not one of the suite's methods ({', '.join(labels)})")
    if problems:
        raise SuiteError(problems)


def _validated(document: dict[str, Any]) -> SuiteConfig:
    """The suite's own sections (not yet the plugins'), validated strictly."""
    try:
        suite = SuiteConfig.model_validate(document)
    except ValidationError as exc:
        raise SuiteError(_error_lines(exc)) from None
    problems = _strictness(document, suite.model_dump(), "")
    if problems:
        raise SuiteError(problems)
    return suite


def _resolved(path: str | Path, key: str) -> Path:
    """``path`` made absolute with links followed; a loop of symbolic links is a problem at ``key``."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop
        raise SuiteError([f"{key}: {str(path)!r} runs into a loop of symbolic links"]) from None


def _absolute_sqlite(uri: str, key: str) -> str:
    """MLflow wants SQLite at an absolute path, and Ray trials run in their own working directories."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(_resolved(Path.cwd() / uri[len(prefix) :], key))
    if uri.startswith(prefix):
        _resolved(uri[len(prefix):], key)
    return uri


def load_suite(path: str | Path, overrides: list[str] | None = None) -> SuiteConfig:
    """Read, override and validate a suite (plugins included). Raises :class:`SuiteError`."""
    document = interpolate(read_yaml(path), "")
    given: dict[str, str] = {}  # key path set -> the override that set it
    for text in overrides or []:
        key, value = parse_override(text)
        try:
            resolved = set_dotted(document, key, value)
        except SuiteError as exc:
            raise SuiteError([f"override {text!r}: {problem}" for problem in exc.problems]) from None
        if resolved in given:  # as a suite file refuses a duplicate key: never "last one wins"
            raise SuiteError([f"override {text!r}: {resolved} is given twice (also {given[resolved]!r}); give it "
                              "once"])
        given[resolved] = text
    return validate_suite(document)


def _limits(suite: SuiteConfig) -> list[str]:
    """What validates as a value but fails later: a name too long for folders and MLflow, seeds numpy refuses."""
    problems = []
    if len(suite.name) > MAX_NAME_CHARS:
        problems.append(f"name: {len(suite.name)} characters; a suite name may have at most {MAX_NAME_CHARS} (it "
                        "names folders and MLflow runs)")
    if suite.tracking.experiment is not None and len(suite.tracking.experiment) > MAX_EXPERIMENT_CHARS:
        problems.append(f"tracking.experiment: {len(suite.tracking.experiment)} characters; MLflow allows at most "
                        f"{MAX_EXPERIMENT_CHARS}")
    problems += [f"grid.seeds.{index}: {seed} is outside 0..{MAX_SEED} (the seeds numpy and torch both accept)"
                 for index, seed in enumerate(suite.grid.seeds) if not 0 <= seed <= MAX_SEED]
    return problems


def validate_suite(document: dict[str, Any]) -> SuiteConfig:
    suite = _validated(document)
    problems = _limits(suite)
    if problems:
        raise SuiteError(problems)
    _check_plugins(suite)
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    problem = check_tracking_uri(env_uri or suite.tracking.uri)
    key = f"tracking.uri{' (from MLFLOW_TRACKING_URI)' if env_uri else ''}"
    if problem:
        raise SuiteError([f"{key}: {problem}"])
    suite.tracking.uri = _absolute_sqlite(env_uri or suite.tracking.uri, key)
    suite.tracking.workdir = str(_resolved(suite.tracking.workdir, "tracking.workdir"))
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
        checked = _validated(document)
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
        method.params = validate_plugin_params(_params_model(registry.METHODS, method.name, "name"), method.params,
                                               "params")
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
    n_trials = len(suite.grid.seeds) * math.prod(len(values) for values in suite.grid.overrides.values()) * sum(
        math.prod(len(values) for values in entry.sweep.values()) for entry in suite.methods)
    if n_trials > MAX_TRIALS:
        raise SuiteError([f"grid: {n_trials:,} trials (methods x sweeps x grid.overrides x grid.seeds); a suite may "
                          f"have at most {MAX_TRIALS:,}"])
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
