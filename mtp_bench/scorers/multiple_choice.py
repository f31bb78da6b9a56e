"""Multiple-choice letter accuracy (AQuA-RAT): the completion's chosen letter against the gold one.

How the letter is read (the rule, written down because it decides the numbers). An *option letter* is one of the
scorer's ``letters`` (AQuA: ``ABCDE``) standing alone: not part of a word (``Cats``; ``adoption B`` holds no cue),
not an abbreviation (``E.g.``), not a possessive (``A's``), and not one of several: ``A or C``, ``A/C``, ``A, B``,
``A and C`` are hedges and read nothing. Statements and marks are read within one line: a line break ends them.

- ``accuracy`` (strict, the main metric): the line after the completion's **first** ``####`` holds only an upper-case
  option letter, optionally in round brackets and followed by a full stop (``#### C``, ``####B``, ``#### (C).``): the
  format the ``aqua_rat`` task trains (``... rationale\n#### C``). Anything else on that line (``#### A train ...``,
  ``#### E.g. ...``, ``#### A or C``), or nothing on it, reads no letter; later ``####`` lines are not looked at.
- ``accuracy_flexible``: the strict letter if there is one, else the letter of the **last** answer statement in the
  completion (a model that corrects itself states its answer again). Statements:

  * a ``####`` line holding only a letter in any form below (``#### c``, ``#### **C**``, ``#### \\boxed{C}``);
  * a cue, then connectors, then the letter. Cues (any case): ``answer``, ``ans``, ``answer choice|option``,
    ``correct|right|best|final option|choice``. Connectors: ``is``, ``will|would|should|must be``, ``option``,
    ``choice``, ``(option``, ``:``, ``=``, ``-``, ``,``, a ``.`` with no space after it. So ``The answer is C``,
    ``ANS:D``, ``Ans A``, ``the right answer is: C``, ``Answer - (A)``, ``the correct option is E``, ``answer.A``;
  * the letter, then ``is`` (or ``will|would|must be``) ``[the] [correct|right|best|final|only] answer|choice|option``
    or ``is correct|right``: ``D is the correct choice``, ``Hence (C) is the correct answer``;
  * ``\\boxed{C}`` anywhere;
  * a last non-empty line holding only the letter (``D``, ``E)``, ``(C).``, ``**C**``), or ``Option: D``.

  The letter may be written ``C``, ``(C)``, ``( C )``, ``[C]``, ``C)``, ``**C**``, ``\\boxed{C}``; a lower-case letter
  counts when so marked or when it ends the sentence or line (``answer is c.``), so the article in ``the answer is a
  number`` is no answer. A mention that states nothing (``let's double-check option E``) does not count.
A completion with no readable letter counts as wrong.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

from mtp_bench.api.scorer import EvalContext, ScoreResult, score_each, two_way_row
from mtp_bench.api.task import Example
from mtp_bench.scorers.multiple_choice_params import MultipleChoiceParams

METRICS = ("accuracy", "accuracy_flexible")
_SP = r"[ \t]*"  # spaces within a line: a statement never crosses a line break


class _Rules(NamedTuple):
    strict: re.Pattern[str]
    token: re.Pattern[str]
    line: re.Pattern[str]
    cue: re.Pattern[str]
    letter_first: re.Pattern[str]
    boxed: re.Pattern[str]
    hedge: re.Pattern[str]


def _token(chars: str) -> str:
    """One option letter of ``chars`` in its written forms; the capture groups are (boxed, bold, bracketed, bare)."""
    return (rf"(?:\$?\\boxed\{{{_SP}\(?{_SP}([{chars}]){_SP}\)?{_SP}\}}\$?|\*\*{_SP}\(?([{chars}])\)?{_SP}\*\*"
            rf"|[\(\[]{_SP}([{chars}]){_SP}[\)\]]|(?<![\w\\])([{chars}])(?![\w'/]|\.[A-Za-z]))")


@lru_cache(maxsize=8)
def _rules(letters: str) -> _Rules:
    upper, both = letters.upper(), letters.upper() + letters.lower()
    token = _token(both)
    connector = (rf"(?:{_SP}(?i:is|(?:will|would|should|must){_SP}be)\b|{_SP}\(?(?i:option|choice)\b"
                 rf"|{_SP}[:=,\-\u2013]|\.(?=\S))")
    return _Rules(
        strict=re.compile(rf"{_SP}\(?([{upper}])\)?\.?\s*"),
        token=re.compile(token),
        line=re.compile(rf"{_SP}(?:(?i:option|choice){_SP}[:\-]?{_SP})?{token}{_SP}[.)]?{_SP}"),
        cue=re.compile(rf"(?i:\b(?:answer|ans)(?:{_SP}(?:choice|option))?\b|\b(?:correct|right|best|final){_SP}"
                       rf"(?:option|choice)\b)(?:{connector})*{_SP}"),
        letter_first=re.compile(rf"(?:[\(\[]{_SP}([{both}]){_SP}[\)\]]|\*\*([{both}])\*\*|(?<![\w\\])([{upper}]))"
                                rf"{_SP}(?i:is|(?:will|would|must){_SP}be){_SP}(?i:(?:the{_SP})?(?:(?:correct|right"
                                rf"|best|final|only){_SP})?(?:answer|choice|option)\b|correct\b|right\b)"),
        boxed=re.compile(rf"\\boxed\{{{_SP}\(?{_SP}([{both}]){_SP}\)?{_SP}\}}"),
        # another upper-case letter after "or", "and", "," "/" or "&": a hedge (a lower-case one is mostly the article)
        hedge=re.compile(rf"{_SP}(?:[,/&]|\b(?i:or|and)\b){_SP}{_token(upper)}"),
    )


def _letter(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group).upper()


def _token_at(text: str, position: int, rules: _Rules) -> tuple[int, str | None] | None:
    """The option letter written at ``position``: ``(position, letter)``, ``(position, None)`` for a hedge, or None
    when no lone letter stands there (a bare lower-case letter must end its sentence or line)."""
    match = rules.token.match(text, position)
    if match is None:
        return None
    rest = text[match.end():]
    if match.group(4) and match.group(4).islower() and not re.match(rf"{_SP}(?:[.,;:!?)](?![A-Za-z0-9])|$|\n)", rest):
        return None
    return (position, None) if rules.hedge.match(rest) else (position, _letter(match))


def strict_letter(completion: str, letters: str = "ABCDE") -> str | None:
    """The letter that makes up the line after the first ``####`` (the trained format); None otherwise."""
    if "####" not in completion:
        return None
    line = completion.split("####", 1)[1].split("\n", 1)[0]
    match = _rules(letters).strict.fullmatch(line)
    return match.group(1) if match else None


def flexible_letter(completion: str, letters: str = "ABCDE") -> str | None:
    """The strict letter, else the letter of the last answer statement (see the module's rule); None if none."""
    strict = strict_letter(completion, letters)
    if strict is not None:
        return strict
    rules = _rules(letters)
    found: list[tuple[int, str | None]] = []
    for mark in re.finditer(r"####([^\n]*)", completion):
        if (match := rules.line.fullmatch(mark.group(1))) is not None:
            found.append((mark.start(), _letter(match)))
        elif rules.hedge.search(mark.group(1)):
            found.append((mark.start(), None))
    for cue in rules.cue.finditer(completion):
        if (read := _token_at(completion, cue.end(), rules)) is not None:
            found.append(read)
    found += [(match.start(), _letter(match)) for match in rules.letter_first.finditer(completion)]
    found += [(match.start(), _letter(match)) for match in rules.boxed.finditer(completion)]
    lines = completion.rstrip().rsplit("\n", 1)
    if (match := rules.line.fullmatch(lines[-1])) is not None:
        found.append((len(completion), _letter(match)))
    return max(found, key=lambda item: item[0])[1] if found else None


class MultipleChoice:
    """Letter accuracy on multiple-choice questions whose records carry the gold letter as ``gold``."""

    name: ClassVar[str] = "multiple_choice"
    Params: ClassVar[type] = MultipleChoiceParams
    main_metric: ClassVar[str] = "accuracy"

    def __init__(self, params: MultipleChoiceParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        return score_each(context, examples, self.params.max_new_tokens, self.judge, METRICS)

    def judge(self, index: int, example: Example, completion: str) -> dict[str, Any]:
        letters = self.params.letters
        gold = str(example.record["gold"]).strip()
        read = (strict_letter(completion, letters), flexible_letter(completion, letters))
        return two_way_row(index, example, completion, gold, read, METRICS)
