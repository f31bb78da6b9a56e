"""The plugin API: the stable names an out-of-tree method (or a test) imports, re-exported from the method toolkit
(:mod:`mtp_bench.method`). Code inside mtp_bench imports the toolkit's modules directly.

- Types: :class:`TokenBatch`, :class:`ModelBatch`, :class:`LossOutput`, :class:`MethodContext`, ``IGNORE_INDEX``.
- Protocols: :class:`Method` (required), :class:`SavesExtra`, :class:`SupportsDrafting` and :class:`Drafter`.
- Helpers: targets and summed losses, attention masks in the kernels' forms, and the model-surgery functions of
  :mod:`mtp_bench.method.anatomy` (find a model's layers, run a copy of its last layer, capture hidden states).

How losses are normalised and named: :mod:`mtp_bench.method.protocol`.
"""

from __future__ import annotations

from mtp_bench.method.anatomy import (
    Anatomy,
    UnsupportedModelError,
    anatomy,
    as_input_embedding,
    capture_last_layer,
    layer_arguments,
    new_block,
    run_layer,
    run_trunk,
)
from mtp_bench.method.batches import IGNORE_INDEX, LossOutput, ModelBatch, TokenBatch
from mtp_bench.method.masks import (
    allowed_attention,
    model_attention_mask,
    model_attention_masks,
    plain_forward_inputs,
    sliding_window,
)
from mtp_bench.method.protocol import Drafter, Method, MethodContext, SavesExtra, SupportsDrafting
from mtp_bench.method.targets import (
    correct_sum,
    count_targets,
    cross_entropy_sum,
    future_targets,
    shifted_targets,
    target_loss,
)

__all__ = [
    "IGNORE_INDEX",
    "Anatomy",
    "Drafter",
    "LossOutput",
    "Method",
    "MethodContext",
    "ModelBatch",
    "SavesExtra",
    "SupportsDrafting",
    "TokenBatch",
    "UnsupportedModelError",
    "allowed_attention",
    "anatomy",
    "as_input_embedding",
    "capture_last_layer",
    "correct_sum",
    "count_targets",
    "cross_entropy_sum",
    "future_targets",
    "layer_arguments",
    "model_attention_mask",
    "model_attention_masks",
    "new_block",
    "plain_forward_inputs",
    "run_layer",
    "run_trunk",
    "shifted_targets",
    "sliding_window",
    "target_loss",
]
