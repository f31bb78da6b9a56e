"""``mtp-bench``: the parser, built from the commands' modules, and the one place that prints errors and chooses exit
codes.

Commands raise the typed errors of :mod:`mtp_bench.errors`; :func:`main` prints them and returns their exit code:
0 success; 1 a trial failed (the others finished and are recorded); 2 bad input (suite, overrides, plugin names, data,
resources): one line per problem naming the key path or file:line, at most five lines, no traceback; 130 interrupted.
The ``python -m`` tools (data twins, GGUF conversion, zero-shot scoring, makespan) go through :func:`run_script`, so
their errors read the same.

Building the parser and ``validate`` import no torch, mlflow, ray or scipy (``tests/unit/cli/test_entry.py`` checks): every
command module imports its heavy libraries inside ``execute``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from mtp_bench.cli.command import Command
from mtp_bench.cpu_kernels import pin as pin_cpu_kernels
from mtp_bench.errors import EXIT_INTERRUPTED, BadInput, MtpBenchError, SuiteError

MAX_ERROR_LINES = 5
"""Most error lines printed for one failure; the rest are counted ("... and N more")."""

COMMAND_MODULES = ("run", "validate", "listing", "compare", "steps", "ui", "bench", "reproduce")
"""The modules of :mod:`mtp_bench.cli` that hold commands (``COMMANDS``), in the order ``--help`` lists them."""


def commands() -> list[Command]:
    return [command for module in COMMAND_MODULES
            for command in importlib.import_module(f"mtp_bench.cli.{module}").COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtp-bench",
        description="Does a multi-token prediction objective beat next-token training? Runs suites of "
        "train-and-evaluate trials and compares methods with confidence intervals.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in commands():
        command_parser = sub.add_parser(command.name, help=command.help)
        command.configure(command_parser)
        command_parser.set_defaults(spec=command)
    return parser


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
    spec: Command = args.spec
    return _guarded("mtp-bench", lambda: spec.execute(args), spec.interrupted, getattr(args, "suite", None))


def run_script(prog: str, script_main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """The entry point of a ``python -m`` tool: ``script_main(argv)``, its typed errors printed as ``prog: error:
    ...`` and turned into exit codes, as ``mtp-bench``'s are."""
    return _guarded(prog, lambda: script_main(argv), "interrupted")


def _guarded(prog: str, call: Callable[[], int], interrupted: str, suite: str | None = None) -> int:
    try:
        return int(call() or 0)
    except MtpBenchError as exc:
        for line in error_lines(exc, suite):
            print(f"{prog}: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM during `run`
        print(f"{prog}: {interrupted}", file=sys.stderr)
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
