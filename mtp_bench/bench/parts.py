"""``mtp-bench bench``: what each method costs and what the harness costs, written to ``results/benchmarks.md``.

Parts (``--parts``, comma-separated; :data:`mtp_bench.bench.PARTS` in report order):

- ``frontdoor``: wall and CPU time of ``mtp-bench --help`` (goal <= 1 s) and ``mtp-bench validate
  suites/quickstart.yaml`` (goal <= 2 s) as fresh processes, and whether either imports a heavy library;
- ``overhead``: NTP step throughput through the shared loop versus a hand-written Hugging Face loop (goal >= 0.97);
- ``methods``: step time, positions processed, FLOPs, extra parameters and peak memory of every installed method on
  the same GSM8K batches at two sizes, with MuToR's time ratio against its extra-token ratio (causal and
  bidirectional prompt);
- ``eval``: tokens/s of our batched greedy generation (the GSM8K scorer's) versus lm-eval's ``HFLM``, same prompts;
- ``speculative``: τ, acceptance and wall-clock speedup of self-speculative decoding with each drafting method,
  on tiny models trained briefly on synthetic word problems, and the speedup those τ imply at realistic depth;
- ``makespan`` (not in the default set): N equal trials on a local Ray against the ideal makespan;
- ``quickstart`` (not in the default set): the README's main job, ``mtp-bench run suites/quickstart.yaml``, timed
  whole as a fresh process (goal <= 5 minutes on an idle 2-core machine).

``--quick`` runs tiny sizes (the smoke test). Sections of parts not run are kept in an existing output file. The
command line (:mod:`mtp_bench.cli.bench`) reads the options and calls :func:`measure`; this module names the parts,
checks ``--parts`` and runs them.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
from pathlib import Path
from typing import Any

from mtp_bench.bench import PARTS
from mtp_bench.errors import UsageError

OPT_IN = ("makespan", "quickstart")  # they start Ray and load every core for minutes
DEFAULT_PARTS = tuple(part for part in PARTS if part not in OPT_IN)
DEFAULT_OUT = Path("results/benchmarks.md")
MODULES = {"overhead": "overhead", "methods": "method_cost", "eval": "eval_speed", "speculative": "speculative_cost",
           "makespan": "makespan", "frontdoor": "frontdoor", "quickstart": "quickstart"}


def parse_parts(text: str) -> list[str]:
    """The parts named in ``--parts``, in report order, without duplicates; :class:`UsageError` for unknown ones."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise UsageError(f"--parts: unknown part(s) {', '.join(unknown) or '(none given)'}; parts: {', '.join(PARTS)}")
    return [part for part in PARTS if part in parts]


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


def measure(parts: list[str], settings: Any, out: Path) -> None:
    """Run ``parts`` in order under ``settings`` (a :class:`~mtp_bench.bench.context.Settings`), showing each section
    and rewriting ``out`` after every part: an interrupted run keeps what it measured."""
    import torch  # here, not at the top: `mtp-bench --help` imports this module

    from mtp_bench.bench import report

    previous = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        sections = []
        for part in parts:
            print(f"mtp-bench bench: {part} ...", flush=True)
            module = importlib.import_module(f"mtp_bench.bench.{MODULES[part]}")
            section = module.run(settings)
            report.show(section)
            sections.append(section)
            report.write(out, sections)
    finally:
        torch.set_num_threads(previous)
