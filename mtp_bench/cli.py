"""``mtp-bench``: the command line. The only place that prints errors and chooses exit codes.

Sub-commands raise the typed errors of :mod:`mtp_bench.errors`; :func:`main` prints them and returns their exit code:
0 success; 1 a trial failed (the others finished and are recorded); 2 bad input (suite, overrides, plugin names, data,
resources): one line per problem naming the key path or file:line, at most five lines, no traceback; 130 interrupted.

Building the parser and ``validate`` import no torch, mlflow, ray or scipy (``tests/test_cli.py`` checks): every
heavy import sits inside the handler that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from mtp_bench.cpu_kernels import pin as pin_cpu_kernels
from mtp_bench.errors import EXIT_INTERRUPTED, EXIT_OK, BadInput, MtpBenchError, RunFailed, SuiteError, UsageError

MAX_ERROR_LINES = 5
"""Most error lines printed for one failure; the rest are counted ("... and N more")."""

INTERRUPTED = {
    "run": "interrupted; finished trials are recorded, `--resume` continues the rest",
    "compare": "compare interrupted; the store was only read: run it again for the tables and plots",
    "steps": "steps interrupted; the store was only read: run it again",
}
"""What Ctrl-C prints, by command (others: "interrupted")."""

# Sub-commands that live in their own modules: each exposes ``configure(parser)`` and ``main(args) -> int``.
EXTERNAL_COMMANDS = {
    "ui": ("mtp_bench.ui", "Serve the MLflow UI on a suite's store (127.0.0.1) and stop it cleanly on Ctrl-C"),
    "bench": ("mtp_bench.bench.cli", "Measure what each method and the harness cost; writes results/benchmarks.md"),
}


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=200)
    return console


def _load(args: argparse.Namespace, *, local_run: bool = False) -> tuple[Any, list[Any]]:
    """The suite and its trials, through every check that needs no trial to start (resources too when
    ``local_run`` says the trials would run on this machine)."""
    from mtp_bench.preflight import check_all
    from mtp_bench.suite import expand_grid, load_suite

    suite = load_suite(args.suite, args.overrides)
    trials = expand_grid(suite)
    check_all(suite, trials, local_run=local_run)
    return suite, trials


# --------------------------------------------------------------------------------------------------- commands ----
def cmd_run(args: argparse.Namespace) -> int:
    from mtp_bench.scheduler import FAILED, ray_available, run_suite
    from mtp_bench.scheduler.live import progress_log
    from mtp_bench.scheduler.summary import print_summary

    suite, trials = _load(args, local_run=args.no_ray or not (args.address or os.environ.get("RAY_ADDRESS")))
    if args.address:
        os.environ["RAY_ADDRESS"] = args.address
    use_ray = not args.no_ray
    if use_ray and not ray_available():
        use_ray = False
    console = _console()
    log = progress_log(suite.tracking.workdir, suite.name) if use_ray else None
    console.print(f"[bold]{suite.name}[/]: {len(trials)} trials ({'Ray' if use_ray else 'in-process'}), "
                  f"tracking at {suite.tracking.uri}" + (f", progress in {log}" if log else ""))
    suite_yaml = Path(args.suite).read_text(encoding="utf-8")  # read and checked once already: UTF-8, bounded
    result = run_suite(suite, trials, use_ray=use_ray, resume=args.resume, address=args.address,
                       suite_yaml=suite_yaml, overrides=args.overrides, console=console)
    print_summary(console, result.reports)
    if not args.no_compare:
        from mtp_bench.analysis.outputs import compare_after_run

        written = compare_after_run(suite, result.parent_run_id, console, args.suite, args.overrides, args.output)
        if written:
            console.print(f"[bold]results written to {written[0].parent}/[/]: {', '.join(p.name for p in written)}")
    failed = sum(report.status == FAILED for report in result.reports)
    if failed:
        raise RunFailed(f"{failed} of {len(result.reports)} trials failed (see the table above)")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    suite, trials = _load(args)
    console = _console()
    console.print(f"[green]ok[/]: suite {suite.name!r}, {len(suite.methods)} methods, {len(trials)} trials")
    for trial in trials:
        console.print(f"  {trial.trial_id}  {trial.label}")
    return EXIT_OK


def _plugin_table(group: str, title: str) -> int:
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
    _console().print(table)
    return EXIT_OK


def cmd_methods(args: argparse.Namespace) -> int:
    from mtp_bench import registry

    return _plugin_table(registry.METHODS, "Installed methods (entry-point group mtp_bench.methods)")


def cmd_scorers(args: argparse.Namespace) -> int:
    from mtp_bench import registry

    return _plugin_table(registry.SCORERS, "Installed scorers (entry-point group mtp_bench.scorers)")


def cmd_tasks(args: argparse.Namespace) -> int:
    from mtp_bench import registry

    return _plugin_table(registry.TASKS, "Installed tasks (entry-point group mtp_bench.tasks)")


def cmd_presets(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mtp_bench.suite.presets import preset_rows

    table = Table(title="Built-in model presets (model.preset)")
    table.add_column("name")
    table.add_column("architecture")
    table.add_column("description")
    for row in preset_rows():
        table.add_row(*row)
    _console().print(table)
    return EXIT_OK


def _check_output(path: str | None, option: str, *, folder: bool) -> None:
    """An ``--output`` that names a file where a folder is wanted (or the reverse), or lies under a file: one line,
    before the store is read."""
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


def cmd_compare(args: argparse.Namespace) -> int:
    from mtp_bench.analysis.commands import compare

    _check_output(args.output, "--output", folder=True)
    return compare(args)


def cmd_steps(args: argparse.Namespace) -> int:
    import math

    from mtp_bench.analysis.commands import steps

    for value in args.threshold or []:
        if not math.isfinite(value):
            raise UsageError(f"--threshold {value}: must be a finite number (an accuracy, e.g. 0.9)")
    _check_output(args.output, "--output", folder=False)
    return steps(args)


# ----------------------------------------------------------------------------------------------------- parser ----
def _suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="suite YAML file")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value",
                        help="dotted overrides applied before validation, e.g. train.lr=3e-5 grid.seeds=[0,1]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtp-bench",
        description="Does a multi-token prediction objective beat next-token training? Runs suites of "
        "train-and-evaluate trials and compares methods with confidence intervals.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate every trial of a suite")
    _suite_arguments(run)
    run.add_argument("--no-ray", action="store_true", help="run trials one by one in this process (debugging)")
    run.add_argument("--resume", action="store_true",
                     help="skip trials already FINISHED in the store; continue interrupted ones from checkpoints")
    run.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS or a local Ray)")
    run.add_argument("--no-compare", action="store_true", help="do not print the comparison table at the end")
    run.add_argument("--output", help="folder for the comparison's tables, plots and provenance.yaml (default: "
                                      "results/<suite>, or results/local/<suite> when git tracks results/<suite>)")
    run.set_defaults(handler=cmd_run)

    validate = sub.add_parser("validate", help="check a suite and list its trials without running anything")
    _suite_arguments(validate)
    validate.set_defaults(handler=cmd_validate)

    for name, handler, text in (
        ("methods", cmd_methods, "list installed methods"),
        ("scorers", cmd_scorers, "list installed scorers"),
        ("tasks", cmd_tasks, "list installed tasks"),
        ("presets", cmd_presets, "list built-in model presets (tiny ones, and packaged pretrained ones)"),
    ):
        sub.add_parser(name, help=text).set_defaults(handler=handler)

    _compare_parser(sub)
    _steps_parser(sub)

    for name, (module, text) in EXTERNAL_COMMANDS.items():
        command = sub.add_parser(name, help=text, description=text)
        loaded = importlib.import_module(module)
        loaded.configure(command)
        command.set_defaults(handler=loaded.main)
    return parser


def _compare_parser(sub: Any) -> None:
    text = ("Compare the methods of a suite from the MLflow store: mean and interval over seeds, paired differences "
            "and tests over seeds; writes results/<suite>/ (tables, plots, provenance.yaml)")
    parser = sub.add_parser("compare", help=text, description=text)
    parser.add_argument("suite", nargs="?", help="suite YAML: its store, experiment, baseline and grid are used")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value",
                        help="dotted overrides of the suite (those the run was given, so the trials match)")
    parser.add_argument("--experiment", help="MLflow experiment to compare (without a suite, or instead of its)")
    parser.add_argument("--store", help="MLflow tracking URI (default: the suite's, else $MLFLOW_TRACKING_URI, else "
                                        "sqlite:///results/mlflow.db)")
    parser.add_argument("--baseline", help="method label the others are tested against (default: the suite's)")
    parser.add_argument("--metric", help="headline metric of the plots and the power note, e.g. gsm8k/exact_match "
                                         "(default: the trials' checkpoint-selection metric)")
    parser.add_argument("--output", help="folder for the tables, plots and provenance.yaml (default: "
                                         "results/<suite>, or results/local/<suite> when git tracks results/<suite>)")
    parser.set_defaults(handler=cmd_compare)


def _steps_parser(sub: Any) -> None:
    text = ("When does each method learn? Steps-, tokens-, FLOPs- and seconds-to-accuracy from the validation "
            "curves in the store, seeds paired against the baseline; per-trial tables and a decision rule")
    parser = sub.add_parser("steps", help=text, description=text)
    parser.add_argument("suite", help="suite YAML (its store, experiment, baseline and grid are used)")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="dotted overrides of the suite")
    add = parser.add_argument
    add("--store", help="MLflow tracking URI (default: the suite's)")
    add("--metric", help="periodic metric (default: <split>/<the trials' selection metric>)")
    add("--baseline", help="method label to pair against (default: the suite's)")
    add("--threshold", type=float, action="append", help="accuracy threshold (repeatable; default 0.9)")
    add("--kinds", default="steps,tokens,flops,seconds",
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
    parser.set_defaults(handler=cmd_steps)


def main(argv: list[str] | None = None) -> int:
    pin_cpu_kernels()  # before anything imports torch: the same kernels, so the same numbers, on every x86-64 CPU
    parser = build_parser()
    # Overrides may follow options (`run suite.yaml --no-ray train.lr=1e-3`): argparse leaves those unrecognised.
    args, rest = parser.parse_known_args(argv)
    stray = [item for item in rest if item.startswith("-") or "=" not in item or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    try:
        return int(args.handler(args) or 0)
    except MtpBenchError as exc:
        for line in error_lines(exc, getattr(args, "suite", None)):
            print(f"mtp-bench: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM during `run`
        print(f"mtp-bench: {INTERRUPTED.get(args.command, 'interrupted')}", file=sys.stderr)
        return EXIT_INTERRUPTED


def error_lines(exc: MtpBenchError, suite: str | None = None) -> list[str]:
    """What the user is shown for ``exc``: a suite's problems prefixed with its file (unless they name it already),
    bad input squeezed to one line each, and no more than :data:`MAX_ERROR_LINES` lines."""
    lines = exc.lines()
    if isinstance(exc, BadInput):
        lines = [" ".join(line.split()) for line in lines]
    if isinstance(exc, SuiteError) and suite:
        lines = [line if line.startswith(suite) else f"{suite}: {line}" for line in lines]
    if len(lines) > MAX_ERROR_LINES:
        lines = [*lines[: MAX_ERROR_LINES - 1], f"... and {len(lines) - MAX_ERROR_LINES + 1} more problems"]
    return lines


if __name__ == "__main__":
    sys.exit(main())
