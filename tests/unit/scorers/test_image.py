"""The image scorer: golden numbers of its metrics on hand-made features, guided sampling through a tiny model with
a word tokenizer built from an image task's vocabulary, the artifacts (PNG, codes in a VQ decoder's layout), the
VQ-code path's clear errors, its settings, and checkpoint selection on a lower-is-better metric."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest
import torch

from helpers import codes_params, write_codes
from mtp_bench.data.image_codec import NULL_CLASS
from mtp_bench.data.pipeline import build_splits
from mtp_bench.evaluation.context import ScoringContext
from mtp_bench.models.tokenizer import trained_tokenizer
from mtp_bench.scorers import image_artifacts as art
from mtp_bench.scorers.image import ImageScorer
from mtp_bench.scorers.image_metrics import class_consistency, classifier_score, frechet_distance, gaussian
from mtp_bench.scorers.image_params import ImageScorerParams
from mtp_bench.suite.sections import EvalConfig
from mtp_bench.tasks.image_codes import ImageCodes
from mtp_bench.tasks.image_patterns import ImagePatterns, ImagePatternsParams
from mtp_bench.trial.selection import selection_metric

# ------------------------------------------------------------------------------------------------ metrics ----


def test_frechet_distance_golden_numbers() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 4))
    assert frechet_distance(*gaussian(features), *gaussian(features)) == pytest.approx(0.0, abs=1e-8)
    # Gaussians in closed form: |mu1-mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2)
    mu1, mu2 = np.zeros(2), np.array([3.0, 4.0])
    assert frechet_distance(mu1, np.eye(2), mu2, np.eye(2)) == pytest.approx(25.0)
    assert frechet_distance(mu1, np.eye(2), mu1, 4 * np.eye(2)) == pytest.approx(2 + 8 - 2 * 2 * 2)  # (1-2)^2 x 2
    s1, s2 = np.diag([1.0, 9.0]), np.diag([4.0, 1.0])
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(25 + (1 - 2) ** 2 + (3 - 1) ** 2)
    shifted = features + np.array([1.0, 0.0, 0.0, 0.0])
    assert frechet_distance(*gaussian(features), *gaussian(shifted)) == pytest.approx(1.0, abs=1e-8)
    singular = np.zeros((10, 3))
    singular[:, 0] = np.arange(10)
    assert np.isfinite(frechet_distance(*gaussian(singular), *gaussian(singular + 1)))


def test_classifier_score_and_consistency_golden_numbers() -> None:
    confident = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]
    assert classifier_score(confident) == pytest.approx(4.0, rel=1e-6)  # sure and balanced: the class count
    assert classifier_score(np.full((8, 4), 0.25)) == pytest.approx(1.0)  # no information
    assert classifier_score(np.eye(4)[[2] * 8]) == pytest.approx(1.0, rel=1e-6)  # sure but one class only
    assert class_consistency(confident, np.array([0, 1, 2, 3, 0, 1, 2, 0])) == pytest.approx(7 / 8)


# ---------------------------------------------------------------------------------------------- sampling ----


@pytest.fixture
def patterns_setup(tmp_path, monkeypatch):
    """A small pattern task, its examples, a word tokenizer from its vocabulary and a tiny random Llama."""
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("MTP_BENCH_CACHE", str(tmp_path / "cache"))
    task = ImagePatterns(ImagePatternsParams(size=4, colours=4, rules=["repeat_rows", "mirror_columns"],
                                             train_size=60, test_size=20))
    splits = build_splits(task, validation_size=10)
    tokenizer = trained_tokenizer("word", [" ".join(task.vocabulary())], 64)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config).eval()
    return task, splits, tokenizer, ScoringContext(model=model, tokenizer=tokenizer, task=task, batch_size=8)


def test_scorer_samples_every_class_and_measures_it(patterns_setup) -> None:
    task, splits, tokenizer, context = patterns_setup
    scorer = ImageScorer(ImageScorerParams(samples_per_class=3, grids_per_class=2, save_codes=True))
    result = scorer.score(context, splits.test)
    assert [row["class"] for row in result.samples] == [0, 0, 0, 1, 1, 1]
    for row in result.samples:
        assert len(row["codes"]) == 16 and all(0 <= c < 4 for c in row["codes"])  # only codes are sampled
        assert row["valid"] == task.check_sample(np.array(row["codes"]).reshape(4, 4), row["class"])
    for name in ("classifier_frechet_distance", "class_consistency", "classifier_score", "classifier_accuracy",
                 "validity_rate", "distinct_rate", "train_copy_rate"):
        assert np.isfinite(result.metrics[name]), name
    assert result.files["samples.png"].startswith(b"\x89PNG")
    codes = np.load(io.BytesIO(result.files["codes.npy"]))
    assert codes.shape == (6, 16) and codes.dtype == np.int64  # (N, H*W): what a LlamaGen decode_code reads
    assert np.load(io.BytesIO(result.files["labels.npy"])).tolist() == [0, 0, 0, 1, 1, 1]
    again = ImageScorer(ImageScorerParams(samples_per_class=3, grids_per_class=0)).score(context, splits.test)
    assert [r["codes"] for r in again.samples] == [r["codes"] for r in result.samples]  # seeded: paired draws
    assert "samples.png" not in again.files
    other = ImageScorer(ImageScorerParams(samples_per_class=3)).score(context, splits.validation)
    assert [r["codes"] for r in other.samples] != [r["codes"] for r in result.samples]  # another split: fresh draws


def test_guidance_scale_one_needs_no_null_class(patterns_setup) -> None:
    task, splits, tokenizer, context = patterns_setup
    assert NULL_CLASS in tokenizer.get_vocab()
    result = ImageScorer(ImageScorerParams(samples_per_class=1, cfg_scale=1.0, classes=[1])).score(context, splits.test)
    assert [row["class"] for row in result.samples] == [1]
    with pytest.raises(Exception, match="outside the task's 0..1"):
        ImageScorer(ImageScorerParams(classes=[5])).score(context, splits.test)


def test_scorer_refuses_a_text_task(patterns_setup) -> None:
    from mtp_bench.api.task import Example
    from mtp_bench.errors import DataError
    from mtp_bench.tasks.addition import Addition, AdditionParams

    _, _, _, context = patterns_setup
    context.task = Addition(AdditionParams())
    with pytest.raises(DataError, match="image tasks only .* not 'addition'"):
        ImageScorer(ImageScorerParams()).score(context, [Example("q", "a", {"question": "q"})])


# ------------------------------------------------------------------------------------------- the VQ-code path ----


def test_vq_code_task_saves_codes_and_needs_a_decoder(tmp_path, patterns_setup, monkeypatch) -> None:
    _, _, _, context = patterns_setup
    write_codes(tmp_path / "codes", codebook=3, classes=2)
    task = ImageCodes(codes_params(tmp_path / "codes").model_copy(update={"codebook_size": 3, "num_classes": 2}))
    splits = build_splits(task)
    vocab_tokenizer = trained_tokenizer("word", [" ".join(task.vocabulary())], 64)
    context.tokenizer, context.task = vocab_tokenizer, task
    result = ImageScorer(ImageScorerParams(samples_per_class=2)).score(context, splits.test)
    assert np.load(io.BytesIO(result.files["codes.npy"])).shape == (4, 16)
    assert "classifier_frechet_distance" not in result.metrics and "samples.png" not in result.files

    with pytest.raises(art.ImageScorerError, match="cannot import"):
        ImageScorer(ImageScorerParams(samples_per_class=1, decoder="no_such_module:decode")).score(context,
                                                                                               splits.test)
    fake = types.ModuleType("fake_vq_decoder")
    fake.decode = lambda codes: np.zeros((len(codes), 8, 8, 3), dtype=np.uint8)
    fake.wrong = lambda codes: np.zeros((len(codes), 8, 8))
    monkeypatch.setitem(sys.modules, "fake_vq_decoder", fake)
    with pytest.raises(art.ImageScorerError, match=r"expected \(N, H, W, 3\)"):
        ImageScorer(ImageScorerParams(samples_per_class=1, decoder="fake_vq_decoder:wrong")).score(context,
                                                                                               splits.test)
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # as if not installed
    with pytest.raises(art.ImageScorerError, match="pip install 'mtp-bench\\[fidelity\\]'"):
        ImageScorer(ImageScorerParams(samples_per_class=1, decoder="fake_vq_decoder:decode")).score(context,
                                                                                                splits.test)


def test_fidelity_metrics_are_read_from_torch_fidelity(monkeypatch) -> None:
    seen = {}

    def calculate_metrics(**kwargs):
        seen.update(kwargs)
        return {"inception_score_mean": 3.5, "inception_score_std": 0.1, "frechet_inception_distance": 12.0}

    monkeypatch.setitem(sys.modules, "torch_fidelity", types.SimpleNamespace(calculate_metrics=calculate_metrics))
    metrics = art.fidelity_metrics(np.zeros((2, 8, 8, 3), dtype=np.uint8), "/ref", cuda=False)
    assert metrics == {"inception_score": 3.5, "fid": 12.0}
    assert seen["input2"] == "/ref" and seen["fid"] and seen["isc"]


def test_scorer_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="module:function"):
        ImageScorerParams(decoder="not a callable")
    with pytest.raises(ValueError, match="fid_reference needs decoder"):
        ImageScorerParams(fid_reference="/ref")
    with pytest.raises(ValueError):
        ImageScorerParams(cfg_scale=0.5)
    assert ImageScorerParams(decoder="pkg.vq:decode_codes").decoder == "pkg.vq:decode_codes"


def test_selection_on_the_frechet_distance_prefers_lower() -> None:
    scorer = ImageScorer(ImageScorerParams())
    assert selection_metric(EvalConfig(), [scorer]) == ("image/classifier_frechet_distance", False)
    assert selection_metric(EvalConfig(select_metric="image/class_consistency"), [scorer]) == (
        "image/class_consistency", True)
