"""Write the local data of the math-family CPU twin (``suites/math_tiny.yaml``): OpenMathInstruct-2-format training
rows and a MATH500-format test file, made from GSM8K problems or from the project's own templated word problems.

There is no local copy of OpenMathInstruct-2 or MATH, and the twin must run offline, so this command rewrites
problems we do have into their formats. Every solution is GSM8K's worked solution with the calculator notes
(``<<3*4=12>>``) removed and the ``#### n`` line replaced by a sentence ending in ``\\boxed{n}``, as OpenMathInstruct-2's
solutions end; so the twin runs the whole OpenMathInstruct-2 -> MATH500 -> ``math`` scorer path (problem-source
filter, boxed targets, math-verify on the model's last box), though its answers are GSM8K's plain numbers.

``OUTDIR/train_1M.jsonl``: one row per training problem (``problem``, ``generated_solution``, ``expected_answer``,
``problem_source``), the source cycling through ``gsm8k``, ``augmented_gsm8k``, ``math``, ``augmented_math`` so that
either filter of the paper (1M-GSM's or 1M-MATH's) keeps half of the rows and drops the rest.
``OUTDIR/test.jsonl``: MATH500's fields (``problem``, ``solution``, ``answer``, ``subject``, ``level``,
``unique_id``). The source data is read where it lies and never copied into the repository; the default output
folder (``results/math_tiny/scratch/data``) is ignored by git.

    python -m mtp_bench.tasks.make_math_twin results/math_tiny/scratch/data                 # from GSM8K
    python -m mtp_bench.tasks.make_math_twin OUTDIR --word-problems --train 2000 --test 200  # no data folder needed
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mtp_bench.data.files import read_jsonl
from mtp_bench.errors import DataError
from mtp_bench.tasks.gsm8k import gold_answer
from mtp_bench.tasks.twins import made_from, source_folder, write_jsonl

SOURCES = ("gsm8k", "augmented_gsm8k", "math", "augmented_math")
"""``problem_source`` values written in turn (OpenMathInstruct-2's four)."""

TRAIN_FILE = "train_1M.jsonl"  # the openmathinstruct2 task reads <path>/<split>.jsonl; split train_1M by default
TEST_FILE = "test.jsonl"  # the math500 task's default local test file
DEFAULT_OUT = "results/math_tiny/scratch/data"
DEFAULT_GSM8K = "../shared/data/gsm8k"
_CALCULATOR = re.compile(r"<<[^>]*>>")


def boxed_solution(gsm8k_answer: str) -> tuple[str, str]:
    """(solution ending in ``\\boxed{gold}``, gold) from a GSM8K answer: calculator notes dropped, the ``#### n`` line
    replaced by a closing sentence with the box."""
    gold = gold_answer(gsm8k_answer).replace(",", "")  # "1,000" -> "1000": math-verify reads a comma as a list
    work = _CALCULATOR.sub("", gsm8k_answer.rsplit("####", 1)[0]).strip()
    return f"{work}\nThe final answer is \\boxed{{{gold}}}.", gold


def omi_rows(problems: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenMathInstruct-2 training rows, ``problem_source`` cycling through :data:`SOURCES`."""
    rows = []
    for index, problem in enumerate(problems):
        solution, gold = boxed_solution(problem["answer"])
        rows.append({"problem": problem["question"].strip(), "generated_solution": solution,
                     "expected_answer": gold, "problem_source": SOURCES[index % len(SOURCES)]})
    return rows


def math500_rows(problems: Iterable[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    """MATH500-format test rows (``answer`` is the gold; ``solution`` ends in its box)."""
    rows = []
    for index, problem in enumerate(problems):
        solution, gold = boxed_solution(problem["answer"])
        rows.append({"problem": problem["question"].strip(), "solution": solution, "answer": gold,
                     "subject": "Prealgebra", "level": 1, "unique_id": f"{origin}/test/{index}"})
    return rows


def read_gsm8k(folder: Path, split: str, limit: int | None) -> list[dict[str, Any]]:
    """GSM8K rows of ``folder/<split>.jsonl`` (the first ``limit``), each checked for a ``#### n`` answer; errors
    name file:line."""
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: no such file; make_math_twin reads GSM8K's train.jsonl and test.jsonl from --gsm8k "
                        f"(default ${{MTP_BENCH_GSM8K_DIR}}, else {DEFAULT_GSM8K}), or use --word-problems")
    rows = read_jsonl(path, required=("question", "answer"), check=lambda row: _has_gold(row["answer"]))
    return rows[:limit] if limit is not None else rows


def _has_gold(answer: str) -> None:
    try:
        gold_answer(answer)
    except DataError as exc:
        raise ValueError(str(exc)) from None


def word_problems(n_train: int, n_test: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test) templated word problems in GSM8K's format (mtp_bench.tasks.word_problems, 2-3 steps)."""
    from mtp_bench.tasks.word_problems import WordProblemParams, WordProblems

    params = WordProblemParams(min_steps=2, max_steps=3, start_range=(2, 20), add_range=(1, 10),
                               factor_range=(2, 3), max_value=200, train_size=n_train, test_size=n_test, seed=seed)
    task = WordProblems(params)
    return task.records("train"), task.records("test")


def make_twin(out: Path, *, gsm8k: Path | None = None, n_train: int | None = None, n_test: int | None = None,
              seed: int = 0) -> dict[str, int]:
    """Write ``out/train_1M.jsonl`` and ``out/test.jsonl``; from GSM8K at ``gsm8k``, else from generated word
    problems (then ``n_train`` and ``n_test`` are required). Returns the row counts written."""
    if gsm8k is not None:
        train, test = read_gsm8k(gsm8k, "train", n_train), read_gsm8k(gsm8k, "test", n_test)
        origin = "gsm8k"
    else:
        if n_train is None or n_test is None:
            raise DataError("--word-problems needs --train and --test (how many problems to generate)")
        train, test = word_problems(n_train, n_test, seed)
        origin = "word_problems"
    if not train or not test:
        raise DataError(f"{gsm8k}: no problems read (empty train.jsonl or test.jsonl)")
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / TRAIN_FILE, omi_rows(train))
    write_jsonl(out / TEST_FILE, math500_rows(test, origin))
    return {TRAIN_FILE: len(train), TEST_FILE: len(test)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtp_bench.tasks.make_math_twin",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--gsm8k", default=None,
                        help=f"GSM8K folder (train.jsonl, test.jsonl); default $MTP_BENCH_GSM8K_DIR, else {DEFAULT_GSM8K}")
    source.add_argument("--word-problems", action="store_true", help="generate templated word problems instead")
    parser.add_argument("--train", type=int, default=None, help="training problems (default: all of GSM8K's)")
    parser.add_argument("--test", type=int, default=None, help="test problems (default: all of GSM8K's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated word problems")
    args = parser.parse_args(argv)
    for name in ("train", "test"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    gsm8k = None if args.word_problems else source_folder(args.gsm8k, "MTP_BENCH_GSM8K_DIR", DEFAULT_GSM8K)
    counts = make_twin(Path(args.out), gsm8k=gsm8k, n_train=args.train, n_test=args.test, seed=args.seed)
    print(f"wrote {counts[TRAIN_FILE]} training rows ({Path(args.out) / TRAIN_FILE}) and {counts[TEST_FILE]} test rows "
          f"({Path(args.out) / TEST_FILE}) from {made_from('GSM8K', gsm8k, 'generated word problems')}")
    return 0


if __name__ == "__main__":  # errors are printed by the command line's entry point, as mtp-bench's are
    from mtp_bench.cli.entry import run_script

    raise SystemExit(run_script("make_math_twin", main))
