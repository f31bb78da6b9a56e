"""Star-graph path finding (Bachmann & Nagarajan 2024, "The pitfalls of next-token prediction").

A star graph has ``degree`` arms of ``path_length - 1`` nodes each, hanging off a start node; the goal is the far end
of one arm. The prompt lists the directed edges in random order, then start and goal; the answer is the path from
start to goal. Every node after the first step is the unique child of the one before it (a lookup a teacher-forced
model learns at once: the "Clever Hans" shortcut); the first step is the one token that needs planning back from the
goal, and a model that learnt only the shortcut solves about ``1/degree`` of the graphs.

Records (the ``star_graph`` scorer reads them): ``path`` (start ... goal), ``start``, ``goal``, ``edges`` ([u, v]
pairs, in prompt order), ``degree``; plus the text fields the templates use. With ``tokenizer_kind = "word"`` every
node id and separator is one token: ``12 7 | 7 33 | 12 5 | 5 40 / 12 33 =`` -> `` 12 7 33``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mtp_bench.errors import DataError

T = TypeVar("T")


def draw_distinct(
    draw: Callable[[random.Random], T],
    key: Callable[[T], Hashable],
    rng: random.Random,
    count: int,
    exclude: set[Hashable] | None = None,
    what: str = "examples",
) -> tuple[list[T], set[Hashable]]:
    """``count`` items from ``draw`` whose keys are distinct and not in ``exclude``, in draw order.

    Drawing stops with a :class:`DataError` after ``50 * count + 1000`` draws, so a space too small for the request
    is an error rather than a hang. Returns the items and their keys.
    """
    exclude = exclude or set()
    items: list[T] = []
    seen: set[Hashable] = set()
    for _ in range(50 * count + 1000):
        if len(items) == count:
            break
        item = draw(rng)
        k = key(item)
        if k in seen or k in exclude:
            continue
        seen.add(k)
        items.append(item)
    if len(items) < count:
        raise DataError(f"could only draw {len(items)} distinct {what} of the {count} asked for; widen the settings")
    return items, seen


class StarGraphParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    degree: int = Field(default=2, ge=2, le=20)
    """Arms leaving the start node; a model that learnt only the shortcut solves about 1/degree of the graphs."""

    path_length: int = Field(default=5, ge=2, le=50)
    """Nodes on the path from start to goal, both included (Bachmann & Nagarajan's ``pathLen``); every arm has
    ``path_length - 1`` nodes after the start."""

    num_nodes: int = Field(default=50, ge=3, le=100_000)
    """Node ids are drawn without replacement from ``0 .. num_nodes - 1``; a graph uses
    ``1 + degree * (path_length - 1)`` of them. A preset's word tokenizer learns its vocabulary from the training
    graphs, so keep ``train_size`` large enough that every id occurs there (it does by far at the defaults)."""

    train_size: int = Field(default=200_000, ge=1)
    """Training graphs (Bachmann & Nagarajan used 200,000). Training on fresh graphs every step means
    ``train_size >= max_steps x effective batch``; smaller is a fixed set seen for several epochs."""

    test_size: int = Field(default=20_000, ge=1)
    """Test graphs, none of them a training graph (``data.eval_limit`` caps how many are scored)."""

    seed: int = 0
    """Seed of the graph streams. Independent of the trial seed: every method and seed sees the same graphs."""

    @property
    def nodes_per_graph(self) -> int:
        return 1 + self.degree * (self.path_length - 1)

    @property
    def distinct_graphs(self) -> int:
        """Labelled graphs with a marked goal arm: ordered id choices, up to the order of the non-goal arms."""
        return math.perm(self.num_nodes, self.nodes_per_graph) // math.factorial(self.degree - 1)

    @model_validator(mode="after")
    def _feasible(self) -> StarGraphParams:
        if self.num_nodes < self.nodes_per_graph:
            raise ValueError(
                f"num_nodes={self.num_nodes} is too few: degree {self.degree} and path_length {self.path_length} "
                f"need {self.nodes_per_graph} distinct node ids per graph"
            )
        wanted = self.train_size + self.test_size
        if wanted > self.distinct_graphs // 2:
            raise ValueError(
                f"train_size + test_size = {wanted} distinct graphs asked for, but only {self.distinct_graphs} exist "
                f"for these settings; ask for at most half of them or raise num_nodes"
            )
        return self


def make_graph(rng: random.Random, degree: int, path_length: int, num_nodes: int) -> dict[str, Any]:
    """One star graph as a record (see the module docstring)."""
    ids = rng.sample(range(num_nodes), 1 + degree * (path_length - 1))
    start, arm_ids = ids[0], ids[1:]
    arms = [arm_ids[i * (path_length - 1) : (i + 1) * (path_length - 1)] for i in range(degree)]
    path = [start, *arms[rng.randrange(degree)]]
    edges = []
    for arm in arms:
        chain = [start, *arm]
        edges += [[chain[i], chain[i + 1]] for i in range(len(chain) - 1)]
    rng.shuffle(edges)
    goal = path[-1]
    return {
        "path": path,
        "start": start,
        "goal": goal,
        "edges": edges,
        "degree": degree,
        "path_length": path_length,
        "edge_text": " | ".join(f"{u} {v}" for u, v in edges),
        "path_text": " ".join(str(node) for node in path),
    }


def graph_key(record: dict[str, Any]) -> Hashable:
    """Identity of a graph regardless of edge order (two records with one key are the same problem). A 64-bit hash
    keeps half a million keys small; a collision would only skip one graph."""
    return hash((record["start"], record["goal"], tuple(sorted(map(tuple, record["edges"])))))


class StarGraph:
    """Path finding on star graphs (Bachmann & Nagarajan 2024): the first step needs planning back from the goal."""

    name: ClassVar[str] = "star_graph"
    Params: ClassVar[type] = StarGraphParams
    prompt_template: ClassVar[str] = "{edge_text} / {start} {goal} ="
    answer_template: ClassVar[str] = " {path_text}"
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "word"

    def __init__(self, params: StarGraphParams):
        self.params = params

    def _draw(self, split: str, size: int, exclude: set[Hashable] | None) -> tuple[list[dict[str, Any]], set[Hashable]]:
        p = self.params
        rng = random.Random(f"star_graph/{split}/{p.seed}")
        return draw_distinct(
            lambda r: make_graph(r, p.degree, p.path_length, p.num_nodes), graph_key, rng, size, exclude,
            f"{split} graphs",
        )

    def preflight(self) -> int:
        """Generated on the fly: the settings were checked with the params; the training set has ``train_size``."""
        return self.params.train_size

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        # The test stream is drawn first and the training stream skips its graphs: the test set depends only on
        # (seed, test_size, shape), and training sets of different sizes are nested.
        if split not in ("train", "test"):
            raise DataError(f"star_graph: unknown split {split!r} (train or test)")
        test, test_keys = self._draw("test", self.params.test_size, None)
        return test if split == "test" else self._draw("train", self.params.train_size, test_keys)[0]
