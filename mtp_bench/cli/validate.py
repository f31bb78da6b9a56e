"""``mtp-bench validate``: check a suite through every check that needs no trial to start, and list its trials."""

from __future__ import annotations

import argparse

from mtp_bench.cli.command import Command, console, load_trials, suite_arguments
from mtp_bench.errors import EXIT_OK


def execute(args: argparse.Namespace) -> int:
    suite, trials = load_trials(args)
    out = console()
    out.print(f"[green]ok[/]: suite {suite.name!r}, {len(suite.methods)} methods, {len(trials)} trials")
    for trial in trials:
        out.print(f"  {trial.trial_id}  {trial.label}")
    return EXIT_OK


COMMANDS = (Command("validate", "check a suite and list its trials without running anything", execute,
                    suite_arguments),)
