"""``mtp-bench run``: train and evaluate every trial of a suite (on Ray, or one by one with ``--no-ray``), print the
outcome, then compare the methods and write the results folder."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from mtp_bench.cli.command import Command, check_output, console, load_trials, suite_arguments
from mtp_bench.errors import EXIT_OK, RunFailed, UsageError

OUTPUT_HELP = ("folder for the comparison's tables, plots and provenance.yaml (default: results/<suite>, or "
               "results/local/<suite> when git tracks results/<suite>)")


def configure(parser: argparse.ArgumentParser) -> None:
    suite_arguments(parser)
    parser.add_argument("--no-ray", action="store_true", help="run trials one by one in this process (debugging)")
    parser.add_argument("--resume", action="store_true",
                        help="skip trials already FINISHED in the store; continue interrupted ones from checkpoints")
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS or a local Ray)")
    parser.add_argument("--no-compare", action="store_true", help="do not print the comparison table at the end")
    parser.add_argument("--output", help=OUTPUT_HELP)


def execute(args: argparse.Namespace) -> int:
    check_output(args.output, "--output", folder=True)
    if not args.no_ray and importlib.util.find_spec("ray") is None:
        raise UsageError("Ray is not installed: install it (pip install 'ray[train]') or run with --no-ray")
    suite, trials = load_trials(args, local_run=args.no_ray or not (args.address or os.environ.get("RAY_ADDRESS")))

    from mtp_bench.scheduler import FAILED, run_suite
    from mtp_bench.scheduler.live import progress_log
    from mtp_bench.scheduler.summary import print_summary

    if args.address:
        os.environ["RAY_ADDRESS"] = args.address
    use_ray = not args.no_ray
    out = console()
    log = progress_log(suite.tracking.workdir, suite.name) if use_ray else None
    out.print(f"[bold]{suite.name}[/]: {len(trials)} trials ({'Ray' if use_ray else 'in-process'}), "
              f"tracking at {suite.tracking.uri}" + (f", progress in {log}" if log else ""))
    suite_yaml = Path(args.suite).read_text(encoding="utf-8")  # read and checked once already: UTF-8, bounded
    result = run_suite(suite, trials, use_ray=use_ray, resume=args.resume, address=args.address,
                       suite_yaml=suite_yaml, overrides=args.overrides, console=out)
    print_summary(out, result.reports)
    if not args.no_compare:
        from mtp_bench.analysis.outputs import compare_after_run

        written = compare_after_run(suite, result.parent_run_id, out, args.suite, args.overrides, args.output)
        if written:
            out.print(f"[bold]results written to {written[0].parent}/[/]: {', '.join(p.name for p in written)}")
    failed = sum(report.status == FAILED for report in result.reports)
    if failed:
        raise RunFailed(f"{failed} of {len(result.reports)} trials failed (see the table above)")
    return EXIT_OK


COMMANDS = (Command("run", "train and evaluate every trial of a suite", execute, configure,
                    "interrupted; finished trials are recorded, `--resume` continues the rest"),)
