"""``mtp-bench``: the command line. The only place that prints errors and chooses exit codes.

Exit codes: 0 success; 1 a trial failed (the others finished and are recorded); 2 bad input (suite, overrides,
plugin names, data paths) — one line per problem, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_TRIAL_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# Sub-commands that live in their own modules: each exposes ``configure(parser)`` and ``main(args) -> int``.
EXTERNAL_COMMANDS = {
    "compare": ("mtp_bench.compare", "Compare methods of a suite from the MLflow store: mean, 95% CI, paired test"),
    "ui": ("mtp_bench.ui", "Serve the MLflow UI on a suite's store (127.0.0.1) and stop it cleanly on Ctrl-C"),
    "bench": ("mtp_bench.bench.cli", "Measure what each method and the harness cost; writes results/benchmarks.md"),
}


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=200)
    return console


def _fail(problems: list[str], code: int = EXIT_BAD_INPUT) -> int:
    for problem in problems:
        print(f"mtp-bench: error: {problem}", file=sys.stderr)
    return code


def _load(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from mtp_bench.suite import expand_grid, load_suite

    suite = load_suite(args.suite, args.overrides)
    trials = expand_grid(suite)
    _preflight_lm_eval(trials)
    return suite, trials


def _preflight_lm_eval(trials: list[Any]) -> None:
    """Load every distinct lm-eval configuration of the grid (task names, data folders, the unsafe-code flag) as the
    trials will, so that a typo fails now rather than in every trial. lm-eval is imported only when a suite uses it."""
    if not any(trial.evaluation.lm_eval.tasks for trial in trials):
        return
    from mtp_bench.evaluation.lm_eval_bridge import LmEvalError, preflight
    from mtp_bench.evaluation.runner import lm_eval_fallback_dir
    from mtp_bench.suite import SuiteError

    problems: list[str] = []
    seen: set[tuple[str, str | None]] = set()
    for trial in trials:
        cfg = trial.evaluation.lm_eval
        if not cfg.tasks:
            continue
        fallback = lm_eval_fallback_dir(trial.data.task, trial.data.params)
        key = (cfg.model_dump_json(), fallback)
        if key in seen:
            continue
        seen.add(key)
        try:
            preflight(cfg, fallback)
        except LmEvalError as exc:
            problem = " ".join(str(exc).split())  # one line, whatever lm-eval's own message held
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise SuiteError(problems)


# --------------------------------------------------------------------------------------------------- commands ----
def cmd_run(args: argparse.Namespace) -> int:
    from mtp_bench.scheduler import FAILED, ray_available, run_suite
    from mtp_bench.scheduler.summary import print_summary

    suite, trials = _load(args)
    if args.address:
        os.environ["RAY_ADDRESS"] = args.address
    use_ray = not args.no_ray
    if use_ray and not ray_available():
        use_ray = False
    console = _console()
    console.print(f"[bold]{suite.name}[/]: {len(trials)} trials ({'Ray' if use_ray else 'in-process'}), "
                  f"tracking at {suite.tracking.uri}")
    result = run_suite(suite, trials, use_ray=use_ray, resume=args.resume, address=args.address,
                       suite_yaml=Path(args.suite).read_text(), overrides=args.overrides, console=console)
    print_summary(console, result.reports)
    if not args.no_compare and importlib.util.find_spec("mtp_bench.compare") is not None:
        from mtp_bench.compare import compare_after_run

        compare_after_run(suite, result.parent_run_id, console)
    return EXIT_TRIAL_FAILED if any(r.status == FAILED for r in result.reports) else EXIT_OK


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

    from mtp_bench.models.presets import DESCRIPTIONS, PRESETS

    table = Table(title="Built-in model presets (model.preset)")
    table.add_column("name")
    table.add_column("architecture")
    table.add_column("description")
    for name, (model_type, _) in sorted(PRESETS.items()):
        table.add_row(name, model_type, DESCRIPTIONS.get(name, ""))
    _console().print(table)
    return EXIT_OK


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
    run.set_defaults(handler=cmd_run)

    validate = sub.add_parser("validate", help="check a suite and list its trials without running anything")
    _suite_arguments(validate)
    validate.set_defaults(handler=cmd_validate)

    for name, handler, text in (
        ("methods", cmd_methods, "list installed methods"),
        ("scorers", cmd_scorers, "list installed scorers"),
        ("tasks", cmd_tasks, "list installed tasks"),
        ("presets", cmd_presets, "list built-in tiny model presets"),
    ):
        sub.add_parser(name, help=text).set_defaults(handler=handler)

    for name, (module, text) in EXTERNAL_COMMANDS.items():
        if importlib.util.find_spec(module) is None:
            continue
        command = sub.add_parser(name, help=text, description=text)
        loaded = importlib.import_module(module)
        loaded.configure(command)
        command.set_defaults(handler=loaded.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may follow options (`run suite.yaml --no-ray train.lr=1e-3`): argparse leaves those unrecognised.
    args, rest = parser.parse_known_args(argv)
    stray = [item for item in rest if item.startswith("-") or "=" not in item or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    from mtp_bench.data.tasks import DataError
    from mtp_bench.registry import PluginError
    from mtp_bench.scheduler.common import SchedulingError
    from mtp_bench.suite.load import SuiteError

    try:
        return int(args.handler(args) or 0)
    except SuiteError as exc:
        where = f"{args.suite}: " if getattr(args, "suite", None) else ""
        return _fail([f"{where}{problem}" for problem in exc.problems])
    except (PluginError, DataError, SchedulingError) as exc:
        return _fail([str(exc)])
    except KeyboardInterrupt:
        print("mtp-bench: interrupted; finished trials are recorded, `--resume` continues the rest", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
