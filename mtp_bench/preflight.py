"""Checks between a valid suite and the first trial: data content, lm-eval tasks, and (for ``run``) what this machine
can give. Each fails with a :class:`~mtp_bench.errors.SuiteError` naming the key path or file:line, before Ray starts
and before any run is recorded, so a suite that cannot start leaves nothing behind.

Data and lm-eval checks run once per distinct configuration of the grid. Nothing here imports torch unless a suite
asks for a GPU (then torch answers whether one is visible).
"""

from __future__ import annotations

import os

from mtp_bench import registry
from mtp_bench.errors import DataError, SuiteError
from mtp_bench.suite.config import SuiteConfig, TrialConfig
from mtp_bench.suite.presets import PACKAGED


def check_data(trials: list[TrialConfig]) -> None:
    """Each distinct data configuration: the task's ``preflight`` hook (files exist, are readable, parse, are
    non-empty) and a validation split that leaves training examples."""
    problems: list[str] = []
    seen: set[str] = set()
    for trial in trials:
        data = trial.data
        key = data.model_dump_json()
        if key in seen:
            continue
        seen.add(key)
        task_cls = registry.load(registry.TASKS, data.task)
        if data.validation_size and data.params.get("validation") == "own":  # a task's own validation split
            problems.append(f"data.validation_size: {data.validation_size}, but data.params.validation is own (the "
                            "dataset's own validation split): set data.validation_size to 0")
            continue
        hook = getattr(task_cls, "preflight", None)
        if hook is None:
            continue
        try:
            n_train = hook(registry.build(registry.TASKS, data.task, data.params))
        except DataError as exc:
            problems.append(f"data: {' '.join(str(exc).split())}")
            continue
        if n_train is None:
            continue
        size = data.validation_size
        n_validation = int(size) if size >= 1 else round(size * n_train)
        if n_validation >= n_train:
            problems.append(f"data.validation_size: {size} leaves no training examples (the {data.task} training "
                            f"split has {n_train})")
    if problems:
        raise SuiteError(sorted(set(problems), key=problems.index))


def check_models(trials: list[TrialConfig]) -> None:
    """Each distinct GGUF model source (a packaged preset, ``model.gguf_file``, a ``.gguf`` path): the package or file
    is there and transformers can turn it into a causal LM. A file already converted costs only its hash; the others
    are read (a few seconds, and the first torch import)."""
    if not any(t.model.gguf_file or t.model.preset in PACKAGED or str(t.model.pretrained).lower().endswith(".gguf")
               for t in trials):
        return
    from mtp_bench.models.gguf import GgufError, check, source_file

    problems: list[str] = []
    for model in {trial.model.model_dump_json(): trial.model for trial in trials}.values():
        key = "model.preset" if model.preset else "model.gguf_file" if model.gguf_file else "model.pretrained"
        try:
            path = source_file(model)
            if path is not None:
                check(path)
        except GgufError as exc:
            problem = f"{key}: {' '.join(str(exc).split())}"
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise SuiteError(problems)


def check_lm_eval(trials: list[TrialConfig]) -> None:
    """Load every distinct lm-eval configuration of the grid (task names, data folders, the unsafe-code flag) as the
    trials will, so that a typo fails now rather than in every trial. lm-eval is imported only when a suite uses it."""
    if not any(trial.evaluation.lm_eval.tasks for trial in trials):
        return
    from mtp_bench.evaluation.lm_eval_bridge import LmEvalError, preflight
    from mtp_bench.evaluation.lm_eval_local import lm_eval_fallback_dir

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
            if not problem.startswith("evaluation.lm_eval"):
                problem = f"evaluation.lm_eval: {problem}"
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise SuiteError(problems)


def machine_cpus() -> int:
    """CPUs this process may use (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cuda_devices() -> int:
    import torch  # only suites that ask for a GPU get here

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_local_resources(suite: SuiteConfig, trials: list[TrialConfig]) -> None:
    """A run on this machine (local Ray or in-process): refuse what it can never give, before Ray starts. A run
    sent to a cluster is checked by the scheduler against the cluster instead."""
    problems: list[str] = []
    res = suite.resources
    cpus = machine_cpus()
    if res.cpus_per_trial * res.num_workers > cpus:
        problems.append(f"resources.cpus_per_trial: {res.cpus_per_trial:g} CPUs x {res.num_workers} worker(s) per "
                        f"trial, but this machine has {cpus}")
    devices = {trial.train.device for trial in trials}
    wants_cuda = res.gpus_per_trial > 0 or any(device.startswith("cuda") for device in devices)
    gpus = _cuda_devices() if wants_cuda else 0
    if res.gpus_per_trial > 0 and res.gpus_per_trial * res.num_workers > gpus:
        have = f"{gpus} visible" if gpus else "none visible (CUDA is not available)"
        problems.append(f"resources.gpus_per_trial: {res.gpus_per_trial:g} GPU(s) x {res.num_workers} worker(s) "
                        f"per trial, but this machine has {have}")
    for device in sorted(devices):
        index = device.partition(":")[2]
        if device.startswith("cuda") and (gpus == 0 or (index.isdigit() and int(index) >= gpus)):
            problems.append(f"train.device: {device!r}, but this machine has "
                            f"{f'{gpus} CUDA device(s)' if gpus else 'no CUDA device'}")
    if problems:
        raise SuiteError(problems)


def check_all(suite: SuiteConfig, trials: list[TrialConfig], *, local_run: bool) -> None:
    """Everything ``run`` checks before starting: data, lm-eval tasks and, on this machine, resources."""
    check_data(trials)
    check_models(trials)
    check_lm_eval(trials)
    if local_run:
        check_local_resources(suite, trials)


__all__ = ["check_all", "check_data", "check_lm_eval", "check_models", "check_local_resources", "machine_cpus"]
