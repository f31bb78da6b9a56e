"""Class-conditional image generation: sample images per class with classifier-free guidance and measure them.

For each class the scorer samples ``samples_per_class`` images (prompt: the class word; guidance: the null class;
only code tokens are sampled, exactly ``H * W`` of them) with the shared sampler
(:func:`mtp_bench.evaluation.sampling.sample_generate`), seeded by ``seed`` and the split: every evaluation, method and
trial seed draws with the same random numbers on a split, and validation and test draw independently. The task is
the trial's own (``context.task``); the examples name the split and, with ``reference: split``, give the real images
to compare against.

Tasks whose codes decode to pixels (the grey-level quantiser: ``image_digits``, ``image_patterns``) get, from a
small classifier trained once on the task's real training images (:mod:`.image_classifier`):

- ``classifier_frechet_distance`` (main; lower is better): Fréchet distance of the samples' classifier features to
  the real images' (FID's formula in this classifier's feature space, not FID);
- ``class_consistency``: the classifier assigns the conditioning class;
- ``classifier_score``: the Inception Score's formula with this classifier;
- ``classifier_accuracy``: the classifier's own accuracy on the real test images (how far to trust the two above);
- ``distinct_rate`` (distinct samples / samples) and ``train_copy_rate`` (samples equal to a training image);
- ``validity_rate`` where the task checks a sample exactly (``image_patterns``).

Pre-extracted VQ codes (``image_codes``) decode only with the user's VQ decoder: the codes are saved (``codes.npy``,
``labels.npy``) and, with ``decoder`` (and ``fid_reference``), FID and IS come from torch-fidelity. Artifacts: a PNG
grid of samples per evaluation, beside the per-sample rows.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np
import torch

from mtp_bench.api.scorer import EvalContext, ScoreResult
from mtp_bench.api.task import Example
from mtp_bench.data.image_codec import NULL_CLASS, class_word, code_word
from mtp_bench.data.pipeline import encode_prompt
from mtp_bench.errors import DataError
from mtp_bench.evaluation.sampling import sample_generate
from mtp_bench.scorers import image_artifacts as art
from mtp_bench.scorers.image_metrics import class_consistency, classifier_score, frechet_distance, gaussian
from mtp_bench.scorers.image_params import ImageScorerParams
from mtp_bench.tasks.images import ImageTask, task_spec


def image_task(context: EvalContext) -> ImageTask:
    """The trial's task, which must be an image task."""
    task = context.task
    if not isinstance(task, ImageTask):
        raise DataError("the image scorer scores image tasks only (image_digits, image_patterns, image_codes), not "
                        f"{getattr(task, 'name', task)!r}")
    return task


def _pixels(task: Any, records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    tokenizer = task.image_tokenizer()
    images = np.stack([tokenizer.decode(r["codes"]) for r in records]) if records else np.zeros((0, *tokenizer.grid))
    return images, np.asarray([r["label"] for r in records], dtype=np.int64)


def class_names(task: Any) -> list[str] | None:
    """The classes' names for captions: a rules task's rule names (``image_patterns``); other tasks' classes are
    their numbers."""
    rules = getattr(getattr(task, "params", None), "rules", None)
    return [str(rule) for rule in rules] if rules else None


def decodes_to_pixels(task: Any) -> bool:
    try:
        task.image_tokenizer().decode(np.zeros(task.image_tokenizer().grid, dtype=np.int64))
    except DataError:
        return False
    return True


class ImageScorer:
    """Guided sampling per class; classifier-based Fréchet distance, class consistency and score; validity."""

    name: ClassVar[str] = "image"
    Params: ClassVar[type] = ImageScorerParams
    main_metric: ClassVar[str] = "classifier_frechet_distance"
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"classifier_frechet_distance", "fid", "train_copy_rate"})

    def __init__(self, params: ImageScorerParams):
        self.params = params
        self._train: dict[str, tuple[list[dict[str, Any]], set[bytes]]] = {}

    def classes(self, task: Any) -> list[int]:
        chosen = self.params.classes
        if chosen is None:
            return list(range(task.num_classes))
        if isinstance(chosen, int):
            return list(range(min(chosen, task.num_classes)))
        bad = [k for k in chosen if k >= task.num_classes]
        if bad:
            raise DataError(f"image scorer: classes {bad} are outside the task's 0..{task.num_classes - 1}")
        return list(chosen)

    def draw_seed(self, examples: list[Example]) -> int:
        """The sampler's seed: ``seed`` and the examples scored. One split gets the same draws at every evaluation
        and for every method and trial seed (paired comparisons); validation and test get independent draws, so a
        checkpoint selected on validation samples is reported on fresh ones."""
        names = ",".join(str(e.record.get("index", i)) for i, e in enumerate(examples))
        digest = hashlib.sha256(f"{self.params.seed}/{names}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF

    def sample(self, context: EvalContext, task: Any, labels: list[int], seed: int = 0) -> np.ndarray:
        """``(N, H, W)`` code grids, one per label."""
        tokenizer, p = context.tokenizer, self.params
        grid = task.image_tokenizer().grid
        vocab = tokenizer.get_vocab()
        words = [class_word(k) for k in set(labels)] + ([NULL_CLASS] if p.cfg_scale != 1.0 else [])
        missing = [w for w in words if w not in vocab]
        if missing:
            raise DataError(f"image scorer: the tokenizer has no {', '.join(missing[:3])} (use a model preset: its word "
                            f"tokenizer holds every class, code and the null class)")
        code_ids = [vocab[code_word(c)] for c in range(task.image_tokenizer().codebook_size)]
        prompts = [encode_prompt(tokenizer, class_word(k)) for k in labels]
        unconditional = [encode_prompt(tokenizer, NULL_CLASS)] * len(labels) if p.cfg_scale != 1.0 else None
        dtype = context.autocast_dtype
        with torch.autocast(context.device.type, dtype=dtype, enabled=dtype is not None):
            tokens = sample_generate(
                context.model, prompts, num_new_tokens=grid[0] * grid[1], pad_id=tokenizer.pad_token_id,
                unconditional_prompts=unconditional, cfg_scale=p.cfg_scale, temperature=p.temperature,
                top_k=p.top_k, top_p=p.top_p, allowed_token_ids=code_ids, batch_size=p.batch_size or context.batch_size,
                generator=torch.Generator().manual_seed(seed), bidirectional_prompt=context.bidirectional_prompt)
        code_of = {token: code for code, token in enumerate(code_ids)}
        return np.asarray([[code_of[t] for t in row] for row in tokens], dtype=np.int64).reshape(-1, *grid)

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        task = image_task(context)
        labels = [k for k in self.classes(task) for _ in range(self.params.samples_per_class)]
        codes = self.sample(context, task, labels, self.draw_seed(examples))
        label_array = np.asarray(labels, dtype=np.int64)
        rows = [{"index": i, "class": k, "codes": codes[i].reshape(-1).tolist(), "scores": {}}
                for i, k in enumerate(labels)]
        metrics = {"distinct_rate": len({c.tobytes() for c in codes}) / len(codes)}
        files: dict[str, bytes] = {}
        check = getattr(task, "check_sample", None)
        if check is not None:
            valid = [bool(check(c, k)) for c, k in zip(codes, labels)]
            metrics["validity_rate"] = float(np.mean(valid))
            for row, ok in zip(rows, valid):
                row["valid"] = row["correct"] = ok
                row["scores"]["validity_rate"] = ok
        if decodes_to_pixels(task):
            metrics.update(self._pixel_metrics(task, examples, codes, label_array, rows, files, context.run_label))
        else:
            files.update(self._code_outputs(codes, label_array, metrics, context.run_label))
        return ScoreResult(metrics=metrics, samples=rows, files=files)

    def _pixel_metrics(self, task: Any, examples: list[Example], codes: np.ndarray, labels: np.ndarray,
                       rows: list[dict[str, Any]], files: dict[str, bytes], title: str = "") -> dict[str, float]:
        from mtp_bench.scorers.image_classifier import classifier_for

        spec = task_spec(task)
        memo_key = repr(spec)
        if memo_key not in self._train:  # the task's training images, read once per scorer (once per trial)
            records = task.records("train")
            self._train[memo_key] = (records, {np.asarray(r["codes"], dtype=np.int64).tobytes() for r in records})
        train_records, train_keys = self._train[memo_key]

        def load_images() -> tuple[np.ndarray, ...]:
            return (*_pixels(task, train_records), *_pixels(task, task.records("test")))

        classifier = classifier_for({k: v for k, v in spec["params"].items() if k != "class_dropout"} | {
            "task": spec["task"]}, load_images, task.num_classes)
        tokenizer = task.image_tokenizer()
        images = np.stack([tokenizer.decode(c) for c in codes])
        features, probabilities = classifier.measure(images)
        if self.params.reference == "train":
            mu, sigma = classifier.train_mu, classifier.train_sigma
        else:
            mu, sigma = gaussian(classifier.measure(_pixels(task, [e.record for e in examples])[0])[0])
        predicted = probabilities.argmax(axis=1)
        copies = [c.tobytes() in train_keys for c in codes]
        for row, guess, copy in zip(rows, predicted, copies):
            row["predicted_class"] = int(guess)
            row["train_copy"] = copy
            row["scores"]["class_consistency"] = bool(guess == row["class"])
            row.setdefault("correct", bool(guess == row["class"]))
        if self.params.grids_per_class:
            files["samples.png"] = art.sample_grid_png(images, labels, self.params.grids_per_class,
                                                       class_names=class_names(task), title=title)
        if self.params.save_codes:
            files["codes.npy"], files["labels.npy"] = art.npy_bytes(codes.reshape(len(codes), -1)), art.npy_bytes(labels)
        return {
            "classifier_frechet_distance": (frechet_distance(*gaussian(features), mu, sigma) if len(features) > 1
                                            else float("nan")),  # a Gaussian needs two samples
            "class_consistency": class_consistency(probabilities, labels),
            "classifier_score": classifier_score(probabilities),
            "classifier_accuracy": classifier.accuracy,
            "train_copy_rate": float(np.mean(copies)),
        }

    def _code_outputs(self, codes: np.ndarray, labels: np.ndarray, metrics: dict[str, float],
                      title: str = "") -> dict[str, bytes]:
        """VQ codes: saved as LlamaGen's decoder reads them; FID/IS when a decoder is configured."""
        files = {"codes.npy": art.npy_bytes(codes.reshape(len(codes), -1)), "labels.npy": art.npy_bytes(labels)}
        if self.params.decoder is not None:
            images = art.decode_images(art.load_decoder(self.params.decoder), codes)
            metrics.update(art.fidelity_metrics(images, self.params.fid_reference, torch.cuda.is_available()))
            if self.params.grids_per_class:
                files["samples.png"] = art.sample_grid_png(images / 255.0, labels, self.params.grids_per_class,
                                                           title=title)
        return files
