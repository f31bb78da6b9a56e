"""Write the local data of the SAMSum CPU twin (``suites/samsum_tiny.yaml``): SAMSum-format JSON-lines files made from
DialogSum's dialogues, or generated messenger chats when no DialogSum copy is at hand.

What it is: a *format* twin, so that the ``samsum`` task's local path, the ROUGE scorer and the rest of the pipeline
run end to end offline. SAMSum itself (messenger chats written by linguists, CC BY-NC-ND 4.0) is on the hub only, and
this machine cannot reach it. What it is not: SAMSum. The dialogues are DialogSum's spoken, everyday conversations
(``#Person1#: ...`` turns) rewritten into SAMSum's messenger layout (``Name: text`` lines), so their length, style and
vocabulary are DialogSum's, and no number it yields is a SAMSum number.

The rewrite: every ``#PersonN#`` tag (in the turns and in the summary, any letter case) becomes a first name, the
same name for the same speaker throughout one dialogue and its summary. The names are drawn from a fixed list by a
generator seeded with ``--seed`` and the row's id (so a row's names do not depend on which other rows are written),
distinct within a dialogue, and never a name that already occurs as a word in that dialogue or summary (DialogSum
speakers often address each other by name: ``#Person1#: Hey Jimmy``; Jimmy must not become somebody else). Every
other dialogue is written with ``\\r\\n`` line ends, as SAMSum mixes both, so that the loader's normalisation runs.

Files (SAMSum's split names; the ``samsum`` task reads ``train_file`` / ``test_file``, default ``train.jsonl`` /
``test.jsonl``, and carves its validation split from training with ``data.validation_size``): ``OUT/train.jsonl``
from DialogSum's dev file (500 dialogues), ``OUT/validation.jsonl`` and ``OUT/test.jsonl`` from the first and second
half of DialogSum's test file (250 each; SAMSum keeps one summary per dialogue, so the first of DialogSum's three
references). Rows carry ``id`` (``dialogsum-<fname>``), ``dialogue`` and ``summary``.

DialogSum (CC BY-NC-SA 4.0) is read where it lies (``--source``, default ``$MTP_BENCH_DIALOGSUM_DIR``, else
``../shared/data/dialogsum``); the derived files fall under its licence too, so they are written outside version
control: the default output folder (``results/samsum_tiny/scratch/data``) is ignored by git. ``--generated`` needs no
data at all: short templated chats between two people (meetings, lateness, errands, lending, lost things) with a
templated summary, deterministic in ``--seed``.

    python -m mtp_bench.tasks.make_samsum_twin --out results/samsum_tiny/scratch/data          # from DialogSum
    python -m mtp_bench.tasks.make_samsum_twin --out DIR --generated --train 400 --validation 40 --test 40
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path
from typing import Any

from mtp_bench.data.files import read_jsonl
from mtp_bench.errors import DataError
from mtp_bench.tasks.twins import made_from, source_folder, write_jsonl

DEFAULT_OUT = "results/samsum_tiny/scratch/data"
DEFAULT_DIALOGSUM = "../shared/data/dialogsum"
SOURCE_FILES = {"train": "dialogsum.dev.jsonl", "test": "dialogsum.test.jsonl"}
"""The DialogSum files read (the shared copy has dev and test; the training split is on the hub only)."""
OUT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"}

NAMES = ("Amanda", "Jerry", "Olivia", "Hannah", "Lenny", "Bob", "Tim", "Kim", "Adam", "Emma", "Lucas", "Sophie",
         "Mia", "Jack", "Noah", "Chloe", "Ethan", "Grace", "Liam", "Ruby", "Ben", "Kate", "Ryan", "Laura", "Daniel",
         "Julia", "Mark", "Anna", "Tom", "Lily", "Sam", "Eva", "Max", "Zoe", "Leo", "Isabel", "Oscar", "Ella",
         "Nick", "Paula")
"""First names given to DialogSum's speakers (and to the generated chats' people)."""

_TAG = re.compile(r"#\s*person\s*(\d+)\s*#", re.IGNORECASE)  # DialogSum has one "#PErson2#" among its tags
_TURN = re.compile(r"#\s*person\s*(\d+)\s*#\s*:\s?", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]+")


# ------------------------------------------------------------------------------------------- from DialogSum ----
def check_source_row(row: dict[str, Any]) -> None:
    """A ``read_jsonl`` row check for a DialogSum row: a non-empty dialogue whose every line opens with a speaker
    tag (``#Person1#:``), and a summary (``summary``, or ``summary1`` in the test file). Raises ValueError."""
    if not _first_summary(row):
        raise ValueError("no summary (expected a non-empty 'summary' or 'summary1' field)")
    lines = row["dialogue"].replace("\r\n", "\n").split("\n")
    if not any(line.strip() for line in lines):
        raise ValueError("empty dialogue")
    for number, line in enumerate(lines, start=1):
        if not _TURN.match(line.strip()):
            raise ValueError(f"dialogue line {number} ({line.strip()[:40]!r}) does not open with a speaker tag such "
                             f"as '#Person1#:'")


def _first_summary(row: dict[str, Any]) -> str:
    for name in ("summary", "summary1"):
        if isinstance(row.get(name), str) and row[name].strip():
            return row[name].strip()
    return ""


def speaker_names(persons: set[int], text: str, rng: random.Random) -> dict[int, str]:
    """A distinct first name per person number (in number order), none of them a word already in ``text``."""
    taken = {word.lower() for word in _WORD.findall(text)}
    free = [name for name in NAMES if name.lower() not in taken]
    if len(free) < len(persons):  # not reachable with DialogSum (at most 4 speakers); said rather than assumed
        raise DataError(f"{len(persons)} speakers but only {len(free)} unused names")
    return dict(zip(sorted(persons), rng.sample(free, len(persons)), strict=False))


def to_samsum(row: dict[str, Any], row_id: str, seed: int, line_end: str = "\n") -> dict[str, str]:
    """One DialogSum row (checked by :func:`check_source_row`) as a SAMSum row: ``#PersonN#`` replaced by the same
    name in the turns and the summary, ``Name: text`` lines joined by ``line_end``."""
    summary = _first_summary(row)
    turns = [line.strip() for line in row["dialogue"].replace("\r\n", "\n").split("\n") if line.strip()]
    persons = {int(number) for number in _TAG.findall(row["dialogue"] + "\n" + summary)}
    names = speaker_names(persons, _TAG.sub(" ", row["dialogue"] + "\n" + summary), random.Random(f"{seed}:{row_id}"))

    def named(text: str) -> str:
        return _TAG.sub(lambda match: names[int(match.group(1))], text)

    lines = []
    for turn in turns:
        tag = _TURN.match(turn)
        assert tag is not None  # check_source_row saw every line open with one
        lines.append(f"{names[int(tag.group(1))]}: {named(turn[tag.end():].strip())}")
    return {"id": row_id, "dialogue": line_end.join(lines), "summary": named(summary)}


def read_dialogsum(folder: Path, split: str) -> list[dict[str, Any]]:
    """The rows of one DialogSum file, each checked; a bad row is a DataError naming file:line."""
    path = folder / SOURCE_FILES[split]
    if not path.is_file():
        raise DataError(f"{path}: no such file; make_samsum_twin reads DialogSum's {SOURCE_FILES['train']} and "
                        f"{SOURCE_FILES['test']} from --source (default $MTP_BENCH_DIALOGSUM_DIR, else "
                        f"{DEFAULT_DIALOGSUM}), or use --generated")
    return read_jsonl(path, required=("dialogue",), check=check_source_row)


def _line_end(index: int) -> str:
    return "\r\n" if index % 2 else "\n"  # SAMSum mixes both; the loader must normalise them


def from_dialogsum(folder: Path, seed: int) -> dict[str, list[dict[str, str]]]:
    """SAMSum splits from a DialogSum folder: train from dev, validation and test from the halves of test."""
    dev, test = read_dialogsum(folder, "train"), read_dialogsum(folder, "test")
    if not dev or not test:
        raise DataError(f"{folder}: no dialogues read (an empty {SOURCE_FILES['train']} or {SOURCE_FILES['test']})")

    def convert(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, str]]:
        return [to_samsum(row, f"dialogsum-{row.get('fname') or f'{prefix}_{index}'}", seed, _line_end(index))
                for index, row in enumerate(rows)]

    tested, half = convert(test, "test"), (len(test) + 1) // 2
    return {"train": convert(dev, "dev"), "validation": tested[:half], "test": tested[half:]}


# ------------------------------------------------------------------------------------------------ generated ----
_PLACES = ("the cafe on Main Street", "the station", "the park", "Leo's bar", "the library", "the gym")
_THINGS = ("umbrella", "charger", "keys", "blue jacket", "headphones", "notebook", "bike lock")
_FOODS = ("milk", "bread", "eggs", "coffee", "apples", "rice", "cheese", "tomatoes")
_DAYS = ("today", "tomorrow", "on Friday", "on Saturday", "on Sunday", "next Monday")
_WHERE = ("at the office", "in my car", "at Tom's place", "in the kitchen", "at the gym")


def _chat(rng: random.Random) -> tuple[list[tuple[int, str]], str]:
    """One templated chat: (turns as (speaker 0 or 1, text), summary with {0} and {1} for the names)."""
    kind = rng.randrange(5)
    if kind == 0:
        place, day, hour = rng.choice(_PLACES), rng.choice(_DAYS), rng.randrange(1, 10)
        return [(0, f"Are we still meeting {day}?"), (1, "Yes! Where and when?"),
                (0, f"{place.capitalize()} at {hour} pm?"), (1, "Perfect, see you there :)")], \
            f"{{0}} and {{1}} will meet at {place} {day} at {hour} pm."
    if kind == 1:
        minutes, food = rng.choice((10, 15, 20, 30)), rng.choice(_FOODS)
        return [(0, f"Sorry, stuck in traffic. I'll be {minutes} minutes late"), (1, "No worries"),
                (1, f"I'll get some {food} while I wait"), (0, "Thanks!")], \
            f"{{0}} will be {minutes} minutes late. {{1}} will get some {food} in the meantime."
    if kind == 2:
        first, second = rng.sample(_FOODS, 2)
        return [(0, "I'm at the shop. Do we need anything?"), (1, f"We're out of {first} and {second}"),
                (0, "OK, I'll get both")], f"{{0}} is at the shop and will buy {first} and {second} for {{1}}."
    if kind == 3:
        thing, day, back = rng.choice(_THINGS), rng.choice(_DAYS), rng.choice(_DAYS)
        return [(0, f"Can I borrow your {thing} {day}?"), (1, f"Sure, but I need it back {back}"), (0, "Deal")], \
            f"{{1}} will lend {{0}} the {thing} {day}. {{0}} will bring the {thing} back {back}."
    thing, where = rng.choice(_THINGS), rng.choice(_WHERE)
    return [(0, f"Have you seen my {thing}?"), (1, f"I think you left it {where}"), (0, "Found it, thanks!")], \
        f"{{0}} lost the {thing}. {{1}} thinks it was left {where}, and {{0}} found it there."


def generated(counts: dict[str, int], seed: int) -> dict[str, list[dict[str, str]]]:
    """Templated messenger chats per split (``counts``: train / validation / test), deterministic in ``seed``."""
    rng = random.Random(seed)
    splits: dict[str, list[dict[str, str]]] = {}
    for split, count in counts.items():
        rows = []
        for index in range(count):
            turns, summary = _chat(rng)
            names = rng.sample(NAMES, 2)
            dialogue = _line_end(index).join(f"{names[speaker]}: {text}" for speaker, text in turns)
            rows.append({"id": f"generated-{split}_{index}", "dialogue": dialogue, "summary": summary.format(*names)})
        splits[split] = rows
    return splits


# ---------------------------------------------------------------------------------------------------- files ----
def make_twin(out: Path, *, source: Path | None = None, counts: dict[str, int] | None = None,
              seed: int = 0) -> dict[str, int]:
    """Write ``out/train.jsonl``, ``validation.jsonl`` and ``test.jsonl``: from the DialogSum folder ``source``, else
    generated (then ``counts`` gives each split's size). Everything is read and checked before the folder is
    created, so a bad source leaves nothing half-written. Returns the rows written per file name."""
    if source is not None:
        splits = from_dialogsum(source, seed)
    else:
        if not counts or set(counts) != set(OUT_FILES) or min(counts.values()) < 1:
            raise DataError("--generated needs --train, --validation and --test (at least 1 chat each)")
        splits = generated(counts, seed)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_jsonl(out / OUT_FILES[split], rows)
    return {OUT_FILES[split]: len(rows) for split, rows in splits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtp_bench.tasks.make_samsum_twin",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}, ignored by git)")
    origin = parser.add_mutually_exclusive_group()
    origin.add_argument("--source", default=None, help="DialogSum folder (dialogsum.dev.jsonl, dialogsum.test.jsonl); "
                        f"default $MTP_BENCH_DIALOGSUM_DIR, else {DEFAULT_DIALOGSUM}")
    origin.add_argument("--generated", action="store_true", help="write templated chats instead (no data needed)")
    for split in OUT_FILES:
        parser.add_argument(f"--{split}", type=int, default=None, help=f"{split} chats (--generated only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the names (and of the generated chats)")
    args = parser.parse_args(argv)
    counts = {split: getattr(args, split) for split in OUT_FILES if getattr(args, split) is not None}
    if counts and not args.generated:
        parser.error("--train/--validation/--test size the --generated chats; from DialogSum every row is written")
    source = None if args.generated else source_folder(args.source, "MTP_BENCH_DIALOGSUM_DIR", DEFAULT_DIALOGSUM)
    written = make_twin(Path(args.out), source=source, counts=counts, seed=args.seed)
    print(f"wrote {', '.join(f'{count} rows to {name}' for name, count in written.items())} in {args.out} "
          f"from {made_from('DialogSum', source, 'generated chats')}")
    return 0


if __name__ == "__main__":  # errors are printed by the command line's entry point, as mtp-bench's are
    from mtp_bench.cli.entry import run_script

    raise SystemExit(run_script("make_samsum_twin", main))
