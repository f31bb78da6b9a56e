"""``mtp-bench methods``, ``scorers``, ``tasks`` and ``presets``: what is installed, as tables. The four listings
share this module because they differ only in what they list."""

from __future__ import annotations

import argparse
import sys

from mtp_bench.cli.command import Command, console
from mtp_bench.errors import EXIT_OK


def plugin_table(group: str, title: str) -> int:
    """The plugins of an entry-point group: name, distribution, target and the first line of their docstring (or
    why they cannot be imported)."""
    from rich.table import Table

    from mtp_bench import registry

    table = Table(title=title)
    for column in ("name", "provided by", "entry point", "summary"):
        table.add_column(column)
    for info in registry.available(group):
        try:
            obj = registry.load(group, info.name)
            summary = (sys.modules[obj.__module__].__doc__ or obj.__doc__ or "").strip().splitlines()[0]
        except registry.PluginError as exc:
            summary = f"[red]broken: {exc}[/]"
        table.add_row(info.name, info.distribution, info.target, summary)
    console().print(table)
    return EXIT_OK


def presets(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mtp_bench.suite.presets import preset_rows

    table = Table(title="Built-in model presets (model.preset)")
    for column in ("name", "architecture", "description"):
        table.add_column(column)
    for row in preset_rows():
        table.add_row(*row)
    console().print(table)
    return EXIT_OK


def _lister(kind: str) -> Command:
    """``mtp-bench <kind>``: the installed plugins of entry-point group ``mtp_bench.<kind>``."""
    group = f"mtp_bench.{kind}"
    return Command(kind, f"list installed {kind}",
                   lambda args: plugin_table(group, f"Installed {kind} (entry-point group {group})"))


COMMANDS = (*(_lister(kind) for kind in ("methods", "scorers", "tasks")),
            Command("presets", "list built-in model presets (tiny ones, and packaged pretrained ones)", presets))
