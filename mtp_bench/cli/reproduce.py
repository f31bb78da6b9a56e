"""``mtp-bench reproduce`` (also ``python -m mtp_bench.analysis.reproduce``): re-run one seed of one method of a
committed results folder and compare its value with the committed one; the steps are in
:mod:`mtp_bench.analysis.reproduce`, whose docstring says what is checked."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mtp_bench.cli.command import Command
from mtp_bench.errors import EXIT_OK

DESCRIPTION = "re-run one seed of one method of a committed results folder and check it gives the committed value"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION + " (exit 1 when it does not; another commit is refused unless allowed)"
    parser.add_argument("folder", type=Path, help="a results folder with provenance.yaml, e.g. results/quickstart")
    parser.add_argument("--method", required=True, help="method label, e.g. ntp")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--tolerance", type=float, default=0.0, help="allowed absolute difference (default 0)")
    parser.add_argument("--workdir", type=Path, help="where the re-run's store goes (default: a temporary folder)")
    parser.add_argument("--allow-other-commit", action="store_true",
                        help="re-run even when the checkout is not the commit the provenance names")


def execute(args: argparse.Namespace) -> int:
    from mtp_bench.analysis import reproduce as steps
    from mtp_bench.tracking.provenance import SOURCE, describe, environment

    record = steps.load_provenance(args.folder)
    overrides, trial_id = steps.narrowed_overrides(record, args.method, args.seed)
    head, dirty = steps.checkout()
    here, recorded = environment(), steps.recorded_environment(record, args.method, args.seed)
    _say([f"code: commit {head or 'unknown (not a git checkout)'}{' with local changes' if dirty else ''} "
          f"({SOURCE})", *(f"environment: {line}" for line in describe(here))])
    _say(steps.check_commit(record, args.method, args.seed, args.allow_other_commit, head, dirty))
    warned = steps.environment_warnings(recorded, here, ("platform", *steps.THREAD_KEYS))
    _say(warned)
    with tempfile.TemporaryDirectory(prefix="mtp-bench-reproduce-") as scratch:
        folder = args.workdir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        uri = steps.rerun(record, overrides, folder.resolve())
        ran = steps.rerun_environment(record, uri, trial_id)
        if ran is not None and recorded is not None:  # what the trial ran with, its threads too
            _say([line for line in steps.environment_warnings(recorded, ran) if line not in warned])
        lines = steps.check(record, args.method, args.seed, uri, trial_id, args.tolerance)
    print("\n".join([*lines, f"{args.method} seed {args.seed} reproduces {args.folder}"]))
    return EXIT_OK


def _say(lines: list[str]) -> None:
    """Information on stdout, warnings on stderr (each as it comes: the re-run's own output follows)."""
    for line in lines:
        if line.startswith("warning:"):
            print(f"reproduce: {line}", file=sys.stderr, flush=True)
        else:
            print(line, flush=True)


COMMANDS = (Command("reproduce", DESCRIPTION, execute, configure),)
