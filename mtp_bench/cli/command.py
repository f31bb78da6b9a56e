"""What a command module declares (:class:`Command`), and the helpers several commands share: the console, the suite
arguments, loading a suite through its checks, and refusing an ``--output`` of the wrong kind.

Everything here is light: building the parser imports this module, and ``--help`` must not load torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtp_bench.errors import UsageError


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command that takes no arguments."""


@dataclass(frozen=True)
class Command:
    """One sub-command of ``mtp-bench``. Each module of :mod:`mtp_bench.cli` lists its commands in ``COMMANDS``;
    :func:`mtp_bench.cli.entry.build_parser` adds them in the order of ``entry.COMMAND_MODULES``."""

    name: str
    """The word after ``mtp-bench``."""
    help: str
    """One line for ``mtp-bench --help``."""
    execute: Callable[[argparse.Namespace], int]
    """Does the work and returns an exit code from :mod:`mtp_bench.errors`; failures are raised as its typed errors
    (never printed here). Heavy imports go inside it."""
    configure: Callable[[argparse.ArgumentParser], None] = _no_arguments
    """Adds the command's arguments (and a description, if it wants one) to its parser."""
    interrupted: str = "interrupted"
    """What Ctrl-C prints: what was kept, and how to go on."""


def console(stderr: bool = False) -> Any:
    """A rich console; piped or captured output gets 200 columns rather than being squeezed into 80."""
    from rich.console import Console

    made = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not made.is_terminal:
        made = Console(stderr=stderr, highlight=False, soft_wrap=True, width=200)
    return made


def suite_arguments(parser: argparse.ArgumentParser, *, optional: bool = False, suite_help: str = "suite YAML file",
                    overrides_help: str = "dotted overrides applied before validation, e.g. train.lr=3e-5 "
                                          "grid.seeds=[0,1]") -> None:
    """The suite file and the ``key.path=value`` overrides after it (more may follow the options: see
    :func:`mtp_bench.cli.entry.main`)."""
    parser.add_argument("suite", nargs="?" if optional else None, help=suite_help)
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help=overrides_help)


def load_trials(args: argparse.Namespace, *, local_run: bool = False) -> tuple[Any, list[Any]]:
    """The suite and its trials, through every check that needs no trial to start (resources too when
    ``local_run`` says the trials would run on this machine)."""
    from mtp_bench.preflight import check_all
    from mtp_bench.suite import expand_grid, load_suite

    suite = load_suite(args.suite, args.overrides)
    trials = expand_grid(suite)
    check_all(suite, trials, local_run=local_run)
    return suite, trials


def check_output(path: str | None, option: str, *, folder: bool) -> None:
    """An ``--output`` that names a file where a folder is wanted (or the reverse), or lies under a file: one line,
    before anything is read or run."""
    if not path:
        return
    target = Path(path)
    if folder and target.exists() and not target.is_dir():
        raise UsageError(f"{option} {path}: an existing file, not a folder; name a folder (it is created if missing)")
    if not folder and target.is_dir():
        raise UsageError(f"{option} {path}: an existing folder; name the file to write")
    blocking = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UsageError(f"{option} {path}: {blocking} is a file, so nothing can be written under it")
