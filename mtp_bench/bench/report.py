"""Benchmark results as markdown: one section per part, each with its tables, a one-line reading, and the machine,
versions, exact command, load average and date it was measured with.

Sections sit between ``<!-- bench:<part> -->`` markers, so that running a subset of parts (``--parts eval``) replaces
those sections of an existing ``results/benchmarks.md`` and keeps the others, each still carrying its own context.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtp_bench.bench import PARTS
from mtp_bench.bench.context import RunContext

TITLE = "# mtp-bench benchmarks"
PREAMBLE = (
    "What each training objective and the harness cost, measured as ratios inside one run (compared variants "
    "interleaved on the same batches; medians with [inter-quartile range] over rounds). Written by `mtp-bench "
    "bench`; every section says how to reproduce it. Absolute times depend on the machine and its load; the ratios "
    "are what to read."
)


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> list[str]:
        lines = ["| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in self.rows]
        return lines


@dataclass
class Section:
    key: str  # the part (:data:`mtp_bench.bench.PARTS`)
    title: str
    method: str  # how it was measured, one paragraph
    tables: list[Table]
    reading: str  # the one-line reading of the tables
    context: RunContext
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        c = self.context
        lines = [f"<!-- bench:{self.key} -->", f"## {self.title}", "", self.method, ""]
        for table in self.tables:
            lines += table.markdown() + [""]
        lines += [f"**Reading:** {self.reading}", ""]
        lines += [f"- {note}" for note in self.notes]
        lines += [
            f"- Machine: {c.machine}",
            f"- Versions: {c.versions}",
            f"- Command: `{c.command}`",
            f"- Load average (1/5/15 min): {c.load_before} before, {c.load_after} after; "
            f"{time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(c.started))}; this part took {c.seconds:.0f} s",
            f"<!-- /bench:{self.key} -->",
        ]
        return "\n".join(lines) + "\n"


_SECTION = re.compile(r"<!-- bench:(\w+) -->\n.*?<!-- /bench:\1 -->\n", re.DOTALL)


def existing_sections(text: str) -> dict[str, str]:
    """The sections of a report already written (``text``), by part key."""
    return {match.group(1): match.group(0) for match in _SECTION.finditer(text)}


def existing_notes(text: str) -> str:
    """What a person wrote between the preamble and the first section (a summary of the goals, say): kept."""
    start, end = text.find(PREAMBLE), text.find("<!-- bench:")
    if start < 0 or end < 0:
        return ""
    return text[start + len(PREAMBLE):end].strip("\n")


def write(path: Path, sections: list[Section]) -> str:
    """Write ``sections`` into ``path``, keeping sections of other parts and the notes above them already there;
    returns the text."""
    old = path.read_text() if path.is_file() else ""
    merged = existing_sections(old)
    notes = existing_notes(old)
    merged.update({section.key: section.markdown() for section in sections})
    keys = [key for key in PARTS if key in merged] + sorted(set(merged) - set(PARTS))
    text = "\n".join([TITLE, "", PREAMBLE, "", *([notes, ""] if notes else []), *[merged[key] for key in keys]])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def show(section: Section) -> None:
    """Print a section's tables on the console (rich), with its reading."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(highlight=False, soft_wrap=True)
    for table in section.tables:
        rich_table = RichTable(title=section.title, title_justify="left")
        for header in table.headers:
            rich_table.add_column(header)
        for row in table.rows:
            rich_table.add_row(*[str(cell) for cell in row])
        console.print(rich_table)
    console.print(f"[bold]Reading:[/] {section.reading}  (load {section.context.load_before} -> "
                  f"{section.context.load_after}, {section.context.seconds:.0f} s)")
