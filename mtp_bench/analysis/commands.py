"""The bodies of ``mtp-bench compare`` and ``mtp-bench steps`` (the parser and error handling live in
:mod:`mtp_bench.cli`): load the suite, read the store, write and print the result. Errors are raised as
:mod:`mtp_bench.errors` types."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mtp_bench.errors import RunFailed, UsageError


def compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mtp_bench.analysis.comparison import build_comparison
    from mtp_bench.analysis.outputs import compare_suite, output_folder, write_outputs
    from mtp_bench.analysis.render import print_comparison
    from mtp_bench.tracking.store import Store, absolute_store, default_store

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
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
    print_comparison(console, comparison, written)
    if note:
        console.print(f"[yellow]{note}[/]")
    if not comparison.groups:
        raise RunFailed("no finished trials to compare yet")
    return 0


def steps(args: argparse.Namespace) -> int:
    from mtp_bench.analysis.steps import read_trials
    from mtp_bench.analysis.steps_report import report

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    known = ("steps", "tokens", "flops", "seconds")
    if not set(kinds) <= set(known):
        raise UsageError(f"--kinds: unknown {', '.join(sorted(set(kinds) - set(known)))}; known: {', '.join(known)}")
    rule_metric, _, delta_text = (args.rule or "").partition("=")
    try:
        rule_delta = float(delta_text) if rule_metric else 0.0
    except ValueError:
        raise UsageError(f"--rule {args.rule}: expected METRIC=DELTA with a number") from None
    extra = list(dict.fromkeys([*args.last, *([rule_metric] if rule_metric else [])]))
    suite, trials, excluded, metric = read_trials(args.suite, args.overrides, args.store, args.metric, extra)
    baseline = args.baseline or suite.baseline or "ntp"
    command = shlex.join(["mtp-bench", "steps", *sys.argv[2:]]) if len(sys.argv) > 1 and sys.argv[1] == "steps" \
        else f"mtp-bench steps {args.suite}"
    text = report(suite.name, command, trials, excluded, metric, baseline, thresholds=args.threshold or [0.9],
                  kinds=kinds, no_steps=args.no_steps, curve_every=args.curve_every, seed_paired=args.seed_paired,
                  last=args.last, final=args.final, rule=(rule_metric, rule_delta) if rule_metric else None)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0
