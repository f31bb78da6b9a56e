"""``mtp-bench bench``: what each method costs and what the harness costs, written to ``results/benchmarks.md``. The
parts and what each measures are described in :mod:`mtp_bench.bench.parts`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtp_bench.bench import PARTS
from mtp_bench.bench.parts import DEFAULT_OUT, DEFAULT_PARTS, command_line, parse_parts
from mtp_bench.cli.command import Command
from mtp_bench.errors import EXIT_OK, UsageError

DESCRIPTION = "Measure what each method and the harness cost; writes results/benchmarks.md"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help=f"comma-separated parts among {', '.join(PARTS)} (default: {','.join(DEFAULT_PARTS)})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of every code path")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"markdown report (default {DEFAULT_OUT})")
    parser.add_argument("--model", default=None,
                        help="model of the parts that train or decode (not makespan's): a preset (mtp-bench presets), "
                        "hub id or local directory (default tiny-llama; --quick: micro-llama)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when visible), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default 1, what a Ray trial with cpus_per_trial 1 gets: on a "
                        "shared machine more threads than free cores make every step several times slower)")


def execute(args: argparse.Namespace) -> int:
    parts = parse_parts(args.parts)  # before the heavy imports: a typo is answered at once
    threads = 1 if args.threads is None else args.threads
    if threads < 1:
        raise UsageError("--threads must be at least 1")

    from mtp_bench.bench.context import Settings
    from mtp_bench.bench.parts import measure
    from mtp_bench.bench.sizes import sizes_for

    settings = Settings(sizes=sizes_for(args.quick, args.model), device=args.device, threads=threads,
                        command=command_line(args, parts, threads))
    measure(parts, settings, args.out)
    print(f"mtp-bench bench: wrote {args.out}")
    return EXIT_OK


COMMANDS = (Command("bench", DESCRIPTION, execute, configure,
                    "bench interrupted; the parts measured so far are written"),)
