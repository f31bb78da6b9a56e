"""What a suite's model scores before any training: its test split through the suite's scorers and its lm-eval
tasks, on the model exactly as loaded — the reference a fine-tuning run starts from.

``python -m mtp_bench.bench.zero_shot SUITE [key=value ...] --output DIR`` reads the suite as ``mtp-bench run`` does
(overrides, every check before anything starts: exit 2 with one line per problem), builds the first trial's model,
tokenizer and splits (methods, training and the grid do not enter: nothing trains), and writes ``DIR/zero_shot.json``
(metrics, settings, time, commit, command) and the per-question rows ``DIR/predictions_<scorer|task>.jsonl``
(completion, extracted answer, gold, correct; no question text).
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path
from typing import Any


def evaluate(suite_path: str, overrides: list[str], output: Path) -> dict[str, Any]:
    """Score the suite's model zero-shot and write ``output`` (see the module docstring); returns the summary."""
    import torch

    from mtp_bench.evaluation.context import ScoringContext
    from mtp_bench.evaluation.lm_eval_bridge import run_lm_eval
    from mtp_bench.evaluation.lm_eval_local import lm_eval_fallback_dir
    from mtp_bench.evaluation.scoring import build_scorers, score_split
    from mtp_bench.preflight import check_all
    from mtp_bench.suite import expand_grid, load_suite
    from mtp_bench.tracking.provenance import git_commit
    from mtp_bench.trial.build import prepare

    suite = load_suite(suite_path, overrides)
    trials = expand_grid(suite)
    check_all(suite, trials, local_run=True)
    trial = trials[0]
    if trial.train.torch_threads:
        torch.set_num_threads(trial.train.torch_threads)
    started = time.perf_counter()
    p = prepare(trial)
    model = p.method.export(p.module.model, p.module.extra).eval()  # the plain pretrained model, untouched
    loaded = time.perf_counter() - started
    cfg = trial.evaluation
    context = ScoringContext(model=model, tokenizer=p.tokenizer, method=p.method, batch_size=cfg.batch_size,
                          max_new_tokens=cfg.max_new_tokens, bidirectional_prompt=trial.bidirectional_prompt,
                          autocast_dtype=p.precision)
    timings: dict[str, float] = {"load": loaded}
    started = time.perf_counter()
    scored = score_split(context, build_scorers(cfg), p.splits.test, "test")
    timings["scorers"] = time.perf_counter() - started
    started = time.perf_counter()
    lm = run_lm_eval(model, p.tokenizer, cfg.lm_eval, data_dir=lm_eval_fallback_dir(trial.data.task, trial.data.params),
                     precision=p.precision, bidirectional_prompt=trial.bidirectional_prompt)
    timings["lm_eval"] = time.perf_counter() - started
    summary = {
        "suite": suite.name,
        "command": " ".join(shlex.quote(w) for w in ["python", "-m", "mtp_bench.bench.zero_shot", suite_path,
                                                      *overrides, "--output", str(output)]),
        "commit": git_commit(mark_local=True),
        "model": trial.model.model_dump(mode="json", exclude_defaults=True),
        "parameters": sum(q.numel() for q in model.parameters()),
        "test_examples": len(p.splits.test),
        "bidirectional_prompt": trial.bidirectional_prompt,
        "max_new_tokens": cfg.max_new_tokens,
        "device": str(p.device),
        "torch_threads": torch.get_num_threads(),
        "seconds": {key: round(value, 1) for key, value in timings.items()},
        "metrics": {**scored.metrics, **lm.metrics},
        "lm_eval_params": lm.params,
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "zero_shot.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    for name, rows in {**scored.samples, **lm.samples}.items():
        # the dataset's own text (question, reference solution) stays out: completions, answers and scores only
        kept = [{k: v for k, v in row.items() if k not in ("prompt", "question", "doc", "arguments", "target")}
                for row in rows]
        (output / f"predictions_{name}.jsonl").write_text(
            "".join(json.dumps(row, default=str) + "\n" for row in kept), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtp_bench.bench.zero_shot", description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", help="suite YAML (its model, data, evaluation and first seed are used)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, as for mtp-bench run")
    parser.add_argument("--output", type=Path, required=True, help="folder for zero_shot.json and the predictions")
    args = parser.parse_args(argv)
    summary = evaluate(args.suite, args.overrides, args.output)
    for name, value in sorted(summary["metrics"].items()):
        print(f"{name}: {value:.4g}")
    print(f"seconds: {summary['seconds']}; wrote {args.output / 'zero_shot.json'}")
    return 0


if __name__ == "__main__":  # errors are printed by the command line's entry point, as mtp-bench's are
    from mtp_bench.cli.entry import run_script

    raise SystemExit(run_script("zero_shot", main))
