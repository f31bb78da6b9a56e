"""Tokenizers for the built-in presets, trained offline on the task's own training text and cached.

``bpe``: byte-level BPE that splits digits one by one (numbers matter in maths tasks); ``word``: one token per
whitespace-separated word, for synthetic tasks whose symbols are words (node ids, digits). The cache key is a hash of
the kind, the vocabulary size and the text, so a changed task never reuses a stale tokenizer.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mtp_bench.cache import cache_root

PAD, EOS, UNK = "<|pad|>", "<|endoftext|>", "<|unk|>"


def _train_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _train_word(texts: list[str]) -> Tokenizer:
    words = sorted({word for text in texts for word in text.split()})
    vocab = {token: index for index, token in enumerate([PAD, EOS, UNK, *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer  # no decoder: decoding joins tokens with single spaces


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK if tokenizer.token_to_id(UNK) is not None else None,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def trained_tokenizer(kind: str, texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A tokenizer trained on ``texts`` (or the cached one for the same inputs)."""
    digest = hashlib.sha256(f"{kind}\0{vocab_size}\0".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    directory = cache_root() / "tokenizers" / f"{kind}-{vocab_size}-{digest.hexdigest()[:16]}"
    if (directory / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(directory)
    if kind == "bpe":
        raw = _train_bpe(texts, vocab_size)
    elif kind == "word":
        raw = _train_word(texts)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r} (bpe or word)")
    wrapped = _wrap(raw)
    # Write then rename, so that concurrent trials never read a half-written tokenizer.
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".staging-"))
    wrapped.save_pretrained(staging)
    try:
        staging.rename(directory)
    except OSError:  # another process won the race: its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(directory)
