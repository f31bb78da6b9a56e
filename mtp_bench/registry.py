"""Plugin registries backed by entry points: methods, scorers and tasks are all found the same way.

Built-in plugins are registered in our own ``pyproject.toml``; an out-of-tree package adds one by declaring an entry
point in the same group. An unknown name gets a message listing what is installed, with a close match if any.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

METHODS = "mtp_bench.methods"
SCORERS = "mtp_bench.scorers"
TASKS = "mtp_bench.tasks"

_KIND = {METHODS: "method", SCORERS: "scorer", TASKS: "task"}


class PluginError(LookupError):
    """An unknown or broken plugin; the message is meant for the user as it is."""


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


def load_method(name: str) -> Any:
    return load(METHODS, name)


def load_scorer(name: str) -> Any:
    return load(SCORERS, name)


def load_task(name: str) -> Any:
    return load(TASKS, name)
