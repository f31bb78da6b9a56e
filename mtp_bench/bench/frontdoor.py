"""Front-door cost: wall and CPU time of ``mtp-bench --help`` and ``mtp-bench validate suites/quickstart.yaml``, the
first two commands a newcomer types, each a fresh process of the installed console script (targets: 1 s and 2 s wall
on 2 cores). Also how many modules each imports, and whether torch, mlflow, ray or scipy is among them.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mtp_bench.bench.context import REPO, RunContext, Settings
from mtp_bench.bench.report import Section, Table
from mtp_bench.bench.timing import spread

HEAVY = ("torch", "mlflow", "ray", "scipy", "transformers")
COMMANDS = {"mtp-bench --help": (["--help"], 1.0),
            "mtp-bench validate suites/quickstart.yaml": (["validate", "suites/quickstart.yaml"], 2.0)}
ROUNDS, QUICK_ROUNDS = 9, 3


def console_script() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m mtp_bench.cli``."""
    script = Path(sys.executable).with_name("mtp-bench")
    found = str(script) if script.is_file() else shutil.which("mtp-bench")
    return [found] if found else [sys.executable, "-m", "mtp_bench.cli"]


def _timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _imports(args: list[str]) -> tuple[int, list[str]]:
    """Modules loaded by running the command in one interpreter, and the heavy ones among them."""
    probe = ("import contextlib, io, json, sys\nfrom mtp_bench import cli\n"
             "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
             f"    cli.main({args!r})\n"
             f"print(json.dumps([len(sys.modules), sorted(m for m in {HEAVY!r} if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    count, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    return count, heavy


def run(settings: Settings) -> Section:
    context = RunContext.begin(settings)
    entry = console_script()
    rounds = QUICK_ROUNDS if settings.sizes.quick else ROUNDS
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):  # interleaved, so load from other processes hits both commands alike
        for name, (args, _target) in COMMANDS.items():
            wall, cpu = _timed([*entry, *args])
            walls[name].append(wall)
            cpus[name].append(cpu)
    rows = []
    for name, (args, target) in COMMANDS.items():
        count, heavy = _imports(args)
        wall = spread(walls[name])
        rows.append([f"`{name}`", wall.text(2), spread(cpus[name]).text(2), f"≤ {target:g}",
                     "met" if wall.median <= target else "**missed**", str(count), ", ".join(heavy) or "none"])
    table = Table(["command", "wall s, median [IQR]", "CPU s, median [IQR]", "target wall s", "target",
                   "modules imported", "heavy imports"], rows)
    met = all(row[4] == "met" for row in rows)
    return Section(
        key="frontdoor",
        title="Front door: `--help` and `validate`",
        method=(f"Each command runs {rounds} times as a fresh process of the installed `{Path(entry[0]).name}` "
                "script from the repository root, the two commands interleaved; CPU is user + system time of the "
                "child. Modules are counted by running the same command in one interpreter. Parser building and "
                "`validate` import no torch, mlflow, ray or scipy: plugin settings come from light `*_params` "
                "entry points (see `mtp_bench/registry.py`)."),
        tables=[table],
        reading=("both commands are within their targets" if met else "a command missed its target")
        + f" on {os.cpu_count()} cores (load above)",
        context=context.end(),
    )
