"""Plugin registries backed by entry points: methods, scorers and tasks are all found the same way.

Built-in plugins are registered in our own ``pyproject.toml``; an out-of-tree package adds one by declaring an entry
point in the same group. An unknown name gets a message listing what is installed, with a close match if any.

Every plugin built from a suite's settings is built by :func:`build` (the trial's task and method, its scorers,
a task built inside another). Names are checked from the installed metadata alone, and a plugin's settings model (``Params``) is read from a light
twin group (``mtp_bench.method_params``, ...) when the plugin declares one there, so validating a suite imports no
plugin and no torch. A plugin without such an entry still works: its module is imported to read ``Params``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from mtp_bench.errors import PluginError

METHODS = "mtp_bench.methods"
SCORERS = "mtp_bench.scorers"
TASKS = "mtp_bench.tasks"

_KIND = {METHODS: "method", SCORERS: "scorer", TASKS: "task"}

# Each group's light twin: name -> the plugin's ``Params`` model, in a module that imports no torch.
PARAMS_GROUPS = {METHODS: "mtp_bench.method_params", SCORERS: "mtp_bench.scorer_params", TASKS: "mtp_bench.task_params"}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    target: str  # "module:attribute"
    distribution: str  # the installed package that declares it


@cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep)  # the first declaration wins, as importlib orders distributions
    return found


def available(group: str) -> list[PluginInfo]:
    """Installed plugins of a group, sorted by name."""
    infos = []
    for name, ep in sorted(_entry_points(group).items()):
        dist = ep.dist.name if ep.dist is not None else "?"
        infos.append(PluginInfo(name=name, target=ep.value, distribution=dist))
    return infos


def names(group: str) -> list[str]:
    return sorted(_entry_points(group))


def unknown_message(group: str, name: str) -> str:
    kind = _KIND.get(group, "plugin")
    installed = names(group)
    hint = difflib.get_close_matches(name, installed, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    listing = ", ".join(installed) if installed else "none"
    return f"unknown {kind} {name!r}{suggestion}; installed {kind}s: {listing}"


@cache
def load(group: str, name: str) -> Any:
    """The object an entry point names. Raises :class:`PluginError` with a helpful message."""
    eps = _entry_points(group)
    if name not in eps:
        raise PluginError(unknown_message(group, name))
    try:
        return eps[name].load()
    except Exception as exc:  # a plugin that fails to import must not look like an unknown name
        kind = _KIND.get(group, "plugin")
        raise PluginError(f"{kind} {name!r} is installed ({eps[name].value}) but failed to import: {exc}") from exc


def check_name(group: str, name: str) -> None:
    """Raise :class:`PluginError` (listing what is installed) unless ``name`` is installed; imports nothing."""
    if name not in _entry_points(group):
        raise PluginError(unknown_message(group, name))


@cache
def load_params(group: str, name: str) -> type:
    """The plugin's settings model: from the light twin group when declared there (no plugin import), else the
    ``Params`` attribute of the plugin itself."""
    check_name(group, name)
    light = _entry_points(PARAMS_GROUPS[group]).get(name)
    if light is None:
        return load(group, name).Params
    try:
        return light.load()
    except Exception as exc:  # noqa: BLE001 - reported as a broken plugin, not a traceback
        kind = _KIND.get(group, "plugin")
        raise PluginError(f"{kind} {name!r}: its settings model ({light.value}) failed to import: {exc}") from exc


def build(group: str, name: str, params: Any, *context: Any) -> Any:
    """The plugin ``name`` of ``group`` built from its settings: ``params`` (a mapping, as a suite holds them)
    validated by the same settings model ``mtp-bench validate`` used (:func:`load_params`), then passed to the
    plugin's class with ``context`` (a method also takes its :class:`~mtp_bench.api.method.MethodContext`)."""
    settings = load_params(group, name).model_validate(params)
    return load(group, name)(settings, *context)


__all__ = ["METHODS", "PARAMS_GROUPS", "SCORERS", "TASKS", "PluginError", "PluginInfo", "available", "build",
           "check_name", "load", "load_params", "names", "unknown_message"]
