"""``mtp-bench compare``: the methods of a suite (or an experiment) compared from the MLflow store: mean and interval
over seeds, paired differences and tests; writes the results folder (tables, plots, provenance.yaml)."""

from __future__ import annotations

import argparse
import sys

from mtp_bench.cli.command import Command, check_output, suite_arguments
from mtp_bench.errors import EXIT_OK, RunFailed, UsageError

DESCRIPTION = ("Compare the methods of a suite from the MLflow store: mean and interval over seeds, paired differences "
               "and tests over seeds; writes results/<suite>/ (tables, plots, provenance.yaml)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    suite_arguments(parser, optional=True, suite_help="suite YAML: its store, experiment, baseline and grid are used",
                    overrides_help="dotted overrides of the suite (those the run was given, so the trials match)")
    parser.add_argument("--experiment", help="MLflow experiment to compare (without a suite, or instead of its)")
    parser.add_argument("--store", help="MLflow tracking URI (default: the suite's, else $MLFLOW_TRACKING_URI, else "
                                        "sqlite:///results/mlflow.db)")
    parser.add_argument("--baseline", help="method label the others are tested against (default: the suite's)")
    parser.add_argument("--metric", help="headline metric of the plots and the power note, e.g. gsm8k/exact_match "
                                         "(default: the trials' checkpoint-selection metric)")
    parser.add_argument("--output", help="folder for the tables, plots and provenance.yaml (default: "
                                         "results/<suite>, or results/local/<suite> when git tracks results/<suite>)")


def execute(args: argparse.Namespace) -> int:
    check_output(args.output, "--output", folder=True)  # before the store is read
    from rich.console import Console

    from mtp_bench.analysis.comparison import build_comparison
    from mtp_bench.analysis.outputs import compare_suite, output_folder, write_outputs
    from mtp_bench.analysis.render import print_comparison
    from mtp_bench.tracking.store import Store, absolute_store, default_store

    out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    if args.suite:
        from mtp_bench.suite import load_suite

        suite = load_suite(args.suite, args.overrides)
        name = suite.name
        comparison = compare_suite(suite, store_uri=args.store and absolute_store(args.store),
                                   experiment=args.experiment, baseline=args.baseline, metric=args.metric)
    elif args.experiment:
        if args.overrides:
            raise UsageError("overrides need a suite file")
        name = args.experiment
        comparison = build_comparison(Store(default_store(args.store), args.experiment),
                                      title=f"Comparison: {args.experiment}", baseline=args.baseline,
                                      metric=args.metric)
    else:
        raise UsageError("give a suite file (mtp-bench compare SUITE.yaml) or --experiment NAME")
    folder, note = output_folder(name, args.output)
    written = write_outputs(comparison, folder, args.suite, list(args.overrides))
    print_comparison(out, comparison, written)
    if note:
        out.print(f"[yellow]{note}[/]")
    if not comparison.groups:
        raise RunFailed("no finished trials to compare yet")
    return EXIT_OK


COMMANDS = (Command("compare", DESCRIPTION, execute, configure,
                    "compare interrupted; the store was only read: run it again for the tables and plots"),)
