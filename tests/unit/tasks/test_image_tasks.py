"""Image tasks: scikit-learn's digits, the synthetic patterns and their exact checker, LlamaGen-format VQ codes read
from disk, the grey-level quantiser, bad input (each a DataError before any trial), and class-label dropout."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import codes_params, write_codes
from mtp_bench import registry
from mtp_bench.api.task import Task
from mtp_bench.data.image_codec import GreyLevels, check_grid, codes_text
from mtp_bench.data.pipeline import ConditionDropout, TokenizedExample, build_splits
from mtp_bench.errors import DataError
from mtp_bench.tasks.image_codes import ImageCodes
from mtp_bench.tasks.image_digits import ImageDigits, ImageDigitsParams
from mtp_bench.tasks.image_patterns import ImagePatterns, ImagePatternsParams, apply_rule, check_pattern

# ------------------------------------------------------------------------------------------------ quantiser ----


def test_grey_levels_round_trip_and_rounding() -> None:
    quantiser = GreyLevels((2, 3), levels=5)
    codes = np.array([[0, 1, 2], [3, 4, 0]])
    assert np.array_equal(quantiser.encode(quantiser.decode(codes)), codes)
    pixels = np.array([[0.0, 0.12, 0.13], [0.5, 0.99, 1.0]])
    assert quantiser.encode(pixels).tolist() == [[0, 0, 1], [2, 4, 4]]  # nearest of 0, .25, .5, .75, 1
    with pytest.raises(DataError, match="does not match the grid 2x3"):
        quantiser.encode(np.zeros((3, 3)))


def test_codes_as_words_and_back() -> None:
    grid = np.array([[3, 0], [16, 7]])
    assert codes_text(grid) == "v3 v0 v16 v7"


# --------------------------------------------------------------------------------------------------- digits ----


def test_digits_are_sklearns_images_in_a_fixed_split() -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    task = ImageDigits(ImageDigitsParams())
    assert isinstance(task, Task)
    train, test = task.records("train"), task.records("test")
    assert (len(train), len(test)) == (1500, 297) and task.preflight() == 1500
    assert not {r["index"] for r in train} & {r["index"] for r in test}
    digits = load_digits()
    record = train[0]
    assert np.array_equal(record["codes"], digits.images[record["index"]].astype(int))  # 17 levels: exact
    assert record["label"] == digits.target[record["index"]] and record["class_word"] == f"c{record['label']}"
    assert record["image_text"].split()[:3] == [f"v{c}" for c in record["codes"].reshape(-1)[:3]]
    assert [r["index"] for r in ImageDigits(ImageDigitsParams()).records("test")] == [r["index"] for r in test]
    coarse = ImageDigits(ImageDigitsParams(levels=5)).records("train")[0]["codes"]
    assert coarse.max() <= 4 and task.vocabulary()[:2] == ["c0", "c1"] and "c_null" in task.vocabulary()


def test_image_example_is_class_prompt_then_image_answer() -> None:
    pytest.importorskip("sklearn")
    splits = build_splits(ImageDigits(ImageDigitsParams()), validation_size=100)
    example = splits.train[0]
    assert example.prompt == example.record["class_word"] and len(example.answer.split()) == 64
    assert example.answer.startswith(" v")


# ------------------------------------------------------------------------------------------------- patterns ----


def test_pattern_checker_on_hand_made_grids() -> None:
    mirror = np.array([[1, 2, 0, 3], [0, 1, 1, 2], [0, 1, 1, 2], [1, 2, 0, 3]])
    assert check_pattern("mirror_rows", mirror) and not check_pattern("mirror_columns", mirror)
    broken = mirror.copy()
    broken[3, 0] = 2
    assert not check_pattern("mirror_rows", broken)
    stripes = np.array([[0, 1, 2, 3]] * 4)
    assert check_pattern("repeat_rows", stripes) and check_pattern("mirror_rows", stripes)
    assert not check_pattern("repeat_columns", stripes)
    diagonal = np.array([[0, 1, 2, 3], [3, 0, 1, 2], [2, 3, 0, 1], [1, 2, 3, 0]])
    rolled_left = np.array([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1], [3, 0, 1, 2]])
    assert check_pattern("shift_right", diagonal) and not check_pattern("shift_right", rolled_left)
    rotated = np.array([[1, 2, 3, 0], [0, 1, 2, 3], [3, 2, 1, 0], [0, 3, 2, 1]])
    assert check_pattern("rotate_180", rotated) and not check_pattern("mirror_rows", rotated)
    palindromes = np.array([[1, 2, 2, 1], [0, 3, 3, 0], [2, 2, 2, 2], [3, 0, 0, 3]])
    assert check_pattern("mirror_columns", palindromes)
    assert check_pattern("repeat_columns", np.array([[1] * 4, [0] * 4, [0] * 4, [2] * 4]))
    assert not any(check_pattern(rule, np.full((4, 4), 2)) for rule in ("mirror_rows", "repeat_rows"))  # one colour


def test_pattern_records_obey_their_rule_and_splits_are_disjoint() -> None:
    params = ImagePatternsParams(size=6, colours=3, train_size=300, test_size=60, seed=4)
    task = ImagePatterns(params)
    train, test = task.records("train"), task.records("test")
    assert len(train) == 300 and len(test) == 60 and task.num_classes == 6
    assert all(task.check_sample(r["codes"], r["label"]) for r in train + test)
    assert not {r["codes"].tobytes() + bytes([r["label"]]) for r in train} & {
        r["codes"].tobytes() + bytes([r["label"]]) for r in test}
    assert {r["label"] for r in train} == set(range(6))
    assert np.array_equal(apply_rule("repeat_rows", train[0]["codes"]), apply_rule("repeat_rows", train[0]["codes"]))


def test_pattern_settings_too_small_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct grids"):
        ImagePatternsParams(size=4, colours=2, train_size=5000)
    with pytest.raises(ValueError, match="at most once"):
        ImagePatternsParams(rules=["mirror_rows", "mirror_rows"])


# ------------------------------------------------------------------------------------------ pre-extracted codes ----


def test_codes_reader_on_llamagen_layout(tmp_path) -> None:
    codes_dir, _ = write_codes(tmp_path)
    task = ImageCodes(codes_params(tmp_path))
    assert task.preflight() == 4
    train, test = task.records("train"), task.records("test")
    assert [r["index"] for r in train] == [0, 1, 2, 3] and [r["index"] for r in test] == [4, 5]
    stored = np.load(codes_dir / "1.npy")
    assert np.array_equal(train[1]["codes"], stored[0, 0].reshape(4, 4)) and train[1]["label"] == 1
    second = ImageCodes(codes_params(tmp_path, augmentation=1)).records("train")[1]["codes"]
    assert np.array_equal(second, stored[0, 1].reshape(4, 4))
    randomly = [r["codes"] for r in ImageCodes(codes_params(tmp_path, augmentation="random")).records("train")]
    again = [r["codes"] for r in ImageCodes(codes_params(tmp_path, augmentation="random")).records("train")]
    assert all(np.array_equal(a, b) for a, b in zip(randomly, again))
    assert len(task.vocabulary()) == 5 + 1 + 32
    assert registry.load(registry.TASKS, "image_codes") is ImageCodes


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "does not exist"),
        ("code_range", "code 40 is outside the codebook 0..31"),
        ("label_range", "label 7 is outside the class range 0..4"),
        ("grid", "but the grid 4x4 needs 16"),
        ("unpaired", "hold different files"),
    ],
)
def test_bad_codes_are_clear_data_errors(tmp_path, damage: str, message: str) -> None:
    codes_dir, labels_dir = write_codes(tmp_path)
    root = tmp_path
    last = codes_dir / "5.npy"
    if damage == "missing":
        root = tmp_path / "nowhere"
    elif damage == "code_range":
        np.save(last, np.full((1, 2, 16), 40))
    elif damage == "label_range":
        np.save(labels_dir / "5.npy", np.array([7]))
    elif damage == "grid":
        np.save(last, np.zeros((1, 2, 9), dtype=np.int64))
    elif damage == "unpaired":
        (labels_dir / "5.npy").unlink()
    with pytest.raises(DataError, match=message):
        ImageCodes(codes_params(root)).preflight()


def test_bad_digit_sized_image_and_label() -> None:
    with pytest.raises(DataError, match="but the grid 8x8 needs 64"):
        check_grid(np.zeros((7, 8), dtype=int), (8, 8), 17, "x.npy")
    from mtp_bench.data.image_codec import check_label

    with pytest.raises(DataError, match="label 10 is outside the class range 0..9"):
        check_label(np.array([10]), 10, "y.npy")


# -------------------------------------------------------------------------------------------- class dropout ----


def test_class_dropout_rate_and_seeding() -> None:
    items = [TokenizedExample(prompt_ids=[100 + i % 10], answer_ids=[5, 6, 1]) for i in range(2000)]
    dropout = ConditionDropout(null_prompt_ids=[99], rate=0.1, seed=3)
    indices = list(range(2000))
    dropped = [it.prompt_ids == [99] for it in dropout.apply(7, indices, items)]
    assert 0.08 < np.mean(dropped) < 0.12  # 2,000 draws at 0.1: +-0.02 is over 3 standard errors
    again = [it.prompt_ids == [99] for it in ConditionDropout([99], 0.1, 3).apply(7, indices, items)]
    assert dropped == again  # the same trial seed and step: the same sequences, whatever method asks
    assert dropped != [it.prompt_ids == [99] for it in dropout.apply(8, indices, items)]  # a new draw each step
    assert dropped != [it.prompt_ids == [99] for it in ConditionDropout([99], 0.1, 4).apply(7, indices, items)]
    shuffled = list(reversed(indices))
    assert [dropout.dropped(7, i) for i in shuffled] == list(reversed(dropped))  # keyed by example, not position
    kept = dropout.apply(7, indices, items)
    assert all(k.answer_ids == it.answer_ids for k, it in zip(kept, items)) and items[0].prompt_ids == [100]
    assert not any(it.prompt_ids == [99] for it in ConditionDropout([99], 0.0, 3).apply(7, indices, items))


def test_image_tasks_offer_dropout_and_vocabulary_hooks() -> None:
    task = ImagePatterns(ImagePatternsParams(train_size=100, test_size=20))
    assert task.condition_dropout() == ("c_null", 0.1)
    assert ImagePatterns(ImagePatternsParams(train_size=100, test_size=20, class_dropout=0)).condition_dropout() is None
    assert task.vocabulary() == [*(f"c{k}" for k in range(6)), "c_null", "v0", "v1", "v2", "v3"]
