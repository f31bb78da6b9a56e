"""Synthetic tasks: star graphs, lookahead addition, GSM8K-shaped word problems.

Properties over many generated records (every gold path is valid and the only one, sums are right and their digits
in the promised order, calculator notes agree with ``#### n``), hand-worked examples, determinism under a seed,
disjoint train/test splits even where the space is small enough for collisions, and clear errors for bad settings.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

import pytest

from mtp_bench import registry
from mtp_bench.api.task import Task
from mtp_bench.data.pipeline import build_splits, format_examples
from mtp_bench.scorers.gsm8k import normalize_number, strict_answer
from mtp_bench.suite import SuiteError
from mtp_bench.suite.load import validate_plugin_params
from mtp_bench.tasks.addition import Addition, AdditionParams, make_problem, spaced
from mtp_bench.tasks.gsm8k import gold_answer
from mtp_bench.tasks.star_graph import StarGraph, StarGraphParams, graph_key
from mtp_bench.tasks.word_problems import WordProblemParams, WordProblems

# ------------------------------------------------------------------------------------------------ star graph ----

STAR_SHAPES = [dict(degree=2, path_length=5, num_nodes=50), dict(degree=3, path_length=4, num_nodes=20),
               dict(degree=5, path_length=2, num_nodes=12), dict(degree=2, path_length=3, num_nodes=7)]


def _paths_from(start: int, edges: list[list[int]]) -> dict[int, list[int]]:
    """Every simple path from ``start`` in a directed graph, keyed by its end node (lists of paths)."""
    children = defaultdict(list)
    for u, v in edges:
        children[u].append(v)
    found: dict[int, list[list[int]]] = defaultdict(list)
    stack = [[start]]
    while stack:
        path = stack.pop()
        found[path[-1]].append(path)
        stack += [[*path, child] for child in children[path[-1]] if child not in path]
    return found


@pytest.mark.parametrize("shape", STAR_SHAPES, ids=lambda s: "-".join(map(str, s.values())))
def test_star_graph_gold_path_is_valid_and_unique(shape: dict) -> None:
    params = StarGraphParams(**shape, train_size=300, test_size=100, seed=3)
    d, length, n = shape["degree"], shape["path_length"], shape["num_nodes"]
    for record in StarGraph(params).records("train") + StarGraph(params).records("test"):
        path, edges = record["path"], record["edges"]
        assert record["start"] == path[0] and record["goal"] == path[-1] and record["degree"] == d
        assert len(path) == length and len(edges) == d * (length - 1)
        nodes = {node for edge in edges for node in edge}
        assert len(nodes) == 1 + d * (length - 1) and all(0 <= node < n for node in nodes)
        out_degree = defaultdict(int)
        for u, _ in edges:
            out_degree[u] += 1
        assert out_degree[path[0]] == d and all(k <= 1 for node, k in out_degree.items() if node != path[0])
        paths = _paths_from(path[0], edges)
        assert paths[record["goal"]] == [path]  # reachable along exactly one path, and that path is the gold one
        leaves = [node for node in nodes if out_degree[node] == 0]
        assert len(leaves) == d and all(len(paths[leaf][0]) == length for leaf in leaves)  # d arms of equal length
        assert record["path_text"] == " ".join(map(str, path))


def test_star_graph_prompt_format_and_one_token_per_id() -> None:
    from mtp_bench.models.tokenizer import trained_tokenizer

    task = StarGraph(StarGraphParams(train_size=200, test_size=20))
    examples = format_examples(task.records("train"), task.prompt_template, task.answer_template, "star")
    record, example = examples[0].record, examples[0]
    pairs = " | ".join(f"{u} {v}" for u, v in record["edges"])
    assert example.prompt == f"{pairs} / {record['start']} {record['goal']} ="
    assert example.answer == " " + " ".join(map(str, record["path"]))
    tokenizer = trained_tokenizer("word", [e.prompt + e.answer for e in examples], 512)
    n_edges = len(record["edges"])
    assert len(tokenizer(example.prompt)["input_ids"]) == 3 * n_edges - 1 + 4  # "u v" "|" ... "/" start goal "="
    answer_ids = tokenizer(example.answer, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(answer_ids) == [str(node) for node in record["path"]]


def test_star_graph_prompt_does_not_leak_the_goal_arm() -> None:
    """Edges are shuffled: the goal arm's first edge comes first in the prompt about half the time, and the first
    step is the smaller of the start's children about half the time (so neither order nor size gives it away)."""
    records = StarGraph(StarGraphParams(train_size=4000, test_size=10, seed=1)).records("train")
    first_listed = smaller = 0
    for r in records:
        start_edges = [v for u, v in r["edges"] if u == r["start"]]
        first_listed += start_edges[0] == r["path"][1]
        smaller += min(start_edges) == r["path"][1]
    assert abs(first_listed / len(records) - 0.5) < 0.04 and abs(smaller / len(records) - 0.5) < 0.04


def test_star_graph_seeded_disjoint_and_nested() -> None:
    # 7 ids, degree 2, 3-node paths: 2,520 distinct graphs, so 1,200 draws would collide without the checks.
    small = dict(degree=2, path_length=3, num_nodes=7)
    task = StarGraph(StarGraphParams(**small, train_size=1000, test_size=200, seed=5))
    train, test = task.records("train"), task.records("test")
    train_keys, test_keys = {graph_key(r) for r in train}, {graph_key(r) for r in test}
    assert len(train_keys) == 1000 and len(test_keys) == 200 and not train_keys & test_keys
    again = StarGraph(StarGraphParams(**small, train_size=1000, test_size=200, seed=5))
    assert again.records("train") == train and again.records("test") == test
    smaller = StarGraph(StarGraphParams(**small, train_size=300, test_size=200, seed=5))
    assert smaller.records("train") == train[:300] and smaller.records("test") == test
    other = StarGraph(StarGraphParams(**small, train_size=1000, test_size=200, seed=6))
    assert other.records("test") != test


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(degree=3, path_length=5, num_nodes=12), "num_nodes=12 is too few: degree 3 and path_length 5 need 13"),
        (dict(degree=2, path_length=3, num_nodes=6, train_size=500), "only 720 exist"),
        (dict(degree=1), "degree: Input should be greater than or equal to 2"),
        (dict(path_len=5), "path_len: unknown key"),
    ],
)
def test_star_graph_bad_settings_name_the_problem(settings: dict, message: str) -> None:
    with pytest.raises(SuiteError) as info:
        validate_plugin_params(StarGraphParams, {"test_size": 10, **settings}, "data.params")
    assert len(info.value.problems) == 1 and message in info.value.problems[0], info.value.problems


# -------------------------------------------------------------------------------------------------- addition ----


class ScriptedRandom(random.Random):
    """``randrange`` answers from a script: hand-worked examples through the real generator."""

    def __init__(self, values: list[int]):
        super().__init__(0)
        self.values = list(values)

    def randrange(self, *args, **kwargs) -> int:  # type: ignore[override]
        return self.values.pop(0)


@pytest.mark.parametrize(
    ("a", "b", "settings", "prompt", "answer"),
    [
        (539, 495, dict(digits=3), "5 3 9 + 4 9 5 =", " 1 0 3 4"),
        (539, 495, dict(digits=3, reverse=True), "5 3 9 + 4 9 5 =", " 4 3 0 1"),
        (7, 12, dict(digits=3), "0 0 7 + 0 1 2 =", " 0 0 1 9"),
        (7, 12, dict(digits=3, pad=False), "7 + 1 2 =", " 1 9"),
        (7, 12, dict(digits=3, pad=False, reverse=True), "7 + 1 2 =", " 9 1"),
        (99999, 1, dict(digits=5), "9 9 9 9 9 + 0 0 0 0 1 =", " 1 0 0 0 0 0"),
    ],
)
def test_addition_hand_worked(a: int, b: int, settings: dict, prompt: str, answer: str) -> None:
    record = make_problem(ScriptedRandom([a, b]), AdditionParams(**settings))
    assert record["sum"] == a + b
    assert Addition.prompt_template.format(**record) == prompt
    assert Addition.answer_template.format(**record) == answer


@pytest.mark.parametrize("settings", [dict(digits=4), dict(digits=6, reverse=True), dict(digits=3, pad=False)])
def test_addition_sums_and_digit_order(settings: dict) -> None:
    params = AdditionParams(**settings, train_size=500, test_size=100)
    carries = 0
    for r in Addition(params).records("train"):
        digits = r["sum_text"].split()
        assert r["a"] + r["b"] == r["sum"] and all(len(d) == 1 for d in digits)
        written = digits[::-1] if params.reverse else digits
        assert int("".join(written)) == r["sum"]
        if params.pad:
            assert len(digits) == params.digits + 1 and len(r["a_text"].split()) == params.digits
            carries += written[0] == "1"  # the leading digit is the final carry
        else:
            assert written[0] != "0" or r["sum"] == 0
    if params.pad:
        assert 0.3 < carries / 500 < 0.6  # about half the sums carry out: the first digit is no constant


def test_addition_seeded_and_disjoint() -> None:
    # Two-digit operands: 10,000 pairs, so 3,500 draws would collide without the checks.
    task = Addition(AdditionParams(digits=2, train_size=3000, test_size=500, seed=2))
    train, test = task.records("train"), task.records("test")
    train_pairs, test_pairs = {(r["a"], r["b"]) for r in train}, {(r["a"], r["b"]) for r in test}
    assert len(train_pairs) == 3000 and len(test_pairs) == 500 and not train_pairs & test_pairs
    assert Addition(AdditionParams(digits=2, train_size=3000, test_size=500, seed=2)).records("train") == train
    assert Addition(AdditionParams(digits=2, train_size=3000, test_size=500, seed=3)).records("test") != test
    assert spaced(407, 5) == "0 0 4 0 7" and spaced(407, None) == "4 0 7"


def test_addition_too_many_problems_is_a_clear_error() -> None:
    with pytest.raises(SuiteError) as info:
        validate_plugin_params(AdditionParams, {"digits": 1, "train_size": 100}, "data.params")
    assert "1-digit operands give only 100 pairs" in info.value.problems[0]


# ------------------------------------------------------------------------------------------- word problems ----

NOTE = re.compile(r"(\d+) ([-+*/]) (\d+) = <<(\d+)([-+*/])(\d+)=(\d+)>>(\d+)")
APPLY = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y}
OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


@pytest.mark.parametrize("settings", [dict(), dict(min_steps=1, max_steps=1, operations=["div"]),
                                      dict(min_steps=5, max_steps=6, operations=["add", "mul"], max_value=5000)])
def test_word_problem_answers_agree_with_their_notes(settings: dict) -> None:
    params = WordProblemParams(**settings, train_size=400, test_size=50)
    for r in WordProblems(params).records("train"):
        lines = r["answer"].split("\n")
        assert lines[-1] == f"#### {r['gold']}" and gold_answer(r["answer"]) == r["gold"]
        assert strict_answer(r["answer"]) == normalize_number(r["gold"])  # the gsm8k scorer reads it back
        assert params.min_steps <= r["steps"] == len(lines) - 1 <= params.max_steps
        start = int(re.search(r"\d+", r["question"]).group())
        current = start
        for line, op in zip(lines[:-1], r["operations"]):
            x, sign, y, nx, nsign, ny, noted, shown = NOTE.search(line).groups()
            assert (x, sign, y) == (nx, nsign, ny) and noted == shown and sign == OPS[op] and op in params.operations
            assert int(x) == current and y in r["question"]
            value = APPLY[sign](int(x), int(y))
            assert value == int(noted) and 1 <= value <= params.max_value  # exact, positive, within bounds
            current = int(noted)
        assert current == int(r["gold"])


def test_word_problems_seeded_disjoint_and_formatted() -> None:
    params = WordProblemParams(min_steps=1, max_steps=1, operations=["add"], start_range=(2, 9), add_range=(1, 9),
                               train_size=1500, test_size=200, seed=4)
    task = WordProblems(params)
    train, test = task.records("train"), task.records("test")
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert len({r["question"] for r in train}) == 1500
    assert WordProblems(params).records("train") == train
    splits = build_splits(task, validation_size=100)
    assert splits.train[0].prompt.startswith("Question: ") and splits.train[0].prompt.endswith("\n\nAnswer:")
    assert splits.train[0].answer.startswith(" ") and "#### " in splits.train[0].answer


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(min_steps=4, max_steps=2), "min_steps (4) is above max_steps (2)"),
        (dict(factor_range=[1, 3]), "factor_range must start at 2"),
        (dict(add_range=[5, 2]), "add_range: expected 0 <= low <= high"),
        (dict(operations=["pow"]), "operations.0: Input should be 'add', 'sub', 'mul' or 'div'"),
    ],
)
def test_word_problem_bad_settings_name_the_problem(settings: dict, message: str) -> None:
    with pytest.raises(SuiteError) as info:
        validate_plugin_params(WordProblemParams, settings, "data.params")
    assert message in info.value.problems[0], info.value.problems


def test_word_problems_that_cannot_be_made_are_a_clear_error() -> None:
    from mtp_bench.errors import DataError

    # 7 is prime: no divisor in 2..5 divides it, so no one-step division problem exists.
    params = WordProblemParams(min_steps=1, max_steps=1, operations=["div"], start_range=(7, 7), train_size=5,
                               test_size=5)
    with pytest.raises(DataError, match="no problem fits these settings"):
        WordProblems(params).records("test")


# --------------------------------------------------------------------------------------------------- plugins ----


@pytest.mark.parametrize("name", ["star_graph", "addition", "word_problems"])
def test_tasks_are_installed_and_follow_the_protocol(name: str) -> None:
    cls = registry.load(registry.TASKS, name)
    task = cls(cls.Params(train_size=20, test_size=5))
    assert isinstance(task, Task) and task.name == name
    splits = build_splits(task, validation_size=4)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (16, 4, 5)


@pytest.mark.parametrize("name", ["star_graph", "addition", "word_problems"])
def test_gold_answers_survive_the_tokenizer_round_trip(name: str) -> None:
    """A model that emits exactly the gold tokens is scored correct: the preset tokenizer trained on the task's text
    decodes every answer back to what the scorers compare (whitespace-normalised text; the number after ####)."""
    from mtp_bench.data.pipeline import tokenize
    from mtp_bench.models.tokenizer import trained_tokenizer

    cls = registry.load(registry.TASKS, name)
    task = cls(cls.Params(train_size=300, test_size=50))
    splits = build_splits(task)
    tokenizer = trained_tokenizer(task.tokenizer_kind, [e.prompt + e.answer for e in splits.train], 512)
    tokenized = tokenize(splits.test, tokenizer, max_length=512)
    assert tokenized.dropped == 0
    for example, item in zip(splits.test, tokenized.items):
        assert item.answer_ids[-1] == tokenizer.eos_token_id
        decoded = tokenizer.decode(item.answer_ids, skip_special_tokens=True)
        if name == "word_problems":
            assert strict_answer(decoded) == normalize_number(example.record["gold"])
        else:
            assert " ".join(decoded.split()) == " ".join(example.answer.split())
