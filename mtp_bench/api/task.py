"""The task contract: where examples come from and how they are formatted (:class:`Task`), the optional hooks a
task may offer (each a Protocol of one method), and :class:`Example`, one formatted example as scorers see it.

A task is a class registered in the ``mtp_bench.tasks`` entry-point group. It returns raw records (dicts) per split;
the harness formats them with the task's templates (or the suite's) into prompt/answer pairs. Tasks import no torch,
so that validating a suite (which runs their ``preflight``) stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class Example:
    """One formatted example. ``record`` keeps the raw fields for scorers (gold answers, graph structure...)."""

    prompt: str
    answer: str
    record: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@runtime_checkable
class Task(Protocol):
    """A source of examples. ``Params`` is its settings model (a :class:`~mtp_bench.api.settings.Settings`)."""

    name: ClassVar[str]
    Params: ClassVar[type]
    prompt_template: ClassVar[str]  # str.format over a record's fields
    answer_template: ClassVar[str]  # the end-of-sequence token is appended by the tokenizer step
    tokenizer_kind: ClassVar[Literal["bpe", "word"]]  # how a preset's tokenizer is trained on this task's text

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        """All records of a split, in a fixed order (one that depends on the task's settings only, never on a
        trial's seed, so every method and seed sees the same data)."""
        ...


# Optional hooks: the harness checks for each with ``isinstance(task, ...)`` and calls it when it is there.


@runtime_checkable
class ChecksData(Protocol):
    """Cheap checks run once per data configuration before any trial starts (files exist, are readable, parse, are
    non-empty)."""

    def preflight(self) -> int | None:
        """Raise :class:`~mtp_bench.errors.DataError` naming ``file:line``; return the number of training records
        when known (so a validation split that leaves none is refused up front), else None."""
        ...


@runtime_checkable
class HasOwnValidation(Protocol):
    """A dataset with a validation split of its own (``validation: own`` in the task's params)."""

    def validation_records(self) -> list[dict[str, Any]] | None:
        """The validation records when the params ask for them (the harness then carves nothing from training),
        else None."""
        ...


@runtime_checkable
class HasVocabulary(Protocol):
    """A task that knows every word its texts can hold (image tasks: every class and code)."""

    def vocabulary(self) -> list[str]:
        """The words a preset's word tokenizer is built from, instead of from the training text."""
        ...


@runtime_checkable
class DropsCondition(Protocol):
    """Classifier-free guidance training (see :mod:`mtp_bench.tasks.images`)."""

    def condition_dropout(self) -> tuple[str, float] | None:
        """(null prompt, rate): training replaces a sequence's prompt by the null prompt with that probability;
        None: never."""
        ...
