"""What every class-conditional image task shares: the record layout, the templates, and the hooks the pipeline
and the ``image`` scorer read.

A record is one image: ``label`` (its class), ``codes`` (an ``(H, W)`` integer grid), ``class_word`` (``c3``, the
prompt) and ``image_text`` (the codes as words, raster order: the answer). The ``image`` scorer reads the task itself
(the trial hands it over in the scoring context) for its classifier and validity checks. The sequence a model sees is
``c3 v0 v5 ... v16 <eos>``: one class token, ``H * W`` image tokens, then the end-of-sequence token.

Hooks an image task offers besides the :class:`~mtp_bench.api.task.Task` protocol (:class:`ImageTask` names the two
the scorer needs):

- ``vocabulary()``: every word its texts can hold (a preset's word tokenizer is built from it, so a class or code
  that training never shows still has an id, and no tokenizer scans millions of code words);
- ``condition_dropout()``: ``(null prompt, rate)`` for classifier-free guidance: during training the pipeline
  replaces a sequence's class word by ``c_null`` with probability ``rate`` (LlamaGen: 0.1);
- ``image_tokenizer()``: the :class:`~mtp_bench.data.image_codec.ImageTokenizer` between pixels and codes;
- ``num_classes``; and optionally ``check_sample(codes, label) -> bool``: an exact validity check of a generated
  grid (the synthetic task has one).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from mtp_bench.data.image_codec import NULL_CLASS, class_word, codes_text

PROMPT_TEMPLATE = "{class_word}"
ANSWER_TEMPLATE = " {image_text}"

CLASS_DROPOUT_DOC = """Classifier-free guidance training: the probability that a training sequence's class word is
replaced by ``c_null`` at a step (LlamaGen: 0.1). Drawn from the trial seed and step, so every method of a seed sees
the same replacements; held-out data is never dropped. 0 turns it off (then sample with ``cfg_scale: 1``)."""


@runtime_checkable
class ImageTask(Protocol):
    """What the ``image`` scorer reads of a task besides its records."""

    num_classes: int

    def image_tokenizer(self) -> Any: ...


def image_record(label: int, codes: np.ndarray, index: int) -> dict[str, Any]:
    """One image as a task record (see the module docstring)."""
    return {
        "index": index,
        "label": int(label),
        "codes": np.asarray(codes),
        "class_word": class_word(label),
        "image_text": codes_text(codes),
    }


def task_spec(task: Any) -> dict[str, Any]:
    """A task's name and params (JSON-safe): what identifies its real images (the scorer's classifier cache)."""
    return {"task": task.name, "params": task.params.model_dump(mode="json")}


def dropout_hook(rate: float) -> tuple[str, float] | None:
    return (NULL_CLASS, float(rate)) if rate > 0 else None
