"""The built wheel, not the editable tree: methods/ ships as mtp_bench.methods, never as a top-level `methods`, and
the built-in plugins are found through entry points from an installed copy."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True)
    (built,) = out.glob("mtp_bench-*.whl")
    return built


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "mtp_bench/methods/ntp.py" in names
    assert not [n for n in names if n.startswith("methods/")], "a bare top-level `methods` package would collide"
    tree_packages = {
        str(p.parent.relative_to(REPO)).replace(os.sep, "/")
        for p in (REPO / "mtp_bench").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    missing = [pkg for pkg in tree_packages if f"{pkg}/__init__.py" not in names]
    assert not missing, f"packages in the tree but not in the wheel (add them to pyproject.toml): {missing}"
    shipped_yaml = {p.relative_to(REPO).as_posix() for p in (REPO / "mtp_bench").rglob("*.yaml")}
    assert shipped_yaml <= set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[mtp_bench.methods]" in text and "ntp = mtp_bench.methods.ntp:NextTokenPrediction" in text
    assert "mtp-bench = mtp_bench.cli:main" in text


def test_installed_wheel_finds_builtin_methods_through_entry_points(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = (
        "import mtp_bench, importlib.util; "
        f"assert mtp_bench.__file__.startswith({str(target)!r}), mtp_bench.__file__; "
        "assert importlib.util.find_spec('methods') is None, 'top-level methods importable'; "
        "from mtp_bench import registry; cls = registry.load(registry.METHODS, 'ntp'); "
        "print(cls.__module__, registry.available(registry.METHODS)[0].distribution)"
    )
    # PYTHONPATH puts the installed copy ahead of the editable install; the probe asserts that it is the one used.
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "mtp_bench.methods.ntp"


def test_installed_cli_starts_without_the_editable_hooks(wheel: Path, tmp_path: Path) -> None:
    """The console script's entry point from a plain install: ``python -S`` skips the site-packages ``.pth`` hooks
    (the editable finder among them imports modules the CLI must import itself, e.g. ``importlib.util``)."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *site.getsitepackages()])}
    probe = "import sys; from mtp_bench.cli import main; sys.exit(main(['methods']))"
    result = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mutor" in result.stdout and "ntp" in result.stdout
