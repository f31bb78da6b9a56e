"""The plugin API: the contracts every plugin satisfies and the helpers a method builds on, in one room.

Contracts (Protocols: nothing to inherit):

- :mod:`.method`   — :class:`Method` (required), :class:`SavesExtra`, :class:`SupportsDrafting`, :class:`Drafter`;
  :class:`MethodContext`; :func:`required_extra` (a loss that needs what ``prepare`` returned).
- :mod:`.batches`  — what a method exchanges with the shared loop: :class:`TokenBatch`, :class:`ModelBatch`,
  :class:`LossOutput`, ``IGNORE_INDEX``.
- :mod:`.task`     — :class:`Task`, its records as :class:`Example`\\ s, and its optional hooks as Protocols.
- :mod:`.scorer`   — :class:`Scorer`, :class:`EvalContext` (what a scorer may read), :class:`ScoreResult`, and the
  loop every generation scorer shares (:func:`score_each`).
- :mod:`.settings` — :class:`Settings`, the base of every plugin's ``Params`` (imports no torch).

Helpers for writing a method (the method toolkit): :mod:`.targets` (targets k steps ahead, summed losses),
:mod:`.masks` (attention patterns in the kernels' forms), :mod:`.anatomy` (a model's parts, found without copying its
code), :mod:`.decoding` (KV-cached forwards for drafters), :mod:`.heads` (what the heads methods share).

Plugins import these names from ``mtp_bench.api`` (``from mtp_bench.api import Method, TokenBatch``); each is loaded
on first use, so that a settings module that imports :class:`Settings` pulls in no torch and ``mtp-bench validate``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    **dict.fromkeys(["IGNORE_INDEX", "LossOutput", "ModelBatch", "TokenBatch"], "batches"),
    **dict.fromkeys(["Drafter", "Method", "MethodContext", "SavesExtra", "SupportsDrafting", "required_extra"],
                    "method"),
    **dict.fromkeys(["ChecksData", "DropsCondition", "Example", "HasOwnValidation", "HasVocabulary", "Task"],
                    "task"),
    **dict.fromkeys(["EvalContext", "ScoreResult", "Scorer", "is_periodic", "is_selectable", "lower_is_better",
                     "mean_scores", "score_each", "two_way_row"], "scorer"),
    "Settings": "settings",
    "DataError": "errors",
    **dict.fromkeys(["correct_sum", "count_targets", "cross_entropy_sum", "future_targets", "shifted_targets",
                     "target_loss"], "targets"),
    **dict.fromkeys(["allowed_attention", "model_attention_mask", "model_attention_masks", "plain_forward_inputs",
                     "sliding_window"], "masks"),
    **dict.fromkeys(["Anatomy", "UnsupportedModelError", "anatomy", "as_input_embedding", "capture_last_layer",
                     "layer_arguments", "new_block", "run_layer", "run_trunk"], "anatomy"),
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    home = "mtp_bench.errors" if _HOME[name] == "errors" else f"{__name__}.{_HOME[name]}"
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return list(__all__)
