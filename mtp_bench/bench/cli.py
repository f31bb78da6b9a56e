"""``mtp-bench bench``: what each method costs and what the harness costs, written to ``results/benchmarks.md``.

Parts (``--parts``, comma-separated):

- ``overhead``: NTP step throughput through the shared loop versus a hand-written Hugging Face loop (goal >= 0.97);
- ``methods``: step time, positions processed, extra parameters and peak memory of every installed method on the
  same GSM8K batches, with MuToR's time ratio against its extra-token ratio (causal and bidirectional prompt);
- ``eval``: tokens/s of our batched greedy generation (the GSM8K scorer's) versus lm-eval's ``HFLM``, same prompts;
- ``speculative``: τ, acceptance and wall-clock speedup of self-speculative decoding with each drafting method,
  on tiny models trained briefly on synthetic word problems;
- ``makespan`` (not in the default set): N equal trials on a local Ray against the ideal makespan.

``--quick`` runs tiny sizes (the smoke test). Sections of parts not run are kept in an existing output file.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path

PARTS = ("overhead", "methods", "eval", "speculative", "makespan", "frontdoor")
DEFAULT_PARTS = ("overhead", "methods", "eval", "speculative")
DEFAULT_OUT = Path("results/benchmarks.md")
MODULES = {"overhead": "overhead", "methods": "method_cost", "eval": "eval_speed", "speculative": "speculative_cost",
           "makespan": "makespan", "frontdoor": "frontdoor"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help=f"comma-separated parts among {', '.join(PARTS)} (default: {','.join(DEFAULT_PARTS)})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of every code path")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"markdown report (default {DEFAULT_OUT})")
    parser.add_argument("--model", default=None,
                        help="model of every part but makespan: a preset (mtp-bench presets), hub id or local "
                        "directory (default tiny-llama; --quick: micro-llama)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when visible), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default 1, what a Ray trial with cpus_per_trial 1 gets: on a "
                        "shared machine more threads than free cores make every step several times slower)")


def parse_parts(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise ValueError(f"--parts: unknown part(s) {', '.join(unknown) or '(none given)'}; parts: {', '.join(PARTS)}")
    return [part for part in PARTS if part in parts]  # report order, no duplicates


def command_line(args: argparse.Namespace, parts: list[str], threads: int) -> str:
    """The equivalent command, with every choice spelled out (what reproduces the tables)."""
    words = ["mtp-bench", "bench", "--parts", ",".join(parts)]
    if args.quick:
        words.append("--quick")
    if args.model:
        words += ["--model", args.model]
    if args.device != "auto":
        words += ["--device", args.device]
    words += ["--threads", str(threads), "--out", str(args.out)]
    return " ".join(shlex.quote(word) for word in words)


def main(args: argparse.Namespace) -> int:
    import torch  # here, not at the top: `mtp-bench --help` imports this module

    from mtp_bench.bench import report
    from mtp_bench.bench.context import Settings
    from mtp_bench.bench.sizes import sizes_for
    from mtp_bench.errors import UsageError

    try:
        parts = parse_parts(args.parts)
    except ValueError as exc:
        raise UsageError(str(exc)) from None  # mtp_bench.cli prints it and exits 2
    threads = args.threads or 1
    if threads < 1:
        raise UsageError("--threads must be at least 1")
    settings = Settings(sizes=sizes_for(args.quick, args.model), device=args.device, threads=threads,
                        command=command_line(args, parts, threads))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sections = []
        for part in parts:
            print(f"mtp-bench bench: {part} ...", flush=True)
            module = importlib.import_module(f"mtp_bench.bench.{MODULES[part]}")
            section = module.run(settings)
            report.show(section)
            sections.append(section)
            report.write(args.out, sections)  # after every part: an interrupted run keeps what it measured
    finally:
        torch.set_num_threads(previous)
    print(f"mtp-bench bench: wrote {args.out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m mtp_bench.bench.cli", description=__doc__.split("\n\n")[0])
    configure(parser)
    sys.exit(main(parser.parse_args()))
