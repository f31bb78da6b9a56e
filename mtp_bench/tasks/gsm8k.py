"""GSM8K (Cobbe et al. 2021, MIT licence): from the hub (``openai/gsm8k``, ``main``) or a local directory holding
``train.jsonl`` and ``test.jsonl`` in the original format (``question``, ``answer`` ending in ``#### n``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from mtp_bench.data.files import read_jsonl
from mtp_bench.data.hub import check_local_files
from mtp_bench.errors import DataError

FINAL_ANSWER_MARK = "####"


def gold_answer(solution: str) -> str:
    """The number after ``####`` in a GSM8K solution, as written (normalisation is the scorer's job)."""
    if FINAL_ANSWER_MARK not in solution:
        raise DataError(f"answer has no final '{FINAL_ANSWER_MARK} n' line (ends {solution[-60:]!r})")
    return solution.rsplit(FINAL_ANSWER_MARK, 1)[1].strip()


class GSM8KParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    source: Literal["local", "hub"] = "local"
    """``local`` reads ``path``; ``hub`` loads ``hub_id`` with the datasets library (needs network or its cache)."""

    path: str | None = None
    """Directory with ``train.jsonl`` and ``test.jsonl`` (``source: local``). Relative paths start at the working
    directory; suites use ``${MTP_BENCH_GSM8K_DIR:-../shared/data/gsm8k}``."""

    hub_id: str = "openai/gsm8k"
    """Dataset id on the hub (``source: hub``)."""

    hub_config: str = "main"
    """Dataset configuration on the hub."""

    @field_validator("path")
    @classmethod
    def _check_local(cls, path: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("source") != "local":
            return path
        return check_local_files(path, ["train.jsonl", "test.jsonl"])


class GSM8K:
    """Grade-school maths word problems; records carry ``question``, ``answer`` (full solution) and ``gold``."""

    name: ClassVar[str] = "gsm8k"
    Params: ClassVar[type] = GSM8KParams
    prompt_template: ClassVar[str] = "Question: {question}\n\nAnswer:"  # the MuToR paper's format
    answer_template: ClassVar[str] = " {answer}"
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "bpe"

    def __init__(self, params: GSM8KParams):
        self.params = params

    def preflight(self) -> int | None:
        """Read and check both local files (every line parses and has a final answer; neither is empty); the hub
        is not reached before trials start."""
        if self.params.source != "local":
            return None
        assert self.params.path is not None
        counts = {split: len(self.records(split)) for split in ("train", "test")}
        for split, count in counts.items():
            if count == 0:
                raise DataError(f"{Path(self.params.path) / f'{split}.jsonl'}: no examples (the file is empty)")
        return counts["train"]

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        if self.params.source == "local":
            assert self.params.path is not None
            rows = read_jsonl(
                Path(self.params.path) / f"{split}.jsonl",
                required=("question", "answer"),
                check=lambda row: gold_answer(row["answer"]),
            )
        else:
            import datasets  # imported here: only the hub path needs it

            rows = list(datasets.load_dataset(self.params.hub_id, self.params.hub_config, split=split))
        return [{"question": r["question"], "answer": r["answer"], "gold": gold_answer(r["answer"])} for r in rows]
