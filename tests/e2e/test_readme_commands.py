"""The README and docs/ say only what is true: every command they show runs, every link lands, the front page stays
short.

**Which commands, and how far each is run.** Every fenced ```bash block of README.md and docs/*.md is split into
commands (backslash-newline joined, comments dropped, ``&&``, ``;`` and ``|`` separate commands). Leading
``VAR=value`` assignments become the command's environment and a ``.venv/bin/`` prefix is dropped. Then:

- ``mtp-bench <command> ...``: ``mtp-bench <command> --help`` exits 0 and the whole argument list parses with the real
  parser (an option that no longer exists fails). Every ``*.yaml`` it names exists. With a suite, ``run``,
  ``validate``, ``compare``, ``steps`` and ``ui`` must pass ``mtp-bench validate SUITE OVERRIDES`` in-process, in the
  command's environment: the schema, the overrides, the grid, every plugin's settings and the preflight, except
  lm-eval's task index (tens of seconds to build; tests/e2e/test_paper_suites.py validates every paper suite with it,
  and tests/unit/evaluation/test_lm_eval_preflight.py the tasks themselves). Nothing trains, because whole runs are
  the end-to-end tests' job (tests/e2e/test_run.py, the golden losses, the committed quick start's reproduction).
  Data that cannot exist yet is accepted: a folder that a documented generator writes first
  (``results/<suite>/scratch/``), or a path the command itself sets in an environment variable (your ImageNet
  codes). Only its "does not exist" line is accepted; any other refusal fails.
- ``python -m <module> ...``: ``python -m <module> --help`` exits 0, and a committed folder or suite it reads exists.
- ``bash <script>``: the script exists.
- Commands of other tools (pip, ssh, mlflow, lm_eval, tail) are left alone. A program that is in neither list fails
  the test until someone decides how to check it.

Also checked here: every relative link and ``#anchor`` in README.md, docs/*.md and results/README.md resolves to a
file and a heading. The README's set-up block is exactly the three commands ``.ci/run`` relies on. The README has at
most 250 lines. The quick start's time is written once. docs/architecture.md's layer table is the one
tests/unit/test_architecture.py enforces (``helpers.LAYERS``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from helpers import LAYER_OF, REPO
from mtp_bench import cli, preflight

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINKED_PAGES = [*PAGES, REPO / "results" / "README.md"]
SUITE_COMMANDS = {"run", "validate", "compare", "steps", "ui"}
READS_A_PATH = {"mtp_bench.analysis.reproduce", "mtp_bench.bench.zero_shot"}  # modules whose first argument is input
OTHER_TOOLS = {"pip", "ssh", "mlflow", "lm_eval", "tail", "git"}
SETUP = ["bash .ci/setup", ".venv/bin/mtp-bench run suites/quickstart.yaml",
         ".venv/bin/python -m pytest -q -n 2 --durations=15"]
QUICKSTART_TIME = "under 5 minutes on an idle 2-core machine"
FENCE = re.compile(r"^([ \t]*)```(\w*)\n(.*?)^\1```", re.M | re.S)


def blocks(page: Path, language: str = "bash") -> list[str]:
    """The page's fenced blocks of one language, dedented."""
    out = []
    for indent, lang, body in FENCE.findall(page.read_text(encoding="utf-8")):
        if lang == language:
            out.append("\n".join(line[len(indent):] for line in body.splitlines()))
    return out


def split_commands(block: str) -> list[str]:
    """Shell commands of a block: quotes may span lines; unquoted newlines, ``;``, ``&`` and ``|`` end a command; an
    unquoted ``#`` that starts a word starts a comment."""
    text, commands, command, quote, i = block.replace("\\\n", " "), [], "", None, 0
    while i < len(text):
        char = text[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (not command or command[-1] in " \t"):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif char in "\n;&|":
            commands.append(command)
            command, i = "", i + 1
            continue
        command += char
        i += 1
    return [c.strip() for c in [*commands, command] if c.strip()]


def documented_commands() -> list[tuple[str, str]]:
    return [(f"{page.relative_to(REPO)}: {command}", command)
            for page in PAGES for block in blocks(page) for command in split_commands(block)]


COMMANDS = documented_commands()


def parse(command: str) -> tuple[dict[str, str], str, list[str]]:
    """(environment assignments, program, arguments), with a ``.venv/bin/`` prefix dropped."""
    words = shlex.split(command)
    env = {}
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    program = words[0].removeprefix(".venv/bin/")
    return env, program, words[1:]


@contextlib.contextmanager
def environment(env: dict[str, str]):
    """The command's assignments set, the working directory the repository's root (where the docs' paths start)."""
    saved, cwd = {name: os.environ.get(name) for name in env}, Path.cwd()
    os.environ.update(env)
    os.chdir(REPO)
    try:
        yield
    finally:
        os.chdir(cwd)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@cache
def help_exits_zero(argv: tuple[str, ...]) -> bool:
    """``python -m <module> --help`` as a fresh process (a module's own argument parser, and its import)."""
    done = subprocess.run([sys.executable, *argv, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    return done.returncode == 0


def check_mtp_bench(env: dict[str, str], argv: list[str], capsys: pytest.CaptureFixture,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    parser = cli.build_parser()
    sub = argv[0]
    with pytest.raises(SystemExit) as help_exit:
        parser.parse_args([sub, "--help"])
    assert help_exit.value.code == 0
    capsys.readouterr()
    args, rest = parser.parse_known_args(argv)  # exits 2 on an unknown option or a bad value
    stray = [item for item in rest if item.startswith("-") or "=" not in item or not hasattr(args, "overrides")]
    assert not stray, f"mtp-bench {sub} does not take {stray}"
    if getattr(args, "parts", None):
        from mtp_bench.bench import PARTS

        assert set(args.parts.split(",")) <= set(PARTS), f"--parts {args.parts}: the parts are {PARTS}"
    yamls = [word for word in argv if word.endswith(".yaml")]
    for path in yamls:
        assert (REPO / path).is_file(), f"{path} does not exist"
    suite = getattr(args, "suite", None)
    if sub not in SUITE_COMMANDS or not suite:
        return
    overrides = [*getattr(args, "overrides", []), *rest]
    monkeypatch.setattr(preflight, "check_lm_eval", lambda trials: None)  # see the module docstring
    with environment(env):
        code = cli.main(["validate", suite, *overrides])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    if code == 0:
        return
    # Data that cannot exist yet: a documented generator's output, or the user's own path given on the command.
    not_yet = ["/scratch/", *[value for value in env.values() if value.startswith("/")]]
    accepted = [line for line in errors if "does not exist" in line and any(part in line for part in not_yet)]
    assert code == 2 and errors and accepted == errors, "\n".join(errors)


@pytest.mark.parametrize("command", [c for _, c in COMMANDS], ids=[label for label, _ in COMMANDS])
def test_a_documented_command_runs(command: str, capsys: pytest.CaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    env, program, argv = parse(command)
    if program == "mtp-bench":
        check_mtp_bench(env, argv, capsys, monkeypatch)
    elif program in ("python", "python3") and argv[:1] == ["-m"]:
        module = argv[1]
        assert module == "pytest" or importlib.util.find_spec(module) is not None, f"no module {module}"
        assert module == "pytest" or help_exits_zero(("-m", module)), f"python -m {module} --help failed"
        positional = [word for word in argv[2:] if not word.startswith("-")]
        if module in READS_A_PATH and positional:
            assert (REPO / positional[0]).exists(), f"{positional[0]} does not exist"
    elif program == "bash":
        assert (REPO / argv[0]).is_file(), f"{argv[0]} does not exist"
    else:
        assert program in OTHER_TOOLS, f"decide how tests/e2e/test_readme_commands.py checks a {program!r} command"


def test_commands_are_found() -> None:
    """The parser above finds what the pages show (a broken fence or splitter would make every check vacuous)."""
    programs = {parse(command)[1] for _, command in COMMANDS}
    assert {"mtp-bench", "python", "bash"} <= programs
    assert len(COMMANDS) >= 30
    assert split_commands("a x=1 \\\n  'q: [1,\n 2]' && b  # c\nd;e") == ["a x=1    'q: [1,\n 2]'", "b", "d", "e"]


def test_the_readme_setup_is_what_ci_runs() -> None:
    readme = REPO / "README.md"
    first = blocks(readme)[0]
    assert [shlex.join(shlex.split(c)) for c in split_commands(first)] == SETUP
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert SETUP[0] in ci and SETUP[2] in ci


def test_the_readme_is_short_and_times_the_quick_start_once() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    text = " ".join(" ".join(page.read_text(encoding="utf-8").split()) for page in PAGES)
    assert text.count(QUICKSTART_TIME) == 1
    minutes = re.findall(r"\b\d+(?:\.\d+)?\s*(?:min|minutes)\b", text)
    assert minutes == ["5 minutes"], f"measured times belong in results/, not the docs: {minutes}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(match) for match in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def links() -> list[tuple[Path, str]]:
    found = []
    for page in LINKED_PAGES:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        found += [(page, target) for target in re.findall(r"\]\(([^)\s]+)\)", text)
                  if not target.startswith(("http://", "https://", "mailto:"))]
    return found


@pytest.mark.parametrize(("page", "target"), links(), ids=[f"{p.relative_to(REPO)}->{t}" for p, t in links()])
def test_a_link_lands(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    assert destination.exists(), f"{page.relative_to(REPO)}: {target}: no such file"
    if anchor:
        assert destination.suffix == ".md", f"{target}: an anchor into a file that is not markdown"
        assert anchor in anchors(destination), f"{page.relative_to(REPO)}: {target}: no such heading"


def test_the_architecture_page_has_the_layers_the_test_enforces() -> None:
    rows = re.findall(r"^\| (\d+) \| `([^`]+)` \|", (REPO / "docs" / "architecture.md").read_text(), re.M)
    documented = {Path(path.rstrip("/")).stem: int(layer) for layer, path in rows}
    for _, path in rows:
        assert (REPO / path).exists(), path
    enforced = {part: layer for part, layer in LAYER_OF.items() if part != "__main__"}
    assert documented == enforced
