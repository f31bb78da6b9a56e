"""``mtp-bench steps``: when does each method learn? Steps-, tokens-, FLOPs- and seconds-to-accuracy from the
validation curves in the store, seeds paired against the baseline; per-trial tables and a decision rule."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from mtp_bench.cli.command import Command, check_output, suite_arguments
from mtp_bench.errors import EXIT_OK, UsageError

DESCRIPTION = ("When does each method learn? Steps-, tokens-, FLOPs- and seconds-to-accuracy from the validation "
               "curves in the store, seeds paired against the baseline; per-trial tables and a decision rule")
KINDS = ("steps", "tokens", "flops", "seconds")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    suite_arguments(parser, suite_help="suite YAML (its store, experiment, baseline and grid are used)",
                    overrides_help="dotted overrides of the suite")
    add = parser.add_argument
    add("--store", help="MLflow tracking URI (default: the suite's)")
    add("--metric", help="periodic metric (default: <split>/<the trials' selection metric>)")
    add("--baseline", help="method label to pair against (default: the suite's)")
    add("--threshold", type=float, action="append", help="accuracy threshold (repeatable; default 0.9)")
    add("--kinds", default=",".join(KINDS),
        help="units of the to-accuracy tables (comma list of steps,tokens,flops,seconds)")
    add("--no-steps", action="store_true", help="skip the to-accuracy tables")
    add("--curve-every", type=int, default=None,
        help="curve table: only steps that are multiples of this (and the last); 0 = no table")
    add("--last", action="append", default=[], metavar="METRIC",
        help="per-trial table: a periodic metric's value at the last evaluation (repeatable)")
    add("--final", action="append", default=[], metavar="METRIC",
        help="per-trial table: a final metric, e.g. best/test/star_graph/full_path_accuracy")
    add("--seed-paired", action="append", default=[], metavar="METRIC",
        help="a final metric (e.g. best/test/exact_match/exact_match) compared with the seed as the unit")
    add("--rule", metavar="METRIC=DELTA", help="decision rule per cell on a periodic metric's last-evaluation value")
    add("--output", help="also write the markdown here")


def execute(args: argparse.Namespace) -> int:
    for value in args.threshold or []:
        if not math.isfinite(value):
            raise UsageError(f"--threshold {value}: must be a finite number (an accuracy, e.g. 0.9)")
    check_output(args.output, "--output", folder=False)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not set(kinds) <= set(KINDS):
        raise UsageError(f"--kinds: unknown {', '.join(sorted(set(kinds) - set(KINDS)))}; known: {', '.join(KINDS)}")
    rule_metric, _, delta_text = (args.rule or "").partition("=")
    try:
        rule_delta = float(delta_text) if rule_metric else 0.0
    except ValueError:
        raise UsageError(f"--rule {args.rule}: expected METRIC=DELTA with a number") from None

    from mtp_bench.analysis.steps import read_trials
    from mtp_bench.analysis.steps_report import report

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
    return EXIT_OK


COMMANDS = (Command("steps", DESCRIPTION, execute, configure,
                    "steps interrupted; the store was only read: run it again"),)
