"""lm-eval on the trained, in-memory model: ``HFLM(pretrained=model, tokenizer=tokenizer)``, no export round trip.

Tasks are found by ``TaskManager(include_path=...)`` in our shipped folder (``lm_eval_tasks/``: ``gsm8k_local``,
``gsm8k_cot_local``, ``gsm8k_mutor_local`` on GSM8K files, ``agieval_aqua_rat_local`` on AQuA-RAT's and
``minerva_math500_local`` on a MATH500-format file, each reading a local folder so that it runs offline; see
``lm_eval_local``), in the suite's ``include_path``, and in lm-eval's own registry (only built when a name is not found
in the first two: indexing every lm-eval task takes seconds).

Result keys such as ``exact_match,strict-match`` are not legal MLflow names; they become
``lm_eval/<task>/<metric>/<filter>`` (stderr: ``lm_eval/<task>/<metric>_stderr/<filter>``; ``none`` when a task has no
filter). Per-document rows carry ``index`` (lm-eval's ``doc_id``) and ``scores`` keyed ``<metric>/<filter>``, which
``mtp-bench compare`` pairs across methods. lm-eval's version and each task's version, shots, filters and data folder
are returned as params.

Evaluation never imports mlflow: this module returns numbers and the trial logs them.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from mtp_bench.errors import DataError, LmEvalError
from mtp_bench.evaluation.lm_eval_local import LOCAL_DATA
from mtp_bench.suite.config import LmEvalConfig

log = logging.getLogger(__name__)

TASK_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"
_ILLEGAL = re.compile(r"[^A-Za-z0-9_\-. ]")  # MLflow's metric-name alphabet, less "/" (our separator)


@dataclass
class LmEvalResult:
    metrics: dict[str, float] = field(default_factory=dict)  # "lm_eval/<task>/<metric>/<filter>" -> value
    params: dict[str, str] = field(default_factory=dict)  # "lm_eval.version", "lm_eval.<task>.num_fewshot", ...
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # task -> per-document rows


def lm_eval_version() -> str:
    return importlib.metadata.version("lm_eval")


def name_part(text: str) -> str:
    """One ``/``-free, MLflow-legal component of a metric name."""
    return _ILLEGAL.sub("_", str(text).replace("/", "_")).strip() or "_"


def metric_key(task: str, result_key: str) -> str | None:
    """``("gsm8k", "exact_match,strict-match")`` -> ``lm_eval/gsm8k/exact_match/strict-match``; None for keys
    that are not metrics (``alias``, ``name``, ``sample_len``)."""
    if "," not in result_key:
        return None
    metric, filter_name = result_key.split(",", 1)
    return f"lm_eval/{name_part(task)}/{name_part(metric)}/{name_part(filter_name)}"


def rename_results(results: dict[str, Any]) -> dict[str, float]:
    """Numeric task and group results of an lm-eval run under stable, MLflow-legal names."""
    metrics: dict[str, float] = {}
    for section in ("results", "groups"):
        for task, values in (results.get(section) or {}).items():
            for key, value in values.items():
                name = metric_key(task, key)
                if name is not None and isinstance(value, int | float) and not isinstance(value, bool):
                    metrics[name] = float(value)
    for task, counts in (results.get("n-samples") or {}).items():
        if isinstance(counts, dict) and "effective" in counts:
            metrics[f"lm_eval/{name_part(task)}/n_samples"] = float(counts["effective"])
    return metrics


def sample_rows(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """lm-eval's per-(document, filter) samples merged into one row per document, ordered by ``doc_id``."""
    rows: dict[int, dict[str, Any]] = {}
    for sample in samples:
        doc_id = int(sample["doc_id"])
        row = rows.setdefault(doc_id, {"index": doc_id, "target": sample.get("target"), "doc_hash":
                                       sample.get("doc_hash"), "response": _first(sample.get("resps")),
                                       "filtered": {}, "scores": {}})
        filter_name = name_part(sample.get("filter", "none"))
        row["filtered"][filter_name] = _first(sample.get("filtered_resps"))
        for metric in sample.get("metrics", []):
            value = sample.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool):
                row["scores"][f"{name_part(metric)}/{filter_name}"] = float(value)
    ordered = [rows[key] for key in sorted(rows)]
    for row in ordered:  # the first score as the row's verdict, when it is a 0/1 one (strict-match for GSM8K)
        first = next(iter(row["scores"].values()), None)
        if first in (0.0, 1.0):
            row["correct"] = bool(first)
    return ordered


def _first(value: Any) -> Any:
    while isinstance(value, list) and value:
        value = value[0]
    return value


# ------------------------------------------------------------------------------------------------------ tasks ----
def resolve_data_dir(cfg: LmEvalConfig, fallback: str | Path | None = None, family: str = "gsm8k") -> Path | None:
    """The folder a shipped task of a data family reads: ``evaluation.lm_eval.data_dir``, else the family's variable
    (``$MTP_BENCH_GSM8K_DIR``, ``$MTP_BENCH_AQUA_DIR``, ``$MTP_BENCH_MATH500_DIR``), else, for GSM8K tasks only,
    ``fallback`` (the trial's own GSM8K folder), else None (the YAML's own ``dataset_kwargs.data_dir``)."""
    env = LOCAL_DATA[family].env
    for candidate in (cfg.data_dir, os.environ.get(env) or None, fallback if family == "gsm8k" else None):
        if candidate:
            return Path(candidate).expanduser().resolve()
    return None


def _includes(cfg: LmEvalConfig) -> list[Path]:
    paths = [TASK_DIR]
    if cfg.include_path:
        extra = Path(cfg.include_path).expanduser().resolve()
        if not extra.is_dir():
            raise LmEvalError(f"evaluation.lm_eval.include_path: {extra} is not a directory")
        paths.append(extra)
    return paths


_FULL_MANAGERS: dict[tuple[str, ...], Any] = {}  # include paths -> TaskManager over lm-eval's registry too


def task_manager(cfg: LmEvalConfig) -> Any:
    """A TaskManager that knows every requested task; lm-eval's own registry is indexed only when needed (and once
    per process and include path: indexing takes seconds)."""
    from lm_eval.tasks import TaskManager

    includes = [str(p) for p in _includes(cfg)]
    local = TaskManager(include_path=includes, include_defaults=False)
    if all(name in local.all_tasks for name in cfg.tasks):
        return local
    manager = _FULL_MANAGERS.get(tuple(includes))
    if manager is None:
        manager = _FULL_MANAGERS[tuple(includes)] = TaskManager(include_path=includes, include_defaults=True)
    problem = unknown_tasks(cfg.tasks, manager.all_tasks)
    if problem:
        raise LmEvalError(problem)
    return manager


def unknown_tasks(requested: list[str], known: list[str]) -> str | None:
    """A message naming the requested tasks lm-eval does not know (with close matches), or None."""
    problems = []
    for name in (n for n in requested if n not in known):
        hint = difflib.get_close_matches(name, known, n=3)
        problems.append(f"{name!r}" + (f" (did you mean {', '.join(hint)}?)" if hint else ""))
    if not problems:
        return None
    return (f"evaluation.lm_eval.tasks: unknown lm-eval task {'; '.join(problems)}; offline tasks shipped "
            f"with mtp-bench: {', '.join(shipped_tasks())}")


def shipped_tasks() -> list[str]:
    return sorted(_read_yaml(path, resolve=False)["task"] for path in TASK_DIR.glob("*.yaml"))


def _read_yaml(path: Path, resolve: bool) -> dict[str, Any]:
    """A shipped task YAML; its ``!function pkg.module.name`` tags become the functions (``resolve``) or strings.
    Ours name importable modules only (lm-eval's or ``lm_eval_local``), so no file-relative lookup is needed."""

    class Loader(yaml.SafeLoader):
        pass

    def function(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        qualified = loader.construct_scalar(node)
        if not resolve:
            return qualified
        module, _, name = qualified.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AssertionError, AttributeError) as exc:  # lm-eval's minerva utils assert antlr4 4.11
            raise LmEvalError(f"lm-eval task in {path.name} needs {qualified}, which cannot be imported "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())})") from exc

    Loader.add_constructor("!function", function)
    return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 - a SafeLoader with one extra tag


def _is_shipped(manager: Any, name: str) -> bool:
    entry = manager.task_index.get(name)
    path = getattr(entry, "yaml_path", None)
    return path is not None and Path(path).resolve().parent == TASK_DIR


def _task_spec(manager: Any, name: str, cfg: LmEvalConfig, fallback: str | Path | None) -> str | dict[str, Any]:
    """A shipped task as an inline config with its functions imported and its data folder filled in and checked
    (files present, rows well formed: errors name file:line); any other task by name."""
    if not _is_shipped(manager, name):
        return name
    spec = _read_yaml(Path(manager.task_index[name].yaml_path), resolve=True)
    family = (spec.get("metadata") or {}).get("local_data", "gsm8k")
    data = LOCAL_DATA[family]
    data_dir = resolve_data_dir(cfg, fallback, family)
    if data_dir is not None:
        spec["dataset_kwargs"]["data_dir"] = str(data_dir)
    folder = Path(spec["dataset_kwargs"]["data_dir"]).expanduser().resolve()
    files = list(spec["dataset_kwargs"]["data_files"].values())
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise LmEvalError(f"lm-eval task {name!r} reads {folder}, which lacks {', '.join(missing)}; set "
                          f"evaluation.lm_eval.data_dir or ${data.env} to a folder with {data.describe}")
    if data.check is not None:
        for file in files:
            try:
                data.check(folder / file)
            except DataError as exc:
                raise LmEvalError(f"lm-eval task {name!r}: {exc}") from None
    spec["dataset_kwargs"]["data_dir"] = str(folder)
    return spec


def load_tasks(cfg: LmEvalConfig, data_dir: str | Path | None) -> tuple[Any, dict[str, Any]]:
    """(task manager, {name: Task}) for the configured tasks, refusing code-executing tasks unless allowed;
    ``data_dir`` is the fallback GSM8K folder (see :func:`resolve_data_dir`)."""
    manager = task_manager(cfg)
    specs = [_task_spec(manager, name, cfg, data_dir) for name in cfg.tasks]
    try:
        loaded = manager.load(specs)
    except LmEvalError:
        raise
    except Exception as exc:  # dataset download failures offline, broken YAML: name the tasks involved
        raise LmEvalError(f"lm-eval could not load tasks {', '.join(cfg.tasks)}: {type(exc).__name__}: {exc}. "
                          f"Offline, use the shipped local tasks ({', '.join(shipped_tasks())}).") from exc
    tasks = loaded["tasks"]
    unsafe = [name for name, task in tasks.items() if getattr(task, "UNSAFE_CODE", False)]
    if unsafe and not cfg.allow_unsafe_code:
        raise LmEvalError(f"lm-eval task(s) {', '.join(unsafe)} execute model-written code; set "
                          "evaluation.lm_eval.allow_unsafe_code: true to run them")
    if cfg.max_gen_toks is not None:
        for task in tasks.values():
            if task.get_config("output_type") == "generate_until":
                task.set_config(key="generation_kwargs", value={"max_gen_toks": cfg.max_gen_toks}, update=True)
    return manager, tasks


_LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow"}  # dataset_path values that read files, not the hub


def _reads_hub(manager: Any, name: str) -> bool:
    """True for a task (or group) whose data comes from the hub (a dataset id that is not a local builder or
    folder); loading it would download its dataset."""
    config = getattr(manager.task_index.get(name), "cfg", None) or {}
    path = config.get("dataset_path")
    return not (isinstance(path, str) and (path in _LOCAL_BUILDERS or Path(path).expanduser().exists()))


def _import_functions(manager: Any, name: str) -> None:
    """Import the functions a task's YAML names, without loading its data, so that a missing optional dependency
    fails now, not after training (lm-eval's minerva_math utils refuse to import without antlr4 4.11: lm-eval's math
    extra). Other failures (a module that fetches from the hub on import, offline) are left to the trial."""
    path = getattr(manager.task_index.get(name), "yaml_path", None)
    if path is None:
        return
    try:
        from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval's own loader (includes, !function)
    except ImportError:  # another lm-eval layout: the trial finds out when it runs the task
        return
    try:
        load_yaml(path, resolve_func=True)
    except (ImportError, AssertionError) as exc:
        raise LmEvalError(f"lm-eval task {name!r} cannot import the functions its YAML names "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())})") from exc
    except Exception:  # noqa: BLE001 - not a missing dependency; running the task will tell
        log.debug("lm-eval task %s: importing its functions failed", name, exc_info=True)


def preflight(cfg: LmEvalConfig, data_dir: str | Path | None = None) -> None:
    """Check the configured tasks without running them, so that a typo fails before training rather than after it:
    every name must be known; tasks reading local files are loaded (data folders, the unsafe-code flag); tasks whose
    data is on the hub (``minerva_math500``, ``agieval_aqua_rat``) are checked by name, by their YAML's
    ``unsafe_code`` and by importing the functions their YAML names (``minerva_math500``'s need lm-eval's math extra)
    only, so that ``validate`` stays offline: their data is fetched when the trial runs lm-eval."""
    if not cfg.tasks:
        return
    manager = task_manager(cfg)
    hub = [name for name in cfg.tasks if not _is_shipped(manager, name) and _reads_hub(manager, name)]
    unsafe = [name for name in hub if (getattr(manager.task_index.get(name), "cfg", None) or {}).get("unsafe_code")]
    if unsafe and not cfg.allow_unsafe_code:
        raise LmEvalError(f"lm-eval task(s) {', '.join(unsafe)} execute model-written code; set "
                          "evaluation.lm_eval.allow_unsafe_code: true to run them")
    for name in hub:
        _import_functions(manager, name)
    local = [name for name in cfg.tasks if name not in hub]
    if local:
        load_tasks(cfg.model_copy(update={"tasks": local}), data_dir)


# -------------------------------------------------------------------------------------------------------- run ----
def plain_model(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (its LoRA layers stay active), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def run_lm_eval(
    model: nn.Module,
    tokenizer: Any,
    cfg: LmEvalConfig,
    *,
    data_dir: str | Path | None = None,
    precision: torch.dtype | None = None,
    log_samples: bool = True,
    bidirectional_prompt: bool = False,
) -> LmEvalResult:
    """Run ``cfg.tasks`` on an in-memory causal LM; ``data_dir`` is the fallback GSM8K folder (see
    :func:`resolve_data_dir`). With ``bidirectional_prompt`` generation tasks decode as our scorers do: the context
    attends to itself both ways in the prefill (log-likelihood tasks stay causal; recorded as a param)."""
    if not cfg.tasks:
        return LmEvalResult()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    if bidirectional_prompt:
        HFLM = bidirectional_prompt_lm(HFLM)  # noqa: N806 - the class lm-eval is handed

    manager, tasks = load_tasks(cfg, data_dir)
    model = plain_model(model)
    was_training = model.training
    model.eval()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size, mixed_precision_dtype=precision)
        results = simple_evaluate(model=lm, tasks=list(tasks.values()), task_manager=manager,
                                  num_fewshot=cfg.num_fewshot, limit=cfg.limit, log_samples=log_samples,
                                  confirm_run_unsafe_code=cfg.allow_unsafe_code)
    finally:
        model.train(was_training)
    if results is None:  # lm-eval returns nothing on non-zero ranks
        return LmEvalResult()
    result = LmEvalResult(metrics=rename_results(results), params=_params(results, tasks, cfg))
    result.params["lm_eval.prompt_attention"] = (
        "bidirectional prefill in generation, causal log-likelihoods" if bidirectional_prompt else "causal")
    if log_samples:
        result.samples = {name_part(task): sample_rows(rows) for task, rows in (results.get("samples") or {}).items()}
    return result


def _params(results: dict[str, Any], tasks: dict[str, Any], cfg: LmEvalConfig) -> dict[str, str]:
    params = {"lm_eval.version": str(results.get("lm_eval_version") or lm_eval_version())}
    configs = results.get("configs") or {}
    for task in tasks:
        key = f"lm_eval.{name_part(task)}"
        config = configs.get(task, {})
        filters = [f.get("name", "?") for f in config.get("filter_list") or []] or ["none"]
        params[f"{key}.task_version"] = str((results.get("versions") or {}).get(task))
        params[f"{key}.num_fewshot"] = str((results.get("n-shot") or {}).get(task, config.get("num_fewshot")))
        params[f"{key}.filters"] = ",".join(filters)
        params[f"{key}.limit"] = str(cfg.limit)
        params[f"{key}.generation_kwargs"] = str(config.get("generation_kwargs"))
        data_dir = (config.get("dataset_kwargs") or {}).get("data_dir")
        params[f"{key}.dataset"] = str(data_dir or config.get("dataset_path"))
    return params


def bidirectional_prompt_lm(hflm: type) -> type:
    """A subclass of lm-eval's ``HFLM`` whose generation runs our greedy KV-cache decoder with the context attending
    to itself both ways (the suite's ``bidirectional_prompt``), so lm-eval scores a model as it was trained. lm-eval
    still cuts the text at its stop strings; sampling is refused (our decoder is greedy)."""
    from mtp_bench.evaluation.generate import greedy_generate

    class BidirectionalPromptHFLM(hflm):
        def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **kwargs: Any):
            mask = kwargs.pop("attention_mask", None)
            if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0.0) > 0.0:
                raise LmEvalError("bidirectional_prompt decodes greedily; this lm-eval task samples "
                                  f"({kwargs}): set its generation_kwargs to do_sample: false")
            mask = torch.ones_like(context) if mask is None else mask
            prompts = [row[keep.bool()].tolist() for row, keep in zip(context, mask)]  # lm-eval pads on the left
            pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eot_token_id
            with torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                enabled=self.mixed_precision_dtype is not None):
                continuations = greedy_generate(self.model, prompts, eos_id=self.eot_token_id, pad_id=pad_id,
                                                max_new_tokens=max_length - context.size(1),
                                                batch_size=len(prompts), bidirectional_prompt=True)
            width = max((len(tokens) for tokens in continuations), default=0)
            padded = torch.full((len(prompts), width), pad_id, dtype=context.dtype, device=context.device)
            for row, tokens in enumerate(continuations):
                padded[row, : len(tokens)] = torch.tensor(tokens, dtype=context.dtype)
            return torch.cat([context, padded], dim=1)

    return BidirectionalPromptHFLM
