"""From task records to batches: splits, tokenization, the step sampler and collation, and
:class:`TrainingBatches`, which hands the loop a rank's micro-batches of each optimiser step in one call.

The sampler treats the training data as a stream of shuffled epochs: optimiser step s consumes the next
``batch_size x grad_accum x world_size`` examples of the stream. Every data-parallel rank sees the same stream, so a
run on W workers trains on exactly the examples a single process with W times the accumulation would.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal

import torch

from mtp_bench.api.batches import IGNORE_INDEX, TokenBatch
from mtp_bench.api.task import Example, HasOwnValidation
from mtp_bench.errors import DataError

# Validation is carved with a fixed seed, independent of the trial's seed: every method and seed of a suite is
# selected on the same examples.
VALIDATION_SEED = 20250513


def format_examples(
    records: list[dict[str, Any]], prompt_template: str, answer_template: str, source: str
) -> list[Example]:
    """Each record as an :class:`~mtp_bench.api.task.Example`, through the templates (a missing field names the
    record)."""
    examples = []
    for index, record in enumerate(records):
        try:
            prompt = prompt_template.format(**record)
            answer = answer_template.format(**record)
        except (KeyError, IndexError) as exc:
            raise DataError(f"{source}: record {index} has no field {exc} used by the template") from None
        examples.append(Example(prompt=prompt, answer=answer, record=record))
    return examples


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]


def build_splits(
    task: Any,
    *,
    prompt_template: str | None = None,
    answer_template: str | None = None,
    validation_size: int | float = 0,
    train_limit: int | None = None,
    eval_limit: int | None = None,
) -> Splits:
    """The task's examples, formatted. Validation is carved from training (``validation_size`` examples, drawn with
    a fixed seed), unless the task has an optional ``validation_records()`` hook that returns records: a dataset's
    own validation split (e.g. ``validation: own`` of AQuA-RAT, SAMSum, DialogSum), and then nothing is carved."""
    prompt_template = prompt_template or task.prompt_template
    answer_template = answer_template or task.answer_template
    name = getattr(task, "name", type(task).__name__)
    train = format_examples(task.records("train"), prompt_template, answer_template, f"{name}/train")
    test = format_examples(task.records("test"), prompt_template, answer_template, f"{name}/test")
    own = task.validation_records() if isinstance(task, HasOwnValidation) else None
    if own is not None and validation_size:
        raise DataError(f"{name}: data.validation_size is {validation_size}, but the task uses its own validation "
                        "split (validation: own): set data.validation_size to 0")
    n_validation = int(validation_size) if validation_size >= 1 else round(validation_size * len(train))
    if n_validation >= len(train):
        raise DataError(f"{name}: validation_size {validation_size} leaves no training examples ({len(train)})")
    order = list(range(len(train)))
    random.Random(VALIDATION_SEED).shuffle(order)
    held_out = set(order[:n_validation])
    validation = [train[i] for i in sorted(held_out)]
    train = [example for i, example in enumerate(train) if i not in held_out]
    if own is not None:
        validation = format_examples(own, prompt_template, answer_template, f"{name}/validation")
    if train_limit is not None:
        train = train[:train_limit]
    if eval_limit is not None:
        validation, test = validation[:eval_limit], test[:eval_limit]
    return Splits(train=train, validation=validation, test=test)


@dataclass
class TokenizedExample:
    prompt_ids: list[int]
    answer_ids: list[int]  # ends with the end-of-sequence token


@dataclass
class TokenizedSplit:
    items: list[TokenizedExample]
    dropped: int  # over-long examples left out
    truncated: int  # over-long examples whose answer was cut


def encode_texts(tokenizer: Any, texts: list[str], *, add_special_tokens: bool) -> list[list[int]]:
    """Token ids of many texts: through the fast tokenizer's Rust backend when it gives exactly what the Hugging
    Face call gives (checked on the first text), else through that call. Why: the call builds a Python encoding
    object per text, which took ~80% of tokenizing 50,000 short examples (seconds of every trial's start)."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    slow = tokenizer(texts[:1], add_special_tokens=add_special_tokens, return_attention_mask=False)["input_ids"]
    if backend is not None and backend.padding is None and backend.truncation is None:
        fast = [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=add_special_tokens)]
        if [list(fast[0])] == [list(ids) for ids in slow]:
            return fast
    return tokenizer(texts, add_special_tokens=add_special_tokens, return_attention_mask=False)["input_ids"]


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Prompt tokens, with the tokenizer's own special tokens (a BOS for models that want one)."""
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def tokenize(
    examples: list[Example],
    tokenizer: Any,
    *,
    max_length: int,
    overlength: Literal["drop", "truncate"] = "drop",
) -> TokenizedSplit:
    """Prompt and answer are tokenized apart so that their boundary is exact; EOS closes the answer."""
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no end-of-sequence token")
    items, dropped, truncated = [], 0, 0
    prompts = encode_texts(tokenizer, [e.prompt for e in examples], add_special_tokens=True)
    answers = encode_texts(tokenizer, [e.answer for e in examples], add_special_tokens=False)
    for prompt_ids, answer_ids in zip(prompts, answers):
        answer_ids = list(answer_ids) + [tokenizer.eos_token_id]
        if len(prompt_ids) + len(answer_ids) > max_length:
            room = max_length - len(prompt_ids)
            if overlength == "drop" or room < 1:
                dropped += 1
                continue
            answer_ids = answer_ids[:room]
            truncated += 1
        items.append(TokenizedExample(prompt_ids=list(prompt_ids), answer_ids=answer_ids))
    if not items:
        raise DataError(f"every example is longer than max_length={max_length} tokens")
    return TokenizedSplit(items=items, dropped=dropped, truncated=truncated)


def collate(
    items: list[TokenizedExample], pad_id: int, *, loss_on_prompt: bool = False, bidirectional_prompt: bool = False
) -> TokenBatch:
    """Right-pad into a :class:`TokenBatch`. With ``loss_on_prompt`` (pretraining) every token is a target and there
    is no prompt block."""
    length = max(len(it.prompt_ids) + len(it.answer_ids) for it in items)
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(items), length), dtype=torch.long)
    prompt_lengths = torch.zeros(len(items), dtype=torch.long)
    for row, item in enumerate(items):
        ids = item.prompt_ids + item.answer_ids
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        start = 0 if loss_on_prompt else len(item.prompt_ids)
        labels[row, start : len(ids)] = input_ids[row, start : len(ids)]
        prompt_lengths[row] = 0 if loss_on_prompt else len(item.prompt_ids)
    return TokenBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        prompt_lengths=prompt_lengths,
        bidirectional_prompt=bidirectional_prompt and not loss_on_prompt,
    )


@dataclass(frozen=True)
class ConditionDropout:
    """Classifier-free guidance training: at each optimiser step, each training sequence's prompt (an image task's
    class word) is replaced by the null prompt with probability ``rate``. The draw depends only on (trial seed, step,
    example index), never on a method's random generator, so every method of a seed sees the same replacements (an
    example drawn twice in one step is replaced in both places or in neither). Held-out data is never touched."""

    null_prompt_ids: list[int]
    rate: float
    seed: int

    def dropped(self, step: int, index: int) -> bool:
        return random.Random(f"condition-dropout/{self.seed}/{step}/{index}").random() < self.rate

    def apply(self, step: int, indices: list[int], items: list[TokenizedExample]) -> list[TokenizedExample]:
        """The examples ``indices`` of ``items`` as step ``step`` trains on them."""
        return [TokenizedExample(list(self.null_prompt_ids), items[i].answer_ids) if self.dropped(step, i)
                else items[i] for i in indices]


class StepSampler:
    """Indices of the micro-batches of each optimiser step for one data-parallel rank (see the module docstring)."""

    def __init__(
        self, n_examples: int, *, batch_size: int, grad_accum: int, world_size: int = 1, rank: int = 0, seed: int = 0
    ):
        if n_examples < 1:
            raise DataError("no training examples")
        self.n = n_examples
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self._orders: dict[int, list[int]] = {}

    @property
    def examples_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.world_size

    def steps_for_epochs(self, epochs: float) -> int:
        return max(1, math.ceil(epochs * self.n / self.examples_per_step))

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(self.n))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            # A step spans at most two epochs, and steps only move forward: keep the newest two orders.
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = order
        return self._orders[epoch]

    def _stream(self, start: int, count: int) -> list[int]:
        out = []
        for position in range(start, start + count):
            epoch, offset = divmod(position, self.n)
            out.append(self._order(epoch)[offset])
        return out

    def micro_batches(self, step: int) -> list[list[int]]:
        """Example indices of this rank's micro-batches at optimiser step ``step`` (0-based)."""
        per_step = self.examples_per_step
        indices = self._stream(step * per_step, per_step)
        batches = []
        for micro in range(self.grad_accum):
            start = (micro * self.world_size + self.rank) * self.batch_size
            batches.append(indices[start : start + self.batch_size])
        return batches


@dataclass(frozen=True)
class Collator:
    """How one trial's tokenized examples become batches, for training and held-out evaluation alike: the loss on
    the prompt too when pretraining, the prompt bidirectional when the suite asks for it."""

    pad_id: int
    loss_on_prompt: bool = False
    bidirectional_prompt: bool = False

    def __call__(self, items: list[TokenizedExample]) -> TokenBatch:
        return collate(items, self.pad_id, loss_on_prompt=self.loss_on_prompt,
                       bidirectional_prompt=self.bidirectional_prompt)

    def batches(self, items: list[TokenizedExample], size: int) -> list[TokenBatch]:
        """``items`` in order, ``size`` at a time."""
        return [self(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass(frozen=True)
class TrainingBatches:
    """This rank's micro-batches of each optimiser step (``batches(step)``): the examples the step sampler deals it,
    as the step trains on them (class-label dropout), collated."""

    data: TokenizedSplit
    sampler: StepSampler
    collator: Collator
    dropout: ConditionDropout | None = None

    def __call__(self, step: int) -> list[TokenBatch]:
        return [self.collator(self._items(step, indices)) for indices in self.sampler.micro_batches(step)]

    def _items(self, step: int, indices: list[int]) -> list[TokenizedExample]:
        items = self.data.items
        if self.dropout is None:
            return [items[i] for i in indices]
        return self.dropout.apply(step, indices, items)
